/**
 * NumPy .npy files: header parsing (format versions 1, 2 and 3) and a float32 writer.
 *
 * Layout: magic `\x93NUMPY`, major and minor version bytes, the header length (u16 LE in v1,
 * u32 LE in v2 and v3), then a Python dict literal such as
 * `{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 512), }` padded with spaces and a
 * newline, then the array data. Only little-endian numeric dtypes in C (row-major) order are
 * accepted, which is what np.save writes on every common machine. The data itself is read by the
 * caller at `dataOffset`, so large files are never loaded whole.
 */
import { open } from 'node:fs/promises';
import { endianness } from 'node:os';

import { unreadableFile } from './safetensors.js';

export type NpyDtype = 'f32' | 'f16' | 'f64' | 'u8' | 'i32';

export interface NpyHeader {
  path: string;
  dtype: NpyDtype;
  shape: number[];
  /** Absolute byte offset of the first element. */
  dataOffset: number;
  fileBytes: number;
}

/** A malformed, unsupported or truncated .npy file; `field` names the part at fault. */
export class NpyError extends Error {
  readonly path: string;
  readonly field?: string;

  constructor(path: string, field: string | undefined, message: string, options?: ErrorOptions) {
    super(`${path}: ${field === undefined ? '' : `${field}: `}${message}`, options);
    this.name = 'NpyError';
    this.path = path;
    if (field !== undefined) this.field = field;
  }
}

export const NPY_ITEM_BYTES: Readonly<Record<NpyDtype, number>> = { f32: 4, f16: 2, f64: 8, u8: 1, i32: 4 };

/** descr strings we accept ('|' means byte order does not apply). */
const DESCR_DTYPES: Readonly<Record<string, NpyDtype>> = {
  '<f4': 'f32',
  '<f2': 'f16',
  '<f8': 'f64',
  '|u1': 'u8',
  '<u1': 'u8',
  '<i4': 'i32',
};

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
/** Fixed bytes before the header: magic, two version bytes, then the u16 (v1) or u32 length. */
const PREFIX_BYTES_V1 = 10;
const PREFIX_BYTES_V2 = 12;
/** np.save aligns the data to 64 bytes. */
const ARRAY_ALIGN = 64;

type PyValue = string | number | boolean | null | PyValue[] | { [key: string]: PyValue };

/** Recursive-descent parser for the Python literals that appear in .npy headers. */
class PyLiteralParser {
  #text: string;
  #pos = 0;

  constructor(text: string) {
    this.#text = text;
  }

  parseAll(): PyValue {
    const value = this.#value();
    this.#skipSpace();
    if (this.#pos !== this.#text.length) this.#fail('unexpected text after the dict');
    return value;
  }

  #fail(message: string): never {
    throw new Error(`${message} at character ${this.#pos}`);
  }

  #skipSpace(): void {
    while (this.#pos < this.#text.length && /\s/.test(this.#text[this.#pos]!)) this.#pos++;
  }

  #peek(): string {
    this.#skipSpace();
    return this.#text[this.#pos] ?? '';
  }

  #expect(char: string): void {
    if (this.#peek() !== char) this.#fail(`expected '${char}'`);
    this.#pos++;
  }

  #value(): PyValue {
    const char = this.#peek();
    if (char === '{') return this.#dict();
    if (char === '(') return this.#sequence('(', ')');
    if (char === '[') return this.#sequence('[', ']');
    if (char === "'" || char === '"') return this.#string();
    const word = /^(?:True|False|None|-?\d+L?)/.exec(this.#text.slice(this.#pos));
    if (word === null) this.#fail('expected a value');
    this.#pos += word[0].length;
    if (word[0] === 'True') return true;
    if (word[0] === 'False') return false;
    if (word[0] === 'None') return null;
    return Number(word[0].replace('L', '')); // Python 2 wrote longs as 3L
  }

  #string(): string {
    const quote = this.#text[this.#pos]!;
    const end = this.#text.indexOf(quote, this.#pos + 1);
    if (end < 0) this.#fail('unterminated string');
    const value = this.#text.slice(this.#pos + 1, end);
    this.#pos = end + 1;
    return value;
  }

  #sequence(open: string, close: string): PyValue[] {
    this.#expect(open);
    const items: PyValue[] = [];
    while (this.#peek() !== close) {
      items.push(this.#value());
      if (this.#peek() === ',') this.#pos++;
      else if (this.#peek() !== close) this.#fail(`expected ',' or '${close}'`);
    }
    this.#pos++;
    return items;
  }

  #dict(): { [key: string]: PyValue } {
    this.#expect('{');
    const dict: { [key: string]: PyValue } = {};
    while (this.#peek() !== '}') {
      const quote = this.#peek();
      if (quote !== "'" && quote !== '"') this.#fail('expected a string key');
      const key = this.#string();
      this.#expect(':');
      dict[key] = this.#value();
      if (this.#peek() === ',') this.#pos++;
      else if (this.#peek() !== '}') this.#fail("expected ',' or '}'");
    }
    this.#pos++;
    return dict;
  }
}

function parseHeaderDict(path: string, text: string): { dtype: NpyDtype; shape: number[] } {
  let dict: PyValue;
  try {
    dict = new PyLiteralParser(text).parseAll();
  } catch (error) {
    throw new NpyError(path, 'header', `not a Python dict literal (${(error as Error).message}): ${JSON.stringify(text.trim())}`);
  }
  if (typeof dict !== 'object' || dict === null || Array.isArray(dict)) {
    throw new NpyError(path, 'header', `not a dict: ${JSON.stringify(text.trim())}`);
  }
  const { descr, fortran_order: fortranOrder, shape } = dict;
  if (typeof descr !== 'string') {
    throw new NpyError(path, 'descr', `structured or missing dtype ${JSON.stringify(descr)} is not supported`);
  }
  const dtype = DESCR_DTYPES[descr];
  if (dtype === undefined) {
    const hint = descr.startsWith('>') ? ' (big-endian data; convert with arr.astype(arr.dtype.newbyteorder("<")))' : '';
    throw new NpyError(path, 'descr', `dtype '${descr}' is not supported${hint}; supported: ${Object.keys(DESCR_DTYPES).join(', ')}`);
  }
  if (typeof fortranOrder !== 'boolean') {
    throw new NpyError(path, 'fortran_order', `must be True or False (got ${JSON.stringify(fortranOrder)})`);
  }
  if (fortranOrder) {
    throw new NpyError(path, 'fortran_order', 'Fortran (column-major) order is not supported; save with np.ascontiguousarray(arr)');
  }
  if (!Array.isArray(shape) || !shape.every((size) => typeof size === 'number' && Number.isSafeInteger(size) && size >= 0)) {
    throw new NpyError(path, 'shape', `must be a tuple of non-negative integers (got ${JSON.stringify(shape)})`);
  }
  return { dtype, shape: shape as number[] };
}

/** Reads and validates the header; the data is not read. */
export async function readNpyHeader(path: string): Promise<NpyHeader> {
  const handle = await open(path, 'r').catch((error: unknown) => {
    throw new NpyError(path, undefined, unreadableFile(error), { cause: error });
  });
  try {
    const stats = await handle.stat();
    if (stats.isDirectory()) throw new NpyError(path, undefined, unreadableFile({ code: 'EISDIR' }));
    const fileBytes = stats.size;
    const prefix = new Uint8Array(PREFIX_BYTES_V2);
    const { bytesRead: prefixBytes } = await handle.read(prefix, 0, prefix.length, 0);
    if (prefixBytes < PREFIX_BYTES_V1 || !MAGIC.every((byte, i) => prefix[i] === byte)) {
      throw new NpyError(path, 'magic', 'not a .npy file (it does not start with \\x93NUMPY and a version)');
    }
    const major = prefix[6]!;
    const minor = prefix[7]!;
    if (major < 1 || major > 3) throw new NpyError(path, 'version', `format version ${major}.${minor} is not supported (1, 2 or 3)`);
    const view = new DataView(prefix.buffer);
    let headerBytes: number;
    let headerStart: number;
    if (major === 1) {
      headerBytes = view.getUint16(8, true);
      headerStart = PREFIX_BYTES_V1;
    } else {
      if (prefixBytes < PREFIX_BYTES_V2) throw new NpyError(path, 'header length', 'file ends inside the header length');
      headerBytes = view.getUint32(8, true);
      headerStart = PREFIX_BYTES_V2;
    }
    const dataOffset = headerStart + headerBytes;
    if (dataOffset > fileBytes) {
      throw new NpyError(path, 'header length', `header of ${headerBytes} bytes runs past the end of the ${fileBytes}-byte file`);
    }
    const header = new Uint8Array(headerBytes);
    const { bytesRead } = await handle.read(header, 0, headerBytes, headerStart);
    if (bytesRead !== headerBytes) throw new NpyError(path, 'header', `could read only ${bytesRead} of ${headerBytes} header bytes`);
    // v1 and v2 headers are latin-1; v3 allows UTF-8.
    const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(header);
    const { dtype, shape } = parseHeaderDict(path, text);

    const dataBytes = shape.reduce((product, size) => product * size, 1) * NPY_ITEM_BYTES[dtype];
    if (fileBytes < dataOffset + dataBytes) {
      throw new NpyError(
        path,
        'data',
        `truncated: shape (${shape.join(', ')}) of ${dtype} needs ${dataBytes} bytes after the header, the file holds ${fileBytes - dataOffset}`,
      );
    }
    return { path, dtype, shape, dataOffset, fileBytes };
  } finally {
    await handle.close();
  }
}

/** A version 1.0 .npy file holding `array` as little-endian float32 ('<f4') of `shape`, C order. */
export function encodeNpy(array: Float32Array, shape: number[]): Buffer {
  if (!(array instanceof Float32Array)) throw new TypeError('array must be a Float32Array');
  if (!Array.isArray(shape) || !shape.every((size) => Number.isSafeInteger(size) && size >= 0)) {
    throw new RangeError(`shape must be an array of non-negative integers (got ${JSON.stringify(shape)})`);
  }
  const count = shape.reduce((product, size) => product * size, 1);
  if (count !== array.length) {
    throw new RangeError(`shape [${shape.join(', ')}] holds ${count} elements but array.length is ${array.length}`);
  }
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${tuple}, }`;
  // Spaces then '\n' so that the data starts on a 64-byte boundary.
  const padding = (ARRAY_ALIGN - ((PREFIX_BYTES_V1 + dict.length + 1) % ARRAY_ALIGN)) % ARRAY_ALIGN;
  const header = `${dict}${' '.repeat(padding)}\n`;
  if (header.length > 0xffff) throw new RangeError(`shape [${shape.join(', ')}] makes a header too long for .npy version 1`);

  const out = Buffer.alloc(PREFIX_BYTES_V1 + header.length + array.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, PREFIX_BYTES_V1, header.length, 'latin1'); // the length too: without it nothing is written into a Buffer over 2 GiB
  const data = out.subarray(PREFIX_BYTES_V1 + header.length);
  data.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
  if (endianness() !== 'LE') data.swap32();
  return out;
}
