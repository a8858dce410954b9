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
 * Overlap: while one window is served, the next is harvested into a second buffer (by default), so
 * reading and tokenising contexts, the host side of the model's forward and the SAE's steps run
 * concurrently; the trainer waits only when a window is used up before its successor is ready.
 * The two chains share the backend, whose ops run one at a time; the order in which they
 * interleave changes nothing in the stream. Serving orders are drawn on a worker thread
 * (lib/data/orders.ts), the next window's while it is harvested.
 *
 * When the context stream ends, it is opened again for the next pass (epoch), told its number, so
 * that a stream may give each pass its own order (lm-run.ts does). With a store
 * (storeRows), the first pass is harvested into one buffer instead, window after window at the
 * store's next free rows and served exactly as above; when it ends, every later pass is served
 * from the store in a fresh order over all of its rows, so the model runs over the corpus once
 * however many passes the SAE makes. A saved position in such a stream resumes by harvesting the
 * first pass again up to it.
 */
import { gatherRows } from '../ops.js';
import { Rng } from '../random.js';
import { Tensor } from '../tensor.js';
import type { Gpt2Model } from '../lm/model.js';
import type { TrainingDataSource } from '../sae/trainer.js';
import { drawOrder } from './orders.js';
import { SEED_PURPOSE, mixSeed } from './stream-common.js';

/** Contexts [count, contextLength] of token ids, null at the end; `state()` a resumable position. */
export interface ContextSource {
  next(count: number): Promise<Int32Array | null>;
  state(): unknown;
  close?(): Promise<void> | void;
}

export interface LmActivationOptions {
  model: Gpt2Model;
  hook: string;
  /**
   * Opens the context stream for pass `pass` over the corpus (0 first) at a saved position within
   * it (undefined: the pass's start). A stream may order each pass differently (lm-run.ts seeds each
   * pass's context order apart); the same pass must give the same stream.
   */
  openContexts: (state: unknown, pass: number) => Promise<ContextSource>;
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
  /** Harvest the next window while this one is served (default true; costs a second window buffer). */
  prefetch?: boolean;
  /**
   * Keep the first pass over the context stream in one buffer of this many rows on the model's
   * backend (at least the pass's: its contexts × positionsPerContext), and serve every later pass
   * from it, each in a fresh order over all of its rows, instead of harvesting again. The first
   * pass is served exactly as without it. Undefined: every pass is harvested.
   */
  storeRows?: number;
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
  /** The context stream's position at the start of the window being served (null: a pass served from the store). */
  contexts: unknown;
  /** Set when the stream keeps its first pass (storeRows): it resumes only with a store. */
  stored?: true;
  /**
   * Set when each pass's context stream is opened with its pass number (openContexts); a position
   * saved without it opens every pass as pass 0, as such streams did, and so resumes exactly.
   */
  passes?: true;
}

/**
 * One window: its rows in `buffer`, served in `order` (on the device, i32; row indices into
 * `buffer`). A harvested window's rows start at `base` of the buffer (the store's next free row,
 * or 0 in a window buffer of its own); a pass served from the store spans all of its rows.
 */
interface Window {
  index: number;
  epoch: number;
  /** The context stream's position at the window's start (null: served from the store). */
  start: unknown;
  buffer: Tensor;
  rows: number;
  orderOnDevice: Tensor;
}

export class LmActivationSource implements TrainingDataSource {
  readonly d: number;
  #o: Required<Omit<LmActivationOptions, 'state' | 'harvest' | 'storeRows'>> & Pick<LmActivationOptions, 'harvest' | 'storeRows'>;
  /** The harvesting chain's position: the context stream, its epoch, the last window index built. */
  #contexts: ContextSource | null = null;
  #epoch = 0;
  #built = -1;
  #current: Window | null = null;
  #offset = 0;
  #rowsServed = 0;
  /** The next window, being harvested (prefetch), and a buffer for the one after. */
  #pending: Promise<Window> | null = null;
  #spare: Tensor | null = null;
  /** The first pass's rows (storeRows), the rows harvested into it, and whether the pass is complete. */
  #store: Tensor | null = null;
  #stored = 0;
  #storeComplete = false;
  /**
   * The serving order of the first pass served from the store, drawn ahead (on the order worker's
   * 'ahead' lane) while the first pass is harvested: the order of storeRows rows, which the caller
   * gives as the pass's length. Drawn only at the switch to the store, an order of millions of rows
   * would keep the trainer waiting (a window is served in tens of ms). Null once taken.
   */
  #firstStoredOrder: Promise<Uint32Array | null> | null = null;
  #closed = false;
  /** Whether the prefetched harvest (#pending) is still running, and when #letHarvestRun last let the event loop turn. */
  #harvesting = false;
  #turned = 0;
  /** Whether openContexts is told the pass (false: a resumed stream saved before it was, every pass as 0). */
  #passNumbers = true;

  private constructor(options: LmActivationOptions, d: number) {
    this.d = d;
    this.#o = { forwardBatch: 16, skipFirstPosition: true, prefetch: true, ...options };
    const o = this.#o;
    const usable = o.contextLength - (o.skipFirstPosition ? 1 : 0);
    if (!Number.isSafeInteger(o.positionsPerContext) || o.positionsPerContext < 1 || o.positionsPerContext > usable) {
      throw new RangeError(`positionsPerContext must be in [1, ${usable}] for contexts of ${o.contextLength} tokens (got ${o.positionsPerContext})`);
    }
    for (const key of ['contextsPerWindow', 'forwardBatch', 'contextLength'] as const) {
      if (!Number.isSafeInteger(o[key]) || o[key] < 1) throw new RangeError(`${key} must be a positive integer (got ${o[key]})`);
    }
    if (o.storeRows !== undefined && (!Number.isSafeInteger(o.storeRows) || o.storeRows < 1 || o.storeRows >= 2 ** 31)) {
      throw new RangeError(`storeRows must be a positive integer below 2^31 (got ${o.storeRows})`);
    }
  }

  /** Opens the stream (at `options.state` when given) and harvests its first window. */
  static async open(options: LmActivationOptions): Promise<LmActivationSource> {
    const width = options.model.hooks.find((h) => h.name === options.hook)?.width;
    if (width === undefined) throw new RangeError(`the model has no hook '${options.hook}'`);
    const source = new LmActivationSource(options, width);
    try {
      const s = options.state;
      if (s && s.version !== 1) throw new RangeError(`unsupported activation-stream state version ${String(s.version)}`);
      if (s && (s.stored === true) !== (options.storeRows !== undefined)) {
        throw new RangeError(`the saved position is of a stream that ${s.stored ? 'keeps' : 'does not keep'} its first pass in memory; resume it with the same setting`);
      }
      if (s) source.#passNumbers = s.passes === true;
      if (options.storeRows !== undefined) {
        source.#store = Tensor.empty([options.storeRows, width], { backend: options.model.backend });
        if (!s || s.epoch <= 1) {
          const ahead = drawOrder(options.storeRows, storedPassSeed(options.seed, 1), 0, 'ahead');
          source.#firstStoredOrder = ahead.catch(() => null); // drawn again at the switch
        }
        source.#contexts = await options.openContexts(undefined, 0);
        source.#current = s ? await source.#replayTo(s) : await source.#harvestWindow();
      } else {
        if (s) {
          source.#epoch = s.epoch;
          source.#built = s.window - 1;
        }
        source.#contexts = await options.openContexts(s?.contexts, source.#pass());
        source.#current = await source.#harvestWindow();
      }
      if (s) {
        if (s.offset > source.#current.rows) throw new RangeError(`the saved offset ${s.offset} is beyond its window's ${source.#current.rows} rows (the corpus or options changed)`);
        source.#offset = s.offset;
        source.#rowsServed = s.rowsServed;
      }
      source.#startPrefetch();
      return source;
    } catch (error) {
      await source.close();
      throw error;
    }
  }

  state(): LmActivationState {
    const w = this.#current!;
    return {
      version: 1,
      epoch: w.epoch,
      window: w.index,
      offset: this.#offset,
      rowsServed: this.#rowsServed,
      contexts: w.start,
      ...(this.#store ? { stored: true as const } : {}),
      ...(this.#passNumbers ? { passes: true as const } : {}),
    };
  }

  /** The pass number openContexts is given for the pass being harvested. */
  #pass(): number {
    return this.#passNumbers ? this.#epoch : 0;
  }

  async next(rows: number, out: Tensor): Promise<void> {
    if (this.#closed) throw new Error('this activation stream is closed');
    if (out.shape.length !== 2 || out.shape[0] !== rows || out.shape[1] !== this.d) {
      throw new RangeError(`out must have shape [${rows}, ${this.d}] (got [${out.shape.join(', ')}])`);
    }
    await this.#letHarvestRun();
    let filled = 0;
    while (filled < rows) {
      if (this.#offset === this.#current!.rows) await this.#advance();
      const w = this.#current!;
      const n = Math.min(rows - filled, w.rows - this.#offset);
      // The order holds rows of the buffer, made here: no index for the device to check.
      await gatherRows(w.buffer, w.orderOnDevice, out, filled, { offset: this.#offset, count: n, indicesChecked: true });
      this.#offset += n;
      filled += n;
    }
    this.#rowsServed += rows;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pending = await this.#pending?.catch(() => null);
    // A finished window's buffer may already be the spare: each tensor is disposed once.
    const owned = new Set<Tensor>();
    for (const window of [this.#current, pending]) {
      if (window) owned.add(window.orderOnDevice).add(window.buffer);
    }
    for (const buffer of [this.#spare, this.#store]) if (buffer) owned.add(buffer);
    for (const tensor of owned) tensor.dispose();
    this.#current = null;
    this.#spare = null;
    this.#store = null;
    this.#firstStoredOrder = null;
    await this.#contexts?.close?.();
  }

  /**
   * Lets the event loop turn, at most once every TURN_MS, while the next window is harvested.
   * That harvest waits on the event loop (tokenizer workers, file reads, the serving order's
   * draws); a reader whose every await is on a promise already settled, as on a backend whose
   * operations only queue device work (CUDA), never lets it turn, and the harvest would stall
   * until the window in use ran out.
   */
  async #letHarvestRun(): Promise<void> {
    if (!this.#harvesting || performance.now() - this.#turned < TURN_MS) return;
    await new Promise((resolve) => setImmediate(resolve));
    this.#turned = performance.now();
  }

  /** Starts harvesting the next window (when prefetching). */
  #startPrefetch(): void {
    if (!this.#o.prefetch) return;
    const pending = this.#harvestWindow();
    this.#harvesting = true;
    // A failure is reported when the window is needed (or dropped at close).
    pending.then(
      () => (this.#harvesting = false),
      () => (this.#harvesting = false),
    );
    this.#pending = pending;
  }

  /** Moves to the next window: the prefetched one, or one harvested now. */
  async #advance(): Promise<void> {
    const finished = this.#current!;
    finished.orderOnDevice.dispose();
    // The finished window's own buffer holds the next harvest (it is served no more).
    if (finished.buffer !== this.#store) this.#spare = finished.buffer;
    let next: Window;
    if (this.#pending) {
      const pending = this.#pending;
      this.#pending = null;
      next = await pending;
    } else {
      next = await this.#harvestWindow();
    }
    this.#current = next;
    this.#offset = 0;
    this.#startPrefetch();
  }

  /**
   * Rebuilds the store up to the saved position `s` by harvesting the first pass again from the
   * context stream's start (the same windows, so the same rows in the same places), and returns
   * the window being served there.
   */
  async #replayTo(s: LmActivationState): Promise<Window> {
    const mismatch = () => new RangeError(`the saved position (pass ${s.epoch}, window ${s.window}) does not match the stream harvested again (the corpus or options changed)`);
    for (;;) {
      const window = await this.#harvestWindow();
      if (window.epoch === 0 && window.index < s.window) {
        window.orderOnDevice.dispose();
        continue;
      }
      if (s.epoch === 0) {
        if (window.index !== s.window || window.epoch !== 0 || JSON.stringify(window.start) !== JSON.stringify(s.contexts)) {
          window.orderOnDevice.dispose();
          throw mismatch();
        }
        return window;
      }
      // The first pass is stored: the saved pass is served from it.
      window.orderOnDevice.dispose();
      // Pass e ≥ 1 is window (windows of the first pass) + e − 1.
      if (window.epoch !== 1 || s.window - window.index !== s.epoch - 1) throw mismatch();
      this.#built = s.window - 1;
      this.#epoch = s.epoch - 1;
      return await this.#storedPass();
    }
  }

  /** The next window: harvested from the context stream, or after the first pass with a store, the next pass over the store. */
  async #harvestWindow(): Promise<Window> {
    if (this.#storeComplete) return this.#storedPass();
    const o = this.#o;
    const T = o.contextLength;
    const P = o.positionsPerContext;
    const store = this.#store;
    const buffer = store ?? this.#spare ?? Tensor.empty([o.contextsPerWindow * P, this.d], { backend: o.model.backend });
    if (buffer === this.#spare) this.#spare = null;
    // Row 0 of this window in its buffer: the store's next free row, or the start of its own buffer.
    const base = store ? this.#stored : 0;
    try {
      const index = ++this.#built;
      // The serving order of a whole window, drawn on the order worker while the window is
      // harvested (it depends only on the seed, the window's index and its rows).
      const orderSeed = mixSeed([SEED_PURPOSE.HARVEST_WINDOW_ORDER, o.seed, index]);
      const fullOrder = drawOrder(o.contextsPerWindow * P, orderSeed, base);
      fullOrder.catch(() => undefined); // awaited below, or not needed (a short window, a failure)
      let start = this.#contexts!.state();
      let contexts = 0;
      let reopened = false;
      while (contexts < o.contextsPerWindow) {
        if (this.#closed) throw new Error('the activation stream was closed'); // a prefetch stops at close
        const want = Math.min(o.forwardBatch, o.contextsPerWindow - contexts);
        const ids = await this.#contexts!.next(want);
        if (ids === null || ids.length === 0) {
          if (contexts > 0) break; // the epoch ends with a shorter window
          if (reopened || (store && this.#stored === 0)) throw new RangeError('the context stream is empty');
          if (store) {
            // The first pass is complete and stored: later passes are served from it.
            this.#storeComplete = true;
            this.#built -= 1;
            await this.#contexts!.close?.();
            this.#contexts = null;
            return await this.#storedPass();
          }
          this.#epoch += 1;
          await this.#contexts!.close?.();
          this.#contexts = await o.openContexts(undefined, this.#pass());
          start = this.#contexts.state();
          reopened = true;
          continue;
        }
        const count = ids.length / T;
        if (store && base + (contexts + count) * P > store.shape[0]!) {
          throw new RangeError(`the first pass holds more than the ${store.shape[0]} rows kept for it (storeRows)`);
        }
        const pick = pickedRows(count, T, P, o.skipFirstPosition ? 1 : 0, (c) => mixSeed([SEED_PURPOSE.CONTEXT_POSITIONS, o.seed, index, contexts + c]));
        using idx = Tensor.from(pick, [pick.length], { dtype: 'i32', backend: buffer.backend });
        // The picked rows of `count` contexts, made here: no index for the device to check.
        const keep = (acts: Tensor) => gatherRows(acts, idx, buffer, base + contexts * P, { indicesChecked: true });
        if (o.harvest) {
          using acts = await o.harvest(ids, count);
          if (acts.shape.length !== 2 || acts.shape[0] !== count * T || acts.shape[1] !== this.d) {
            throw new RangeError(`the harvest of ${count} contexts must be [${count * T}, ${this.d}] (got [${acts.shape.join(', ')}])`);
          }
          await keep(acts);
        } else {
          // The rows are gathered from the model's own buffer at the hook (the forward stops there):
          // no copy of the hook's activations is made.
          await o.model.forward(ids, count, { interventions: { [o.hook]: (acts) => keep(acts) } });
        }
        contexts += count;
      }
      const rows = contexts * P;
      if (store) this.#stored += rows;
      // The epoch's last window may be short: its order is drawn for its own rows.
      const order = contexts === o.contextsPerWindow ? await fullOrder : await drawOrder(rows, orderSeed, base);
      return { index, epoch: this.#epoch, start, buffer, rows, orderOnDevice: orderTensor(order, buffer) };
    } catch (error) {
      if (buffer !== store) buffer.dispose();
      throw error;
    }
  }

  /** The next pass over the store: all of its rows, in an order drawn for that pass (on the order worker). */
  async #storedPass(): Promise<Window> {
    const store = this.#store!;
    const index = ++this.#built;
    const epoch = ++this.#epoch;
    const ahead = this.#firstStoredOrder;
    this.#firstStoredOrder = null;
    // The order drawn ahead is this one where the first pass filled the store exactly (the same n and seed).
    const early = ahead && epoch === 1 && this.#stored === this.#o.storeRows ? await ahead : null;
    const order = early ?? (await drawOrder(this.#stored, storedPassSeed(this.#o.seed, epoch)));
    return { index, epoch, start: null, buffer: store, rows: this.#stored, orderOnDevice: orderTensor(order, store) };
  }
}

/** The seed of the serving order of pass `epoch` (≥ 1) over the store. */
function storedPassSeed(seed: number, epoch: number): number {
  return mixSeed([SEED_PURPOSE.STORED_PASS_ORDER, seed, epoch]);
}

/** The longest a read keeps the event loop from the harvest of the next window, in ms. */
const TURN_MS = 1;

/** A serving order on the buffer's backend: row indices < 2^31 read the same as int32. */
function orderTensor(order: Uint32Array, buffer: Tensor): Tensor {
  return Tensor.from(new Int32Array(order.buffer, order.byteOffset, order.length), [order.length], { dtype: 'i32', backend: buffer.backend });
}

/**
 * The rows kept of the activations of `count` contexts [count · T, d]: P positions of each context c,
 * drawn in [from, T) with the seed positionSeed(c) (all of them, no draws, when P = T − from), as
 * the row indices c·T + t [count · P], ascending within each context. A function of its own: V8
 * optimises its loops within its first calls, where inside the window's async builder they can stay
 * in the interpreter (a millisecond a forward at 32,768 positions).
 */
function pickedRows(count: number, T: number, P: number, from: number, positionSeed: (c: number) => number): Int32Array {
  const pick = new Int32Array(count * P);
  const pool = new Int32Array(T - from);
  for (let c = 0; c < count; c++) {
    if (P === T - from) {
      for (let k = 0; k < P; k++) pick[c * P + k] = c * T + from + k;
      continue;
    }
    const positions = samplePositions(new Rng(positionSeed(c)), T, P, from, pool);
    for (let k = 0; k < P; k++) pick[c * P + k] = c * T + positions[k]!;
  }
  return pick;
}

/**
 * `count` distinct positions in [from, T), in increasing order (partial Fisher–Yates), as a view of
 * `pool` (T − from entries, overwritten).
 */
function samplePositions(rng: Rng, T: number, count: number, from: number, pool: Int32Array): Int32Array {
  const n = T - from;
  for (let i = 0; i < n; i++) pool[i] = from + i;
  for (let i = 0; i < count; i++) {
    const j = i + rng.int(n - i);
    const held = pool[i]!;
    pool[i] = pool[j]!;
    pool[j] = held;
  }
  return pool.subarray(0, count).sort();
}
