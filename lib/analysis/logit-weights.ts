/**
 * Logit weights, as "Towards Monosemanticity" defines them: the effect of a feature's decoder
 * direction on the next-token logits through the path that does not go through later attention —
 * d_i (an MLP-hidden direction) → the MLP's output weights → the final LayerNorm, linearised
 * (centred, then scaled by its gain γ; the per-token 1/σ is one positive factor per token and
 * does not change a feature's ranking) → the unembedding. Each feature's vector over the
 * vocabulary is median-shifted, so positive weights are tokens it promotes more than typical.
 *
 * Computed with the backend's matrix products, a chunk of features at a time.
 */
import { linear, linearT } from '../lm/ops.js';
import type { Gpt2Config } from '../lm/config.js';
import type { Gpt2Weights } from '../lm/weights.js';
import { Tensor } from '../tensor.js';
import type { BackendName } from '../backend.js';
import { extremes } from './extremes.js';

/**
 * The layer whose MLP output weights carry an SAE's decoder directions to the logits: L for an SAE
 * on blocks.L.mlp.hook_post (the MLP's hidden activations, which W_out reads); null for any other
 * hook, hook_pre included (the activation function stands between it and W_out).
 */
export function logitWeightLayer(hook: string): number | null {
  const m = /^blocks\.(\d+)\.mlp\.hook_post$/.exec(hook);
  return m ? Number(m[1]) : null;
}

export interface LogitWeightSummary {
  /** Most promoted tokens: [token id, median-shifted weight], largest first. */
  top: [number, number][];
  /** Most suppressed tokens, smallest first. */
  bottom: [number, number][];
}

interface LogitWeightInputs {
  W_dec: Float32Array;
  dSae: number;
  config: Gpt2Config;
  weights: Gpt2Weights;
  layer: number;
}

/** Calls `each(f0, rows, logits [rows, V])` for chunks of features, logits not yet median-shifted. */
async function forEachChunk(o: LogitWeightInputs, options: { backend?: BackendName; chunk?: number }, each: (f0: number, rows: number, logits: Float32Array) => void): Promise<void> {
  const { W_dec, dSae, config, weights, layer } = o;
  const chunk = options.chunk ?? 512;
  const { dModel: C, dMlp: M, vocabSize: V } = config;
  if (W_dec.length !== dSae * M) throw new RangeError(`W_dec must be [${dSae}, ${M}] (the MLP width of the model); got ${W_dec.length} values`);
  if (!Number.isSafeInteger(layer) || layer < 0 || layer >= config.nLayer) throw new RangeError(`layer ${layer} is outside [0, ${config.nLayer})`);
  const on = options.backend ? { backend: options.backend } : {};
  using wOut = Tensor.from(weights.layers[layer]!.fcProjW, [M, C], on); // [dMlp, C]
  using unembed = Tensor.from(weights.lmHead ?? weights.wte, [V, C], on); // [V, C]
  const gamma = weights.lnFW;
  for (let f0 = 0; f0 < dSae; f0 += chunk) {
    const rows = Math.min(chunk, dSae - f0);
    using d = Tensor.from(W_dec.subarray(f0 * M, (f0 + rows) * M), [rows, M], on);
    using resid = Tensor.empty([rows, C], on);
    await linear(d, wOut, null, resid, 'f32'); // [rows, C] = d [rows, dMlp] · W_out [dMlp, C]
    const r = resid.toArray() as Float32Array;
    for (let i = 0; i < rows; i++) {
      let mean = 0;
      for (let c = 0; c < C; c++) mean += r[i * C + c]!;
      mean /= C;
      for (let c = 0; c < C; c++) r[i * C + c] = (r[i * C + c]! - mean) * gamma[c]!; // LayerNorm linearised
    }
    using normed = Tensor.from(r, [rows, C], on);
    using logits = Tensor.empty([rows, V], on);
    await linearT(normed, unembed, null, logits, 'f32'); // [rows, V] = normed · W_Uᵀ
    each(f0, rows, logits.toArray() as Float32Array);
  }
}

/**
 * For decoder rows W_dec [dSae, dMlp] of an SAE at blocks.{layer}.mlp.hook_post (or hook_pre
 * shapes), the top and bottom `k` logit weights of every feature.
 */
export async function logitWeights(
  W_dec: Float32Array,
  dSae: number,
  config: Gpt2Config,
  weights: Gpt2Weights,
  layer: number,
  options: { k?: number; backend?: BackendName; chunk?: number } = {},
): Promise<LogitWeightSummary[]> {
  const k = options.k ?? 10;
  const V = config.vocabSize;
  const out: LogitWeightSummary[] = [];
  await forEachChunk({ W_dec, dSae, config, weights, layer }, options, (_f0, rows, l) => {
    for (let i = 0; i < rows; i++) out.push(summarise(l.subarray(i * V, (i + 1) * V), k));
  });
  return out;
}

/** Every feature's median-shifted logit weights, [dSae, vocabSize]. */
export async function logitWeightMatrix(W_dec: Float32Array, dSae: number, config: Gpt2Config, weights: Gpt2Weights, layer: number, options: { backend?: BackendName; chunk?: number } = {}): Promise<Float32Array> {
  const V = config.vocabSize;
  const out = new Float32Array(dSae * V);
  await forEachChunk({ W_dec, dSae, config, weights, layer }, options, (f0, rows, l) => {
    for (let i = 0; i < rows; i++) {
      const row = l.subarray(i * V, (i + 1) * V);
      const m = medianOf(row);
      for (let v = 0; v < V; v++) out[(f0 + i) * V + v] = row[v]! - m;
    }
  });
  return out;
}

function medianOf(row: Float32Array): number {
  const sorted = Float32Array.from(row).sort(); // typed-array sort: numeric
  const n = sorted.length;
  return n % 2 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
}

function summarise(row: Float32Array, k: number): LogitWeightSummary {
  const median = medianOf(row);
  const top = extremes(row, k, (a, b) => a > b);
  const bottom = extremes(row, k, (a, b) => a < b);
  const entry = (id: number): [number, number] => [id, Math.round((row[id]! - median) * 1e4) / 1e4];
  return { top: top.map(entry), bottom: bottom.map(entry) };
}
