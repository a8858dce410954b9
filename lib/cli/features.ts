/**
 * `monosemantic features`: the feature report of an SAE over a token set — per-feature density,
 * activation histogram, top and sampled contexts, logit weights and nearest features — as JSON
 * files (lib/analysis/feature-report.ts) for the feature browser and other tools.
 */
import path from 'node:path';

import type { Command } from 'commander';

import { writeFeatureReport } from '../analysis/feature-report.js';
import { readContexts } from '../data/corpus-contexts.js';
import { makeFolder } from '../io/folders.js';
import { Gpt2Model } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { modelDirOf } from '../lm/default-model.js';
import { packageRoot } from '../native/load.js';
import { loadSaeLensAsSae } from '../sae/saelens.js';
import { optionWithDefault, positiveIntegerFlag } from './flags.js';
import { SAE_MODEL_HELP, analysisContextLength, saeModelDir } from './sae-model.js';
import { contextProgress } from './progress.js';

interface FeaturesFlags {
  sae: string;
  model?: string;
  hook?: string;
  data?: string[];
  contexts?: string;
  topK: string;
  out: string;
  textField: string;
  contextLength?: string;
  backend?: 'cpu' | 'cuda';
  progress?: boolean;
}

export function registerFeatures(program: Command): void {
  program
    .command('features')
    .description('per-feature statistics (density, histograms, top and sampled contexts) and logit weights, as JSON')
    .requiredOption('--sae <dir>', 'SAELens folder')
    .requiredOption('-o, --out <dir>', 'output folder')
    .option('--model <dir>', SAE_MODEL_HELP, modelDirOf)
    .option('--hook <name>', "hook the SAE reads (default: the SAE's cfg.json hook name)")
    .option('--data <paths...>', 'token shards or text (default: the package’s corpus/val.tokens)')
    .option('--contexts <n>', 'contexts read (default: all)')
    .addOption(optionWithDefault('--top-k <n>', 'top activating examples kept per feature', '20'))
    .option('--text-field <name>', 'JSONL / Parquet text column', 'text')
    .option('--context-length <n>', 'tokens per context (default: the SAE’s context size, capped at the model’s n_positions)')
    .option('--backend <name>', 'cpu or cuda (default: the active backend)')
    .option('--no-progress', 'no progress bar')
    .action(async (flags: FeaturesFlags) => {
      const topK = positiveIntegerFlag('--top-k', flags.topK);
      // The output folder is made before the pass, which can take minutes: a file in its place fails now.
      await makeFolder(path.join(flags.out, 'features'));
      const { sae, loaded } = await loadSaeLensAsSae(flags.sae, flags.backend ? { backend: flags.backend } : {});
      try {
        const hook = flags.hook ?? loaded.metadata.hookName;
        if (!hook) throw new RangeError(`${flags.sae} names no hook in its cfg.json; pass --hook NAME`);
        const modelDir = saeModelDir(flags.sae, loaded.metadata.modelName, flags.model);
        const tokenizer = await Tokenizer.load(modelDir);
        using model = await Gpt2Model.load(modelDir, { backend: sae.backend });
        const T = analysisContextLength(flags.contextLength, loaded.metadata.contextSize, model.config.nPositions);
        const paths = flags.data ?? [path.join(packageRoot(), 'corpus', 'val.tokens')];
        const contexts = await readContexts({ paths, textField: flags.textField, tokenizer, contextLength: T, seed: 0 }, flags.contexts !== undefined ? positiveIntegerFlag('--contexts', flags.contexts) : Number.MAX_SAFE_INTEGER);
        const progress = contextProgress('features', contexts.length / T, flags.progress);
        const facts = await writeFeatureReport(
          { model, modelDir, tokenizer, sae, saeDir: flags.sae, hook, contexts, T, topK, onProgress: (done) => progress.update(done, {}) },
          flags.out,
        ).finally(() => progress.stop()); // a failed pass too: the bar's timer would keep the process alive
        process.stdout.write(`${facts.dSae} features over ${facts.tokens.toLocaleString('en-US')} tokens (${facts.contexts} contexts): ${facts.dead} never fired; written to ${flags.out}\n`);
      } finally {
        sae.dispose();
      }
    });
}
