/**
 * `monosemantic automata`: cycles of features where each one's promoted tokens are the tokens the
 * next one fires on (lib/analysis/automata.ts), ranked by strength, with an example from the
 * token set.
 */
import path from 'node:path';

import type { Command } from 'commander';

import { FiringRecord, findAutomata } from '../analysis/automata.js';
import { forEachFeatureBatch } from '../analysis/feature-activations.js';
import { logitWeightLayer, logitWeightMatrix } from '../analysis/logit-weights.js';
import { readContexts } from '../data/corpus-contexts.js';
import { writeFileAtomic } from '../io/atomic.js';
import { Gpt2Model } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { loadGpt2Weights } from '../lm/weights.js';
import { modelDirOf } from '../lm/default-model.js';
import { packageRoot } from '../native/load.js';
import { loadSaeLensAsSae } from '../sae/saelens.js';
import { nonNegativeIntegerFlag, nonNegativeNumberFlag, optionWithDefault, positiveIntegerFlag, prepareOutputFile } from './flags.js';
import { SAE_MODEL_HELP, analysisContextLength, saeModelDir } from './sae-model.js';
import { contextProgress } from './progress.js';

interface AutomataFlags {
  progress?: boolean;
  sae: string;
  model?: string;
  hook?: string;
  data?: string[];
  contexts?: string;
  textField: string;
  contextLength?: string;
  minScore: string;
  minCount: string;
  maxLength: string;
  top: string;
  out?: string;
  backend?: 'cpu' | 'cuda';
  json?: boolean;
}

export function registerAutomata(program: Command): void {
  program
    .command('automata')
    .description('find feature cycles (X promotes the tokens Y fires on, Y the tokens Z fires on, ... back to X)')
    .requiredOption('--sae <dir>', 'SAELens folder of an SAE on an MLP hidden layer')
    .option('--model <dir>', SAE_MODEL_HELP, modelDirOf)
    .option('--hook <name>', "hook the SAE reads (default: the SAE's cfg.json hook name)")
    .option('--data <paths...>', 'token shards or text (default: corpus/val.tokens)')
    .option('--text-field <name>', 'JSONL / Parquet text column', 'text')
    .option('--context-length <n>', 'tokens per context (default: the SAE’s context size, capped at the model’s n_positions)')
    .option('--contexts <n>', 'contexts read (default: all)')
    .addOption(optionWithDefault('--min-score <s>', 'edges scoring below this (√(logit strength × transition rate)) are left out', '0.05'))
    .addOption(optionWithDefault('--min-count <n>', 'fewest observed transitions for an edge', '3'))
    .addOption(optionWithDefault('--max-length <n>', 'longest cycle', '4'))
    .addOption(optionWithDefault('--top <n>', 'cycles reported', '20'))
    .option('-o, --out <file>', 'write the edges and cycles as JSON')
    .option('--backend <name>', 'cpu or cuda (default: the active backend)')
    .option('--json', 'print the result as JSON')
    .option('--no-progress', 'no progress bar')
    .action(async (flags: AutomataFlags) => {
      // Flags and the output's folder are checked before the analysis, which can take minutes.
      const limit = flags.contexts !== undefined ? positiveIntegerFlag('--contexts', flags.contexts) : Number.MAX_SAFE_INTEGER;
      const options = {
        minScore: nonNegativeNumberFlag('--min-score', flags.minScore),
        minCount: nonNegativeIntegerFlag('--min-count', flags.minCount),
        maxLength: positiveIntegerFlag('--max-length', flags.maxLength),
        maxCycles: positiveIntegerFlag('--top', flags.top),
      };
      if (flags.out) await prepareOutputFile('--out', flags.out);
      const { sae, loaded } = await loadSaeLensAsSae(flags.sae, flags.backend ? { backend: flags.backend } : {});
      try {
        const hook = flags.hook ?? loaded.metadata.hookName;
        if (!hook) throw new RangeError(`${flags.sae} names no hook in its cfg.json; pass --hook NAME`);
        const layer = logitWeightLayer(hook);
        if (layer === null) throw new RangeError(`automata use logit weights, which need an SAE on an MLP hidden layer (blocks.L.mlp.hook_post); ${flags.sae} reads '${hook}'`);
        const modelDir = saeModelDir(flags.sae, loaded.metadata.modelName, flags.model);
        const tokenizer = await Tokenizer.load(modelDir);
        using model = await Gpt2Model.load(modelDir, { backend: sae.backend });
        const T = analysisContextLength(flags.contextLength, loaded.metadata.contextSize, model.config.nPositions);
        const contexts = await readContexts({ paths: flags.data ?? [path.join(packageRoot(), 'corpus', 'val.tokens')], textField: flags.textField, tokenizer, contextLength: T, seed: 0 }, limit);
        const record = new FiringRecord(sae.dSae, model.config.vocabSize);
        const progress = contextProgress('automata', contexts.length / T, flags.progress);
        await forEachFeatureBatch(model, sae, hook, contexts, T, (f, ids, c0) => {
          record.absorb(f, ids, T);
          progress.update(c0 + ids.length / T);
        }).finally(() => progress.stop());
        const logits = await logitWeightMatrix(loaded.params.W_dec, sae.dSae, model.config, await loadGpt2Weights(modelDir, model.config), layer, { backend: sae.backend });
        const result = await findAutomata(record, logits, options);
        const topTokens = (feature: number) => {
          const row = logits.subarray(feature * model.config.vocabSize, (feature + 1) * model.config.vocabSize);
          return Array.from(row.keys()).sort((a, b) => row[b]! - row[a]!).slice(0, 3);
        };
        // dSae with the SAE's path: what browse --automata checks the result against.
        const output = { sae: path.resolve(flags.sae), dSae: sae.dSae, model: path.resolve(modelDir), hook, tokens: contexts.length / T * (T - 1), ...result, promotes: Object.fromEntries(result.cycles.flatMap((c) => c.features).map((f) => [f, topTokens(f)])) };
        if (flags.out) await writeFileAtomic(flags.out, JSON.stringify(output));
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(output)}\n`);
          return;
        }
        const show = (ids: number[]) => ids.map((id) => JSON.stringify(tokenizer.decode(Int32Array.of(id)))).join(' ');
        const counted = result.cyclesFound > result.cycles.length ? `the strongest ${result.cycles.length} of ${result.cyclesFound}` : `${result.cycles.length}`;
        const lines = [`${counted} cycles among ${sae.dSae} features (${result.edges.length} edges scoring >= ${flags.minScore}) over ${output.tokens.toLocaleString('en-US')} tokens`];
        result.cycles.forEach((c, k) => {
          lines.push(`${String(k + 1).padStart(3)}. ${c.features.map((f) => `#${f}`).join(' → ')} → #${c.features[0]}   weakest edge ${c.strength.toFixed(3)}`);
          for (const e of c.edges) lines.push(`       #${e.from} promotes ${show(topTokens(e.from))}; #${e.to} fires on them (logit strength ${e.strength.toFixed(3)}); P(#${e.to} next | #${e.from}) ${e.empirical.toFixed(3)}; score ${e.score.toFixed(3)}`);
          if (c.example) lines.push(`       e.g. ${show(c.example.tokens)}`);
        });
        process.stdout.write(`${lines.join('\n')}\n`);
      } finally {
        sae.dispose();
      }
    });
}
