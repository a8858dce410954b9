/**
 * `monosemantic steer`: pins one SAE feature while the model continues a prompt, as the paper pinned
 * its Arabic and base64 features, and prints the unsteered and steered continuations one after the
 * other (same seed, same sampling). The pinned value defaults to the feature's largest activation
 * on held-out contexts.
 */
import path from 'node:path';

import type { Command } from 'commander';

import { forEachFeatureBatch } from '../analysis/feature-activations.js';
import { readContexts } from '../data/corpus-contexts.js';
import { generate } from '../lm/generate.js';
import { exceptFirstPosition, saeSplice } from '../lm/interventions.js';
import { Gpt2Model, type Intervention } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { modelDirOf } from '../lm/default-model.js';
import { packageRoot } from '../native/load.js';
import type { SparseAutoencoder } from '../sae/sae.js';
import { loadSaeLensAsSae } from '../sae/saelens.js';
import { integerFlag, nonNegativeIntegerFlag, nonNegativeNumberFlag, numberFlag, optionWithDefault } from './flags.js';
import { SAE_MODEL_HELP, analysisContextLength, saeModelDir } from './sae-model.js';
import { checkLength, eosOptions, generatedText } from './generate.js';

interface SteerFlags {
  sae: string;
  feature: string;
  value: string;
  model?: string;
  hook?: string;
  prompt: string;
  maxNewTokens: string;
  temperature: string;
  seed: string;
  data?: string[];
  textField: string;
  contextLength?: string;
  bos: boolean;
  ignoreEos?: boolean;
  backend?: 'cpu' | 'cuda';
}

/** The largest activation of `feature` at `hook` over held-out contexts. */
export async function maxActivation(model: Gpt2Model, sae: SparseAutoencoder, hook: string, feature: number, contexts: Int32Array, T: number): Promise<number> {
  let max = 0;
  await forEachFeatureBatch(model, sae, hook, contexts, T, (f) => {
    for (let r = 0; r < f.rows; r++) {
      if (r % T === 0) continue; // the BOS position
      for (let k = f.rowPtr[r]!; k < f.rowPtr[r + 1]!; k++) if (f.cols[k] === feature) max = Math.max(max, f.values[k]!); // f[r, feature]
    }
  });
  return max;
}

export function registerSteer(program: Command): void {
  program
    .command('steer')
    .description('pin an SAE feature while continuing a prompt; prints the unsteered and steered continuations')
    .requiredOption('--sae <dir>', 'SAELens folder')
    .requiredOption('--feature <n>', 'the feature to pin')
    .option('--value <v>', 'the value it is pinned to, or "max" (its largest held-out activation) or "max*K"', 'max')
    .requiredOption('--prompt <text>', 'the text to continue')
    .option('--model <dir>', SAE_MODEL_HELP, modelDirOf)
    .option('--hook <name>', "hook the SAE reads (default: the SAE's cfg.json hook name)")
    .addOption(optionWithDefault('-n, --max-new-tokens <n>', 'tokens to generate', '40'))
    .addOption(optionWithDefault('--temperature <t>', 'sampling temperature (0: greedy)', '0.7'))
    .addOption(optionWithDefault('--seed <n>', 'sampling seed (the same for both continuations)', '0'))
    .option('--data <paths...>', 'held-out token shards or text for --value max (default: corpus/val.tokens)')
    .option('--text-field <name>', 'JSONL / Parquet text column', 'text')
    .option('--context-length <n>', 'tokens per context (default: the SAE’s context size, capped at the model’s n_positions)')
    .option('--no-bos', 'do not start the prompt with the BOS token')
    .option('--ignore-eos', 'keep generating after the end-of-text token (by default generation stops there)')
    .option('--backend <name>', 'cpu or cuda (default: the active backend)')
    .action(async (flags: SteerFlags) => {
      const options = {
        maxNewTokens: nonNegativeIntegerFlag('--max-new-tokens', flags.maxNewTokens),
        temperature: nonNegativeNumberFlag('--temperature', flags.temperature),
        seed: integerFlag('--seed', flags.seed),
      };
      const { sae, loaded } = await loadSaeLensAsSae(flags.sae, { ...(flags.backend ? { backend: flags.backend } : {}), precision: 'f32' });
      try {
        const modelDir = saeModelDir(flags.sae, loaded.metadata.modelName, flags.model);
        const tokenizer = await Tokenizer.load(modelDir);
        using model = await Gpt2Model.load(modelDir, { backend: sae.backend });
        const hook = flags.hook ?? loaded.metadata.hookName;
        if (!hook) throw new RangeError(`${flags.sae} names no hook in its cfg.json; pass --hook NAME`);
        const feature = numberFlag('--feature', flags.feature);
        if (!Number.isSafeInteger(feature) || feature < 0 || feature >= sae.dSae) throw new RangeError(`--feature must be an integer in [0, ${sae.dSae}) (got ${flags.feature})`);
        let value: number;
        const asMax = /^max(?:\*(.*))?$/i.exec(flags.value.trim());
        if (asMax) {
          // K is checked before the pass over the held-out contexts.
          const factor = asMax[1] === undefined ? 1 : numberFlag('--value max*K: K', asMax[1]);
          const T = analysisContextLength(flags.contextLength, loaded.metadata.contextSize, model.config.nPositions);
          const paths = flags.data ?? [path.join(packageRoot(), 'corpus', 'val.tokens')];
          const contexts = await readContexts({ paths, textField: flags.textField, tokenizer, contextLength: T, seed: 0 }, 256);
          const max = await maxActivation(model, sae, hook, feature, contexts, T);
          if (max === 0) {
            throw new RangeError(`feature ${feature} did not fire on the ${contexts.length / T} held-out contexts, so --value ${flags.value} would pin it to 0 and change nothing; give a value (--value V)`);
          }
          value = max * factor;
          process.stderr.write(`feature ${feature}: largest activation on ${contexts.length / T} held-out contexts ${max.toPrecision(4)}; pinned to ${value.toPrecision(4)}\n`);
        } else {
          value = numberFlag('--value', flags.value);
        }
        const bos = flags.bos && tokenizer.bosTokenId !== null ? [tokenizer.bosTokenId] : [];
        const prompt = Int32Array.from([...bos, ...tokenizer.encode(flags.prompt)]);
        checkLength(prompt.length, options.maxNewTokens, model.config.nPositions);
        const limits = eosOptions(tokenizer, flags.ignoreEos, model.config.vocabSize);
        const { stopTokens } = limits;
        const plain = await generate(model, prompt, { ...options, ...limits });
        // The BOS position, where the SAE was never trained, keeps its activation.
        const steering = (splice: Intervention) => (bos.length > 0 ? exceptFirstPosition(splice) : splice);
        const steered = await generate(model, prompt, { ...options, ...limits, interventions: { [hook]: steering(saeSplice(sae, { keepError: true, clamp: { [feature]: value } })) } });
        const text = (tokens: number[] | Int32Array) => generatedText(tokenizer, tokens, stopTokens);
        process.stdout.write(
          `--- unsteered\n${flags.prompt}${text(plain)}\n` + `--- steered: feature ${feature} pinned to ${value.toPrecision(4)} at ${hook}\n${flags.prompt}${text(steered)}\n`,
        );
      } finally {
        sae.dispose();
      }
    });
}
