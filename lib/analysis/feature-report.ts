/**
 * The feature report: everything the browser and other tools show about an SAE's features, as
 * JSON files in one folder (written by `monosemantic features` and `monosemantic browse`):
 *   features.json            run facts + one summary row per feature (density, max, top tokens, top logit tokens)
 *   features/NNNNNN.json     full details of features [NNNNNN, NNNNNN + 256): top and sampled examples,
 *                            activation histogram, logit weights, nearest features by decoder cosine
 *   vocab.json               each token id's label (Tokenizer.tokenLabel)
 * Each .json has a .js twin that assigns the same data to window.MONOSEMANTIC (pages opened
 * from disk cannot fetch JSON, but can load scripts).
 */
import path from 'node:path';

import { makeFolder } from '../io/folders.js';
import { hookPoint } from '../lm/hooks.js';
import type { Gpt2Model } from '../lm/model.js';
import type { Tokenizer } from '../lm/tokenizer.js';
import { loadGpt2Weights } from '../lm/weights.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { SparseAutoencoder } from '../sae/sae.js';
import { nearestByDecoder } from './decoder-cosine.js';
import { forEachFeatureBatch } from './feature-activations.js';
import { FeatureStatsCollector, HISTOGRAM_BINS_PER_DECADE, HISTOGRAM_LOG10_MIN } from './feature-stats.js';
import { logitWeightLayer, logitWeights } from './logit-weights.js';

export const FEATURES_PER_FILE = 256;

export interface FeatureReportOptions {
  model: Gpt2Model;
  modelDir: string;
  tokenizer: Tokenizer;
  sae: SparseAutoencoder;
  saeDir: string;
  hook: string;
  /** Contexts [count, T] of token ids. */
  contexts: Int32Array;
  T: number;
  topK?: number;
  /** Nearest features kept per feature (default 8). */
  neighbors?: number;
  onProgress?: (contextsDone: number, contexts: number) => void;
}

export interface FeatureReportFacts {
  dSae: number;
  tokens: number;
  contexts: number;
  dead: number;
}

/** Writes `name`.json and its `name`.js twin (window.MONOSEMANTIC[key] = data). */
export async function writeDataFile(dir: string, name: string, key: string, data: unknown): Promise<void> {
  const json = JSON.stringify(data);
  await writeFileAtomic(path.join(dir, `${name}.json`), json);
  await writeFileAtomic(path.join(dir, `${name}.js`), `(window.MONOSEMANTIC = window.MONOSEMANTIC || {})[${JSON.stringify(key)}] = ${json};\n`);
}

export async function writeFeatureReport(o: FeatureReportOptions, outDir: string): Promise<FeatureReportFacts> {
  const { model, sae, hook, contexts, T } = o;
  const point = hookPoint(model.config, hook);
  const count = contexts.length / T;
  const collector = new FeatureStatsCollector(sae.dSae, { topK: o.topK ?? 20 });
  await forEachFeatureBatch(model, sae, hook, contexts, T, (f, ids, c0) => {
    collector.absorb(f, ids, T);
    o.onProgress?.(c0 + ids.length / T, count);
  });
  const W_dec = sae.parameters.W_dec.toArray() as Float32Array;
  // Logit weights need an MLP-hidden direction: SAEs on a layer's mlp.hook_post.
  const mlpLayer = logitWeightLayer(hook);
  const logits = mlpLayer !== null ? await logitWeights(W_dec, sae.dSae, model.config, await loadGpt2Weights(o.modelDir, model.config), mlpLayer, { backend: sae.backend }) : null;
  const nearest = await nearestByDecoder(W_dec, sae.dSae, sae.dIn, o.neighbors ?? 8, sae.backend);

  await makeFolder(path.join(outDir, 'features'));
  const rows = [];
  for (let f0 = 0; f0 < sae.dSae; f0 += FEATURES_PER_FILE) {
    const details = [];
    for (let i = f0; i < Math.min(sae.dSae, f0 + FEATURES_PER_FILE); i++) {
      const s = collector.summary(i);
      details.push({ ...s, logitWeights: logits?.[i] ?? null, neighbors: nearest[i] });
      rows.push({
        index: i,
        density: s.density,
        maxActivation: s.maxActivation,
        meanActivation: s.meanActivation,
        topTokens: [...new Set(s.top.map((e) => e.tokens[e.at]!))].slice(0, 5),
        topLogitTokens: logits?.[i]?.top.slice(0, 5).map(([id]) => id) ?? [],
      });
    }
    await writeDataFile(path.join(outDir, 'features'), String(f0).padStart(6, '0'), `features-${f0}`, details);
  }
  // Each token's label: its text, or for part of a UTF-8 character its bytes (one "�" each would not tell them apart).
  const vocab = Array.from({ length: o.tokenizer.vocabSize }, (_, id) => o.tokenizer.tokenLabel(id));
  await writeDataFile(outDir, 'vocab', 'vocab', vocab);
  const dead = rows.filter((r) => r.density === 0).length;
  await writeDataFile(outDir, 'features', 'features', {
    sae: path.resolve(o.saeDir),
    model: path.resolve(o.modelDir),
    hook,
    layer: point.layer,
    contextLength: T,
    contexts: count,
    tokens: collector.tokens,
    dSae: sae.dSae,
    dead,
    featuresPerFile: FEATURES_PER_FILE,
    histogram: { log10Min: HISTOGRAM_LOG10_MIN, binsPerDecade: HISTOGRAM_BINS_PER_DECADE },
    features: rows,
  });
  return { dSae: sae.dSae, tokens: collector.tokens, contexts: count, dead };
}
