/**
 * Universality, as "Towards Monosemanticity" measures it: run two models (or two dictionaries) on the
 * same tokens; for every feature of A, the Pearson correlation of its activations with those of
 * each feature of B; A's feature is matched to its most correlated B feature. The distribution of
 * those best-match correlations (the paper: median 0.72 for features) is compared with the same
 * statistic for the raw MLP neurons of the two models (the paper: 0.46).
 *
 * The correlations come from sums accumulated over token chunks on the backend: Σa, Σa² and the
 * nonzero count per unit (columnStats, in float64), and the cross products Σ a bᵀ [nA, nB] (a GEMM
 * per chunk, added on the backend in float32 and moved into float64 on the host every
 * FLUSH_EVERY chunks). With `centre`, every unit is first shifted by its mean over the first chunk
 * (correlations do not change under shifts): a unit whose mean is large against its spread (an
 * always-on neuron) would otherwise lose its covariance Σab − ΣaΣb/N to the float32 products'
 * rounding.
 */
import { add as addTensors } from '../lm/ops.js';
import { addCrossProducts, columnStats } from '../ops.js';
import { Tensor, formatShape } from '../tensor.js';

/** Chunks whose cross products are summed on the backend before the host adds them in float64. */
const FLUSH_EVERY = 16;
/** The largest [nA, nB] table of cross products (4 GiB in float64 on the host, 2 GiB on the backend). */
const MAX_PAIRS = 2 ** 29;

export interface CorrelationOptions {
  /**
   * Shift each unit by its mean over the first chunk before the products (see above; default
   * true). It costs [rows, nA + nB] floats of shifts on the backend and a shifted copy of each
   * chunk; without it a unit of large mean loses its correlation to rounding.
   */
  centre?: boolean;
}

export class CorrelationAccumulator {
  readonly nA: number;
  readonly nB: number;
  readonly centre: boolean;
  #rows = 0;
  #sumA: Float64Array;
  #sumA2: Float64Array;
  #nonzeroA: Float64Array;
  #sumB: Float64Array;
  #sumB2: Float64Array;
  #cross: Float64Array;
  /** The cross products of the chunks since the last flush, on the backend. */
  #pending: Tensor | null = null;
  #pendingChunks = 0;
  /** With centre: the shifts of A's and B's units, negated, as rows of `rows` copies for chunks of that many rows. */
  #shiftA: Float32Array | null = null;
  #shiftB: Float32Array | null = null;
  #tiled: { rows: number; a: Tensor; b: Tensor } | null = null;

  constructor(nA: number, nB: number, options: CorrelationOptions = {}) {
    for (const [name, v] of [['nA', nA], ['nB', nB]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer (got ${v})`);
    }
    if (nA * nB > MAX_PAIRS) {
      throw new RangeError(`correlating ${nA.toLocaleString('en-US')} units with ${nB.toLocaleString('en-US')} needs a table of ${(nA * nB).toLocaleString('en-US')} cross products; at most ${MAX_PAIRS.toLocaleString('en-US')} (4 GiB) are kept: compare smaller dictionaries`);
    }
    this.nA = nA;
    this.nB = nB;
    this.centre = options.centre ?? true;
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
    if (a.backend !== b.backend) throw new TypeError('a and b must be on one backend');
    if (this.#pending && this.#pending.backend !== a.backend) throw new TypeError(`this accumulator's sums are on ${this.#pending.backend}; a and b are on ${a.backend}`);
    const sa = await columnStats(a);
    for (let i = 0; i < nA; i++) this.#nonzeroA[i]! += sa.nonzero[i]!;
    if (this.centre && !this.#shiftA) {
      const sb = await columnStats(b);
      this.#shiftA = Float32Array.from(sa.sum, (s) => -s / rows);
      this.#shiftB = Float32Array.from(sb.sum, (s) => -s / rows);
    }
    using shiftedA = this.centre ? await this.#shifted(a, 'a') : null;
    using shiftedB = this.centre ? await this.#shifted(b, 'b') : null;
    const [ua, ub] = [shiftedA ?? a, shiftedB ?? b]; // the units as accumulated
    const ca = ua === a ? sa : await columnStats(ua);
    const cb = await columnStats(ub);
    for (let i = 0; i < nA; i++) {
      this.#sumA[i]! += ca.sum[i]!;
      this.#sumA2[i]! += ca.sumsq[i]!;
    }
    for (let j = 0; j < nB; j++) {
      this.#sumB[j]! += cb.sum[j]!;
      this.#sumB2[j]! += cb.sumsq[j]!;
    }
    this.#pending ??= Tensor.zeros([nA, nB], { backend: a.backend });
    await addCrossProducts(ua, ub, this.#pending); // pending [nA, nB] += uaᵀ [nA, rows] · ub [rows, nB]
    this.#rows += rows;
    if (++this.#pendingChunks === FLUSH_EVERY) this.#flush();
  }

  /** x [rows, n] plus the side's (negated) shifts in every row, as a new tensor. */
  async #shifted(x: Tensor, side: 'a' | 'b'): Promise<Tensor> {
    const rows = x.shape[0]!;
    if (!this.#tiled || this.#tiled.rows !== rows) {
      this.#disposeTiled();
      const tile = (shift: Float32Array) => {
        const t = new Float32Array(rows * shift.length);
        for (let r = 0; r < rows; r++) t.set(shift, r * shift.length); // t[r, :] = shift
        return Tensor.from(t, [rows, shift.length], { backend: x.backend });
      };
      this.#tiled = { rows, a: tile(this.#shiftA!), b: tile(this.#shiftB!) };
    }
    const out = Tensor.empty(x.shape, { backend: x.backend });
    try {
      await addTensors(x, this.#tiled[side], out);
    } catch (error) {
      out.dispose();
      throw error;
    }
    return out;
  }

  /** Moves the backend's pending cross products into the float64 sums. */
  #flush(): void {
    if (!this.#pending || this.#pendingChunks === 0) return;
    const c = this.#pending.toArray() as Float32Array;
    for (let k = 0; k < c.length; k++) this.#cross[k]! += c[k]!;
    this.#pending.fill(0);
    this.#pendingChunks = 0;
  }

  #disposeTiled(): void {
    this.#tiled?.a.dispose();
    this.#tiled?.b.dispose();
    this.#tiled = null;
  }

  /**
   * Frees the backend memory. The sums moved to the host stay, and bestMatches answers from them:
   * call it first, since the chunks not yet moved are moved here if the backend still can (after a
   * failure it may not: they are dropped, and the failure is left to the code that met it).
   */
  dispose(): void {
    try {
      this.#flush();
    } catch {
      this.#pendingChunks = 0; // a device that cannot be read (a failed launch): free what can be freed
    }
    this.#pending?.dispose();
    this.#pending = null;
    this.#disposeTiled();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Rows on which each unit of A was nonzero (a feature's firing count). */
  get nonzeroA(): Float64Array {
    return Float64Array.from(this.#nonzeroA);
  }

  /**
   * For each unit of A: its best-correlated unit of B and that correlation, in [−1, 1]. Units that
   * do not vary (dead features, constants) have no correlation: index −1, NaN. A unit counts as
   * varying when its variance is above 1e-5 of its mean square (of the values as accumulated:
   * centred, or not): below that, the covariance Σab − ΣaΣb/N is lost in the rounding of the
   * float32 cross products (a constant's "variance" is rounding alone, and dividing by it gives
   * any correlation at all). Centred, a constant unit is exactly 0 and has variance 0.
   */
  bestMatches(): { index: Int32Array; correlation: Float64Array } {
    this.#flush();
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
