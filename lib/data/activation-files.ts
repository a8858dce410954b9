/**
 * Files of language-model activations: 2-D row-major matrices [rows, d], read a block of rows at
 * a time (positional reads on an open file handle, never the whole file) and converted to f32.
 *
 * Three layouts are read:
 * - `.safetensors`: the tensor named `options.tensor`, else the file's only 2-D tensor;
 * - `.npy`: a 2-D array in C order;
 * - raw shards listed by a JSON manifest (`*.json`):
 *   `{"format": "monosemantic-activations", "version": 1, "dtype": "f32", "d": 512,
 *     "shards": [{"path": "acts-000.bin", "rows": 1000}, ...]}`, shard paths relative to the
 *   manifest, each shard exactly rows × d little-endian values with no header. A shard may record
 *   its `sha256` (hex; the activation cache does): the shard is then checked against it the first
 *   time any of its rows is read, and a mismatch is an ActivationFileError naming the shard. A
 *   manifest may say what the activations are of (`describes`: model, hook, context size, dataset,
 *   as SAELens's metadata names them; `monosemantic harvest` writes it), and an SAE trained on them
 *   is exported with that metadata unless its config names its own. While a cache is being built
 *   its manifest also holds `incomplete: {"rows": <the rows planned>}`, and is refused until the
 *   build has finished.
 */
import { createHash } from 'node:crypto';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { dirname, extname, resolve } from 'node:path';

import { z } from 'zod';

import { readFullyAt } from '../io/large-files.js';
import { readNpyHeader } from '../io/npy.js';
import { bf16BitsToFloat32, float16BitsToFloat32, readSafetensorsHeader, type SafetensorsDtype } from '../io/safetensors.js';

export type ActivationDtype = 'f32' | 'bf16' | 'f16' | 'f64';

export interface ActivationFile {
  readonly path: string;
  readonly rows: number;
  readonly d: number;
  /** How the values are stored; readRows always yields f32. */
  readonly dtype: ActivationDtype;
  /** The SHA-256 its manifest records for it (checked at the first read), else undefined. */
  readonly sha256: string | undefined;
  /** Reads rows [start, start+count) converted to f32 into out[outOffset .. outOffset + count*d). */
  readRows(start: number, count: number, out: Float32Array, outOffset?: number): Promise<void>;
  close(): Promise<void>;
}

export interface OpenActivationOptions {
  /** Name of the tensor to read from a .safetensors file. */
  tensor?: string;
}

/** An activation file that cannot be used as one (wrong rank or dtype, bad manifest, size mismatch). */
export class ActivationFileError extends Error {
  readonly path: string;

  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'ActivationFileError';
    this.path = path;
  }
}

export const ACTIVATION_ITEM_BYTES: Readonly<Record<ActivationDtype, number>> = { f32: 4, bf16: 2, f16: 2, f64: 8 };

export const MANIFEST_FORMAT = 'monosemantic-activations';

/** What a set of activations is of: the model (its folder's name), hook, context size and dataset. */
export const ActivationDescriptionSchema = z.object({
  modelName: z.string().nullable(),
  hookName: z.string().nullable(),
  contextSize: z.number().int().positive().nullable(),
  datasetPath: z.string().nullable(),
});
export type ActivationDescription = z.infer<typeof ActivationDescriptionSchema>;

/** The manifest of a set of raw shards. */
export const ActivationManifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.literal(1),
  dtype: z.enum(['f32', 'bf16', 'f16', 'f64']),
  d: z.number().int().positive(),
  shards: z
    .array(
      z.object({
        path: z.string().min(1),
        rows: z.number().int().nonnegative(),
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits').optional(),
      }),
    )
    .min(1),
  describes: ActivationDescriptionSchema.optional(),
  incomplete: z.object({ rows: z.number().int().positive() }).optional(),
});
export type ActivationManifest = z.infer<typeof ActivationManifestSchema>;

const SAFETENSORS_ACTIVATION_DTYPES: Partial<Record<SafetensorsDtype, ActivationDtype>> = {
  F32: 'f32',
  BF16: 'bf16',
  F16: 'f16',
  F64: 'f64',
};

const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';

/** Bytes read at a time when hashing a file. */
const HASH_BLOCK_BYTES = 4 << 20;

/** The SHA-256 (hex) of the first `bytes` bytes of an open file, read in 4 MiB positional reads (never held whole). */
export async function sha256OfFile(handle: FileHandle, bytes: number, path: string): Promise<string> {
  const hash = createHash('sha256');
  const block = new Uint8Array(Math.min(HASH_BLOCK_BYTES, bytes));
  for (let position = 0; position < bytes; ) {
    const { bytesRead } = await handle.read(block, 0, Math.min(block.length, bytes - position), position);
    if (bytesRead === 0) throw new ActivationFileError(path, `unexpected end of file at byte ${position} (was it truncated?)`);
    hash.update(block.subarray(0, bytesRead));
    position += bytesRead;
  }
  return hash.digest('hex');
}

/** Positional reads of a [rows, d] matrix stored at `dataOffset` of an open file. */
class MatrixFile implements ActivationFile {
  readonly path: string;
  readonly rows: number;
  readonly d: number;
  readonly dtype: ActivationDtype;
  readonly #dataOffset: number;
  /** The SHA-256 the whole file must have (a manifest's shard), else undefined. */
  readonly sha256: string | undefined;
  /** The check against #sha256, started by the first read; every read waits for it. */
  #checked: Promise<void> | undefined;
  #handle: FileHandle | undefined;

  constructor(handle: FileHandle, path: string, rows: number, d: number, dtype: ActivationDtype, dataOffset: number, sha256?: string) {
    this.#handle = handle;
    this.path = path;
    this.rows = rows;
    this.d = d;
    this.dtype = dtype;
    this.#dataOffset = dataOffset;
    this.sha256 = sha256;
  }

  /**
   * Hashes the whole file once and compares it with the recorded SHA-256. Cost: one sequential
   * read and SHA-256 pass over the file (SHA-256 runs at about 0.5–2 GB/s), once per opening, the first
   * time any of its rows is read; training reads every row anyway. A failure is kept, so every
   * later read of the file fails the same way.
   */
  #check(): Promise<void> {
    this.#checked ??= (async () => {
      const size = this.#dataOffset + this.rows * this.d * ACTIVATION_ITEM_BYTES[this.dtype];
      const actual = await sha256OfFile(this.#handle!, size, this.path);
      if (actual !== this.sha256) {
        throw new ActivationFileError(this.path, `fails its SHA-256 check (the manifest records ${this.sha256!.slice(0, 12)}…, the file hashes to ${actual.slice(0, 12)}…): the shard is corrupt`);
      }
    })();
    return this.#checked;
  }

  async readRows(start: number, count: number, out: Float32Array, outOffset = 0): Promise<void> {
    if (this.#handle === undefined) throw new Error(`${this.path}: readRows after close()`);
    if (!Number.isSafeInteger(start) || start < 0) throw new RangeError(`start must be a non-negative integer (got ${start})`);
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer (got ${count})`);
    if (start + count > this.rows) {
      throw new RangeError(`rows [${start}, ${start + count}) are out of range for ${this.path} with ${this.rows} rows`);
    }
    if (!(out instanceof Float32Array)) throw new TypeError('out must be a Float32Array');
    if (!Number.isSafeInteger(outOffset) || outOffset < 0) throw new RangeError(`outOffset must be a non-negative integer (got ${outOffset})`);
    const values = count * this.d;
    if (outOffset + values > out.length) {
      throw new RangeError(`out.length ${out.length} is too small for ${count} rows of d=${this.d} at outOffset ${outOffset}`);
    }
    if (values === 0) return;
    if (this.sha256 !== undefined) await this.#check();

    const itemBytes = ACTIVATION_ITEM_BYTES[this.dtype];
    const position = this.#dataOffset + start * this.d * itemBytes;
    if (this.dtype === 'f32') {
      // Straight into the caller's array.
      const target = new Uint8Array(out.buffer, out.byteOffset + outOffset * 4, values * 4);
      await this.#readExactly(target, position);
      if (!HOST_IS_LITTLE_ENDIAN) Buffer.from(target.buffer, target.byteOffset, target.byteLength).swap32();
      return;
    }
    const raw = new Uint8Array(values * itemBytes); // fresh per call, so concurrent reads are safe
    await this.#readExactly(raw, position);
    if (!HOST_IS_LITTLE_ENDIAN) {
      const bytes = Buffer.from(raw.buffer);
      if (itemBytes === 2) bytes.swap16();
      else bytes.swap64();
    }
    if (this.dtype === 'bf16') bf16BitsToFloat32(new Uint16Array(raw.buffer), out, outOffset);
    else if (this.dtype === 'f16') float16BitsToFloat32(new Uint16Array(raw.buffer), out, outOffset);
    else out.set(new Float64Array(raw.buffer), outOffset);
  }

  async #readExactly(into: Uint8Array, position: number): Promise<void> {
    await readFullyAt(this.#handle!, into, position, (byte) => new ActivationFileError(this.path, `unexpected end of file at byte ${byte} (was it truncated?)`));
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }
}

async function openMatrix(path: string, rows: number, d: number, dtype: ActivationDtype, dataOffset: number, sha256?: string): Promise<ActivationFile> {
  const handle = await open(path, 'r');
  return new MatrixFile(handle, path, rows, d, dtype, dataOffset, sha256);
}

async function openSafetensors(path: string, tensor: string | undefined): Promise<ActivationFile> {
  const header = await readSafetensorsHeader(path);
  const describe = (name: string): string => {
    const entry = header.tensors[name]!;
    return `${name} ${entry.dtype}[${entry.shape.join(', ')}]`;
  };
  let name = tensor;
  if (name === undefined) {
    const matrices = Object.keys(header.tensors).filter((key) => header.tensors[key]!.shape.length === 2);
    if (matrices.length !== 1) {
      const all = Object.keys(header.tensors).map(describe).join(', ') || 'none';
      throw new ActivationFileError(
        path,
        matrices.length === 0
          ? `holds no 2-D tensor (tensors: ${all})`
          : `holds ${matrices.length} 2-D tensors (${matrices.map(describe).join(', ')}); choose one with the tensor option`,
      );
    }
    name = matrices[0]!;
  }
  const entry = header.tensors[name];
  if (entry === undefined) {
    throw new ActivationFileError(path, `has no tensor "${name}" (tensors: ${Object.keys(header.tensors).map(describe).join(', ') || 'none'})`);
  }
  if (entry.shape.length !== 2) throw new ActivationFileError(path, `tensor ${describe(name)} is not 2-D [rows, d]`);
  const dtype = SAFETENSORS_ACTIVATION_DTYPES[entry.dtype];
  if (dtype === undefined) throw new ActivationFileError(path, `tensor ${describe(name)}: dtype must be F32, BF16, F16 or F64`);
  const [rows, d] = entry.shape as [number, number];
  return openMatrix(path, rows, d, dtype, entry.begin);
}

async function openNpy(path: string): Promise<ActivationFile> {
  const header = await readNpyHeader(path);
  if (header.shape.length !== 2) throw new ActivationFileError(path, `array of shape (${header.shape.join(', ')}) is not 2-D [rows, d]`);
  if (header.dtype !== 'f32' && header.dtype !== 'f16' && header.dtype !== 'f64') {
    throw new ActivationFileError(path, `dtype ${header.dtype} is not an activation dtype (f32, f16 or f64)`);
  }
  const [rows, d] = header.shape as [number, number];
  return openMatrix(path, rows, d, header.dtype, header.dataOffset);
}

/** Parses and validates a manifest; errors name the manifest and the field. */
export async function readActivationManifest(path: string): Promise<ActivationManifest> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new ActivationFileError(path, `manifest is not valid JSON (${(error as Error).message})`);
  }
  const parsed = ActivationManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`);
    throw new ActivationFileError(path, `invalid activation manifest: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/** One file per shard of a manifest, after checking each shard's size (its SHA-256, when recorded, on the first read). */
async function openManifest(path: string): Promise<ActivationFile[]> {
  const manifest = await readActivationManifest(path);
  if (manifest.incomplete) {
    const built = manifest.shards.reduce((sum, shard) => sum + shard.rows, 0);
    throw new ActivationFileError(
      path,
      `the activation cache is incomplete: ${built.toLocaleString('en-US')} of ${manifest.incomplete.rows.toLocaleString('en-US')} rows were built before its build stopped; run the same \`monosemantic harvest\` command again to finish it`,
    );
  }
  const itemBytes = ACTIVATION_ITEM_BYTES[manifest.dtype];
  const shardPaths = manifest.shards.map((shard) => resolve(dirname(path), shard.path));
  for (const [i, shard] of manifest.shards.entries()) {
    const shardPath = shardPaths[i]!;
    const expected = shard.rows * manifest.d * itemBytes;
    let actual: number;
    try {
      actual = (await stat(shardPath)).size;
    } catch (error) {
      throw new ActivationFileError(path, `shards.${i}.path: cannot read ${shardPath} (${(error as Error).message})`);
    }
    if (actual !== expected) {
      throw new ActivationFileError(
        path,
        `shards.${i}: ${shardPath} is ${actual} bytes, but ${shard.rows} rows × d=${manifest.d} of ${manifest.dtype} need ${expected}`,
      );
    }
  }
  const files: ActivationFile[] = [];
  try {
    for (const [i, shard] of manifest.shards.entries()) {
      files.push(await openMatrix(shardPaths[i]!, shard.rows, manifest.d, manifest.dtype, 0, shard.sha256));
    }
  } catch (error) {
    await Promise.all(files.map((file) => file.close()));
    throw error;
  }
  return files;
}

/** The extensions `openActivationFiles` understands. */
export const ACTIVATION_EXTENSIONS = ['.safetensors', '.npy', '.json'] as const;

/**
 * Opens one activation matrix. A manifest is accepted only when it lists a single shard; use
 * `openActivationFiles` for manifests in general.
 */
export async function openActivationFile(path: string, options: OpenActivationOptions = {}): Promise<ActivationFile> {
  const extension = extname(path).toLowerCase();
  if (extension === '.safetensors') return openSafetensors(path, options.tensor);
  if (extension === '.npy') return openNpy(path);
  if (extension === '.json') {
    const files = await openManifest(path);
    if (files.length === 1) return files[0]!;
    await Promise.all(files.map((file) => file.close()));
    throw new ActivationFileError(path, `manifest lists ${files.length} shards; open it with openActivationFiles`);
  }
  throw new ActivationFileError(path, `unknown activation file type "${extension}" (expected ${ACTIVATION_EXTENSIONS.join(', ')})`);
}

/** Opens a file, or every shard of a manifest, in order. */
export async function openActivationFiles(path: string, options: OpenActivationOptions = {}): Promise<ActivationFile[]> {
  if (extname(path).toLowerCase() === '.json') return openManifest(path);
  return [await openActivationFile(path, options)];
}
