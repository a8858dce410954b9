/**
 * Per-feature statistics of an SAE over a token set, in one streaming pass with memory bounded by
 * the number of features (not the number of tokens):
 * - density (fraction of tokens it fires on), max and mean activation when firing;
 * - an activation histogram over fixed log-spaced bins (10^-3 .. 10^3, 4 per decade);
 * - the top-k activating tokens, each with a window of the context around it and the feature's
 *   activation on every token of the window (a min-heap of k per feature);
 * - a uniform random sample of firing tokens (a reservoir), with windows too, sorted by activation
 *   at the end: typical firings, mostly weak ones for a heavy-tailed feature, where the top-k show
 *   the strongest.
 *
 * The caller feeds feature activations f [contexts·T, n] as sparse rows (the entries > 0, compacted
 * on the device by sparseRows) with their token ids [contexts, T], so the work here is proportional
 * to what fires; position 0 of each context (the BOS token) is skipped.
 */
import type { SparseRows } from '../ops.js';
import { Rng } from '../random.js';

export const HISTOGRAM_LOG10_MIN = -3;
export const HISTOGRAM_BINS_PER_DECADE = 4;
export const HISTOGRAM_BINS = 6 * HISTOGRAM_BINS_PER_DECADE; // 10^-3 .. 10^3

export interface FeatureStatsOptions {
  /** Top activating tokens kept per feature (default 20). */
  topK?: number;
  /** Random firing tokens kept per feature (default 10). */
  samples?: number;
  /** Tokens of context kept before and after each example (default 12 and 4). */
  before?: number;
  after?: number;
  seed?: number;
}

export interface FeatureExample {
  activation: number;
  /** The window's token ids and the feature's activation on each; `at` is the example token's index in it. */
  tokens: number[];
  activations: number[];
  at: number;
}

export interface FeatureSummary {
  index: number;
  density: number;
  fires: number;
  maxActivation: number;
  meanActivation: number;
  /** Counts per log10 bin: bin b covers [10^(min + b/perDecade), 10^(min + (b+1)/perDecade)); the first bin also holds smaller values, the last larger. */
  histogram: number[];
  top: FeatureExample[];
  samples: FeatureExample[];
}

interface Slot {
  activation: number;
  tokens: Int32Array;
  activations: Float32Array;
  at: number;
}

export class FeatureStatsCollector {
  readonly dSae: number;
  readonly topK: number;
  readonly sampleCount: number;
  readonly before: number;
  readonly after: number;
  #tokens = 0;
  #fires: Float64Array;
  #sum: Float64Array;
  #max: Float32Array;
  #histogram: Uint32Array;
  /** Min-heaps by activation, one per feature. */
  #top: Slot[][];
  #samples: Slot[][];
  #rng: Rng;

  constructor(dSae: number, options: FeatureStatsOptions = {}) {
    if (!Number.isSafeInteger(dSae) || dSae < 1) throw new RangeError(`dSae must be a positive integer (got ${dSae})`);
    this.dSae = dSae;
    this.topK = options.topK ?? 20;
    this.sampleCount = options.samples ?? 10;
    this.before = options.before ?? 12;
    this.after = options.after ?? 4;
    for (const [name, v] of [['topK', this.topK], ['samples', this.sampleCount], ['before', this.before], ['after', this.after]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer (got ${v})`);
    }
    this.#fires = new Float64Array(dSae);
    this.#sum = new Float64Array(dSae);
    this.#max = new Float32Array(dSae);
    this.#histogram = new Uint32Array(dSae * HISTOGRAM_BINS);
    this.#top = Array.from({ length: dSae }, () => []);
    this.#samples = Array.from({ length: dSae }, () => []);
    this.#rng = new Rng(options.seed ?? 0);
  }

  /** Tokens absorbed so far (BOS positions excluded). */
  get tokens(): number {
    return this.#tokens;
  }

  /** Absorbs f [contexts·T, dSae] (sparse rows) of `ids` [contexts, T]. */
  absorb(f: SparseRows, ids: Int32Array, T: number): void {
    if (!Number.isSafeInteger(T) || T < 2 || ids.length % T !== 0) throw new RangeError(`ids must hold whole contexts of T >= 2 tokens (got ${ids.length}, T ${T})`);
    if (f.rows !== ids.length || f.n !== this.dSae) throw new RangeError(`f must be [${ids.length}, ${this.dSae}] (got [${f.rows}, ${f.n}])`);
    const contexts = ids.length / T;
    for (let c = 0; c < contexts; c++) {
      for (let t = 1; t < T; t++) {
        const r = c * T + t; // row of f
        this.#tokens += 1;
        for (let k = f.rowPtr[r]!; k < f.rowPtr[r + 1]!; k++) {
          const i = f.cols[k]!;
          const a = f.values[k]!;
          const fires = (this.#fires[i]! += 1);
          this.#sum[i]! += a;
          if (a > this.#max[i]!) this.#max[i] = a;
          const bin = Math.min(HISTOGRAM_BINS - 1, Math.max(0, Math.floor((Math.log10(a) - HISTOGRAM_LOG10_MIN) * HISTOGRAM_BINS_PER_DECADE)));
          this.#histogram[i * HISTOGRAM_BINS + bin]! += 1;
          const top = this.#top[i]!;
          if (this.topK > 0 && (top.length < this.topK || a > top[0]!.activation)) {
            const slot = this.#window(f, ids, T, c, t, i, a);
            if (top.length < this.topK) heapPush(top, slot);
            else heapReplaceTop(top, slot);
          }
          // Reservoir sampling (algorithm R) over this feature's firing tokens.
          const samples = this.#samples[i]!;
          if (samples.length < this.sampleCount) samples.push(this.#window(f, ids, T, c, t, i, a));
          else if (this.sampleCount > 0) {
            const j = this.#rng.int(fires);
            if (j < this.sampleCount) samples[j] = this.#window(f, ids, T, c, t, i, a);
          }
        }
      }
    }
  }

  /** The window [t − before, t + after] of context c (clipped to 1..T−1), with feature i's activations. */
  #window(f: SparseRows, ids: Int32Array, T: number, c: number, t: number, i: number, a: number): Slot {
    const from = Math.max(1, t - this.before);
    const to = Math.min(T - 1, t + this.after);
    const tokens = ids.slice(c * T + from, c * T + to + 1);
    const activations = new Float32Array(to - from + 1);
    for (let s = from; s <= to; s++) activations[s - from] = valueAt(f, c * T + s, i); // f[c·T + s, i]
    return { activation: a, tokens, activations, at: t - from };
  }

  summary(i: number): FeatureSummary {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.dSae) throw new RangeError(`feature ${i} is outside [0, ${this.dSae})`);
    const example = (s: Slot): FeatureExample => ({ activation: s.activation, tokens: Array.from(s.tokens), activations: Array.from(s.activations, (x) => Math.round(x * 1e4) / 1e4), at: s.at });
    const fires = this.#fires[i]!;
    return {
      index: i,
      density: this.#tokens > 0 ? fires / this.#tokens : 0,
      fires,
      maxActivation: this.#max[i]!,
      meanActivation: fires > 0 ? this.#sum[i]! / fires : 0,
      histogram: Array.from(this.#histogram.subarray(i * HISTOGRAM_BINS, (i + 1) * HISTOGRAM_BINS)),
      top: [...this.#top[i]!].sort((a, b) => b.activation - a.activation).map(example),
      samples: [...this.#samples[i]!].sort((a, b) => b.activation - a.activation).map(example),
    };
  }
}

/** f[row, col] of sparse rows: a binary search of the row's (increasing) columns; 0 where absent. */
function valueAt(f: SparseRows, row: number, col: number): number {
  let lo = f.rowPtr[row]!;
  let hi = f.rowPtr[row + 1]!;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const c = f.cols[mid]!;
    if (c === col) return f.values[mid]!;
    if (c < col) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

function heapPush(heap: Slot[], slot: Slot): void {
  heap.push(slot);
  let k = heap.length - 1;
  while (k > 0) {
    const parent = (k - 1) >> 1;
    if (heap[parent]!.activation <= heap[k]!.activation) break;
    [heap[parent], heap[k]] = [heap[k]!, heap[parent]!];
    k = parent;
  }
}

function heapReplaceTop(heap: Slot[], slot: Slot): void {
  heap[0] = slot;
  let k = 0;
  for (;;) {
    const l = 2 * k + 1;
    const r = l + 1;
    let m = k;
    if (l < heap.length && heap[l]!.activation < heap[m]!.activation) m = l;
    if (r < heap.length && heap[r]!.activation < heap[m]!.activation) m = r;
    if (m === k) return;
    [heap[m], heap[k]] = [heap[k]!, heap[m]!];
    k = m;
  }
}
