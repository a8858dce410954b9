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
 *
 * Storage. Each feature has `slots` = topK + samples example slots: slots 0..topK−1 hold the top-k,
 * slots topK.. the reservoir (sample j in slot topK + j). A slot is a few numbers in flat typed
 * arrays, not an object: its activation, the example's index `at` in its window, the window's
 * length, and the window's token ids and activations in `width` = before + 1 + after entries (the
 * first `length` used). The min-heap of a feature's top-k is an array of its slot numbers in heap
 * order, so sifting moves one integer, never a window. The arrays are cut into blocks of 2^shift
 * consecutive features, each allocated at the first firing of one of its features: memory follows
 * the features that fire, and no array outgrows a typed array's limit at any dictionary size.
 * Token ids are kept in 16 bits until a batch brings one outside 0..65535 (never for GPT-2's
 * vocabulary), then in 32 (every block widened at once).
 *
 * An event that enters a slot has its window built there once, then copied if it also enters the
 * other kind of slot (a top-k example that is also sampled); nothing is allocated per event. To read
 * a window's activations without searching each of its rows, absorb() first chains each batch's
 * entries of the same feature in row order (`prev`, `next`, scratch arrays reused from batch to
 * batch): the feature's entries in a window are the few links around the event's own entry (each
 * row's columns increase, as sparseRows makes them).
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

/** Elements per block of the window arrays that the block size aims at (features per block is a power of two). */
const BLOCK_ELEMENTS = 1 << 16;

/** The slots of 2^shift consecutive features (fewer in the last block). */
interface Block {
  /** [features, slots]: the example's activation (the heap's key). */
  activation: Float64Array;
  /** [features, slots]: the example token's index in its window, and the window's length. */
  at: Int32Array;
  length: Int32Array;
  /** [features, slots, width]: the window's token ids and the feature's activation on each. */
  tokens: Uint16Array | Int32Array;
  activations: Float32Array;
  /** [features, topK]: each feature's min-heap by activation, as slot numbers 0..topK−1 in heap order. */
  heap: Int32Array;
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
  /** Example slots per feature (topK + sampleCount) and window entries per slot (before + 1 + after). */
  #slots: number;
  #width: number;
  /** Feature i lives in block i >> shift, as its (i & mask)-th feature. */
  #shift: number;
  #mask: number;
  #blocks: (Block | undefined)[];
  /** Whether the blocks keep token ids in an Int32Array (else a Uint16Array). */
  #wide = false;
  /** [dSae]: the activation at the top of each full heap (the least of the top-k), the bar for a new example; outside the blocks so that most events never touch them. */
  #floor: Float64Array;
  /** Scratch of absorb(), [nonzeros of the batch]: each entry's row of f, and the previous and next entry of its feature (−1: none). */
  #row = new Int32Array(0);
  #prev = new Int32Array(0);
  #next = new Int32Array(0);
  /** Scratch [dSae]: a feature's last entry so far while chaining (−1 between batches). */
  #last: Int32Array | null = null;
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
    this.#slots = this.topK + this.sampleCount;
    this.#width = this.before + 1 + this.after;
    const perFeature = Math.max(1, this.#slots * this.#width);
    this.#shift = Math.min(30, Math.max(0, Math.floor(Math.log2(BLOCK_ELEMENTS / perFeature))), Math.ceil(Math.log2(dSae)));
    this.#mask = 2 ** this.#shift - 1;
    this.#blocks = Array.from({ length: Math.ceil(dSae / 2 ** this.#shift) }, () => undefined);
    this.#floor = new Float64Array(this.topK > 0 ? dSae : 0);
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
    const { rowPtr, cols, values } = f;
    const [fireCount, sum, max, histogram, floor] = [this.#fires, this.#sum, this.#max, this.#histogram, this.#floor];
    const [topK, sampleCount, slots, shift, mask] = [this.topK, this.sampleCount, this.#slots, this.#shift, this.#mask];
    if (slots > 0) {
      if (!this.#wide && ids.some((id) => id < 0 || id > 0xffff)) this.#widen();
      this.#chain(f);
    }
    const contexts = ids.length / T;
    for (let c = 0; c < contexts; c++) {
      for (let t = 1; t < T; t++) {
        const r = c * T + t; // row of f
        this.#tokens += 1;
        for (let k = rowPtr[r]!; k < rowPtr[r + 1]!; k++) {
          const i = cols[k]!;
          const a = values[k]!;
          const fires = (fireCount[i]! += 1);
          sum[i]! += a;
          if (a > max[i]!) max[i] = a;
          const bin = Math.min(HISTOGRAM_BINS - 1, Math.max(0, Math.floor((Math.log10(a) - HISTOGRAM_LOG10_MIN) * HISTOGRAM_BINS_PER_DECADE)));
          histogram[i * HISTOGRAM_BINS + bin]! += 1;
          if (slots === 0) continue;
          const block = this.#blocks[i >> shift] ?? this.#allocate(i >> shift);
          const first = (i & mask) * slots; // feature i's slot 0 in the block's [features, slots]
          let built = -1; // the block slot where this event's window was built, if it was
          if (topK > 0) {
            const heap = (i & mask) * topK; // feature i's heap in block.heap [features, topK]
            const held = Math.min(fires - 1, topK); // the heap's length before this event
            if (held < topK) {
              built = first + held; // the heap fills slots 0..topK−1 in order
              this.#window(block, built, values, ids, T, c, t, k);
              heapPush(block, heap, first, held);
              if (held === topK - 1) floor[i] = block.activation[first + block.heap[heap]!]!;
            } else if (a > floor[i]!) {
              built = first + block.heap[heap]!; // the minimum's slot takes the new example
              this.#window(block, built, values, ids, T, c, t, k);
              heapReplaceTop(block, heap, first, topK);
              floor[i] = block.activation[first + block.heap[heap]!]!;
            }
          }
          // Reservoir sampling (algorithm R) over this feature's firing tokens.
          if (sampleCount > 0) {
            const held = Math.min(fires - 1, sampleCount); // the reservoir's size before this event
            const j = held < sampleCount ? held : this.#rng.int(fires);
            if (j < sampleCount) {
              if (built >= 0) copySlot(block, built, first + topK + j, this.#width);
              else this.#window(block, first + topK + j, values, ids, T, c, t, k);
            }
          }
        }
      }
    }
  }

  #allocate(b: number): Block {
    const features = Math.min(2 ** this.#shift, this.dSae - b * 2 ** this.#shift);
    const n = features * this.#slots;
    const block: Block = {
      activation: new Float64Array(n),
      at: new Int32Array(n),
      length: new Int32Array(n),
      tokens: this.#wide ? new Int32Array(n * this.#width) : new Uint16Array(n * this.#width),
      activations: new Float32Array(n * this.#width),
      heap: new Int32Array(features * this.topK),
    };
    this.#blocks[b] = block;
    return block;
  }

  /** Keeps token ids in 32 bits from now on. */
  #widen(): void {
    for (const block of this.#blocks) if (block) block.tokens = new Int32Array(block.tokens);
    this.#wide = true;
  }

  /** Fills #row, #prev and #next for the entries of f (see the header). */
  #chain(f: SparseRows): void {
    const { rowPtr, cols } = f;
    const nonzeros = rowPtr[f.rows]!;
    if (this.#row.length < nonzeros) {
      const capacity = Math.max(nonzeros, 2 * this.#row.length);
      [this.#row, this.#prev, this.#next] = [new Int32Array(capacity), new Int32Array(capacity), new Int32Array(capacity)];
    }
    const last = (this.#last ??= new Int32Array(this.dSae).fill(-1));
    const [row, prev, next] = [this.#row, this.#prev, this.#next];
    for (let r = 0; r < f.rows; r++) {
      for (let k = rowPtr[r]!; k < rowPtr[r + 1]!; k++) {
        const i = cols[k]!;
        const p = last[i]!;
        row[k] = r;
        prev[k] = p;
        next[k] = -1;
        if (p >= 0) next[p] = k;
        last[i] = k;
      }
    }
    for (let k = 0; k < nonzeros; k++) last[cols[k]!] = -1;
  }

  /**
   * Writes into `slot` the example of entry k of f (row c·T + t) and its window [t − before, t + after]
   * of context c (clipped to 1..T−1), with the feature's activation on each token (0 where absent).
   */
  #window(block: Block, slot: number, values: Float32Array, ids: Int32Array, T: number, c: number, t: number, k: number): void {
    const from = Math.max(1, t - this.before);
    const to = Math.min(T - 1, t + this.after);
    block.activation[slot] = values[k]!;
    block.at[slot] = t - from;
    block.length[slot] = to - from + 1;
    const w = slot * this.#width; // the slot's window in block.tokens, block.activations [features, slots, width]
    const r0 = c * T + from; // the window's first and last rows of f (and indices in ids)
    const r1 = c * T + to;
    const { tokens, activations } = block;
    for (let r = r0; r <= r1; r++) {
      tokens[w + r - r0] = ids[r]!;
      activations[w + r - r0] = 0;
    }
    const row = this.#row;
    const prev = this.#prev;
    const next = this.#next;
    for (let e = k; e >= 0 && row[e]! >= r0; e = prev[e]!) activations[w + row[e]! - r0] = values[e]!;
    for (let e = next[k]!; e >= 0 && row[e]! <= r1; e = next[e]!) activations[w + row[e]! - r0] = values[e]!;
  }

  summary(i: number): FeatureSummary {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.dSae) throw new RangeError(`feature ${i} is outside [0, ${this.dSae})`);
    const fires = this.#fires[i]!;
    const block = this.#blocks[i >> this.#shift];
    const first = (i & this.#mask) * this.#slots; // feature i's slot 0 in the block's [features, slots]
    const heap = (i & this.#mask) * this.topK; // feature i's heap in block.heap [features, topK]
    const width = this.#width;
    // Slots listed in heap order (top-k) and reservoir order (samples), then sorted stably by activation, descending.
    const examples = (slots: number[]): FeatureExample[] => {
      if (block === undefined) return [];
      const { activation, at, length, tokens, activations } = block;
      return slots
        .sort((x, y) => activation[y]! - activation[x]!)
        .map((s) => {
          const example: FeatureExample = { activation: activation[s]!, tokens: [], activations: [], at: at[s]! };
          for (let e = s * width; e < s * width + length[s]!; e++) {
            example.tokens.push(tokens[e]!);
            example.activations.push(Math.round(activations[e]! * 1e4) / 1e4);
          }
          return example;
        });
    };
    return {
      index: i,
      density: this.#tokens > 0 ? fires / this.#tokens : 0,
      fires,
      maxActivation: this.#max[i]!,
      meanActivation: fires > 0 ? this.#sum[i]! / fires : 0,
      histogram: Array.from(this.#histogram.subarray(i * HISTOGRAM_BINS, (i + 1) * HISTOGRAM_BINS)),
      top: block ? examples(Array.from({ length: Math.min(fires, this.topK) }, (_, p) => first + block.heap[heap + p]!)) : [],
      samples: examples(Array.from({ length: Math.min(fires, this.sampleCount) }, (_, j) => first + this.topK + j)),
    };
  }
}

/** Copies slot `from` of a block into slot `to`: activation, `at`, and the window. */
function copySlot(block: Block, from: number, to: number, width: number): void {
  block.activation[to] = block.activation[from]!;
  block.at[to] = block.at[from]!;
  const length = (block.length[to] = block.length[from]!);
  block.tokens.copyWithin(to * width, from * width, from * width + length);
  block.activations.copyWithin(to * width, from * width, from * width + length);
}

/**
 * The two heap operations on a feature's heap: block.heap[heap + p] is the slot number at heap
 * position p, and its key is block.activation[first + slot number].
 */
function heapPush(block: Block, heap: number, first: number, length: number): void {
  const { heap: order, activation } = block;
  order[heap + length] = length; // the new example is in slot `length`
  let k = length;
  while (k > 0) {
    const parent = (k - 1) >> 1;
    const p = order[heap + parent]!;
    const q = order[heap + k]!;
    if (activation[first + p]! <= activation[first + q]!) break;
    order[heap + parent] = q;
    order[heap + k] = p;
    k = parent;
  }
}

/** Restores the heap after the slot at its top took a new example. */
function heapReplaceTop(block: Block, heap: number, first: number, length: number): void {
  const { heap: order, activation } = block;
  const key = (p: number): number => activation[first + order[heap + p]!]!;
  let k = 0;
  for (;;) {
    const l = 2 * k + 1;
    const r = l + 1;
    let m = k;
    if (l < length && key(l) < key(m)) m = l;
    if (r < length && key(r) < key(m)) m = r;
    if (m === k) return;
    const s = order[heap + m]!;
    order[heap + m] = order[heap + k]!;
    order[heap + k] = s;
    k = m;
  }
}
