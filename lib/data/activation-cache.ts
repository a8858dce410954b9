/**
 * An on-disk activation cache, so harvested activations can be reused across runs: raw
 * little-endian shards (f32 or bf16) described by the raw-shard manifest that activation files
 * are read from (lib/data/activation-files.ts), each shard with its SHA-256.
 *
 * Building is interruptible: every shard is written to a temporary file, fsynced and renamed, then
 * `manifest.json` and `cache-build.json` (the source's position after the last complete shard)
 * are rewritten atomically. A build that stopped resumes from the last complete shard by reopening
 * the source at the saved position, and produces exactly the shards of an uninterrupted build.
 *
 * `cache-build.json` also records what the cache is of (`of`: the options that shape the source's
 * stream, and the identity of its input files such as the model), and a resume or re-run whose
 * record differs is refused, so two streams are never mixed in one cache. Before resuming (or
 * reporting a complete cache), the shards already written are checked against their sizes and
 * checksums; from the first bad one on, the cache is built again from the source's position at
 * that shard's start (also recorded), giving the same shards as before.
 */
import type { Stats } from 'node:fs';
import { open, readdir, readFile, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { float32ToBf16 } from '../bf16.js';
import { removeAbandonedTempFiles, writeFileAtomic } from '../io/atomic.js';
import { withFolderLock } from '../io/folder-lock.js';
import { makeFolder } from '../io/folders.js';
import { sha256Hex } from '../io/large-files.js';
import { foreignEntries } from '../io/run-folder.js';
import { Tensor } from '../tensor.js';
import type { BackendName } from '../backend.js';
import type { TrainingDataSource } from '../sae/trainer.js';
import { type ActivationDescription, MANIFEST_FORMAT, sha256OfFile } from './activation-files.js';

export interface CacheShard {
  path: string;
  rows: number;
  sha256: string;
}

export interface CacheManifest {
  format: typeof MANIFEST_FORMAT;
  version: 1;
  dtype: 'f32' | 'bf16';
  d: number;
  shards: CacheShard[];
  describes?: ActivationDescription;
  /** While the build has not finished: the rows it plans (readers refuse such a manifest). */
  incomplete?: { rows: number };
}

interface BuildState {
  version: 1;
  rows: number;
  shardRows: number;
  dtype: 'f32' | 'bf16';
  rowsWritten: number;
  complete: boolean;
  /** The source's position after the last complete shard. */
  source: unknown;
  /** The source's position at the start of each shard written (null: the source's start). Absent in states of older versions. */
  starts?: unknown[];
  /** What the cache is of: BuildCacheOptions.of, and the identities of BuildCacheOptions.inputs. Absent in states of older versions. */
  of?: Record<string, unknown>;
}

/** A file or folder as recorded: its resolved path, and the size and modification time of the file (of a folder, of each file directly inside). */
interface InputIdentity {
  path: string;
  files: Record<string, { bytes: number; modified: string }>;
}

export interface BuildCacheOptions {
  dir: string;
  /** Opens the source at a saved position (undefined: its start). */
  openSource: (state: unknown) => Promise<TrainingDataSource>;
  /** Rows to cache. */
  rows: number;
  shardRows?: number;
  dtype?: 'f32' | 'bf16';
  /**
   * The options that shape the source's stream (hook, context length, seed, corpus paths, …), as
   * JSON values; a resume or re-run whose values differ is refused, naming the keys that differ.
   */
  of?: Record<string, unknown>;
  /**
   * Maps the `of` a cache-build.json holds to this version's form before the two are compared
   * (keys an older version recorded that no longer shape the stream, paths it kept as typed).
   */
  savedOf?: (saved: Record<string, unknown>) => Record<string, unknown>;
  /**
   * Files or folders the stream is made from (the model's folder), by name; recorded and compared
   * like `of`, by identity (see inputIdentity).
   */
  inputs?: Record<string, string>;
  /** What the activations are of, written into the manifest for the SAEs trained on them. */
  describes?: ActivationDescription;
  backend?: BackendName;
  /** Stops after the current shard (the build resumes later). */
  signal?: AbortSignal;
  log?: (line: string) => void;
}

export interface BuildCacheResult {
  manifest: string;
  rows: number;
  shards: number;
  resumedFrom: number;
  complete: boolean;
}

export class ActivationCacheError extends Error {
  readonly path: string;
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'ActivationCacheError';
    this.path = file;
  }
}

const BUILD_FILE = 'cache-build.json';
const MANIFEST_FILE = 'manifest.json';
const SHARD_NAME = /^acts-\d{6,}\.bin$/;

/**
 * A build's own file in a cache folder with no build record: a shard, or a manifest of this
 * cache's shards (a build stopped between its first shard's manifest and its first record leaves
 * those).
 */
async function builtHere(dir: string, name: string): Promise<boolean> {
  if (SHARD_NAME.test(name)) return true;
  if (name !== MANIFEST_FILE) return false;
  const manifest = await readJson<Partial<CacheManifest>>(path.join(dir, name)).catch(() => null);
  return manifest?.format === MANIFEST_FORMAT && Array.isArray(manifest.shards) && manifest.shards.every((s) => SHARD_NAME.test(String(s?.path)));
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ActivationCacheError(file, `unreadable (${(error as Error).message})`);
  }
}

/**
 * How an input file or folder is recorded: its resolved path, and the size and modification time
 * of the file (of a folder, of each non-hidden file directly inside, links followed). For a model
 * folder that covers the weights, config.json and tokenizer.json with a few stat calls and no
 * reading: a model replaced, edited or given by another path is told apart, and so is a copy with
 * new times, whose resume is then refused although it would be safe. (A hash of config.json and
 * the safetensors header would not tell two trainings of one architecture apart; a hash of the
 * weights would mean reading them all again.)
 */
async function inputIdentity(name: string, file: string): Promise<InputIdentity> {
  const resolved = path.resolve(file);
  const describe = (info: Stats) => ({ bytes: info.size, modified: info.mtime.toISOString() });
  let info: Stats;
  try {
    info = await stat(resolved);
  } catch (error) {
    throw new ActivationCacheError(resolved, `${name}: cannot be examined (${(error as Error).message})`);
  }
  if (!info.isDirectory()) return { path: resolved, files: { [path.basename(resolved)]: describe(info) } };
  const files: InputIdentity['files'] = {};
  for (const entry of (await readdir(resolved)).sort()) {
    if (entry.startsWith('.')) continue;
    const inside = await stat(path.join(resolved, entry)).catch(() => undefined);
    if (inside?.isFile()) files[entry] = describe(inside);
  }
  return { path: resolved, files };
}

/** The record of what the cache is of (options.of and the identities of options.inputs), in its JSON form. */
async function buildRecord(options: BuildCacheOptions): Promise<Record<string, unknown>> {
  const record: Record<string, unknown> = { ...options.of };
  for (const [name, file] of Object.entries(options.inputs ?? {})) record[name] = await inputIdentity(name, file);
  return JSON.parse(JSON.stringify(record)) as Record<string, unknown>;
}

function isIdentity(value: unknown): value is InputIdentity {
  return typeof value === 'object' && value !== null && typeof (value as InputIdentity).path === 'string' && typeof (value as InputIdentity).files === 'object';
}

/** The keys on which two records differ, each with what changed, in words. */
function recordDifferences(saved: Record<string, unknown>, now: Record<string, unknown>): string[] {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const show = (value: unknown) => (value === undefined ? 'none' : isIdentity(value) ? value.path : typeof value === 'string' ? value : JSON.stringify(value));
  return [...new Set([...Object.keys(saved), ...Object.keys(now)])].flatMap((key) => {
    const [was, is] = [saved[key], now[key]];
    if (same(was, is)) return [];
    if (isIdentity(was) && isIdentity(is) && was.path === is.path) {
      const changed = [...new Set([...Object.keys(was.files), ...Object.keys(is.files)])].filter((name) => !same(was.files[name], is.files[name]));
      return [`${key} (${is.path}: ${changed.join(', ')} changed since)`];
    }
    return [`${key} (saved ${show(was)}, now ${show(is)})`];
  });
}

/** What is wrong with a shard (missing, wrong size, checksum), or null when it is sound. Reads it whole. */
async function shardProblem(dir: string, shard: CacheShard, d: number, dtype: 'f32' | 'bf16'): Promise<string | null> {
  const file = path.join(dir, shard.path);
  const need = shard.rows * d * (dtype === 'bf16' ? 2 : 4);
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `unreadable (${(error as Error).message})`;
  }
  try {
    const size = (await handle.stat()).size;
    if (size !== need) return `holds ${size} bytes; ${shard.rows} rows of ${d} ${dtype} need ${need} (truncated?)`;
    return (await sha256OfFile(handle, size, file)) === shard.sha256 ? null : 'fails its SHA-256 check (corrupt)';
  } finally {
    await handle.close();
  }
}

/** Builds (or resumes building) the cache in options.dir; one build at a time per folder (lib/io/folder-lock.ts). */
export async function buildActivationCache(options: BuildCacheOptions): Promise<BuildCacheResult> {
  return withFolderLock(options.dir, () => buildLocked(options));
}

async function buildLocked(options: BuildCacheOptions): Promise<BuildCacheResult> {
  const shardRows = options.shardRows ?? 65_536;
  const dtype = options.dtype ?? 'f32';
  if (!Number.isSafeInteger(options.rows) || options.rows < 1) throw new RangeError(`rows must be a positive integer (got ${options.rows})`);
  if (!Number.isSafeInteger(shardRows) || shardRows < 1) throw new RangeError(`shardRows must be a positive integer (got ${shardRows})`);
  if (dtype !== 'f32' && dtype !== 'bf16') throw new TypeError(`dtype must be 'f32' or 'bf16' (got ${JSON.stringify(dtype)})`);
  await makeFolder(options.dir);
  // A build killed mid-write leaves its temporary file (up to a shard's size) behind.
  await removeAbandonedTempFiles(options.dir, (target) => target === BUILD_FILE || target === MANIFEST_FILE || SHARD_NAME.test(target));
  const buildFile = path.join(options.dir, BUILD_FILE);
  const manifestFile = path.join(options.dir, MANIFEST_FILE);
  const of = await buildRecord(options);
  const saved = await readJson<BuildState>(buildFile);
  if (!saved) {
    const foreign = await foreignEntries(options.dir, (name) => builtHere(options.dir, name));
    if (foreign.length > 0) {
      throw new ActivationCacheError(options.dir, `holds files that are not an activation cache's (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}): a build would replace files there; choose a new or empty folder`);
    }
  }
  if (saved && (saved.rows !== options.rows || saved.shardRows !== shardRows || saved.dtype !== dtype)) {
    throw new ActivationCacheError(buildFile, `a cache of ${saved.rows} rows in shards of ${saved.shardRows} (${saved.dtype}) is being built here; options ask for ${options.rows}, ${shardRows} (${dtype})`);
  }
  // A state written by an older version records no `of`: only its rows, shards and dtype are checked.
  const differences = saved?.of ? recordDifferences(options.savedOf ? options.savedOf(saved.of) : saved.of, of) : [];
  if (differences.length > 0) {
    throw new ActivationCacheError(buildFile, `the cache here is of other options: ${differences.join('; ')}; give the same options, or another folder`);
  }
  const manifest: CacheManifest | null = saved && saved.rowsWritten > 0 ? await readJson<CacheManifest>(manifestFile) : null;
  // cache-build.json is the commit record: the manifest may list one shard more if a build
  // stopped between the two writes; that shard is written again.
  let written = saved?.rowsWritten ?? 0;
  const shards: CacheShard[] = [];
  let covered = 0;
  for (const shard of manifest?.shards ?? []) {
    if (covered + shard.rows > written) break;
    shards.push(shard);
    covered += shard.rows;
  }
  if (covered !== written) throw new ActivationCacheError(manifestFile, `lists ${covered} rows where ${BUILD_FILE} records ${written}; delete the cache folder to rebuild it`);
  const starts = saved?.starts ?? [];
  let position = saved?.source;
  // The shards already written are checked before they are built on or reported as cached. Cost:
  // one read and SHA-256 pass over them (SHA-256 runs at about 0.5–2 GB/s), far less than harvesting them.
  for (const [i, shard] of shards.entries()) {
    const problem = await shardProblem(options.dir, shard, manifest!.d, dtype);
    if (problem === null) continue;
    const file = path.join(options.dir, shard.path);
    if (starts.length < shards.length) {
      throw new ActivationCacheError(file, `${problem}; ${BUILD_FILE} (of an older version) holds no position to build it again from: delete the cache folder to rebuild it`);
    }
    written -= shards.splice(i).reduce((sum, s) => sum + s.rows, 0);
    position = starts.splice(i)[0] ?? undefined;
    options.log?.(`${file}: ${problem}; building the cache again from it (row ${written})`);
    break;
  }
  if (saved?.complete && written === saved.rowsWritten) {
    return { manifest: manifestFile, rows: written, shards: shards.length, resumedFrom: written, complete: true };
  }
  const source = await options.openSource(position);
  const resumedFrom = written;
  const d = source.d;
  const tensors = new Map<number, Tensor>();
  try {
    if (manifest && shards.length > 0 && manifest.d !== d) {
      throw new ActivationCacheError(manifestFile, `holds rows of width ${manifest.d}, but the source gives ${d}: give the options the cache was started with`);
    }
    if (resumedFrom > 0) options.log?.(`resuming the cache build at row ${resumedFrom} of ${options.rows}`);
    while (written < options.rows) {
      const n = Math.min(shardRows, options.rows - written);
      let t = tensors.get(n);
      if (!t) tensors.set(n, (t = Tensor.empty([n, d], options.backend ? { backend: options.backend } : {})));
      await source.next(n, t);
      const values = t.toArray() as Float32Array;
      const bytes = dtype === 'f32' ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength) : new Uint8Array(float32ToBf16(values).buffer);
      const name = `acts-${String(shards.length).padStart(6, '0')}.bin`;
      await writeFileAtomic(path.join(options.dir, name), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      shards.push({ path: name, rows: n, sha256: sha256Hex(bytes) });
      starts.push(position ?? null);
      written += n;
      position = structuredClone(source.state());
      const next: CacheManifest = {
        format: MANIFEST_FORMAT,
        version: 1,
        dtype,
        d,
        shards,
        ...(options.describes ? { describes: options.describes } : {}),
        ...(written < options.rows ? { incomplete: { rows: options.rows } } : {}),
      };
      await writeFileAtomic(manifestFile, `${JSON.stringify(next, null, 2)}\n`);
      const state: BuildState = { version: 1, rows: options.rows, shardRows, dtype, rowsWritten: written, complete: written >= options.rows, source: position, of, starts };
      await writeFileAtomic(buildFile, `${JSON.stringify(state)}\n`);
      if (options.signal?.aborted && written < options.rows) break;
    }
  } finally {
    for (const t of tensors.values()) t.dispose();
    await source.close();
  }
  return { manifest: manifestFile, rows: written, shards: shards.length, resumedFrom, complete: written >= options.rows };
}

/** Checks every shard of a cache against the manifest's sizes and SHA-256; throws on the first bad one. */
export async function verifyActivationCache(dir: string): Promise<{ shards: number; rows: number }> {
  const manifestFile = path.join(dir, MANIFEST_FILE);
  const manifest = await readJson<CacheManifest>(manifestFile);
  if (!manifest) throw new ActivationCacheError(manifestFile, 'missing');
  let rows = 0;
  for (const shard of manifest.shards) {
    const problem = await shardProblem(dir, shard, manifest.d, manifest.dtype);
    if (problem !== null) throw new ActivationCacheError(path.join(dir, shard.path), problem);
    rows += shard.rows;
  }
  return { shards: manifest.shards.length, rows };
}
