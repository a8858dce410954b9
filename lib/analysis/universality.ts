/**
 * Universality, as "Towards Monosemanticity" measures it: run two models (or two dictionaries) on the
 * same tokens; for every feature of A, the Pearson correlation of its activations with those of
 * each feature of B; A's feature is matched to its most correlated B feature. The distribution of
 * those best-match correlations (the paper: median 0.72 for features) is compared with the same
 * statistic for the raw MLP neurons of the two models (the paper: 0.46).
 *
 * The correlations come from sums accumulated over token chunks: Σa, Σa², Σb, Σb² per unit and the
 * cross products Σ a bᵀ [nA, nB] (a backend matrix product per chunk, accumulated in float64).
 */
import { linear } from '../lm/ops.js';
import { Tensor } from '../tensor.js';
import type { BackendName } from '../backend.js';

export class CorrelationAccumulator {
  readonly nA: number;
  readonly nB: number;
  #rows = 0;
  #sumA: Float64Array;
  #sumA2: Float64Array;
  #nonzeroA: Float64Array;
  #sumB: Float64Array;
  #sumB2: Float64Array;
  #cross: Float64Array;
  #backend: BackendName;

  constructor(nA: number, nB: number, backend: BackendName) {
    this.nA = nA;
    this.nB = nB;
    this.#sumA = new Float64Array(nA);
    this.#sumA2 = new Float64Array(nA);
    this.#nonzeroA = new Float64Array(nA);
    this.#sumB = new Float64Array(nB);
    this.#sumB2 = new Float64Array(nB);
    this.#cross = new Float64Array(nA * nB);
    this.#backend = backend;
  }

  get rows(): number {
    return this.#rows;
  }

  /** Adds `rows` paired observations: a [rows, nA] and b [rows, nB] (host arrays). */
  async add(a: Float32Array, b: Float32Array, rows: number): Promise<void> {
    const { nA, nB } = this;
    if (a.length !== rows * nA || b.length !== rows * nB) throw new RangeError(`a must be [${rows}, ${nA}] and b [${rows}, ${nB}]`);
    const at = new Float32Array(nA * rows); // aᵀ [nA, rows]
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < nA; i++) {
        const v = a[r * nA + i]!;
        at[i * rows + r] = v;
        this.#sumA[i]! += v;
        this.#sumA2[i]! += v * v;
        if (v !== 0) this.#nonzeroA[i]! += 1;
      }
      for (let j = 0; j < nB; j++) {
        const v = b[r * nB + j]!;
        this.#sumB[j]! += v;
        this.#sumB2[j]! += v * v;
      }
    }
    using tA = Tensor.from(at, [nA, rows], { backend: this.#backend });
    using tB = Tensor.from(b, [rows, nB], { backend: this.#backend });
    using cross = Tensor.empty([nA, nB], { backend: this.#backend });
    await linear(tA, tB, null, cross, 'f32'); // [nA, nB] = aᵀ [nA, rows] · b [rows, nB]
    const c = cross.toArray() as Float32Array;
    for (let k = 0; k < c.length; k++) this.#cross[k]! += c[k]!;
    this.#rows += rows;
  }

  /** Rows on which each unit of A was nonzero (a feature's firing count). */
  get nonzeroA(): Float64Array {
    return Float64Array.from(this.#nonzeroA);
  }

  /**
   * For each unit of A: its best-correlated unit of B and that correlation. Units that never vary
   * (dead features) have no correlation: index −1, NaN.
   */
  bestMatches(): { index: Int32Array; correlation: Float64Array } {
    const { nA, nB } = this;
    const N = this.#rows;
    const sdA = Float64Array.from(this.#sumA, (s, i) => Math.sqrt(Math.max(0, this.#sumA2[i]! - (s * s) / N)));
    const sdB = Float64Array.from(this.#sumB, (s, j) => Math.sqrt(Math.max(0, this.#sumB2[j]! - (s * s) / N)));
    const index = new Int32Array(nA).fill(-1);
    const correlation = new Float64Array(nA).fill(Number.NaN);
    for (let i = 0; i < nA; i++) {
      if (!(sdA[i]! > 0)) continue;
      let best = -Infinity;
      for (let j = 0; j < nB; j++) {
        if (!(sdB[j]! > 0)) continue;
        const cov = this.#cross[i * nB + j]! - (this.#sumA[i]! * this.#sumB[j]!) / N;
        const r = cov / (sdA[i]! * sdB[j]!);
        if (r > best) {
          best = r;
          index[i] = j;
        }
      }
      if (index[i]! >= 0) correlation[i] = best;
    }
    return { index, correlation };
  }
}

/** Median of the finite values (NaN when there are none). */
export function median(values: ArrayLike<number>): number {
  const finite = Array.from(values).filter(Number.isFinite).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const m = finite.length >> 1;
  return finite.length % 2 ? finite[m]! : (finite[m - 1]! + finite[m]!) / 2;
}
