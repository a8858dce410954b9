/**
 * Universality, as "Towards Monosemanticity" measures it: run two models (or two dictionaries) on the
 * same tokens; for every feature of A, the Pearson correlation of its activations with those of
 * each feature of B; A's feature is matched to its most correlated B feature. The distribution of
 * those best-match correlations (the paper: median 0.72 for features) is compared with the same
 * statistic for the raw MLP neurons of the two models (the paper: 0.46).
 *
 * The correlations come from sums accumulated over token chunks on the backend: Σa, Σa² and the
 * nonzero count per unit (columnStats), and the cross products Σ a bᵀ [nA, nB] (a GEMM per chunk);
 * each chunk's sums are added on the host in float64.
 */
import { addCrossProducts, columnStats } from '../ops.js';
import { Tensor, formatShape } from '../tensor.js';

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

  constructor(nA: number, nB: number) {
    this.nA = nA;
    this.nB = nB;
    this.#sumA = new Float64Array(nA);
    this.#sumA2 = new Float64Array(nA);
    this.#nonzeroA = new Float64Array(nA);
    this.#sumB = new Float64Array(nB);
    this.#sumB2 = new Float64Array(nB);
    this.#cross = new Float64Array(nA * nB);
  }

  get rows(): number {
    return this.#rows;
  }

  /** Adds paired observations: a [rows, nA] and b [rows, nB], tensors on one backend. */
  async add(a: Tensor, b: Tensor): Promise<void> {
    const { nA, nB } = this;
    const rows = a.shape[0]!;
    if (a.shape.length !== 2 || a.shape[1] !== nA || b.shape.length !== 2 || b.shape[0] !== rows || b.shape[1] !== nB) {
      throw new RangeError(`a must be [rows, ${nA}] and b [rows, ${nB}] (got ${formatShape(a.shape)} and ${formatShape(b.shape)})`);
    }
    const sa = await columnStats(a);
    const sb = await columnStats(b);
    for (let i = 0; i < nA; i++) {
      this.#sumA[i]! += sa.sum[i]!;
      this.#sumA2[i]! += sa.sumsq[i]!;
      this.#nonzeroA[i]! += sa.nonzero[i]!;
    }
    for (let j = 0; j < nB; j++) {
      this.#sumB[j]! += sb.sum[j]!;
      this.#sumB2[j]! += sb.sumsq[j]!;
    }
    using cross = Tensor.zeros([nA, nB], { backend: a.backend });
    await addCrossProducts(a, b, cross); // [nA, nB] = aᵀ [nA, rows] · b [rows, nB]
    const c = cross.toArray() as Float32Array;
    for (let k = 0; k < c.length; k++) this.#cross[k]! += c[k]!;
    this.#rows += rows;
  }

  /** Rows on which each unit of A was nonzero (a feature's firing count). */
  get nonzeroA(): Float64Array {
    return Float64Array.from(this.#nonzeroA);
  }

  /**
   * For each unit of A: its best-correlated unit of B and that correlation, in [−1, 1]. Units that
   * do not vary (dead features, constants) have no correlation: index −1, NaN. A unit counts as
   * varying when its variance is above 1e-5 of its mean square: below that, the covariance
   * Σab − ΣaΣb/N is lost in the rounding of the float32 cross products (a constant's "variance"
   * is rounding alone, and dividing by it gives any correlation at all).
   */
  bestMatches(): { index: Int32Array; correlation: Float64Array } {
    const { nA, nB } = this;
    const N = this.#rows;
    const sd = (sum: number, sumSq: number) => {
      const variance = sumSq - (sum * sum) / N; // N × the variance
      return variance > 1e-5 * sumSq ? Math.sqrt(variance) : 0;
    };
    const sdA = Float64Array.from(this.#sumA, (s, i) => sd(s, this.#sumA2[i]!));
    const sdB = Float64Array.from(this.#sumB, (s, j) => sd(s, this.#sumB2[j]!));
    const index = new Int32Array(nA).fill(-1);
    const correlation = new Float64Array(nA).fill(Number.NaN);
    for (let i = 0; i < nA; i++) {
      if (!(sdA[i]! > 0)) continue;
      let best = -Infinity;
      for (let j = 0; j < nB; j++) {
        if (!(sdB[j]! > 0)) continue;
        const cov = this.#cross[i * nB + j]! - (this.#sumA[i]! * this.#sumB[j]!) / N;
        const r = Math.min(1, Math.max(-1, cov / (sdA[i]! * sdB[j]!)));
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
