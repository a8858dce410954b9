/**
 * `monosemantic compare`: two SAEs side by side on the same tokens. Universality (two models): for
 * each feature of A, the Pearson correlation of its activations with its best-matching feature of
 * B, against the same statistic for the two models' raw neurons at the hook (the paper: median
 * 0.72 for features, 0.46 for neurons). Dictionaries of one model's one hook (feature splitting):
 * instead of the neurons, the decoder cosine similarity of each A feature's nearest B feature.
 */
import path from 'node:path';

import type { Command } from 'commander';

import { bestDecoderCosine } from '../analysis/decoder-cosine.js';
import { featureMap } from '../analysis/feature-map.js';
import { logitWeightLayer, logitWeightMatrix } from '../analysis/logit-weights.js';
import { CorrelationAccumulator, median } from '../analysis/universality.js';
import { readContexts } from '../data/corpus-contexts.js';
import { writeFileAtomic } from '../io/atomic.js';
import { Gpt2Model } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { loadGpt2Weights } from '../lm/weights.js';
import { modelDirOf } from '../lm/default-model.js';
import { packageRoot } from '../native/load.js';
import { gatherRows } from '../ops.js';
import { loadSaeLensAsSae } from '../sae/saelens.js';
import { Tensor } from '../tensor.js';
import { numberFlag, optionWithDefault, positiveIntegerFlag, prepareOutputFile } from './flags.js';
import { analysisContextLength, saeModelDir } from './sae-model.js';
import { contextProgress } from './progress.js';

interface CompareFlags {
  progress?: boolean;
  saeA: string;
  saeB: string;
  modelA?: string;
  modelB?: string;
  hookA?: string;
  hookB?: string;
  data?: string[];
  contexts: string;
  textField: string;
  contextLength?: string;
  minFires: string;
  out?: string;
  linkThreshold: string;
  map: boolean;
  backend?: 'cpu' | 'cuda';
  json?: boolean;
}

/** x [m·T, width] without each context's BOS row: [m·(T − 1), width], gathered on the backend. */
async function withoutBos(x: Tensor, m: number, T: number): Promise<Tensor> {
  using idx = Tensor.from(Int32Array.from({ length: m * (T - 1) }, (_, k) => Math.floor(k / (T - 1)) * T + 1 + (k % (T - 1))), [m * (T - 1)], { backend: x.backend, dtype: 'i32' }); // row c·T + t for t ≥ 1
  const out = Tensor.empty([m * (T - 1), x.shape[1]!], { backend: x.backend });
  try {
    await gatherRows(x, idx, out);
    return out;
  } catch (error) {
    out.dispose();
    throw error;
  }
}

function histogram(values: Float64Array, bins = 20): number[] {
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) if (Number.isFinite(v)) counts[Math.min(bins - 1, Math.max(0, Math.floor(((v + 1) / 2) * bins)))]! += 1;
  return counts; // bin b covers [−1 + 2b/bins, −1 + 2(b+1)/bins)
}

export function registerCompare(program: Command): void {
  program
    .command('compare')
    .description('compare two SAEs on the same tokens: universality across models (vs neurons), feature splitting across dictionary sizes')
    .requiredOption('--sae-a <dir>', 'first SAELens folder')
    .requiredOption('--sae-b <dir>', 'second SAELens folder')
    .option('--model-a <dir>', "model of the first SAE (default: the model its cfg.json names, the package's a or b; model A when it names none)", modelDirOf)
    .option('--model-b <dir>', "model of the second SAE (default: --model-a's when both SAEs name the same model; else as for --model-a)", modelDirOf)
    .option('--hook-a <name>', "hook the first SAE reads (default: its cfg.json hook name)")
    .option('--hook-b <name>', "hook the second SAE reads (default: its cfg.json hook name)")
    .option('--data <paths...>', 'token shards or text (default: corpus/val.tokens)')
    .option('--text-field <name>', 'JSONL / Parquet text column', 'text')
    .option('--context-length <n>', 'tokens per context (default: the SAEs’ context sizes, capped at the models’ n_positions)')
    .addOption(optionWithDefault('--contexts <n>', 'contexts compared over', '256'))
    .addOption(optionWithDefault('--min-fires <n>', 'also report the median over A features firing on at least this many of the tokens', '50'))
    .option('-o, --out <file>', 'write the result as JSON (for the browser and other tools)')
    .addOption(optionWithDefault('--link-threshold <c>', 'decoder cosine at which features of two dictionaries are linked (splitting)', '0.4'))
    .option('--no-map', 'skip the 2-D UMAP map of the decoder directions (splitting)')
    .option('--backend <name>', 'cpu or cuda (default: the active backend)')
    .option('--json', 'print the result as JSON')
    .option('--no-progress', 'no progress bar')
    .action(async (flags: CompareFlags) => {
      // Flags and the output's folder are checked before the comparison, which can take minutes.
      const count = positiveIntegerFlag('--contexts', flags.contexts);
      const minFires = positiveIntegerFlag('--min-fires', flags.minFires);
      const threshold = numberFlag('--link-threshold', flags.linkThreshold);
      if (!(threshold >= -1 && threshold <= 1)) throw new RangeError(`--link-threshold must be in [-1, 1] (got ${flags.linkThreshold})`);
      if (flags.out) await prepareOutputFile('--out', flags.out);
      const a = await loadSaeLensAsSae(flags.saeA, flags.backend ? { backend: flags.backend } : {});
      const b = await loadSaeLensAsSae(flags.saeB, { backend: a.sae.backend });
      try {
        const hookA = flags.hookA ?? a.loaded.metadata.hookName;
        const hookB = flags.hookB ?? b.loaded.metadata.hookName;
        if (!hookA) throw new RangeError(`${flags.saeA} names no hook in its cfg.json; pass --hook-a NAME`);
        if (!hookB) throw new RangeError(`${flags.saeB} names no hook in its cfg.json; pass --hook-b NAME`);
        const modelADir = saeModelDir(flags.saeA, a.loaded.metadata.modelName, flags.modelA, '--model-a');
        // SAEs of one model (by their cfg.json) share --model-a's folder unless --model-b is given.
        const sameModelName = a.loaded.metadata.modelName === b.loaded.metadata.modelName;
        const modelBDir = flags.modelB === undefined && sameModelName ? modelADir : saeModelDir(flags.saeB, b.loaded.metadata.modelName, flags.modelB, '--model-b');
        const sameModel = path.resolve(modelBDir) === path.resolve(modelADir);
        const tokenizer = await Tokenizer.load(modelADir);
        using modelA = await Gpt2Model.load(modelADir, { backend: a.sae.backend });
        using modelB = sameModel ? null : await Gpt2Model.load(modelBDir, { backend: a.sae.backend });
        const mB = modelB ?? modelA;
        const saeContext = Math.min(a.loaded.metadata.contextSize ?? Infinity, b.loaded.metadata.contextSize ?? Infinity);
        const T = analysisContextLength(flags.contextLength, Number.isFinite(saeContext) ? saeContext : null, Math.min(modelA.config.nPositions, mB.config.nPositions));
        const contexts = await readContexts({ paths: flags.data ?? [path.join(packageRoot(), 'corpus', 'val.tokens')], textField: flags.textField, tokenizer, contextLength: T, seed: 0 }, count);
        const n = contexts.length / T;
        // Every unit centred on its first-chunk mean: exact covariances for units of large mean (see universality.ts).
        using features = new CorrelationAccumulator(a.sae.dSae, b.sae.dSae);
        // Decoder directions compare only within one activation space: one model's one hook. There the
        // neurons would be matched to themselves; elsewhere they are the baseline.
        const sameSpace = sameModel && hookA === hookB && a.sae.dIn === b.sae.dIn;
        using neurons = sameSpace ? null : new CorrelationAccumulator(a.sae.dIn, b.sae.dIn);
        const batch = 8;
        const progress = contextProgress('compare', n, flags.progress);
        try {
          for (let c0 = 0; c0 < n; c0 += batch) {
            const m = Math.min(batch, n - c0);
            const ids = contexts.subarray(c0 * T, (c0 + m) * T);
            const xa = (await modelA.forward(ids, m, { capture: [hookA] })).captured[hookA]!;
            const xb = (await mB.forward(ids, m, { capture: [hookB] })).captured[hookB]!;
            try {
              using fa = await a.sae.encode(xa);
              using fb = await b.sae.encode(xb);
              using ra = await withoutBos(fa, m, T);
              using rb = await withoutBos(fb, m, T);
              await features.add(ra, rb);
              if (neurons) {
                using na = await withoutBos(xa, m, T);
                using nb = await withoutBos(xb, m, T);
                await neurons.add(na, nb);
              }
            } finally {
              xa.dispose();
              xb.dispose();
            }
            progress.update(c0 + m);
          }
        } finally {
          progress.stop(); // a failed pass too: the bar's timer would keep the process alive
        }
        const f = features.bestMatches();
        const u = neurons?.bestMatches() ?? null;
        features.dispose(); // the backend's sums and shifts are not needed past here
        neurons?.dispose();
        let decoder: { index: Int32Array; cosine: Float64Array } | null = null;
        if (sameSpace) decoder = await bestDecoderCosine(a.loaded.params.W_dec, a.sae.dSae, b.loaded.params.W_dec, b.sae.dSae, a.sae.dIn, a.sae.backend);
        // Logit weights of matched features (universality): both SAEs on an MLP hidden layer.
        let logitCorrelation: Float64Array | null = null;
        const layerA = logitWeightLayer(hookA);
        const layerB = logitWeightLayer(hookB);
        if (!sameModel && layerA !== null && layerB !== null && modelA.config.vocabSize === mB.config.vocabSize) {
          const V = modelA.config.vocabSize;
          const la = await logitWeightMatrix(a.loaded.params.W_dec, a.sae.dSae, modelA.config, await loadGpt2Weights(modelADir, modelA.config), layerA, { backend: a.sae.backend });
          const lb = await logitWeightMatrix(b.loaded.params.W_dec, b.sae.dSae, mB.config, await loadGpt2Weights(modelBDir, mB.config), layerB, { backend: a.sae.backend });
          logitCorrelation = Float64Array.from(f.index, (j, i) => (j < 0 ? Number.NaN : pearson(la.subarray(i * V, (i + 1) * V), lb.subarray(j * V, (j + 1) * V))));
        }
        const fires = features.nonzeroA;
        const wellSampled = Array.from(f.correlation).filter((c, i) => Number.isFinite(c) && fires[i]! >= minFires);
        const map = decoder && flags.map ? featureMap([{ W_dec: a.loaded.params.W_dec, dSae: a.sae.dSae }, { W_dec: b.loaded.params.W_dec, dSae: b.sae.dSae }], a.sae.dIn) : null;
        const result = {
          saeA: path.resolve(flags.saeA),
          saeB: path.resolve(flags.saeB),
          modelA: path.resolve(modelADir),
          modelB: path.resolve(modelBDir),
          tokens: features.rows,
          features: {
            median: median(f.correlation),
            alive: f.correlation.filter(Number.isFinite).length,
            minFires,
            wellSampled: wellSampled.length,
            medianWellSampled: median(wellSampled),
            histogram: histogram(f.correlation),
            bestMatch: Array.from(f.index),
            correlation: Array.from(f.correlation, (x) => (Number.isFinite(x) ? Math.round(x * 1e4) / 1e4 : null)),
          },
          neurons: u ? { median: median(u.correlation), histogram: histogram(u.correlation) } : null,
          logitWeights: logitCorrelation ? { median: median(logitCorrelation), correlation: Array.from(logitCorrelation, (x) => (Number.isFinite(x) ? Math.round(x * 1e4) / 1e4 : null)) } : null,
          decoderCosine: decoder
            ? {
                median: median(decoder.cosine),
                threshold,
                linked: decoder.cosine.filter((c) => c >= threshold).length,
                bestMatch: Array.from(decoder.index),
                cosine: Array.from(decoder.cosine, (x) => Math.round(x * 1e4) / 1e4),
              }
            : null,
          map,
        };
        if (flags.out) await writeFileAtomic(flags.out, JSON.stringify(result));
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(result)}\n`);
          return;
        }
        const lines = [
          `${flags.saeA} (${a.sae.dSae} features, ${path.basename(path.resolve(modelADir))}) vs ${flags.saeB} (${b.sae.dSae} features, ${path.basename(path.resolve(modelBDir))}) over ${features.rows.toLocaleString('en-US')} tokens`,
          `  features: median best-match activation correlation ${result.features.median.toFixed(3)} (${result.features.alive} of ${a.sae.dSae} A features fire); ${result.features.wellSampled > 0 ? `${result.features.medianWellSampled.toFixed(3)} over the ${result.features.wellSampled} that fire on ${minFires} tokens or more` : `none fires on ${minFires} tokens or more`}`,
        ];
        if (result.neurons) lines.push(`  neurons:  median best-match activation correlation ${result.neurons.median.toFixed(3)} (the units of ${hookA === hookB ? hookA : `${hookA} and ${hookB}`}${sameModel ? '' : ' in each model'})`);
        if (result.logitWeights) lines.push(`  logit weights of matched features: median correlation ${result.logitWeights.median.toFixed(3)}`);
        if (result.decoderCosine) lines.push(`  decoder cosine of each A feature's nearest B feature: median ${result.decoderCosine.median.toFixed(3)}, ${result.decoderCosine.linked} of ${a.sae.dSae} linked (>= ${threshold})`);
        if (result.map) lines.push(`  2-D map of the ${result.map.length} decoder directions (UMAP, cosine): in the JSON (--out), drawn by monosemantic browse --compare`);
        const h = result.features.histogram;
        const negative = h.slice(0, 10).reduce((sum, c) => sum + c, 0);
        const widest = Math.max(1, negative, ...h.slice(10));
        lines.push('  best-match correlation of A features:');
        const bar = (c: number) => '#'.repeat(c > 0 ? Math.max(1, Math.round((40 * c) / widest)) : 0); // a non-empty bin shows, as eval's do
        // Bins of width 0.1 from −1; the negative ones (rare: a feature anti-correlated with its best match) as one row.
        const row = (label: string, c: number) => lines.push(`    ${label.padEnd(12)}  ${String(c).padStart(6)}  ${bar(c)}`);
        if (negative > 0) row('[-1.0, 0.0)', negative);
        h.forEach((c, bin) => {
          if (bin >= 10) row(`[${(-1 + bin / 10).toFixed(1)}, ${(-1 + (bin + 1) / 10).toFixed(1)})`, c);
        });
        process.stdout.write(`${lines.join('\n')}\n`);
      } finally {
        a.sae.dispose();
        b.sae.dispose();
      }
    });
}

function pearson(x: Float32Array, y: Float32Array): number {
  const n = x.length;
  let sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  for (let i = 0; i < n; i++) {
    sx += x[i]!; sy += y[i]!; sxx += x[i]! * x[i]!; syy += y[i]! * y[i]!; sxy += x[i]! * y[i]!;
  }
  const den = Math.sqrt((sxx - (sx * sx) / n) * (syy - (sy * sy) / n));
  return den > 0 ? (sxy - (sx * sy) / n) / den : Number.NaN;
}
