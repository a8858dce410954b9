/**
 * `monosemantic features`: per-feature statistics of an SAE over a token set (one streaming pass,
 * lib/analysis/feature-stats.ts) and its logit weights (lib/analysis/logit-weights.ts), written as
 * JSON for the feature browser and other tools:
 *   OUT/features.json            run facts + one summary row per feature (density, max, top logit tokens)
 *   OUT/features/NNNNNN.json     full details of features [NNNNNN, NNNNNN + 256): top and sampled examples,
 *                                activation histogram, logit weights
 *   OUT/vocab.json               each token id's text, for rendering the examples
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

import type { Command } from 'commander';

import { FeatureStatsCollector, HISTOGRAM_BINS_PER_DECADE, HISTOGRAM_LOG10_MIN } from '../analysis/feature-stats.js';
import { logitWeights } from '../analysis/logit-weights.js';
import { readContexts } from '../data/corpus-contexts.js';
import { writeFileAtomic } from '../io/atomic.js';
import { defaultModelDir } from '../lm/default-model.js';
import { hookPoint } from '../lm/hooks.js';
import { Gpt2Model } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { loadGpt2Weights } from '../lm/weights.js';
import { packageRoot } from '../native/load.js';
import { loadSaeLensAsSae } from '../sae/saelens.js';
import { createProgress } from './progress.js';

export const FEATURES_PER_FILE = 256;

interface FeaturesFlags {
  sae: string;
  model: string;
  hook?: string;
  data?: string[];
  contexts?: string;
  topK: string;
  out: string;
  textField: string;
  backend?: 'cpu' | 'cuda';
  progress?: boolean;
}

function positive(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${flag} must be a positive integer (got ${JSON.stringify(text)})`);
  return value;
}

export function registerFeatures(program: Command): void {
  program
    .command('features')
    .description('per-feature statistics (density, histograms, top and sampled contexts) and logit weights, as JSON')
    .requiredOption('--sae <dir>', 'SAELens folder')
    .requiredOption('-o, --out <dir>', 'output folder')
    .option('--model <dir>', 'model directory (default: the package’s model A)', defaultModelDir())
    .option('--hook <name>', "hook the SAE reads (default: the SAE's cfg.json hook name)")
    .option('--data <paths...>', 'token shards or text (default: the package’s corpus/val.tokens)')
    .option('--contexts <n>', 'contexts read (default: all)')
    .option('--top-k <n>', 'top activating examples kept per feature', '20')
    .option('--text-field <name>', 'JSONL / Parquet text column', 'text')
    .option('--backend <name>', 'cpu or cuda (default: the active backend)')
    .option('--no-progress', 'no progress bar')
    .action(async (flags: FeaturesFlags) => {
      const { sae, loaded } = await loadSaeLensAsSae(flags.sae, flags.backend ? { backend: flags.backend } : {});
      try {
        const hook = flags.hook ?? loaded.metadata.hookName;
        if (!hook) throw new RangeError(`${flags.sae} names no hook in its cfg.json; pass --hook NAME`);
        const tokenizer = await Tokenizer.load(flags.model);
        using model = await Gpt2Model.load(flags.model, { backend: sae.backend });
        const point = hookPoint(model.config, hook);
        const T = Math.min(loaded.metadata.contextSize ?? model.config.nPositions, model.config.nPositions);
        const paths = flags.data ?? [path.join(packageRoot(), 'corpus', 'val.tokens')];
        const contexts = await readContexts({ paths, textField: flags.textField, tokenizer, contextLength: T, seed: 0 }, flags.contexts ? positive('--contexts', flags.contexts) : Number.MAX_SAFE_INTEGER);
        const count = contexts.length / T;
        const collector = new FeatureStatsCollector(sae.dSae, { topK: positive('--top-k', flags.topK) });
        const progress = createProgress({ total: count, label: 'features', stream: process.stderr, enabled: flags.progress !== false && process.stderr.isTTY === true });
        const batch = 8;
        for (let c0 = 0; c0 < count; c0 += batch) {
          const m = Math.min(batch, count - c0);
          const ids = contexts.subarray(c0 * T, (c0 + m) * T);
          const { captured } = await model.forward(ids, m, { capture: [hook] });
          using x = captured[hook]!;
          using f = await sae.encode(x);
          collector.absorb(f.toArray() as Float32Array, ids, T);
          progress.update(c0 + m, {});
        }
        progress.stop();

        // Logit weights need an MLP-hidden direction: SAEs on mlp.hook_post / hook_pre of a layer.
        const mlpLayer = /^blocks\.(\d+)\.mlp\.hook_(post|pre)$/.exec(hook);
        const logits = mlpLayer
          ? await logitWeights(loaded.params.W_dec, sae.dSae, model.config, await loadGpt2Weights(flags.model, model.config), Number(mlpLayer[1]), { backend: sae.backend })
          : null;
        if (!mlpLayer) process.stderr.write(`logit weights are computed for SAEs on an MLP's hidden layer; ${hook} is not one, so they are left out\n`);

        await mkdir(path.join(flags.out, 'features'), { recursive: true });
        const rows = [];
        for (let f0 = 0; f0 < sae.dSae; f0 += FEATURES_PER_FILE) {
          const details = [];
          for (let i = f0; i < Math.min(sae.dSae, f0 + FEATURES_PER_FILE); i++) {
            const s = collector.summary(i);
            details.push({ ...s, logitWeights: logits?.[i] ?? null });
            rows.push({ index: i, density: s.density, maxActivation: s.maxActivation, meanActivation: s.meanActivation, topLogitTokens: logits?.[i]?.top.slice(0, 5).map(([id]) => id) ?? [], topTokens: s.top.slice(0, 5).map((e) => e.tokens[e.at]) });
          }
          await writeFileAtomic(path.join(flags.out, 'features', `${String(f0).padStart(6, '0')}.json`), JSON.stringify(details));
        }
        const vocab = Array.from({ length: tokenizer.vocabSize }, (_, id) => tokenizer.decode(Int32Array.of(id)));
        await writeFileAtomic(path.join(flags.out, 'vocab.json'), JSON.stringify(vocab));
        await writeFileAtomic(
          path.join(flags.out, 'features.json'),
          JSON.stringify({
            sae: path.resolve(flags.sae),
            model: path.resolve(flags.model),
            hook,
            layer: point.layer,
            contextLength: T,
            contexts: count,
            tokens: collector.tokens,
            dSae: sae.dSae,
            featuresPerFile: FEATURES_PER_FILE,
            histogram: { log10Min: HISTOGRAM_LOG10_MIN, binsPerDecade: HISTOGRAM_BINS_PER_DECADE },
            features: rows,
          }),
        );
        const dead = rows.filter((r) => r.density === 0).length;
        process.stdout.write(`${sae.dSae} features over ${collector.tokens.toLocaleString('en-US')} tokens (${count} contexts): ${dead} never fired; written to ${flags.out}\n`);
      } finally {
        sae.dispose();
      }
    });
}
