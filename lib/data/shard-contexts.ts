/**
 * Fixed-length token contexts from token shards (lib/data/token-shards.ts): the input of
 * language-model training and activation harvesting when the corpus is already tokenised.
 * Seeded, and resumable exactly from a saved position. It has the shape of lib/data/contexts.ts's
 * ContextStream (`next(count)`, `state()`, `close()`), so it can be a ContextSource of
 * lib/data/lm-activations.ts.
 *
 * The stream is a pure function of (the shards' contents, seed, options):
 * 1. Each shard is cut on its own (a window never spans two shards) into consecutive windows of
 *    W stream tokens, W = contextLength − 1 with a BOS token, contextLength without; the tokens
 *    after the last whole window of a shard (fewer than W) are not used.
 * 2. A context is the BOS token (when bosTokenId is not null) followed by its window's tokens.
 *    The shard's stream already holds the EOS token between documents; as in contexts.ts, a
 *    separator right after the BOS is dropped: a window that begins with the EOS token takes
 *    the W tokens after it instead (overlapping the next window by one token), unless it is the
 *    shard's last window and no token follows.
 * 3. Epoch e serves every window of every shard once, in a Fisher–Yates order of the global
 *    window index drawn from Rng(mixSeed([SHARD_CONTEXT_ORDER, seed, e])). Batches run on across
 *    epoch boundaries; after `epochs` epochs (default 1) next() returns the last, possibly short,
 *    batch and then null.
 * A position is (epoch, index within the epoch's order); restoring draws that epoch's order again
 * and reads nothing else. The shards are closed by close(), or when the last batch is served. Memory: one Uint32Array of the windows of an epoch (4 bytes per
 * context), and the shards' tokens when they fit in `preloadBytes` (read once on opening, served
 * from memory); otherwise tokens are read from the shards per context by positional reads.
 */
import { createHash } from 'node:crypto';

import { Rng } from '../random.js';
import { SEED_PURPOSE, mixSeed, nonNegativeInteger, permutation, positiveInteger } from './stream-common.js';
import { ContextStreamError } from './contexts.js';
import { openTokenShard, readTokenShardHeader, TokenShardError, verifyTokenShard, type TokenShardInfo, type TokenShardReader } from './token-shards.js';

export interface ShardContextOptions {
  /** Token shard files, in this order. */
  paths: string[];
  /** Tokens per context, BOS included. */
  contextLength: number;
  seed: number;
  /** The token every context begins with (the tokenizer's BOS), or null for none. */
  bosTokenId: number | null;
  /**
   * The document separator in the shards' stream (the tokenizer's EOS): dropped right after the
   * BOS. Default: bosTokenId (GPT-2-style tokenizers use one token for both).
   */
  eosTokenId?: number | null;
  /** Passes over the windows (default 1; Infinity: endless). */
  epochs?: number;
  /** Read every shard whole on opening and check its checksum (default false: headers only). */
  verify?: boolean;
  /**
   * Hold the shards' tokens in memory when together they take at most this many bytes on disk
   * (default 512 MiB); larger corpora are read from the files, context by context.
   */
  preloadBytes?: number;
  /** Resume exactly from a position saved by `state()`. */
  state?: ShardContextState;
}

export interface ShardContextState {
  version: 1;
  seed: number;
  /** The epoch being served. */
  epoch: number;
  /** Contexts of that epoch already served. */
  index: number;
  /** Contexts served since the start of the stream. */
  contextsServed: number;
  /** Summary of the shards' contents, the context length and the special tokens. */
  fingerprint: string;
}

export interface ShardContextStream {
  readonly contextLength: number;
  /** The shards, in order. */
  readonly shards: readonly TokenShardInfo[];
  readonly vocabSize: number;
  /** Contexts in one epoch (the windows of all shards). */
  readonly contextsPerEpoch: number;
  /**
   * The next `count` contexts as one [rows, contextLength] row-major array. rows is `count` until
   * the last epoch runs out; the last batch may hold fewer rows; after it (or after close()), null.
   */
  next(count: number): Promise<Int32Array | null>;
  state(): ShardContextState;
  close(): Promise<void>;
}

/** Shards that together take at most this many bytes are read into memory on opening. */
const DEFAULT_PRELOAD_BYTES = 512 * 2 ** 20;

const SHAPE_LABELS = ['shards', 'tokens', 'contextLength', 'bosTokenId', 'eosTokenId', 'shard contents'];

function fingerprintString(shards: readonly TokenShardInfo[], contextLength: number, bos: number | null, eos: number | null): string {
  const contents = createHash('sha256')
    .update(JSON.stringify(shards.map((shard) => [shard.sha256, shard.tokens, shard.vocabSize])))
    .digest('hex')
    .slice(0, 16);
  const tokens = shards.reduce((sum, shard) => sum + shard.tokens, 0);
  return [`${shards.length}s`, `${tokens}t`, `ctx${contextLength}`, `bos${bos ?? 'none'}`, `eos${eos ?? 'none'}`, contents].join('-');
}

/** What differs between two fingerprints, in words. */
function describeDifference(saved: string, current: string): string {
  const savedParts = saved.split('-');
  const currentParts = current.split('-');
  if (savedParts.length !== currentParts.length) return `saved fingerprint "${saved}", now "${current}"`;
  const differences = SHAPE_LABELS.flatMap((label, i) =>
    savedParts[i] === currentParts[i] ? [] : [`${label} (saved ${savedParts[i] ?? '?'}, now ${currentParts[i] ?? '?'})`],
  );
  return differences.length === 0 ? `saved fingerprint "${saved}", now "${current}"` : differences.join('; ');
}

function tokenId(name: string, value: unknown, vocabSize: number): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value >= vocabSize) {
    throw new RangeError(`${name} must be null or an integer in [0, ${vocabSize}) (the shards' vocabulary size) (got ${String(value)})`);
  }
  return value;
}

class ShardContexts implements ShardContextStream {
  readonly contextLength: number;
  readonly shards: readonly TokenShardInfo[];
  readonly vocabSize: number;
  readonly contextsPerEpoch: number;
  readonly #readers: TokenShardReader[];
  readonly #seed: number;
  readonly #epochs: number;
  readonly #fingerprint: string;
  readonly #bos: number | null;
  readonly #eos: number | null;
  /** Stream tokens per window. */
  readonly #width: number;
  /** First global window index of each shard, and the total at the end. */
  readonly #firstWindow: number[];
  #epoch: number;
  #index: number;
  #contextsServed: number;
  #order: Uint32Array | null = null;
  #orderEpoch = -1;
  #closed = false;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    readers: TokenShardReader[],
    settings: { contextLength: number; seed: number; epochs: number; bos: number | null; eos: number | null; fingerprint: string; position: { epoch: number; index: number; contextsServed: number } },
  ) {
    this.#readers = readers;
    this.shards = readers.map((reader) => reader.info);
    this.vocabSize = this.shards[0]!.vocabSize;
    this.contextLength = settings.contextLength;
    this.#seed = settings.seed;
    this.#epochs = settings.epochs;
    this.#bos = settings.bos;
    this.#eos = settings.eos;
    this.#fingerprint = settings.fingerprint;
    this.#width = settings.bos === null ? settings.contextLength : settings.contextLength - 1;
    this.#firstWindow = [0];
    for (const shard of this.shards) this.#firstWindow.push(this.#firstWindow.at(-1)! + Math.floor(shard.tokens / this.#width));
    this.contextsPerEpoch = this.#firstWindow.at(-1)!;
    this.#epoch = settings.position.epoch;
    this.#index = settings.position.index;
    this.#contextsServed = settings.position.contextsServed;
  }

  #orderOf(epoch: number): Uint32Array {
    if (this.#orderEpoch !== epoch || this.#order === null) {
      this.#order = permutation(this.contextsPerEpoch, new Rng(mixSeed([SEED_PURPOSE.SHARD_CONTEXT_ORDER, this.#seed, epoch])));
      this.#orderEpoch = epoch;
    }
    return this.#order;
  }

  /** The shard of global window `window`, and the window's index within it. */
  #locate(window: number): { shard: number; local: number } {
    let low = 0;
    let high = this.shards.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.#firstWindow[middle]! <= window) low = middle;
      else high = middle - 1;
    }
    return { shard: low, local: window - this.#firstWindow[low]! };
  }

  /**
   * Writes the context of global window `window` at out[offset, offset + contextLength), from
   * memory when its shard is preloaded (no await), else by a positional read.
   */
  #fillContext(window: number, out: Int32Array, offset: number): Promise<void> | void {
    const { shard, local } = this.#locate(window);
    const reader = this.#readers[shard]!;
    const start = local * this.#width;
    const canShift = this.#bos !== null && this.#eos !== null && start + this.#width < reader.info.tokens;
    const count = this.#width + (canShift ? 1 : 0);
    const place = (tokens: Int32Array) => {
      let position = offset;
      if (this.#bos !== null) out[position++] = this.#bos;
      const shift = canShift && tokens[0] === this.#eos ? 1 : 0;
      out.set(tokens.subarray(shift, shift + this.#width), position);
    };
    if (reader.preloaded) return place(reader.view(start, count));
    return reader.read(start, count).then(place);
  }

  async #serve(count: number): Promise<Int32Array | null> {
    if (this.#closed) return null;
    const windows: number[] = [];
    let epoch = this.#epoch;
    let index = this.#index;
    while (windows.length < count && epoch < this.#epochs) {
      const order = this.#orderOf(epoch);
      while (windows.length < count && index < order.length) windows.push(order[index++]!);
      if (index === order.length) {
        epoch++;
        index = 0;
      }
    }
    if (windows.length === 0) {
      await this.#release();
      return null;
    }
    const out = new Int32Array(windows.length * this.contextLength);
    const reads = windows.map((window, row) => this.#fillContext(window, out, row * this.contextLength)).filter((r) => r !== undefined);
    if (reads.length > 0) await Promise.all(reads);
    // The position moves only once the batch is read: a failed read leaves state() where it was.
    this.#epoch = epoch;
    this.#index = index;
    this.#contextsServed += windows.length;
    if (this.#epoch >= this.#epochs) await this.#release(); // the last batch: nothing more to read
    return out;
  }

  async #release(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#readers.map((reader) => reader.close()));
  }

  next(count: number): Promise<Int32Array | null> {
    positiveInteger('count', count);
    const result = this.#queue.then(() => this.#serve(count));
    this.#queue = result.catch(() => undefined);
    return result;
  }

  state(): ShardContextState {
    return { version: 1, seed: this.#seed, epoch: this.#epoch, index: this.#index, contextsServed: this.#contextsServed, fingerprint: this.#fingerprint };
  }

  close(): Promise<void> {
    const closing = this.#queue.then(() => this.#release());
    this.#queue = closing.catch(() => undefined);
    return closing;
  }
}

/**
 * Opens the context stream over token shards. Throws TokenShardError for a shard that cannot be
 * read (or fails verification, with `verify`) or whose vocabulary size differs from the first's,
 * ContextStreamError when the shards hold no whole context or `options.state` was saved for other
 * shards or options.
 */
export async function openShardContextStream(options: ShardContextOptions): Promise<ShardContextStream> {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const { paths, seed, state } = options;
  if (!Array.isArray(paths) || paths.length === 0 || !paths.every((path) => typeof path === 'string' && path !== '')) {
    throw new TypeError('paths must be a non-empty array of token shard files');
  }
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer (got ${String(seed)})`);
  const contextLength = positiveInteger('contextLength', options.contextLength);
  const epochs = options.epochs ?? 1;
  if (epochs !== Infinity) positiveInteger('epochs', epochs);
  if (options.bosTokenId === undefined) throw new TypeError('bosTokenId must be given: the BOS token id (tokenizer.bosTokenId), or null for none');

  const preloadBytes = options.preloadBytes ?? DEFAULT_PRELOAD_BYTES;
  if (!(preloadBytes >= 0)) throw new RangeError(`preloadBytes must be a non-negative number (got ${String(preloadBytes)})`);
  const readers: TokenShardReader[] = [];
  try {
    const headers = await Promise.all(paths.map((path) => readTokenShardHeader(path)));
    const preload = headers.reduce((sum, info) => sum + info.tokens * info.tokenBytes, 0) <= preloadBytes;
    for (const path of paths) {
      if (options.verify === true) await verifyTokenShard(path);
      const reader = await openTokenShard(path, { preload });
      readers.push(reader);
      const first = readers[0]!.info;
      if (reader.info.vocabSize !== first.vocabSize) {
        throw new TokenShardError(path, 'vocabSize', `vocabulary size ${reader.info.vocabSize} differs from ${first.path}'s ${first.vocabSize}: the shards come from different tokenizers`);
      }
    }
    const vocabSize = readers[0]!.info.vocabSize;
    const bos = tokenId('bosTokenId', options.bosTokenId, vocabSize);
    const eos = tokenId('eosTokenId', options.eosTokenId === undefined ? bos : options.eosTokenId, vocabSize);
    if (bos !== null && contextLength < 2) throw new RangeError(`contextLength must be at least 2 with a BOS token (got ${contextLength})`);
    const shards = readers.map((reader) => reader.info);
    const fingerprint = fingerprintString(shards, contextLength, bos, eos);

    let position = { epoch: 0, index: 0, contextsServed: 0 };
    if (state !== undefined) {
      if (typeof state !== 'object' || state === null) throw new TypeError('state must be an object saved by state()');
      if (state.version !== 1) throw new RangeError(`state.version must be 1 (got ${String(state.version)})`);
      if (state.seed !== seed) throw new RangeError(`state.seed ${String(state.seed)} differs from the seed option ${seed}; a state resumes only its own stream`);
      if (state.fingerprint !== fingerprint) {
        throw new ContextStreamError(`the shards or options changed since this state was saved: ${describeDifference(String(state.fingerprint), fingerprint)}`);
      }
      position = {
        epoch: nonNegativeInteger('state.epoch', state.epoch),
        index: nonNegativeInteger('state.index', state.index),
        contextsServed: nonNegativeInteger('state.contextsServed', state.contextsServed),
      };
    }
    const stream = new ShardContexts(readers, { contextLength, seed, epochs, bos, eos, fingerprint, position });
    if (stream.contextsPerEpoch === 0) {
      throw new ContextStreamError(
        `the shards hold no whole context of ${contextLength} tokens (${shards.map((shard) => `${shard.path}: ${shard.tokens} tokens`).join(', ')})`,
      );
    }
    if (position.index > stream.contextsPerEpoch || (position.index > 0 && position.epoch >= epochs)) {
      throw new ContextStreamError(`state (epoch ${position.epoch}, index ${position.index}) is past the end of the stream (${epochs} epochs of ${stream.contextsPerEpoch} contexts)`);
    }
    return stream;
  } catch (error) {
    await Promise.all(readers.map((reader) => reader.close()));
    throw error;
  }
}
