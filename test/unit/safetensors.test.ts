import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  SafetensorsError,
  bf16BitsToFloat32,
  encodeSafetensors,
  float16BitsToFloat32,
  readSafetensors,
  readSafetensorsHeader,
  tensorToFloat32,
  tensorToFloat64,
  type LoadedTensor,
} from '../../lib/io/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'monosemantic-safetensors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileCount = 0;

function writeTemp(bytes: Uint8Array): string {
  const path = join(dir, `file-${fileCount++}.safetensors`);
  writeFileSync(path, bytes);
  return path;
}

/** A file made of a raw header string (padded to 8 bytes) and a data section. */
function rawFile(header: string, dataBytes: number): Uint8Array {
  const headerBytes = Buffer.from(header + ' '.repeat((8 - (Buffer.byteLength(header) % 8)) % 8));
  const out = Buffer.alloc(8 + headerBytes.length + dataBytes);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  return out;
}

async function rejection(bytes: Uint8Array): Promise<SafetensorsError> {
  const path = writeTemp(bytes);
  const error = await readSafetensorsHeader(path).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SafetensorsError);
  const typed = error as SafetensorsError;
  expect(typed.name).toBe('SafetensorsError');
  expect(typed.path).toBe(path);
  expect(typed.message).toContain(path);
  // readSafetensors validates the same way.
  await expect(readSafetensors(path)).rejects.toThrow(SafetensorsError);
  return typed;
}

describe('encodeSafetensors', () => {
  it('writes the byte layout of the spec, header padded with spaces to 8 bytes', () => {
    const bytes = encodeSafetensors(
      {
        b: { dtype: 'F32', shape: [2], data: new Float32Array([1, -2]) },
        a: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
      },
      { k: 'v' },
    );
    const header =
      '{"__metadata__":{"k":"v"},' +
      '"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},' +
      '"b":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}}';
    expect(header.length).toBe(132);
    const expected = Buffer.concat([
      Buffer.from([136, 0, 0, 0, 0, 0, 0, 0]), // u64 LE header length: 132 + 4 spaces
      Buffer.from(header + '    '),
      Buffer.from([1, 2, 3]), // a
      Buffer.from([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]), // b: 1.0f, -2.0f
    ]);
    expect(bytes.length).toBe(8 + 136 + 11);
    expect(Buffer.compare(bytes, expected)).toBe(0);
  });

  it('round-trips several dtypes, shapes and metadata', async () => {
    const f32 = new Float32Array([1.5, -2.25, 3, 4, 5, 6]);
    const f64 = new Float64Array([Math.PI, -Math.E, 1e300]);
    const i32 = new Int32Array([-7, 2 ** 31 - 1, 0, 42]);
    const i64 = new BigInt64Array([-5n, 2n ** 40n]);
    const bf16 = new Uint16Array([0x3f80, 0xc000, 0x7f80]); // 1, -2, inf
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x3555]); // 1, -2, 0.33325195
    const u8 = new Uint8Array([0, 255, 7]);
    const empty = new Float32Array(0);
    const path = writeTemp(
      encodeSafetensors(
        {
          'layer.0.f32': { dtype: 'F32', shape: [2, 3], data: f32 },
          f64: { dtype: 'F64', shape: [3], data: f64 },
          i32: { dtype: 'I32', shape: [2, 2], data: i32 },
          i64: { dtype: 'I64', shape: [2], data: i64 },
          bf16: { dtype: 'BF16', shape: [3], data: bf16 },
          f16: { dtype: 'F16', shape: [3, 1], data: f16 },
          u8: { dtype: 'U8', shape: [3], data: u8 },
          empty: { dtype: 'F32', shape: [0, 5], data: empty },
          scalar: { dtype: 'F32', shape: [], data: new Float32Array([9]) },
        },
        { format: 'pt', 'ünïcode': 'välue' },
      ),
    );
    const header = await readSafetensorsHeader(path);
    expect(header.metadata).toEqual({ format: 'pt', 'ünïcode': 'välue' });
    expect(header.dataOffset % 8).toBe(0);
    expect(header.tensors['layer.0.f32']).toMatchObject({ dtype: 'F32', shape: [2, 3] });
    expect(header.tensors['empty']!.end - header.tensors['empty']!.begin).toBe(0);

    const { tensors } = await readSafetensors(path);
    expect(Array.from(tensorToFloat32(tensors['layer.0.f32']!))).toEqual(Array.from(f32));
    expect(Array.from(tensorToFloat64(tensors['f64']!))).toEqual(Array.from(f64));
    expect(Array.from(tensorToFloat32(tensors['f64']!))).toEqual(Array.from(Float32Array.from(f64)));
    expect(Array.from(tensorToFloat64(tensors['i32']!))).toEqual(Array.from(i32));
    expect(Array.from(tensorToFloat64(tensors['i64']!))).toEqual([-5, 2 ** 40]);
    expect(Array.from(tensorToFloat32(tensors['bf16']!))).toEqual([1, -2, Infinity]);
    expect(Array.from(tensorToFloat32(tensors['f16']!))).toEqual([1, -2, Math.fround(0.333251953125)]);
    expect(Array.from(tensorToFloat32(tensors['u8']!))).toEqual([0, 255, 7]);
    expect(tensorToFloat32(tensors['empty']!).length).toBe(0);
    expect(Array.from(tensorToFloat32(tensors['scalar']!))).toEqual([9]);
    expect(tensors['i64']!.bytes.byteOffset).toBe(0);
  });

  it('rejects data that does not match the dtype or shape', () => {
    expect(() => encodeSafetensors({ x: { dtype: 'F32', shape: [2], data: new Float64Array(2) } })).toThrow(/x\.data must be a Float32Array/);
    expect(() => encodeSafetensors({ x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(RangeError);
  });
});

describe('readSafetensorsHeader rejects corrupt files naming the field', () => {
  const valid = '"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';

  it('file shorter than 8 bytes', async () => {
    expect((await rejection(new Uint8Array(5))).field).toBe('header length');
  });

  it('absurd header length', async () => {
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(2n ** 40n, 0);
    expect((await rejection(huge)).field).toBe('header length');
    const pastEnd = Buffer.alloc(16);
    pastEnd.writeBigUInt64LE(100n, 0);
    const error = await rejection(pastEnd);
    expect(error.field).toBe('header length');
    expect(error.message).toMatch(/only 8 bytes follow/);
  });

  it('invalid JSON or not an object', async () => {
    expect((await rejection(rawFile('{"x": ', 0))).field).toBe('header');
    expect((await rejection(rawFile('[1, 2]', 0))).field).toBe('header');
    expect((await rejection(rawFile('{"__metadata__": {"a": 1}}', 0))).field).toBe('__metadata__.a');
  });

  it('unknown dtype', async () => {
    const error = await rejection(rawFile('{"x":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}}', 2));
    expect(error.field).toBe('x.dtype');
    expect(error.message).toMatch(/unknown dtype "F8"/);
  });

  it('bad shape', async () => {
    expect((await rejection(rawFile('{"x":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}}', 8))).field).toBe('x.shape');
    expect((await rejection(rawFile('{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}', 8))).field).toBe('x.shape');
    expect((await rejection(rawFile('{"x":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}', 8))).field).toBe('x.shape');
  });

  it('bad data_offsets', async () => {
    expect((await rejection(rawFile('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}}', 8))).field).toBe('x.data_offsets');
    expect((await rejection(rawFile('{"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', 8))).field).toBe('x.data_offsets');
    expect((await rejection(rawFile('{"x":{"dtype":"F32","shape":[2],"data_offsets":["0",8]}}', 8))).field).toBe('x.data_offsets');
  });

  it('byte span different from shape × item size', async () => {
    const error = await rejection(rawFile('{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8));
    expect(error.field).toBe('x.data_offsets');
    expect(error.message).toMatch(/needs 12/);
  });

  it('tensor past the end of the file (truncated)', async () => {
    const error = await rejection(rawFile(`{${valid}}`, 6));
    expect(error.field).toBe('x.data_offsets');
    expect(error.message).toMatch(/truncated/);
  });

  it('overlapping tensors and gaps', async () => {
    const overlap = await rejection(
      rawFile(`{${valid},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
    );
    expect(overlap.field).toMatch(/^[xy]\.data_offsets$/);
    expect(overlap.message).toMatch(/overlaps/);
    const gap = await rejection(rawFile(`{${valid},"y":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}`, 16));
    expect(gap.field).toBe('y.data_offsets');
    expect(gap.message).toMatch(/gap of 4 bytes/);
  });

  it('data section longer than the tensors', async () => {
    const error = await rejection(rawFile(`{${valid}}`, 12));
    expect(error.field).toBe('data section');
  });

  it('a missing file or a folder: typed errors naming the path', async () => {
    for (const [path, why] of [
      [join(dir, 'nowhere.safetensors'), 'not found'],
      [dir, 'is a folder, not a file'],
    ] as const) {
      for (const read of [readSafetensorsHeader, readSafetensors]) {
        const error = await read(path).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(SafetensorsError);
        expect((error as SafetensorsError).path).toBe(path);
        expect((error as SafetensorsError).message).toBe(`${path}: ${why}`);
      }
    }
  });

  it("the format's other dtypes are read: unsigned integers convert, 8-bit floats are refused only when converted", async () => {
    const header =
      '{"u16":{"dtype":"U16","shape":[2],"data_offsets":[0,4]},"u32":{"dtype":"U32","shape":[2],"data_offsets":[4,12]},' +
      '"u64":{"dtype":"U64","shape":[1],"data_offsets":[12,20]},"f8":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[20,24]}}';
    const bytes = Buffer.from(rawFile(header, 24));
    const data = bytes.length - 24;
    bytes.writeUInt16LE(65535, data);
    bytes.writeUInt16LE(7, data + 2);
    bytes.writeUInt32LE(4294967295, data + 4);
    bytes.writeUInt32LE(3, data + 8);
    bytes.writeBigUInt64LE(2n ** 40n, data + 12);
    const { tensors } = await readSafetensors(writeTemp(bytes));
    expect(Array.from(tensorToFloat64(tensors['u16']!))).toEqual([65535, 7]);
    expect(Array.from(tensorToFloat64(tensors['u32']!))).toEqual([4294967295, 3]);
    expect(Array.from(tensorToFloat64(tensors['u64']!))).toEqual([2 ** 40]);
    expect(() => tensorToFloat32(tensors['f8']!, 'f8')).toThrow(/f8: dtype F8_E4M3 cannot be converted/);
  });

  it('accepts the valid file these cases were made from', async () => {
    const header = await readSafetensorsHeader(writeTemp(rawFile(`{${valid}}`, 8)));
    expect(header.tensors['x']).toEqual({ dtype: 'F32', shape: [2], begin: header.dataOffset, end: header.dataOffset + 8 });
  });
});

describe('half-precision conversion', () => {
  it('bf16 is the top half of a float32', () => {
    const bits = new Uint16Array([0x0000, 0x8000, 0x3f80, 0x4049, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x7f7f]);
    const values = bf16BitsToFloat32(bits);
    expect(Object.is(values[1], -0)).toBe(true);
    expect(Array.from(values.slice(0, 6))).toEqual([0, -0, 1, 3.140625, Infinity, -Infinity]);
    expect(Number.isNaN(values[6])).toBe(true);
    expect(values[7]).toBe(2 ** -133); // float32 subnormal
    expect(values[8]).toBe(Math.fround(3.3895313892515355e38));
  });

  it('f16 converts normals, subnormals, zeros, infinities and NaN exactly', () => {
    const cases: [number, number][] = [
      [0x0000, 0],
      [0x3c00, 1],
      [0xc000, -2],
      [0x7bff, 65504], // largest half
      [0x0400, 2 ** -14], // smallest normal
      [0x0001, 2 ** -24], // smallest subnormal
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x8001, -(2 ** -24)],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
      [0x3555, 0.333251953125],
    ];
    const values = float16BitsToFloat32(new Uint16Array(cases.map(([bits]) => bits)));
    expect(Array.from(values)).toEqual(cases.map(([, value]) => value));
    const negativeZero = float16BitsToFloat32(new Uint16Array([0x8000]));
    expect(Object.is(negativeZero[0], -0)).toBe(true);
    const nan = float16BitsToFloat32(new Uint16Array([0x7e00, 0xfc01]));
    expect(Number.isNaN(nan[0]) && Number.isNaN(nan[1])).toBe(true);
  });

  it('writes into an output array at an offset', () => {
    const out = new Float32Array(4).fill(-1);
    float16BitsToFloat32(new Uint16Array([0x3c00, 0x4000]), out, 1);
    bf16BitsToFloat32(new Uint16Array([0x4040]), out, 3);
    expect(Array.from(out)).toEqual([-1, 1, 2, 3]);
  });

  it('tensorToFloat32 rejects a tensor whose bytes do not match its shape', () => {
    const bad: LoadedTensor = { dtype: 'F16', shape: [3], bytes: new Uint8Array(4) };
    expect(() => tensorToFloat32(bad, 'w')).toThrow(SafetensorsError);
    expect(() => tensorToFloat32(bad, 'w')).toThrow(/w: holds 4 bytes/);
  });
});
