/**
 * Files and digests past 2 GiB: Node's fs.readFile, one FileHandle.read and one Hash.update all stop
 * there, and checkpoints (an SAE's optimizer state from d_in · d_sae = 2^27), SAELens weights,
 * token shards and activation-cache shards reach it. The files over 2 GiB here are sparse, and the
 * checks that read them stop at their size or header, so those tests take milliseconds. The two
 * encode tests build a real 2 GiB output (about 2.1 GB resident and 4 s each): they are skipped
 * where less than 4 GiB of memory is free, or with MONOSEMANTIC_SKIP_LARGE_TESTS=1.
 */
import { constants } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { readCheckpoint } from '../../lib/io/checkpoint.js';
import { readFullyAt, readWholeFile, sha256Digest, sha256Hex } from '../../lib/io/large-files.js';
import { encodeNpy } from '../../lib/io/npy.js';
import { encodeSafetensors, readSafetensors } from '../../lib/io/safetensors.js';
import { SAE_CHECKPOINT_LAYOUT } from '../../lib/sae/trainer.js';
import { tempDir } from '../helpers/run-fixtures.js';

const root = tempDir('large-files');
afterAll(() => rm(root, { recursive: true, force: true }));

const OVER_2_GIB = 2 ** 31 + 8;
const MAX_LENGTH = constants.MAX_LENGTH;
const skipBig = process.env.MONOSEMANTIC_SKIP_LARGE_TESTS === '1' || os.freemem() < 4 * 2 ** 30;

describe('sha256 in pieces', () => {
  it('gives the digest of one Hash.update(), whatever the piece size', () => {
    const data = randomBytes(1001);
    const whole = createHash('sha256').update(data).digest('hex');
    for (const chunk of [1, 7, 1000, 1001, 4096]) expect(sha256Hex(data, chunk)).toBe(whole);
    expect(sha256Digest(new Uint8Array(0), 7).toString('hex')).toBe(createHash('sha256').digest('hex'));
  });
});

describe('readWholeFile', () => {
  it('reads a file exactly in pieces, and keeps the error code of a missing file', async () => {
    const file = path.join(root, 'pieces.bin');
    const data = randomBytes(1001);
    await writeFile(file, data);
    for (const chunk of [1, 3, 1000, 1 << 20]) expect((await readWholeFile(file, chunk)).equals(data)).toBe(true);
    await expect(readWholeFile(path.join(root, 'absent.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('readFullyAt', () => {
  it('fills a buffer from a position in pieces, and throws the caller\'s error at the byte where the file ends', async () => {
    const file = path.join(root, 'positional.bin');
    const data = randomBytes(1001);
    await writeFile(file, data);
    const handle = await open(file, 'r');
    try {
      const atEnd = (byte: number) => new RangeError(`ended at ${byte}`);
      for (const chunk of [1, 3, 1000, 1 << 20]) {
        const into = new Uint8Array(500);
        await readFullyAt(handle, into, 123, atEnd, chunk);
        expect(Buffer.from(into).equals(data.subarray(123, 623))).toBe(true);
      }
      await expect(readFullyAt(handle, new Uint8Array(100), 950, atEnd, 7)).rejects.toThrow('ended at 1001');
    } finally {
      await handle.close();
    }
  });
});

describe('files over 2 GiB', () => {
  it('readCheckpoint checks such a file by its size instead of calling it missing', async () => {
    const dir = path.join(root, 'checkpoints', 'step-000000001');
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, 'optimizer.safetensors');
    await writeFile(file, '');
    await truncate(file, OVER_2_GIB);
    const manifest = { format: 'monosemantic-checkpoint', version: 1, step: 1, files: { 'optimizer.safetensors': { bytes: OVER_2_GIB + 8, sha256: '0'.repeat(64) } } };
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
    const error = (await readCheckpoint(dir, SAE_CHECKPOINT_LAYOUT).then(() => new Error('read'), (e: unknown) => e)) as Error;
    expect(error.message).not.toMatch(/is missing/);
    expect(error.message).toMatch(`optimizer.safetensors holds ${OVER_2_GIB} bytes, the manifest says ${OVER_2_GIB + 8}`);
    await rm(file);
  });

  it('readSafetensors checks such a file by its header instead of refusing it for its size', async () => {
    // A header that declares one tensor of 2 GiB + 1 KiB, in a file cut 1 KiB short of it.
    const tensorBytes = 2 ** 31 + 1024;
    let header = JSON.stringify({ big: { dtype: 'U8', shape: [tensorBytes], data_offsets: [0, tensorBytes] } });
    header += ' '.repeat((8 - (header.length % 8)) % 8);
    const prefix = Buffer.alloc(8 + header.length);
    prefix.writeBigUInt64LE(BigInt(header.length), 0);
    prefix.write(header, 8);
    const file = path.join(root, 'big.safetensors');
    await writeFile(file, prefix);
    await truncate(file, prefix.length + tensorBytes - 1024);
    const error = (await readSafetensors(file).then(() => new Error('read'), (e: unknown) => e)) as Error;
    expect(error.message).not.toMatch(/greater than 2 GiB/);
    expect(error.message).toMatch(/big\.data_offsets: tensor ends at data byte 2147484672 but the data section holds only 2147483648 bytes \(truncated file\?\)/);
    await rm(file);
  });

  it.runIf(MAX_LENGTH <= 2 ** 33)('encodeSafetensors refuses a file larger than one buffer can hold, saying so', () => {
    // Typed arrays are allocated lazily: two of 2^30 bytes cost no memory until written.
    const half = Math.ceil((MAX_LENGTH + 1) / 2 / 4);
    const a = new Float32Array(half);
    const b = new Float32Array(half);
    expect(() => encodeSafetensors({ a: { dtype: 'F32', shape: [half], data: a }, b: { dtype: 'F32', shape: [half], data: b } })).toThrow(
      /^a safetensors file of \d+ bytes cannot be made: this Node\.js holds at most \d+ bytes in one buffer \(buffer\.constants\.MAX_LENGTH; 2\^53 − 1 from Node\.js 22\)$/,
    );
  });

  // Buffer.prototype.write(string, offset, encoding) writes nothing into a Buffer over 2 GiB (Node 20).
  it.skipIf(skipBig)('encodeSafetensors writes the header of a file over 2 GiB', () => {
    const data = new Uint8Array(2 ** 31 + 8);
    const out = encodeSafetensors({ big: { dtype: 'U8', shape: [data.length], data } });
    const length = Number(out.readBigUInt64LE(0));
    expect(JSON.parse(out.subarray(8, 8 + length).toString('utf8'))).toEqual({ big: { dtype: 'U8', shape: [data.length], data_offsets: [0, data.length] } });
  });

  it.skipIf(skipBig)('encodeNpy writes the header of a file over 2 GiB', () => {
    const out = encodeNpy(new Float32Array(2 ** 29 + 2), [2 ** 29 + 2]);
    expect(out.subarray(10, 10 + out.readUInt16LE(8)).toString('latin1')).toMatch(/^\{'descr': '<f4', 'fortran_order': False, 'shape': \(536870914,\), \} *\n$/);
  });
});
