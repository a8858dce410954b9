/**
 * A seeded, shuffled, endless stream of activation rows from many files, which can be saved and
 * resumed exactly.
 *
 * The stream is a pure function of (files, seed, chunkRows, bufferChunks), so resuming needs only
 * a position, never the contents of a shuffle buffer:
 * 1. Every file is cut into chunks of `chunkRows` consecutive rows (a file's last chunk shorter).
 * 2. Epoch e lists all chunks in a Fisher–Yates order drawn from Rng(mixSeed(FILE_EPOCH_ORDER, seed, e)).
 * 3. Consecutive groups of `bufferChunks` chunks in that order form windows. A window's rows
 *    (from several files) are read into one buffer and served in a Fisher–Yates order drawn from
 *    Rng(mixSeed(FILE_WINDOW_ORDER, seed, e, window)) (stream-common.ts).
 * 4. Batches run on across window and epoch boundaries.
 * A position is (epoch, window, offset within the window); restoring reads only that window. The
 * next window is read while the current one is served.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { createHash } from 'node:crypto';

import { glob } from 'tinyglobby';

import { Rng } from '../random.js';
import { drawOrder } from './orders.js';
import { SEED_PURPOSE, mixSeed, nonNegativeInteger, permutation, positiveInteger } from './stream-common.js';
import { ACTIVATION_EXTENSIONS, MANIFEST_FORMAT, openActivationFiles, readActivationManifest, type ActivationDescription, type ActivationFile } from './activation-files.js';

export interface ActivationSourceOptions {
  /** Files, directories (every .safetensors, .npy and manifest .json directly inside, sorted) or globs. */
  paths: string[];
  seed: number;
  /** Tensor to read from .safetensors files (default: each file's only 2-D tensor). */
  tensor?: string;
  /** Rows read contiguously from one file at a time (default 1024). */
  chunkRows?: number;
  /**
   * Chunks mixed together in one shuffle window (default 64). Two windows are held in memory (the
   * one served and the one read ahead): 2 × bufferChunks × chunkRows × d × 4 bytes, 256 MiB at d = 512.
   */
  bufferChunks?: number;
  /** Resume exactly from a position saved by `state()`. */
  state?: ActivationSourceState;
}

export interface ActivationSourceState {
  version: 1;
  seed: number;
  epoch: number;
  window: number;
  /** Rows of the window already served. */
  offset: number;
  /** Rows served since the start of epoch 0. */
  rowsServed: number;
  /** Summary of the file list, row counts, widths and chunking the position refers to. */
  fingerprint: string;
}

export interface ActivationSource {
  readonly d: number;
  readonly rowsPerEpoch: number;
  /** The data files read, in chunking order (a manifest contributes its shards). */
  readonly files: readonly string[];
  /** The next `batch` rows (batch*d floats, row-major), in a fresh Float32Array or into `out`. Loops over epochs forever. */
  next(batch: number, out?: Float32Array): Promise<Float32Array>;
  state(): ActivationSourceState;
  close(): Promise<void>;
}

/** The data cannot form a stream (nothing matched, mixed widths, an empty file, a changed data set). */
export class ActivationSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ActivationSourceError';
  }
}

export const SOURCE_DEFAULTS = { chunkRows: 1024, bufferChunks: 64 } as const;

async function isManifest(path: string): Promise<boolean> {
  try {
    const json = JSON.parse(await readFile(path, 'utf8')) as unknown;
    return typeof json === 'object' && json !== null && (json as { format?: unknown }).format === MANIFEST_FORMAT;
  } catch {
    return false;
  }
}

const hasActivationExtension = (path: string): boolean =>
  (ACTIVATION_EXTENSIONS as readonly string[]).includes(extname(path).toLowerCase());

/**
 * The activation files named by `patterns`, in pattern order, each pattern's matches sorted,
 * duplicates dropped. A named file is taken as is; in directories and glob matches, only files
 * with a known extension are kept, and of .json files only activation manifests.
 */
export async function resolveActivationPaths(patterns: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  for (const pattern of patterns) {
    const info = await stat(pattern).catch(() => undefined);
    if (info?.isFile()) {
      found.push(resolve(pattern));
      continue;
    }
    let candidates: string[];
    if (info?.isDirectory()) {
      const names = await readdir(pattern);
      candidates = names.map((name) => resolve(join(pattern, name)));
      const isFile = await Promise.all(candidates.map(async (path) => (await stat(path).catch(() => undefined))?.isFile() === true));
      candidates = candidates.filter((_, i) => isFile[i]);
    } else {
      candidates = await glob(pattern, { absolute: true, onlyFiles: true, expandDirectories: false });
    }
    const kept: string[] = [];
    for (const path of candidates.filter(hasActivationExtension)) {
      if (extname(path).toLowerCase() !== '.json' || (await isManifest(path))) kept.push(path);
    }
    found.push(...kept.sort());
  }
  return [...new Set(found)];
}

/**
 * What the activations named by `patterns` are of, field by field: a field is known when every
 * file is a manifest whose `describes` gives it the same value, else null.
 */
export async function describeActivations(patterns: readonly string[]): Promise<ActivationDescription> {
  const unknown: ActivationDescription = { modelName: null, hookName: null, contextSize: null, datasetPath: null };
  const paths = await resolveActivationPaths(patterns);
  const described: ActivationDescription[] = [];
  for (const path of paths) {
    if (extname(path).toLowerCase() !== '.json') return unknown;
    const describes = (await readActivationManifest(path)).describes;
    if (!describes) return unknown;
    described.push(describes);
  }
  if (described.length === 0) return unknown;
  const agreed = <K extends keyof ActivationDescription>(key: K): ActivationDescription[K] =>
    described.every((d) => d[key] === described[0]![key]) ? described[0]![key] : null;
  return { modelName: agreed('modelName'), hookName: agreed('hookName'), contextSize: agreed('contextSize'), datasetPath: agreed('datasetPath') };
}

interface Fingerprint {
  files: number;
  rows: number;
  chunkRows: number;
  bufferChunks: number;
  hash: string;
}

function fingerprintString(f: Fingerprint): string {
  return `${f.files}f-${f.rows}r-${f.chunkRows}c-${f.bufferChunks}b-${f.hash}`;
}

function parseFingerprint(text: string): Fingerprint | undefined {
  const match = /^(\d+)f-(\d+)r-(\d+)c-(\d+)b-([0-9a-f]+)$/.exec(text);
  if (match === null) return undefined;
  return { files: Number(match[1]), rows: Number(match[2]), chunkRows: Number(match[3]), bufferChunks: Number(match[4]), hash: match[5]! };
}

/**
 * Names (not directories, so a moved data set still matches), rows, widths, storage dtypes and the
 * recorded SHA-256 (manifest shards) of the files: two activation caches of the same size tell
 * apart by their contents. `legacy`: the names, rows and widths only, as states saved before the
 * contents counted were made (still accepted, so those runs resume).
 */
function computeFingerprint(files: readonly ActivationFile[], chunkRows: number, bufferChunks: number, legacy = false): Fingerprint {
  const summary = JSON.stringify(
    files.map((file) => (legacy ? [basename(file.path), file.rows, file.d] : [basename(file.path), file.rows, file.d, file.dtype, file.sha256 ?? null])),
  );
  return {
    files: files.length,
    rows: files.reduce((sum, file) => sum + file.rows, 0),
    chunkRows,
    bufferChunks,
    hash: createHash('sha256').update(summary).digest('hex').slice(0, 16),
  };
}

function describeFingerprint(text: string): string {
  const f = parseFingerprint(text);
  return f === undefined
    ? `"${text}"`
    : `${f.files} files, ${f.rows} rows, chunkRows ${f.chunkRows}, bufferChunks ${f.bufferChunks}, files hash ${f.hash}`;
}

/** One window read into memory with the order its rows are served in. */
interface LoadedWindow {
  epoch: number;
  window: number;
  rows: number;
  /** [rows, d] row-major, in chunk order. */
  data: Float32Array;
  /** Row indices into `data` in serving order. */
  order: Uint32Array;
}

class ShuffledActivationSource implements ActivationSource {
  readonly d: number;
  readonly rowsPerEpoch: number;
  readonly files: readonly string[];

  readonly #open: readonly ActivationFile[];
  readonly #seed: number;
  readonly #chunkRows: number;
  readonly #bufferChunks: number;
  readonly #fingerprint: string;
  /** The fingerprint a state saved before the files' contents counted holds for these files. */
  readonly #legacyFingerprint: string;
  /** Chunk c covers rows [chunkStart[c], chunkStart[c] + chunkLength[c]) of file chunkFile[c]. */
  readonly #chunkFile: Uint32Array;
  readonly #chunkStart: Float64Array;
  readonly #chunkLength: Uint32Array;
  readonly #windowsPerEpoch: number;
  /** Chunk orders of the (at most two) epochs in use. */
  #epochOrders = new Map<number, Uint32Array>();

  #current!: LoadedWindow;
  #offset = 0;
  #rowsServed = 0;
  /** The window after #current, being read into the other buffer. */
  #pending!: Promise<LoadedWindow>;
  /** Serialises next() calls. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(files: ActivationFile[], seed: number, chunkRows: number, bufferChunks: number) {
    this.#open = files;
    this.files = files.map((file) => file.path);
    this.d = files[0]!.d;
    this.rowsPerEpoch = files.reduce((sum, file) => sum + file.rows, 0);
    this.#seed = seed;
    this.#chunkRows = chunkRows;
    this.#bufferChunks = bufferChunks;
    this.#fingerprint = fingerprintString(computeFingerprint(files, chunkRows, bufferChunks));
    this.#legacyFingerprint = fingerprintString(computeFingerprint(files, chunkRows, bufferChunks, true));

    const chunkCount = files.reduce((sum, file) => sum + Math.ceil(file.rows / chunkRows), 0);
    this.#chunkFile = new Uint32Array(chunkCount);
    this.#chunkStart = new Float64Array(chunkCount);
    this.#chunkLength = new Uint32Array(chunkCount);
    let c = 0;
    for (const [f, file] of files.entries()) {
      for (let start = 0; start < file.rows; start += chunkRows, c++) {
        this.#chunkFile[c] = f;
        this.#chunkStart[c] = start;
        this.#chunkLength[c] = Math.min(chunkRows, file.rows - start);
      }
    }
    this.#windowsPerEpoch = Math.ceil(chunkCount / bufferChunks);
  }

  /** Reads the window at (epoch, window) and starts reading the one after it. */
  async start(epoch: number, window: number, offset: number, rowsServed: number): Promise<void> {
    const longestFile = this.#open.reduce((most, file) => Math.max(most, file.rows), 0);
    const windowValues = Math.min(this.#bufferChunks * Math.min(this.#chunkRows, longestFile), this.rowsPerEpoch) * this.d;
    const buffers = [new Float32Array(windowValues), new Float32Array(windowValues)] as const;
    this.#current = await this.#load(epoch, window, buffers[0]);
    this.#offset = offset;
    this.#rowsServed = rowsServed;
    this.#prefetch(buffers[1]);
  }

  #chunkOrder(epoch: number): Uint32Array {
    let order = this.#epochOrders.get(epoch);
    if (order === undefined) {
      order = permutation(this.#chunkFile.length, new Rng(mixSeed([SEED_PURPOSE.FILE_EPOCH_ORDER, this.#seed, epoch])));
      for (const cached of this.#epochOrders.keys()) if (cached < epoch - 1 || cached > epoch) this.#epochOrders.delete(cached);
      this.#epochOrders.set(epoch, order);
    }
    return order;
  }

  /** Chunks of a window: indices [first, last) into the epoch's chunk order. */
  #windowRange(window: number): [number, number] {
    const first = window * this.#bufferChunks;
    return [first, Math.min(first + this.#bufferChunks, this.#chunkFile.length)];
  }

  /** Rows in a window. */
  windowRows(epoch: number, window: number): number {
    const order = this.#chunkOrder(epoch);
    const [first, last] = this.#windowRange(window);
    let rows = 0;
    for (let k = first; k < last; k++) rows += this.#chunkLength[order[k]!]!;
    return rows;
  }

  async #load(epoch: number, window: number, into: Float32Array): Promise<LoadedWindow> {
    const order = this.#chunkOrder(epoch);
    const [first, last] = this.#windowRange(window);
    let rows = 0;
    const reads: Promise<void>[] = [];
    for (let k = first; k < last; k++) {
      const c = order[k]!;
      const file = this.#open[this.#chunkFile[c]!]!;
      reads.push(file.readRows(this.#chunkStart[c]!, this.#chunkLength[c]!, into, rows * this.d));
      rows += this.#chunkLength[c]!;
    }
    // The rows' order is drawn on the order worker while the reads run.
    const rowOrder = drawOrder(rows, mixSeed([SEED_PURPOSE.FILE_WINDOW_ORDER, this.#seed, epoch, window]));
    // allSettled: no read may still be writing into the buffer once this returns or throws.
    const settled = await Promise.allSettled([...reads, rowOrder]);
    for (const result of settled) if (result.status === 'rejected') throw result.reason;
    return { epoch, window, rows, data: into, order: await rowOrder };
  }

  #following(epoch: number, window: number): [number, number] {
    return window + 1 < this.#windowsPerEpoch ? [epoch, window + 1] : [epoch + 1, 0];
  }

  #prefetch(into: Float32Array): void {
    const [epoch, window] = this.#following(this.#current.epoch, this.#current.window);
    const pending = this.#load(epoch, window, into);
    pending.catch(() => undefined); // the failure is reported when the window is needed
    this.#pending = pending;
  }

  async #advance(): Promise<void> {
    const spare = this.#current.data;
    this.#current = await this.#pending;
    this.#offset = 0;
    this.#prefetch(spare);
  }

  async #serve(batch: number, out: Float32Array): Promise<Float32Array> {
    const d = this.d;
    let filled = 0; // rows of out written
    while (filled < batch) {
      if (this.#offset === this.#current.rows) await this.#advance();
      const { data, order, rows } = this.#current;
      const take = Math.min(batch - filled, rows - this.#offset);
      copyRowsInOrder(data, order, this.#offset, take, d, out, filled);
      this.#offset += take;
      this.#rowsServed += take;
      filled += take;
    }
    return out;
  }

  async next(batch: number, out?: Float32Array): Promise<Float32Array> {
    if (this.#closed) throw new Error('next() on a closed ActivationSource');
    positiveInteger('batch', batch);
    if (out !== undefined && !(out instanceof Float32Array)) throw new TypeError('out must be a Float32Array');
    if (out !== undefined && out.length !== batch * this.d) {
      throw new RangeError(`out.length must be batch * d = ${batch} * ${this.d} = ${batch * this.d} (got ${out.length})`);
    }
    const target = out ?? new Float32Array(batch * this.d);
    const result = this.#queue.then(() => this.#serve(batch, target));
    this.#queue = result.catch(() => undefined);
    return result;
  }

  state(): ActivationSourceState {
    let { epoch, window } = this.#current;
    let offset = this.#offset;
    if (offset === this.#current.rows) [epoch, window, offset] = [...this.#following(epoch, window), 0];
    return { version: 1, seed: this.#seed, epoch, window, offset, rowsServed: this.#rowsServed, fingerprint: this.#fingerprint };
  }

  /** Throws unless `state` is a position of this very stream (same seed, data and chunking). */
  checkState(state: ActivationSourceState): void {
    if (typeof state !== 'object' || state === null) throw new TypeError('state must be an object saved by state()');
    if (state.version !== 1) throw new RangeError(`state.version must be 1 (got ${String(state.version)})`);
    if (state.seed !== this.#seed) {
      throw new RangeError(`state.seed ${String(state.seed)} differs from the seed option ${this.#seed}; a state resumes only its own stream`);
    }
    if (state.fingerprint !== this.#fingerprint && state.fingerprint !== this.#legacyFingerprint) {
      throw new ActivationSourceError(
        `the data changed since this state was saved: it was saved for ${describeFingerprint(String(state.fingerprint))}, ` +
          `but the files now give ${describeFingerprint(this.#fingerprint)}`,
      );
    }
    const epoch = nonNegativeInteger('state.epoch', state.epoch);
    const window = nonNegativeInteger('state.window', state.window);
    const offset = nonNegativeInteger('state.offset', state.offset);
    const rowsServed = nonNegativeInteger('state.rowsServed', state.rowsServed);
    if (window >= this.#windowsPerEpoch) throw new RangeError(`state.window ${window} is past the last window (${this.#windowsPerEpoch - 1})`);
    const rows = this.windowRows(epoch, window);
    if (offset >= rows) throw new RangeError(`state.offset ${offset} is past the end of window ${window} (${rows} rows)`);
    let rowsBefore = epoch * this.rowsPerEpoch + offset;
    for (let w = 0; w < window; w++) rowsBefore += this.windowRows(epoch, w);
    if (rowsBefore !== rowsServed) {
      throw new RangeError(`state.rowsServed ${rowsServed} does not match its position (epoch ${epoch}, window ${window}, offset ${offset} = row ${rowsBefore})`);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    await this.#pending?.catch(() => undefined);
    await Promise.all(this.#open.map((file) => file.close()));
  }
}

export async function openActivationSource(options: ActivationSourceOptions): Promise<ActivationSource> {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const { paths, seed, tensor, state } = options;
  if (!Array.isArray(paths) || paths.length === 0 || !paths.every((path) => typeof path === 'string')) {
    throw new TypeError('paths must be a non-empty array of file, directory or glob strings');
  }
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer (got ${String(seed)})`);
  const chunkRows = positiveInteger('chunkRows', options.chunkRows ?? SOURCE_DEFAULTS.chunkRows);
  const bufferChunks = positiveInteger('bufferChunks', options.bufferChunks ?? SOURCE_DEFAULTS.bufferChunks);

  const resolved = await resolveActivationPaths(paths);
  if (resolved.length === 0) {
    throw new ActivationSourceError(`no activation files (.safetensors, .npy or manifest .json) matched ${paths.map((p) => `"${p}"`).join(', ')}`);
  }
  const files: ActivationFile[] = [];
  try {
    for (const path of resolved) files.push(...(await openActivationFiles(path, tensor === undefined ? {} : { tensor })));
    const first = files[0]!;
    for (const file of files) {
      if (file.rows === 0) throw new ActivationSourceError(`${file.path} holds 0 rows`);
      if (file.d !== first.d) {
        throw new ActivationSourceError(`activation widths differ: ${first.path} has d=${first.d} but ${file.path} has d=${file.d}`);
      }
    }
    const source = new ShuffledActivationSource(files, seed, chunkRows, bufferChunks);
    if (state === undefined) {
      await source.start(0, 0, 0, 0);
    } else {
      source.checkState(state);
      await source.start(state.epoch, state.window, state.offset, state.rowsServed);
    }
    return source;
  } catch (error) {
    await Promise.all(files.map((file) => file.close()));
    throw error;
  }
}

/**
 * Rows order[first .. first + count − 1] of data [rows, d] into out [.., d] from row `to` on. A
 * function of its own, which V8 optimises within its first calls (inside the async server the loop
 * can stay in the interpreter).
 */
function copyRowsInOrder(data: Float32Array, order: Uint32Array, first: number, count: number, d: number, out: Float32Array, to: number): void {
  for (let i = 0; i < count; i++) {
    const from = order[first + i]! * d; // row start in data [rows, d]
    const at = (to + i) * d; // row start in out [batch, d]
    if (d >= 32) out.set(data.subarray(from, from + d), at);
    else for (let j = 0; j < d; j++) out[at + j] = data[from + j]!;
  }
}
