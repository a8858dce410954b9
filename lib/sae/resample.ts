/**
 * Dead-feature resampling as "Towards Monosemanticity" describes it, on the device:
 *
 *   1. the trainer decides which features are dead (no firing in the last W steps; firing-stats.ts);
 *   2. the SAE's loss is computed on `samples` fresh inputs (the paper: 819,200), streamed in
 *      chunks; each input's loss is its squared reconstruction error ‖x − x̂‖²;
 *   3. as many inputs as there are dead features are drawn without replacement with probability
 *      proportional to the square of that loss (backend op resample_candidates: one key per
 *      input from a counter-based RNG, the largest keys kept — no per-input work in JS);
 *   4. each dead feature gets one input r: decoder row r/‖r‖, encoder column
 *      encNormFactor (0.2) × mean live encoder norm × r/‖r‖, bias 0, Adam moments reset
 *      (SparseAutoencoder.resampleFeatures).
 */
import { nativeAddon } from '../backend.js';
import { rowSqDist } from '../ops.js';
import { Tensor } from '../tensor.js';
import type { ResampleResult, SparseAutoencoder } from './sae.js';

export interface ResampleOptions {
  /** Inputs whose loss is computed (the paper: 819,200). */
  samples: number;
  /** Inputs per chunk (bounded so that a chunk's feature activations stay small). */
  batchSize: number;
  /** Scale of new encoder columns relative to the mean live encoder norm (the paper: 0.2). */
  encNormFactor: number;
  /** Seed of the sampling keys, an integer in [0, 2^53). */
  seed: number;
}

export interface ResampleReport extends ResampleResult {
  /** Features found dead and passed in. */
  dead: number;
  /** Inputs whose loss was computed. */
  inputs: number;
  /**
   * The dead features that were re-initialised: those whose slot drew an input of finite, non-zero
   * norm (the others are left as they were, still dead).
   */
  applied: Int32Array;
}

/** Largest chunk whose activations [chunk, dSae] stay within 2^25 floats (128 MiB). */
export function resampleChunkRows(dSae: number, batchSize: number): number {
  return Math.max(1, Math.min(batchSize, Math.floor(2 ** 25 / dSae)));
}

/**
 * Resamples `dead` features of `sae`. `nextBatch(rows)` returns the next `rows` training inputs
 * [rows, dIn] on the SAE's backend, preprocessed exactly as for training; the tensor stays owned by
 * the caller and is not used after the next call.
 */
export async function resampleDeadFeatures(
  sae: SparseAutoencoder,
  dead: Int32Array,
  nextBatch: (rows: number) => Promise<Tensor>,
  options: ResampleOptions,
): Promise<ResampleReport> {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object { samples, batchSize, encNormFactor, seed }');
  const k = dead.length;
  if (k === 0) return { dead: 0, inputs: 0, resampled: 0, live: sae.dSae, meanLiveEncoderNorm: Number.NaN, applied: new Int32Array(0) };
  if (!Number.isSafeInteger(options.samples) || options.samples < 1) throw new RangeError(`samples must be a positive integer (got ${options.samples})`);
  const chunk = resampleChunkRows(sae.dSae, options.batchSize);
  const backend = sae.backend;
  const owned: Tensor[] = [];
  const own = (t: Tensor) => (owned.push(t), t);
  try {
    const keys = own(Tensor.full([k], Number.NEGATIVE_INFINITY, { backend }));
    const rows = own(Tensor.zeros([k, sae.dIn], { backend }));
    const buffers = new Map<number, { f: Tensor; xhat: Tensor; loss: Tensor }>();
    const buffersFor = (n: number) => {
      let b = buffers.get(n);
      if (!b) {
        b = { f: own(Tensor.empty([n, sae.dSae], { backend })), xhat: own(Tensor.empty([n, sae.dIn], { backend })), loss: own(Tensor.empty([n], { backend })) };
        buffers.set(n, b);
      }
      return b;
    };
    let offset = 0;
    while (offset < options.samples) {
      const n = Math.min(chunk, options.samples - offset);
      const x = await nextBatch(n);
      const b = buffersFor(n);
      await sae.encode(x, b.f);
      await sae.decode(b.f, b.xhat);
      await rowSqDist(x, b.xhat, b.loss);
      await nativeAddon().resampleCandidates({
        k,
        batch: n,
        d: sae.dIn,
        seed: options.seed,
        offset,
        x: x.native,
        loss: b.loss.native,
        candKeys: keys.native,
        candRows: rows.native,
      });
      offset += n;
    }
    const result = await sae.resampleFeatures(dead, { keys, rows }, options.encNormFactor);
    // Which slots the backend applied, by its rule: a sampled input (finite key) of finite, non-zero norm.
    const keyValues = keys.toArray() as Float32Array;
    const rowValues = rows.toArray() as Float32Array;
    const applied = dead.filter((_, i) => {
      if (!Number.isFinite(keyValues[i]!)) return false;
      let ss = 0;
      for (let c = i * sae.dIn; c < (i + 1) * sae.dIn; c++) ss += rowValues[c]! * rowValues[c]!;
      return ss > 0 && Number.isFinite(ss);
    });
    // The backend counts the slots it applied: should the two rules ever differ, every dead feature
    // is taken as re-initialised (as before this report), so a resumed run still repeats the run.
    return { ...result, dead: k, inputs: offset, applied: applied.length === result.resampled ? applied : dead.slice() };
  } finally {
    for (const t of owned) t.dispose();
  }
}
