import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { NpyError, encodeNpy, readNpyHeader } from '../../lib/io/npy.js';

const dir = mkdtempSync(join(tmpdir(), 'monosemantic-npy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileCount = 0;

function writeTemp(bytes: Uint8Array): string {
  const path = join(dir, `file-${fileCount++}.npy`);
  writeFileSync(path, bytes);
  return path;
}

/** A .npy file as np.save writes it: the dict padded with spaces and '\n' to a 64-byte boundary. */
function npyFile(version: 1 | 2 | 3, dict: string, dataBytes: number): Buffer {
  const prefixBytes = version === 1 ? 10 : 12;
  const padding = (64 - ((prefixBytes + dict.length + 1) % 64)) % 64;
  const header = Buffer.from(`${dict}${' '.repeat(padding)}\n`, 'latin1');
  const prefix = Buffer.alloc(prefixBytes);
  prefix.write('\x93NUMPY', 0, 'latin1');
  prefix[6] = version;
  prefix[7] = 0;
  if (version === 1) prefix.writeUInt16LE(header.length, 8);
  else prefix.writeUInt32LE(header.length, 8);
  return Buffer.concat([prefix, header, Buffer.alloc(dataBytes)]);
}

describe('readNpyHeader', () => {
  it('a missing file or a folder: a typed error naming the path', async () => {
    const missing = join(dir, 'nowhere.npy');
    await expect(readNpyHeader(missing)).rejects.toThrow(new NpyError(missing, undefined, 'not found'));
    await expect(readNpyHeader(dir)).rejects.toThrow(new NpyError(dir, undefined, 'is a folder, not a file'));
    await expect(readNpyHeader(dir)).rejects.toBeInstanceOf(NpyError);
  });

  it('parses a version 1 header as np.save writes it', async () => {
    // np.save(np.zeros((3, 4), '<f4')) pads the dict with spare space for growing the first axis.
    const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" + ' '.repeat(58);
    const path = writeTemp(npyFile(1, dict, 48));
    expect(await readNpyHeader(path)).toEqual({ path, dtype: 'f32', shape: [3, 4], dataOffset: 128, fileBytes: 176 });
  });

  it('parses version 2 and 3 headers (u32 header length) and other dtypes', async () => {
    const v2 = writeTemp(npyFile(2, "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }", 12));
    expect(await readNpyHeader(v2)).toMatchObject({ dtype: 'f16', shape: [2, 3], dataOffset: 128 });
    const v3 = writeTemp(npyFile(3, '{"descr": "<f8", "shape": (5,), "fortran_order": False}', 40));
    expect(await readNpyHeader(v3)).toMatchObject({ dtype: 'f64', shape: [5] });
    const u8 = writeTemp(npyFile(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (7,), }", 7));
    expect(await readNpyHeader(u8)).toMatchObject({ dtype: 'u8', shape: [7] });
    const scalar = writeTemp(npyFile(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (), }", 4));
    expect(await readNpyHeader(scalar)).toMatchObject({ dtype: 'i32', shape: [] });
    const py2 = writeTemp(npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L), }", 8));
    expect(await readNpyHeader(py2)).toMatchObject({ shape: [2, 1] });
  });

  it('rejects a truncated file, naming it', async () => {
    const path = writeTemp(npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 47));
    const error = await readNpyHeader(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NpyError);
    expect((error as NpyError).path).toBe(path);
    expect((error as NpyError).message).toContain(path);
    expect((error as NpyError).message).toMatch(/truncated.*needs 48 bytes.*holds 47/);
    const cutHeader = writeTemp(npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 0).subarray(0, 50));
    await expect(readNpyHeader(cutHeader)).rejects.toThrow(/header length/);
  });

  it('rejects Fortran order, big-endian and structured dtypes, bad magic and versions', async () => {
    const fortran = writeTemp(npyFile(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", 48));
    await expect(readNpyHeader(fortran)).rejects.toThrow(/fortran_order: Fortran \(column-major\) order is not supported/);
    const bigEndian = writeTemp(npyFile(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", 12));
    await expect(readNpyHeader(bigEndian)).rejects.toThrow(/descr: dtype '>f4' is not supported \(big-endian/);
    const structured = writeTemp(npyFile(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", 12));
    await expect(readNpyHeader(structured)).rejects.toThrow(/descr: structured/);
    const notDict = writeTemp(npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,", 12));
    await expect(readNpyHeader(notDict)).rejects.toThrow(/header: not a Python dict literal/);
    await expect(readNpyHeader(writeTemp(Buffer.from('PK\x03\x04 not numpy at all')))).rejects.toThrow(/magic/);
    const v9 = npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
    v9[6] = 9;
    await expect(readNpyHeader(writeTemp(v9))).rejects.toThrow(/version 9\.0 is not supported/);
  });
});

describe('encodeNpy', () => {
  it('writes a version 1 float32 file that readNpyHeader reads back, data 64-byte aligned', async () => {
    const values = new Float32Array([1, -2, 3.5, 4, 5, 6]);
    const bytes = encodeNpy(values, [2, 3]);
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('\x93NUMPY\x01\x00');
    const header = await readNpyHeader(writeTemp(bytes));
    expect(header).toMatchObject({ dtype: 'f32', shape: [2, 3], dataOffset: 128 });
    expect(bytes[header.dataOffset - 1]).toBe(0x0a); // '\n'
    const data = bytes.subarray(header.dataOffset);
    expect(Array.from(new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)))).toEqual(Array.from(values));
    expect(bytes.subarray(10, header.dataOffset).toString('latin1')).toMatch(/^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \} +\n$/);
    expect((await readNpyHeader(writeTemp(encodeNpy(new Float32Array(3), [3])))).shape).toEqual([3]);
  });

  it('rejects a shape that does not match the array', () => {
    expect(() => encodeNpy(new Float32Array(5), [2, 3])).toThrow(RangeError);
    expect(() => encodeNpy(new Float32Array(6), [2, -3])).toThrow(/shape/);
  });
});
