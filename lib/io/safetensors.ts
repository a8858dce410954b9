/**
 * Reading and writing safetensors files (the Hugging Face tensor format), written by hand because
 * no maintained npm package reads them.
 *
 * Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON
 * `{"__metadata__"?: {str: str}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}}`,
 * then the data section. Offsets are relative to the start of the data section; tensors are
 * row-major and little-endian, and together they cover the data section exactly.
 * `readSafetensorsHeader` reads only the header, so large files can be read piece by piece.
 */
import { constants } from 'node:buffer';
import { open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';

import { readFullyAt } from './large-files.js';

const MAX_LENGTH = constants.MAX_LENGTH;

/** Every dtype of the format whose elements are whole bytes; the 8-bit floats are read but not converted. */
export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'F8_E8M0'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';

export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte offset in the file of the first byte. */
  begin: number;
  /** Absolute byte offset in the file one past the last byte. */
  end: number;
}

export interface SafetensorsHeader {
  path: string;
  fileBytes: number;
  /** Absolute byte offset of the data section (8 + header length). */
  dataOffset: number;
  tensors: Record<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

/** A malformed or unreadable safetensors file; `field` names the header field or tensor at fault. */
export class SafetensorsError extends Error {
  readonly path: string;
  readonly field?: string;

  constructor(path: string, field: string | undefined, message: string, options?: ErrorOptions) {
    super(`${path}: ${field === undefined ? '' : `${field}: `}${message}`, options);
    this.name = 'SafetensorsError';
    this.path = path;
    if (field !== undefined) this.field = field;
  }
}

/** Bytes per element of each dtype. */
export const SAFETENSORS_ITEM_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E8M0: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** The reference implementation refuses headers above 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;
const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.hasOwn(SAFETENSORS_ITEM_BYTES, value);
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

/** Header length from the first 8 bytes, checked against the file size. */
function headerLength(path: string, prefix: Uint8Array, fileBytes: number): number {
  if (fileBytes < 8) {
    throw new SafetensorsError(path, 'header length', `file is ${fileBytes} bytes, shorter than the 8-byte header length`);
  }
  const length = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(path, 'header length', `${length} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  if (length > BigInt(fileBytes - 8)) {
    throw new SafetensorsError(path, 'header length', `${length} bytes but only ${fileBytes - 8} bytes follow it (truncated file?)`);
  }
  return Number(length);
}

/** Parses and validates the JSON header; `headerBytes` is the N bytes after the length. */
function parseHeader(path: string, headerBytes: Uint8Array, fileBytes: number): SafetensorsHeader {
  const dataOffset = 8 + headerBytes.length;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (error) {
    throw new SafetensorsError(path, 'header', `not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SafetensorsError(path, 'header', 'JSON is not an object');
  }

  const metadata: Record<string, string> = {};
  const tensors: Record<string, SafetensorsEntry> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        throw new SafetensorsError(path, '__metadata__', 'must be an object of strings');
      }
      for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof value !== 'string') {
          throw new SafetensorsError(path, `__metadata__.${key}`, `must be a string (got ${typeof value})`);
        }
        metadata[key] = value;
      }
      continue;
    }
    tensors[name] = parseEntry(path, name, raw, dataOffset);
  }

  // The tensors must tile the data section: sorted by offset, each starts where the last ended.
  const dataBytes = fileBytes - dataOffset;
  const byBegin = Object.entries(tensors).sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end);
  let covered = 0; // bytes of the data section covered so far
  for (const [name, entry] of byBegin) {
    if (entry.end - dataOffset > dataBytes) {
      throw new SafetensorsError(
        path,
        `${name}.data_offsets`,
        `tensor ends at data byte ${entry.end - dataOffset} but the data section holds only ${dataBytes} bytes (truncated file?)`,
      );
    }
    const begin = entry.begin - dataOffset;
    if (begin !== covered) {
      const what = begin < covered ? 'overlaps the previous tensor' : `leaves a gap of ${begin - covered} bytes before it`;
      throw new SafetensorsError(path, `${name}.data_offsets`, `tensor starts at data byte ${begin}, ${what} (expected ${covered})`);
    }
    covered = entry.end - dataOffset;
  }
  if (covered !== dataBytes) {
    throw new SafetensorsError(
      path,
      'data section',
      `is ${dataBytes} bytes but the tensors cover ${covered} (trailing bytes or a truncated file)`,
    );
  }
  return { path, fileBytes, dataOffset, tensors, metadata };
}

function parseEntry(path: string, name: string, raw: unknown, dataOffset: number): SafetensorsEntry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new SafetensorsError(path, name, 'tensor entry must be an object with dtype, shape and data_offsets');
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (!isDtype(dtype)) {
    throw new SafetensorsError(path, `${name}.dtype`, `unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(SAFETENSORS_ITEM_BYTES).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every((size) => Number.isSafeInteger(size) && size >= 0)) {
    throw new SafetensorsError(path, `${name}.shape`, `must be an array of non-negative integers (got ${JSON.stringify(shape)})`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw new SafetensorsError(path, `${name}.data_offsets`, `must be [begin, end] integers with 0 <= begin <= end (got ${JSON.stringify(offsets)})`);
  }
  const [begin, end] = offsets as [number, number];
  const expectedBytes = elementCount(shape as number[]) * SAFETENSORS_ITEM_BYTES[dtype];
  if (end - begin !== expectedBytes) {
    throw new SafetensorsError(
      path,
      `${name}.data_offsets`,
      `spans ${end - begin} bytes but ${dtype} of shape [${shape.join(', ')}] needs ${expectedBytes}`,
    );
  }
  return { dtype, shape: [...(shape as number[])], begin: dataOffset + begin, end: dataOffset + end };
}

/** Why a file could not be opened or read, as the typed errors say it. */
export function unreadableFile(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'not found';
  if (code === 'EISDIR') return 'is a folder, not a file';
  return `cannot be read (${(error as Error).message})`;
}

/** Opens `path` for reading; a file that cannot be opened is a SafetensorsError saying why. */
function openSafetensors(path: string): Promise<FileHandle> {
  return open(path, 'r').catch((error: unknown) => {
    throw new SafetensorsError(path, undefined, unreadableFile(error), { cause: error });
  });
}

/** The error for a file that ends at `byte`, before what its header says it holds. */
function endOfFile(path: string): (byte: number) => SafetensorsError {
  return (byte) => new SafetensorsError(path, undefined, `unexpected end of file at byte ${byte}`);
}

/** The header of the open file `path`, read and validated; a folder, a short file or a bad header is a SafetensorsError. */
async function headerOf(handle: FileHandle, path: string): Promise<SafetensorsHeader> {
  const stats = await handle.stat();
  if (stats.isDirectory()) throw new SafetensorsError(path, undefined, unreadableFile({ code: 'EISDIR' }));
  const fileBytes = stats.size;
  const atEnd = endOfFile(path);
  const prefix = new Uint8Array(8);
  if (fileBytes >= 8) await readFullyAt(handle, prefix, 0, atEnd);
  const length = headerLength(path, prefix, fileBytes);
  const headerBytes = new Uint8Array(length);
  await readFullyAt(handle, headerBytes, 8, atEnd);
  return parseHeader(path, headerBytes, fileBytes);
}

/** Reads and validates the header only; the tensor data is not read. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const handle = await openSafetensors(path);
  try {
    return await headerOf(handle, path);
  } finally {
    await handle.close();
  }
}

export type WritableTensor = {
  dtype: 'F32' | 'F64' | 'I32' | 'I64' | 'BF16' | 'F16' | 'U8';
  shape: readonly number[];
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint16Array | Uint8Array;
};

/** The typed array each writable dtype is given in (BF16 and F16 as raw 16-bit patterns). */
const WRITABLE_ARRAY: Record<WritableTensor['dtype'], WritableTensor['data']['constructor']> = {
  F32: Float32Array,
  F64: Float64Array,
  I32: Int32Array,
  I64: BigInt64Array,
  BF16: Uint16Array,
  F16: Uint16Array,
  U8: Uint8Array,
};

/**
 * A whole safetensors file in memory. The header lists `__metadata__` first, then the tensors in
 * name order (their order in the data section too), and is padded with spaces to a multiple of
 * 8 bytes, as the reference implementation does.
 */
export function encodeSafetensors(tensors: Record<string, WritableTensor>, metadata?: Record<string, string>): Buffer {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new TypeError(`metadata.${key} must be a string (got ${typeof value})`);
    }
    header['__metadata__'] = metadata;
  }
  let dataBytes = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new RangeError('tensors must not contain a tensor named "__metadata__"');
    const tensor = tensors[name]!;
    const arrayType = WRITABLE_ARRAY[tensor.dtype];
    if (arrayType === undefined) throw new TypeError(`tensors.${name}.dtype ${JSON.stringify(tensor.dtype)} cannot be written`);
    if (!(tensor.data instanceof arrayType)) {
      throw new TypeError(`tensors.${name}.data must be a ${arrayType.name} for dtype ${tensor.dtype} (got ${tensor.data.constructor.name})`);
    }
    if (!tensor.shape.every((size) => Number.isSafeInteger(size) && size >= 0)) {
      throw new RangeError(`tensors.${name}.shape must hold non-negative integers (got [${tensor.shape.join(', ')}])`);
    }
    if (elementCount(tensor.shape) !== tensor.data.length) {
      throw new RangeError(`tensors.${name}: shape [${tensor.shape.join(', ')}] needs ${elementCount(tensor.shape)} elements, data has ${tensor.data.length}`);
    }
    const bytes = tensor.data.byteLength;
    header[name] = { dtype: tensor.dtype, shape: [...tensor.shape], data_offsets: [dataBytes, dataBytes + bytes] };
    dataBytes += bytes;
  }

  let headerText = JSON.stringify(header);
  const headerUtf8Bytes = Buffer.byteLength(headerText, 'utf8');
  headerText += ' '.repeat((8 - (headerUtf8Bytes % 8)) % 8);
  const headerLengthBytes = headerUtf8Bytes + ((8 - (headerUtf8Bytes % 8)) % 8);

  const total = 8 + headerLengthBytes + dataBytes;
  if (total > MAX_LENGTH) {
    throw new RangeError(`a safetensors file of ${total} bytes cannot be made: this Node.js holds at most ${MAX_LENGTH} bytes in one buffer (buffer.constants.MAX_LENGTH; 2^53 − 1 from Node.js 22)`);
  }
  const out = Buffer.alloc(total);
  out.writeBigUInt64LE(BigInt(headerLengthBytes), 0);
  // The length too: without it, write() writes nothing into a Buffer over 2 GiB (Node 20), leaving a header of zeros.
  out.write(headerText, 8, headerLengthBytes, 'utf8');
  let position = 8 + headerLengthBytes;
  for (const name of names) {
    const data = tensors[name]!.data;
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    bytes.copy(out, position);
    if (!HOST_IS_LITTLE_ENDIAN) swapInPlace(out.subarray(position, position + data.byteLength), data.BYTES_PER_ELEMENT);
    position += data.byteLength;
  }
  return out;
}

function swapInPlace(bytes: Buffer, itemBytes: number): void {
  if (itemBytes === 2) bytes.swap16();
  else if (itemBytes === 4) bytes.swap32();
  else if (itemBytes === 8) bytes.swap64();
}

export interface LoadedTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** The tensor's bytes as stored (little-endian): a copy starting at offset 0 of its own buffer. */
  bytes: Uint8Array;
}

/** Reads every tensor of a file into memory, each into bytes of its own. */
export async function readSafetensors(path: string): Promise<{ header: SafetensorsHeader; tensors: Record<string, LoadedTensor> }> {
  const handle = await openSafetensors(path);
  try {
    // The header first: a malformed or truncated file is told before any tensor is read. Then each
    // tensor into its own bytes, with no copy of the whole file (any size, on any Node.js).
    const header = await headerOf(handle, path);
    const tensors: Record<string, LoadedTensor> = {};
    for (const [name, entry] of Object.entries(header.tensors)) {
      const bytes = new Uint8Array(entry.end - entry.begin);
      await readFullyAt(handle, bytes, entry.begin, endOfFile(path)).catch((error: unknown) => {
        throw error instanceof SafetensorsError ? error : new SafetensorsError(path, undefined, unreadableFile(error), { cause: error });
      });
      tensors[name] = { dtype: entry.dtype, shape: [...entry.shape], bytes };
    }
    return { header, tensors };
  } finally {
    await handle.close();
  }
}

/** The tensors of a whole safetensors file already in memory, one copied tensor each; `path` names it in errors. */
export function decodeSafetensors(file: Buffer, path: string): { header: SafetensorsHeader; tensors: Record<string, LoadedTensor> } {
  const length = headerLength(path, file, file.length);
  const header = parseHeader(path, file.subarray(8, 8 + length), file.length);
  const tensors: Record<string, LoadedTensor> = {};
  for (const [name, entry] of Object.entries(header.tensors)) {
    const bytes = new Uint8Array(entry.end - entry.begin);
    bytes.set(file.subarray(entry.begin, entry.end));
    tensors[name] = { dtype: entry.dtype, shape: [...entry.shape], bytes };
  }
  return { header, tensors };
}

/** Host-order view (or, on big-endian hosts, swapped copy) of little-endian elements. */
function hostOrderBytes(tensor: LoadedTensor, name: string | undefined): Uint8Array {
  const itemBytes = SAFETENSORS_ITEM_BYTES[tensor.dtype];
  if (itemBytes === undefined) {
    throw new SafetensorsError('(in memory)', name, `unsupported dtype ${JSON.stringify(tensor.dtype)}`);
  }
  const count = elementCount(tensor.shape);
  if (tensor.bytes.length !== count * itemBytes) {
    throw new SafetensorsError('(in memory)', name, `holds ${tensor.bytes.length} bytes, ${tensor.dtype} [${tensor.shape.join(', ')}] needs ${count * itemBytes}`);
  }
  const aligned = tensor.bytes.byteOffset % itemBytes === 0;
  if (HOST_IS_LITTLE_ENDIAN && aligned) return tensor.bytes;
  const copy = Buffer.from(new Uint8Array(tensor.bytes)); // fresh buffer at offset 0
  if (!HOST_IS_LITTLE_ENDIAN) swapInPlace(copy, itemBytes);
  return new Uint8Array(copy.buffer, copy.byteOffset, copy.byteLength);
}

/** Decodes every element into `out` (a Float32Array or Float64Array of the element count). */
function decodeInto(tensor: LoadedTensor, name: string | undefined, out: Float32Array | Float64Array): void {
  const bytes = hostOrderBytes(tensor, name);
  const { buffer, byteOffset } = bytes;
  const n = out.length;
  switch (tensor.dtype) {
    case 'F64':
      out.set(new Float64Array(buffer, byteOffset, n));
      return;
    case 'F32':
      out.set(new Float32Array(buffer, byteOffset, n));
      return;
    case 'F16': {
      const f32 = float16BitsToFloat32(new Uint16Array(buffer, byteOffset, n));
      out.set(f32);
      return;
    }
    case 'BF16': {
      const f32 = bf16BitsToFloat32(new Uint16Array(buffer, byteOffset, n));
      out.set(f32);
      return;
    }
    case 'I64': {
      const src = new BigInt64Array(buffer, byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return;
    }
    case 'I32':
      out.set(new Int32Array(buffer, byteOffset, n));
      return;
    case 'I16':
      out.set(new Int16Array(buffer, byteOffset, n));
      return;
    case 'I8':
      out.set(new Int8Array(buffer, byteOffset, n));
      return;
    case 'U64': {
      const src = new BigUint64Array(buffer, byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return;
    }
    case 'U32':
      out.set(new Uint32Array(buffer, byteOffset, n));
      return;
    case 'U16':
      out.set(new Uint16Array(buffer, byteOffset, n));
      return;
    case 'U8':
      out.set(new Uint8Array(buffer, byteOffset, n));
      return;
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = bytes[i] === 0 ? 0 : 1;
      return;
    default: // the 8-bit floats
      throw new SafetensorsError('(in memory)', name, `dtype ${tensor.dtype} cannot be converted to numbers here (floats of 16 bits or more, and integers, can)`);
  }
}

/**
 * The tensor's values as float32. F32 on a little-endian host is a view of `t.bytes` (no copy);
 * every other dtype is converted into a new array (F64 and 64-bit integers rounded to float32).
 */
export function tensorToFloat32(t: LoadedTensor, name?: string): Float32Array {
  const count = elementCount(t.shape);
  if (t.dtype === 'F32') {
    const bytes = hostOrderBytes(t, name);
    return new Float32Array(bytes.buffer, bytes.byteOffset, count);
  }
  const out = new Float32Array(count);
  decodeInto(t, name, out);
  return out;
}

/** The tensor's values as float64, in a new array (64-bit integers beyond 2^53 are rounded). */
export function tensorToFloat64(t: LoadedTensor, name?: string): Float64Array {
  const out = new Float64Array(elementCount(t.shape));
  decodeInto(t, name, out);
  return out;
}

function checkOutput(out: Float32Array, outOffset: number, count: number): void {
  if (!Number.isSafeInteger(outOffset) || outOffset < 0 || outOffset + count > out.length) {
    throw new RangeError(`outOffset ${outOffset} + ${count} values does not fit out.length ${out.length}`);
  }
}

/** bfloat16 bit patterns to float32: the 16 bits are the top half of the float32. */
export function bf16BitsToFloat32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length), outOffset = 0): Float32Array {
  checkOutput(out, outOffset, bits.length);
  const outBits = new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, bits.length);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i]! << 16;
  return out;
}

let halfTable: Uint32Array | undefined;

/** float32 bit pattern of every IEEE half-precision bit pattern (built once, 256 KiB). */
function halfToFloat32Table(): Uint32Array {
  if (halfTable !== undefined) return halfTable;
  const table = new Uint32Array(65536);
  const scratch = new Float32Array(1);
  const scratchBits = new Uint32Array(scratch.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0x1f) {
      table[h] = (sign | 0x7f800000 | (mantissa << 13)) >>> 0; // infinity, or NaN with its payload
    } else if (exponent !== 0) {
      table[h] = (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0; // rebias 15 -> 127
    } else {
      scratch[0] = mantissa * 2 ** -24; // zero or subnormal: exact in float32
      table[h] = (sign | scratchBits[0]!) >>> 0;
    }
  }
  halfTable = table;
  return table;
}

/** IEEE half-precision bit patterns to float32 (exact, including subnormals, infinities and NaN). */
export function float16BitsToFloat32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length), outOffset = 0): Float32Array {
  const table = halfToFloat32Table();
  checkOutput(out, outOffset, bits.length);
  const outBits = new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, bits.length);
  for (let i = 0; i < bits.length; i++) outBits[i] = table[bits[i]!]!;
  return out;
}
