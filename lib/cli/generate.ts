/**
 * `monosemantic generate`: continues a prompt with a GPT-2-family model from an HF directory,
 * optionally steered by clamping SAE features (`--steer FEATURE=VALUE --sae DIR`).
 */
import type { Command } from 'commander';

import { generate, generationPositions } from '../lm/generate.js';
import { exceptFirstPosition, saeSplice } from '../lm/interventions.js';
import { defaultModelDir, modelDirOf } from '../lm/default-model.js';
import { Gpt2Model, type Intervention } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { loadSaeLensAsSae } from '../sae/saelens.js';
import { fractionFlag, integerFlag, nonNegativeIntegerFlag, nonNegativeNumberFlag, numberFlag, optionWithDefault } from './flags.js';
import { saeModelDir } from './sae-model.js';

interface GenerateFlags {
  model?: string;
  prompt: string;
  maxNewTokens: string;
  temperature: string;
  topK: string;
  topP: string;
  seed: string;
  greedy?: boolean;
  steer?: string[];
  sae?: string;
  hook?: string;
  bos: boolean;
  ignoreEos?: boolean;
  backend?: 'cpu' | 'cuda';
}

/** --steer FEATURE=VALUE flags → { feature: value }. */
export function parseSteer(values: readonly string[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const v of values) {
    const m = /^(\d+)=(.+)$/.exec(v.trim());
    if (!m) throw new RangeError(`--steer ${v}: expected FEATURE=VALUE, e.g. --steer 1234=10`);
    out[Number(m[1])] = numberFlag(`--steer ${v}: VALUE`, m[2]!);
  }
  return out;
}

/**
 * Generation stops at the tokenizer's EOS (the end of a document), as HF's generate does, unless
 * --ignore-eos; the EOS itself is not printed.
 */
/**
 * The tokenizer's side of generating: stop at its EOS (unless ignoreEos), and pick only ids it can
 * decode where the model's vocabulary (modelVocab) is padded beyond its own.
 */
export function eosOptions(tokenizer: Tokenizer, ignoreEos: boolean | undefined, modelVocab?: number): { stopTokens: number[]; vocabularyLimit?: number } {
  const stopTokens = !ignoreEos && tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : [];
  return modelVocab !== undefined && modelVocab > tokenizer.vocabSize ? { stopTokens, vocabularyLimit: tokenizer.vocabSize } : { stopTokens };
}

/** The text of generated `tokens`, without a final stop token. */
export function generatedText(tokenizer: Tokenizer, tokens: readonly number[] | Int32Array, stopTokens: readonly number[]): string {
  const ids = Array.from(tokens);
  if (ids.length > 0 && stopTokens.includes(ids[ids.length - 1]!)) ids.pop();
  return tokenizer.decode(ids);
}

/** The prompt's tokens and --max-new-tokens must fit the model's n_positions: a RangeError naming the flag otherwise. */
export function checkLength(promptTokens: number, maxNewTokens: number, nPositions: number): void {
  if (generationPositions(promptTokens, maxNewTokens) > nPositions) {
    throw new RangeError(`the prompt's ${promptTokens} tokens + --max-new-tokens ${maxNewTokens} − 1 (the last is not fed back) exceed the model's n_positions ${nPositions}`);
  }
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('continue a prompt with a GPT-2-family model (HF directory), optionally steered by SAE features')
    .option('--model <dir>', "model directory: config.json, model.safetensors, tokenizer.json (default: with --sae, the model its cfg.json names; else the package's model A; a or b: the package's models)", modelDirOf)
    .requiredOption('--prompt <text>', 'the text to continue')
    .addOption(optionWithDefault('-n, --max-new-tokens <n>', 'tokens to generate', '40'))
    .addOption(optionWithDefault('--temperature <t>', 'sampling temperature (0: greedy)', '1'))
    .addOption(optionWithDefault('--top-k <k>', 'sample among the k most likely tokens (0: all)', '0'))
    .addOption(optionWithDefault('--top-p <p>', 'nucleus sampling threshold (1: off)', '1'))
    .addOption(optionWithDefault('--seed <n>', 'sampling seed', '0'))
    .option('--greedy', 'always take the most likely token')
    .option('--steer <feature=value>', 'clamp an SAE feature to a value while generating (repeatable; needs --sae)', (v: string, all: string[] = []) => [...all, v])
    .option('--sae <dir>', 'SAE folder (SAELens layout) whose features --steer clamps')
    .option('--hook <name>', "hook the SAE reads (default: the SAE's cfg.json hook name)")
    .option('--no-bos', 'do not start the prompt with the BOS token (models trained with BOS-first contexts expect it)')
    .option('--ignore-eos', 'keep generating after the end-of-text token (by default generation stops there)')
    .option('--backend <name>', 'cpu or cuda (default: the active backend)')
    .action(async (flags: GenerateFlags) => {
      const steer = parseSteer(flags.steer ?? []);
      if (Object.keys(steer).length > 0 && !flags.sae) throw new RangeError('--steer needs --sae DIR (the SAE whose features to clamp)');
      const sampling = {
        maxNewTokens: nonNegativeIntegerFlag('--max-new-tokens', flags.maxNewTokens),
        temperature: nonNegativeNumberFlag('--temperature', flags.temperature),
        topK: nonNegativeIntegerFlag('--top-k', flags.topK),
        topP: fractionFlag('--top-p', flags.topP),
        seed: integerFlag('--seed', flags.seed),
      };
      // With --sae, the SAE is read first: its cfg.json names the model by default.
      const loaded = flags.sae ? await loadSaeLensAsSae(flags.sae, { ...(flags.backend ? { backend: flags.backend } : {}), precision: 'f32' }) : null;
      const sae = loaded?.sae ?? null;
      try {
        const modelDir = loaded ? saeModelDir(flags.sae!, loaded.loaded.metadata.modelName, flags.model) : (flags.model ?? defaultModelDir());
        const tokenizer = await Tokenizer.load(modelDir);
        using model = await Gpt2Model.load(modelDir, sae ? { backend: sae.backend } : flags.backend ? { backend: flags.backend } : {});
        const interventions: Record<string, Intervention> = {};
        const bos = flags.bos && tokenizer.bosTokenId !== null ? [tokenizer.bosTokenId] : [];
        if (loaded) {
          const hook = flags.hook ?? loaded.loaded.metadata.hookName;
          if (!hook) throw new RangeError(`${flags.sae} names no hook in its cfg.json; pass --hook NAME`);
          // The BOS position, where the SAE was never trained, keeps its activation.
          const splice = saeSplice(loaded.sae, { keepError: true, clamp: steer });
          interventions[hook] = bos.length > 0 ? exceptFirstPosition(splice) : splice;
        }
        const prompt = Int32Array.from([...bos, ...tokenizer.encode(flags.prompt)]);
        checkLength(prompt.length, sampling.maxNewTokens, model.config.nPositions);
        const limits = eosOptions(tokenizer, flags.ignoreEos, model.config.vocabSize);
        const { stopTokens } = limits;
        const tokens = await generate(model, prompt, { ...sampling, ...(flags.greedy ? { greedy: true } : {}), interventions, ...limits });
        process.stdout.write(`${flags.prompt}${generatedText(tokenizer, tokens, stopTokens)}\n`);
      } finally {
        sae?.dispose();
      }
    });
}
