/**
 * `monosemantic eval`: an SAE on held-out tokens — MSE, fraction of variance unexplained, L0,
 * dead and ultra-low-density features, the log10 feature-density histogram, and next-token loss
 * clean / spliced / zero-ablated with the fraction of loss recovered and the spliced KL divergence
 * (lib/analysis/sae-eval.ts).
 */
import path from 'node:path';

import type { Command } from 'commander';

import { densityHistogram, evaluateSae, formatUltraLow } from '../analysis/sae-eval.js';
import { readContexts } from '../data/corpus-contexts.js';
import { Gpt2Model } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { modelDirOf } from '../lm/default-model.js';
import { packageRoot } from '../native/load.js';
import { loadSaeLensAsSae } from '../sae/saelens.js';
import { optionWithDefault, positiveIntegerFlag } from './flags.js';
import { SAE_MODEL_HELP, analysisContextLength, saeModelDir } from './sae-model.js';
import { contextProgress } from './progress.js';

interface EvalFlags {
  sae: string;
  model?: string;
  hook?: string;
  data?: string[];
  contexts?: string;
  contextLength?: string;
  textField: string;
  backend?: 'cpu' | 'cuda';
  json?: boolean;
  progress?: boolean;
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('evaluate an SAE on held-out tokens: reconstruction, sparsity, feature density and loss recovered')
    .requiredOption('--sae <dir>', 'SAELens folder')
    .option('--model <dir>', SAE_MODEL_HELP, modelDirOf)
    .option('--hook <name>', 'hook point (default: the one in the SAE’s cfg.json)')
    .option('--data <paths...>', 'held-out token shards or text (default: the package’s corpus/val.tokens)')
    .option('--contexts <n>', 'contexts evaluated (default: the whole held-out set)')
    .option('--context-length <n>', 'tokens per context (default: the SAE’s context size, else the model’s n_positions)')
    .option('--text-field <name>', 'JSONL / Parquet text column', 'text')
    .option('--backend <name>', 'cpu or cuda (default: the active backend)')
    .option('--json', 'print the evaluation as JSON')
    .option('--no-progress', 'no progress bar')
    .action(async (flags: EvalFlags) => {
      const { sae, loaded } = await loadSaeLensAsSae(flags.sae, flags.backend ? { backend: flags.backend } : {});
      try {
        const hook = flags.hook ?? loaded.metadata.hookName;
        if (!hook) throw new RangeError(`${flags.sae}'s cfg.json names no hook; give --hook`);
        const modelDir = saeModelDir(flags.sae, loaded.metadata.modelName, flags.model);
        const tokenizer = await Tokenizer.load(modelDir);
        using model = await Gpt2Model.load(modelDir, { backend: sae.backend });
        // A context is BOS and at least two tokens: the first token is predicted from BOS, which the
        // splice leaves alone (with one, every loss would be the same).
        const contextLength = analysisContextLength(flags.contextLength, loaded.metadata.contextSize, model.config.nPositions, 3);
        const paths = flags.data ?? [path.join(packageRoot(), 'corpus', 'val.tokens')];
        const count = flags.contexts !== undefined ? positiveIntegerFlag('--contexts', flags.contexts) : Number.MAX_SAFE_INTEGER;
        const contexts = await readContexts({ paths, textField: flags.textField, tokenizer, contextLength, seed: 0 }, count);
        const progress = contextProgress('eval', contexts.length / contextLength, flags.progress);
        const { density, ...e } = await evaluateSae(model, sae, hook, contexts, contextLength, { onProgress: (done) => progress.update(done) }).finally(() => progress.stop());
        const histogram = densityHistogram(density);
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ sae: flags.sae, model: modelDir, hook, contextLength, ...e, densityHistogramLog10: histogram }, null, 2)}\n`);
          return;
        }
        const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
        const widest = Math.max(1, ...histogram.bins.map((b) => b.count));
        const lines = [
          `${flags.sae} on ${hook} of ${modelDir}`,
          `  ${e.contexts} contexts of ${contextLength} tokens: ${e.rows.toLocaleString('en-US')} activations (BOS positions excluded)`,
          `  MSE ${e.mse.toPrecision(4)} per element   fraction of variance unexplained ${e.fvu.toFixed(4)}   L0 ${e.l0.toFixed(2)}`,
          `  dead ${e.dead} of ${e.dSae} (${pct(e.dead / e.dSae)}; no activation on ${e.rows.toLocaleString('en-US')} tokens)   ultra-low density (< 1e-6) ${formatUltraLow(e.ultraLow, e.dSae, e.rows, 'tokens')}`,
          `  next-token loss (nats, ${e.loss.tokens.toLocaleString('en-US')} tokens): clean ${e.loss.clean.toFixed(4)}   spliced ${e.loss.spliced.toFixed(4)}   zero-ablated ${e.loss.zeroAblated.toFixed(4)}`,
          `  loss recovered ${pct(e.loss.fractionRecovered)}   KL(clean ‖ spliced) ${e.loss.klSpliced.toFixed(4)} nats/token`,
          `  log10 feature density:`,
          ...histogram.bins.map((b) => `    [${b.from.toFixed(1).padStart(5)}, ${b.to.toFixed(1).padStart(5)})  ${String(b.count).padStart(6)}  ${'#'.repeat(Math.max(1, Math.round((40 * b.count) / widest)))}`),
          ...(histogram.dead ? [`    dead          ${String(histogram.dead).padStart(6)}`] : []),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      } finally {
        sae.dispose();
      }
    });
}
