/**
 * Cosine similarities between decoder directions (rows of W_dec [n, d]), within one dictionary
 * (its nearest features) or across two (feature splitting), as backend matrix products of the
 * unit-normalised rows, a chunk of rows at a time.
 */
import { linearT } from '../lm/ops.js';
import { extremes } from './extremes.js';
import { Tensor } from '../tensor.js';
import type { BackendName } from '../backend.js';

const CHUNK = 512;

/** The rows of w [n, d] scaled to unit length (zero rows stay zero). */
export function unitRows(w: Float32Array, n: number, d: number): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += w[i * d + j]! ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < d; j++) out[i * d + j] = w[i * d + j]! * inv;
  }
  return out;
}

/** Calls `each(i0, rows, cos)` with cos [rows, nB] = cosines of A's rows i0.. with every row of B. */
async function forEachCosineChunk(
  wA: Float32Array, nA: number, wB: Float32Array, nB: number, d: number, backend: BackendName,
  each: (i0: number, rows: number, cos: Float32Array) => void,
): Promise<void> {
  const uA = unitRows(wA, nA, d);
  using tB = Tensor.from(wA === wB ? uA : unitRows(wB, nB, d), [nB, d], { backend });
  for (let i0 = 0; i0 < nA; i0 += CHUNK) {
    const rows = Math.min(CHUNK, nA - i0);
    using tA = Tensor.from(uA.subarray(i0 * d, (i0 + rows) * d), [rows, d], { backend });
    using cos = Tensor.empty([rows, nB], { backend });
    await linearT(tA, tB, null, cos, 'f32'); // [rows, nB] = uA · uBᵀ
    each(i0, rows, cos.toArray() as Float32Array);
  }
}

/** For each decoder row, the `k` other rows of largest cosine similarity: [[index, cosine], ...]. */
export async function nearestByDecoder(W_dec: Float32Array, n: number, d: number, k: number, backend: BackendName): Promise<[number, number][][]> {
  const out: [number, number][][] = [];
  await forEachCosineChunk(W_dec, n, W_dec, n, d, backend, (i0, rows, c) => {
    for (let r = 0; r < rows; r++) {
      const row = c.subarray(r * n, (r + 1) * n); // cosines of row i0 + r with every row
      // Ranked on the exact cosines, rounded for display.
      out.push(extremes(row, k, (a, b) => a > b, (j) => j !== i0 + r).map((j) => [j, Math.round(row[j]! * 1e4) / 1e4]));
    }
  });
  return out;
}

/** For each decoder row of A, its most cosine-similar row of B. */
export async function bestDecoderCosine(wA: Float32Array, nA: number, wB: Float32Array, nB: number, d: number, backend: BackendName): Promise<{ index: Int32Array; cosine: Float64Array }> {
  const index = new Int32Array(nA);
  const cosine = new Float64Array(nA);
  await forEachCosineChunk(wA, nA, wB, nB, d, backend, (i0, rows, c) => {
    for (let r = 0; r < rows; r++) {
      let best = 0;
      for (let j = 1; j < nB; j++) if (c[r * nB + j]! > c[r * nB + best]!) best = j;
      index[i0 + r] = best;
      cosine[i0 + r] = c[r * nB + best]!;
    }
  });
  return { index, cosine };
}
