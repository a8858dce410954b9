/**
 * Activations harvested from a language model's hook, mixed across many contexts, as a training
 * data source (TrainingDataSource) for the SAE trainer.
 *
 * The stream is a sequence of windows. A window takes the next `contextsPerWindow` contexts from
 * the context stream, runs the model over them `forwardBatch` at a time (stopping at the hook),
 * keeps `positionsPerContext` random positions of each (the paper: 250; position 0, the BOS token,
 * is skipped by default), gathers those rows into a device-resident window buffer, and serves them
 * in a seeded random order — so no batch is dominated by one context. Everything is a function of
 * the seed, the window's index and the context stream's position at the window's start, so a
 * saved position (window, offset) restores exactly by harvesting that one window again.
 *
 * When the context stream ends, it is reopened from its start (the next epoch).
 */
import { gatherRows } from '../ops.js';
import { Rng } from '../random.js';
import { Tensor } from '../tensor.js';
import type { Gpt2Model } from '../lm/model.js';
import type { TrainingDataSource } from '../sae/trainer.js';
import { SEED_PURPOSE, mixSeed, permutation } from './stream-common.js';

/** Contexts [count, contextLength] of token ids, null at the end; `state()` a resumable position. */
export interface ContextSource {
  next(count: number): Promise<Int32Array | null>;
  state(): unknown;
  close?(): Promise<void> | void;
}

export interface LmActivationOptions {
  model: Gpt2Model;
  hook: string;
  /** Opens the context stream at a saved position (undefined: its start). */
  openContexts: (state: unknown) => Promise<ContextSource>;
  contextLength: number;
  seed: number;
  /** Positions kept per context (the paper: 250). */
  positionsPerContext: number;
  /** Contexts whose positions are mixed in one window. */
  contextsPerWindow: number;
  /** Contexts per model forward (default 16). */
  forwardBatch?: number;
  /** Skip position 0 (the BOS token) when choosing positions (default true). */
  skipFirstPosition?: boolean;
  state?: LmActivationState;
  /** The activations of `count` contexts [count × contextLength, d]; default: the model's hook. Tests replace it. */
  harvest?: (ids: Int32Array, count: number) => Promise<Tensor>;
}

export interface LmActivationState {
  version: 1;
  epoch: number;
  /** Windows built since the start (the window being served). */
  window: number;
  /** Rows of that window already served. */
  offset: number;
  rowsServed: number;
  /** The context stream's position at the start of the window being served. */
  contexts: unknown;
}

export class LmActivationSource implements TrainingDataSource {
  readonly d: number;
  #o: Required<Omit<LmActivationOptions, 'state' | 'harvest'>> & Pick<LmActivationOptions, 'harvest'>;
  #contexts: ContextSource | null = null;
  #windowStart: unknown = undefined;
  #epoch = 0;
  #window = -1;
  #offset = 0;
  #rowsServed = 0;
  #buffer: Tensor;
  #order: Uint32Array = new Uint32Array(0);
  #rows = 0;
  #closed = false;

  private constructor(options: LmActivationOptions, d: number) {
    this.d = d;
    this.#o = { forwardBatch: 16, skipFirstPosition: true, ...options };
    const o = this.#o;
    const usable = o.contextLength - (o.skipFirstPosition ? 1 : 0);
    if (!Number.isSafeInteger(o.positionsPerContext) || o.positionsPerContext < 1 || o.positionsPerContext > usable) {
      throw new RangeError(`positionsPerContext must be in [1, ${usable}] for contexts of ${o.contextLength} tokens (got ${o.positionsPerContext})`);
    }
    for (const key of ['contextsPerWindow', 'forwardBatch', 'contextLength'] as const) {
      if (!Number.isSafeInteger(o[key]) || o[key] < 1) throw new RangeError(`${key} must be a positive integer (got ${o[key]})`);
    }
    this.#buffer = Tensor.empty([o.contextsPerWindow * o.positionsPerContext, d], { backend: o.model.backend });
  }

  /** Opens the stream (at `options.state` when given) and harvests its first window. */
  static async open(options: LmActivationOptions): Promise<LmActivationSource> {
    const width = options.model.hooks.find((h) => h.name === options.hook)?.width;
    if (width === undefined) throw new RangeError(`the model has no hook '${options.hook}'`);
    const source = new LmActivationSource(options, width);
    try {
      const s = options.state;
      if (s) {
        if (s.version !== 1) throw new RangeError(`unsupported activation-stream state version ${String(s.version)}`);
        source.#epoch = s.epoch;
        source.#window = s.window - 1;
        source.#rowsServed = s.rowsServed;
        source.#contexts = await options.openContexts(s.contexts);
        await source.#nextWindow();
        if (s.offset > source.#rows) throw new RangeError(`the saved offset ${s.offset} is beyond its window's ${source.#rows} rows (the corpus or options changed)`);
        source.#offset = s.offset;
      } else {
        source.#contexts = await options.openContexts(undefined);
        await source.#nextWindow();
      }
      return source;
    } catch (error) {
      source.#buffer.dispose();
      throw error;
    }
  }

  state(): LmActivationState {
    return { version: 1, epoch: this.#epoch, window: this.#window, offset: this.#offset, rowsServed: this.#rowsServed, contexts: this.#windowStart };
  }

  async next(rows: number, out: Tensor): Promise<void> {
    if (this.#closed) throw new Error('this activation stream is closed');
    if (out.shape.length !== 2 || out.shape[0] !== rows || out.shape[1] !== this.d) {
      throw new RangeError(`out must have shape [${rows}, ${this.d}] (got [${out.shape.join(', ')}])`);
    }
    let filled = 0;
    while (filled < rows) {
      if (this.#offset === this.#rows) await this.#nextWindow();
      const n = Math.min(rows - filled, this.#rows - this.#offset);
      // Row indices < 2^30 read the same as int32.
      using idx = Tensor.from(new Int32Array(this.#order.buffer, this.#offset * 4, n), [n], { dtype: 'i32', backend: out.backend });
      await gatherRows(this.#buffer, idx, out, filled);
      this.#offset += n;
      filled += n;
    }
    this.#rowsServed += rows;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#buffer.dispose();
    await this.#contexts?.close?.();
  }

  /** Harvests the next window into the buffer and draws its serving order. */
  async #nextWindow(): Promise<void> {
    const o = this.#o;
    const T = o.contextLength;
    const P = o.positionsPerContext;
    this.#window += 1;
    this.#windowStart = this.#contexts!.state();
    let contexts = 0;
    let reopened = false;
    while (contexts < o.contextsPerWindow) {
      const want = Math.min(o.forwardBatch, o.contextsPerWindow - contexts);
      const ids = await this.#contexts!.next(want);
      if (ids === null || ids.length === 0) {
        if (contexts > 0) break; // the epoch ends with a shorter window
        if (reopened) throw new RangeError('the context stream is empty');
        this.#epoch += 1;
        await this.#contexts!.close?.();
        this.#contexts = await o.openContexts(undefined);
        this.#windowStart = this.#contexts.state();
        reopened = true;
        continue;
      }
      const count = ids.length / T;
      using acts = await (o.harvest ?? ((x, c) => this.#harvestHook(x, c)))(ids, count);
      // Row c·T + t of the activations is position t of context c; keep P positions of each.
      const pick = new Int32Array(count * P);
      for (let c = 0; c < count; c++) {
        const rng = new Rng(mixSeed([SEED_PURPOSE.CONTEXT_POSITIONS, o.seed, this.#window, contexts + c]));
        const positions = samplePositions(rng, T, P, o.skipFirstPosition ? 1 : 0);
        for (let k = 0; k < P; k++) pick[c * P + k] = c * T + positions[k]!;
      }
      using idx = Tensor.from(pick, [pick.length], { dtype: 'i32', backend: acts.backend });
      await gatherRows(acts, idx, this.#buffer, contexts * P);
      contexts += count;
    }
    this.#rows = contexts * P;
    this.#order = permutation(this.#rows, new Rng(mixSeed([SEED_PURPOSE.HARVEST_WINDOW_ORDER, o.seed, this.#window])));
    this.#offset = 0;
  }

  async #harvestHook(ids: Int32Array, count: number): Promise<Tensor> {
    const { captured } = await this.#o.model.forward(ids, count, { capture: [this.#o.hook] });
    return captured[this.#o.hook]!;
  }
}

/** `count` distinct positions in [from, T), in increasing order (partial Fisher–Yates). */
function samplePositions(rng: Rng, T: number, count: number, from: number): Int32Array {
  const pool = Int32Array.from({ length: T - from }, (_, i) => from + i);
  for (let i = 0; i < count; i++) {
    const j = i + rng.int(pool.length - i);
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.subarray(0, count).sort();
}
