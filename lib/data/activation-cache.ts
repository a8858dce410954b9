/**
 * An on-disk activation cache, so harvested activations can be reused across runs: raw
 * little-endian shards (f32 or bf16) described by the raw-shard manifest that activation files
 * are read from (lib/data/activation-files.ts), each shard with its SHA-256.
 *
 * Building is interruptible: every shard is written to a temporary file, fsynced and renamed, then
 * `manifest.json` and `cache-build.json` (the source's position after the last complete shard)
 * are rewritten atomically. A build that stopped resumes from the last complete shard by reopening
 * the source at the saved position, and produces exactly the shards of an uninterrupted build.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { float32ToBf16 } from '../bf16.js';
import { writeFileAtomic } from '../io/atomic.js';
import { Tensor } from '../tensor.js';
import type { BackendName } from '../backend.js';
import type { TrainingDataSource } from '../sae/trainer.js';
import { MANIFEST_FORMAT } from './activation-files.js';

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
}

export interface BuildCacheOptions {
  dir: string;
  /** Opens the source at a saved position (undefined: its start). */
  openSource: (state: unknown) => Promise<TrainingDataSource>;
  /** Rows to cache. */
  rows: number;
  shardRows?: number;
  dtype?: 'f32' | 'bf16';
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

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ActivationCacheError(file, `unreadable (${(error as Error).message})`);
  }
}

/** Builds (or resumes building) the cache in options.dir. */
export async function buildActivationCache(options: BuildCacheOptions): Promise<BuildCacheResult> {
  const shardRows = options.shardRows ?? 65_536;
  const dtype = options.dtype ?? 'f32';
  if (!Number.isSafeInteger(options.rows) || options.rows < 1) throw new RangeError(`rows must be a positive integer (got ${options.rows})`);
  if (!Number.isSafeInteger(shardRows) || shardRows < 1) throw new RangeError(`shardRows must be a positive integer (got ${shardRows})`);
  if (dtype !== 'f32' && dtype !== 'bf16') throw new TypeError(`dtype must be 'f32' or 'bf16' (got ${JSON.stringify(dtype)})`);
  await mkdir(options.dir, { recursive: true });
  const buildFile = path.join(options.dir, BUILD_FILE);
  const manifestFile = path.join(options.dir, MANIFEST_FILE);
  const saved = await readJson<BuildState>(buildFile);
  if (saved && (saved.rows !== options.rows || saved.shardRows !== shardRows || saved.dtype !== dtype)) {
    throw new ActivationCacheError(buildFile, `a cache of ${saved.rows} rows in shards of ${saved.shardRows} (${saved.dtype}) is being built here; options ask for ${options.rows}, ${shardRows} (${dtype})`);
  }
  const manifest: CacheManifest | null = saved && saved.rowsWritten > 0 ? await readJson<CacheManifest>(manifestFile) : null;
  if (saved?.complete) {
    return { manifest: manifestFile, rows: saved.rowsWritten, shards: manifest?.shards.length ?? 0, resumedFrom: saved.rowsWritten, complete: true };
  }
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
  const source = await options.openSource(saved?.source);
  const resumedFrom = written;
  if (resumedFrom > 0) options.log?.(`resuming the cache build at row ${resumedFrom} of ${options.rows}`);
  const d = source.d;
  const tensors = new Map<number, Tensor>();
  try {
    while (written < options.rows) {
      const n = Math.min(shardRows, options.rows - written);
      let t = tensors.get(n);
      if (!t) tensors.set(n, (t = Tensor.empty([n, d], options.backend ? { backend: options.backend } : {})));
      await source.next(n, t);
      const values = t.toArray() as Float32Array;
      const bytes = dtype === 'f32' ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength) : new Uint8Array(float32ToBf16(values).buffer);
      const name = `acts-${String(shards.length).padStart(6, '0')}.bin`;
      await writeFileAtomic(path.join(options.dir, name), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      shards.push({ path: name, rows: n, sha256: sha256(bytes) });
      written += n;
      const next: CacheManifest = { format: MANIFEST_FORMAT, version: 1, dtype, d, shards };
      await writeFileAtomic(manifestFile, `${JSON.stringify(next, null, 2)}\n`);
      const state: BuildState = { version: 1, rows: options.rows, shardRows, dtype, rowsWritten: written, complete: written >= options.rows, source: source.state() };
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
  const itemBytes = manifest.dtype === 'bf16' ? 2 : 4;
  let rows = 0;
  for (const shard of manifest.shards) {
    const file = path.join(dir, shard.path);
    let data: Buffer;
    try {
      data = await readFile(file);
    } catch {
      throw new ActivationCacheError(file, 'missing');
    }
    if (data.length !== shard.rows * manifest.d * itemBytes) {
      throw new ActivationCacheError(file, `holds ${data.length} bytes; ${shard.rows} rows of ${manifest.d} ${manifest.dtype} need ${shard.rows * manifest.d * itemBytes} (truncated?)`);
    }
    if (sha256(data) !== shard.sha256) throw new ActivationCacheError(file, 'fails its SHA-256 check (corrupt)');
    rows += shard.rows;
  }
  return { shards: manifest.shards.length, rows };
}
