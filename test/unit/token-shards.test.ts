/**
 * Token shards: round trips at both widths, the header laid out byte for byte as documented,
 * truncated, extended, mislabelled and corrupted files refused with the field at fault, and
 * positional reads of any range.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  openTokenShard,
  readTokenShardHeader,
  TOKEN_SHARD_HEADER_BYTES,
  TokenShardError,
  verifyTokenShard,
  writeTokenShard,
} from '../../lib/data/token-shards.js';
import { Rng } from '../../lib/random.js';
import { tempDir } from '../helpers/run-fixtures.js';

const scratch = tempDir('token-shards');
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

function randomTokens(count: number, vocabSize: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: count }, () => rng.int(vocabSize));
}

/** The TokenShardError `action` throws (fails the test if it throws something else or nothing). */
async function shardError(action: Promise<unknown>): Promise<TokenShardError> {
  const error = await action.then(
    () => null,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(TokenShardError);
  return error as TokenShardError;
}

describe('writeTokenShard and readers', () => {
  it('round-trips 2-byte tokens (vocabulary up to 65,536), from Int32Array and Uint16Array', async () => {
    const tokens = randomTokens(5000, 8192, 1);
    const file = path.join(scratch, 'u16.tokens');
    const info = await writeTokenShard(file, tokens, 8192);
    expect(info).toMatchObject({ path: file, vocabSize: 8192, tokenBytes: 2, tokens: 5000 });
    expect((await readFile(file)).length).toBe(TOKEN_SHARD_HEADER_BYTES + 2 * 5000);
    expect(await readTokenShardHeader(file)).toEqual(info);
    expect(await verifyTokenShard(file)).toEqual(info);
    const reader = await openTokenShard(file);
    try {
      expect(reader.info).toEqual(info);
      expect(await reader.read(0, 5000)).toEqual(tokens);
    } finally {
      await reader.close();
    }
    const again = path.join(scratch, 'u16-again.tokens');
    const fromUint16 = await writeTokenShard(again, Uint16Array.from(tokens), 8192);
    expect(fromUint16.sha256).toBe(info.sha256);
    expect(await readFile(again)).toEqual(await readFile(file));

    const full = path.join(scratch, 'u16-full.tokens'); // 65,536 ids still fit in 2 bytes
    const edges = Int32Array.of(0, 65535, 1, 65534);
    expect((await writeTokenShard(full, edges, 65536)).tokenBytes).toBe(2);
    const edgeReader = await openTokenShard(full);
    expect(await edgeReader.read(0, 4)).toEqual(edges);
    await edgeReader.close();
  });

  it('round-trips 4-byte tokens (vocabulary over 65,536), from Int32Array and Uint32Array', async () => {
    const tokens = randomTokens(3000, 100_000, 2);
    tokens[0] = 99_999;
    tokens[1] = 65_536;
    const file = path.join(scratch, 'u32.tokens');
    const info = await writeTokenShard(file, tokens, 100_000);
    expect(info).toMatchObject({ vocabSize: 100_000, tokenBytes: 4, tokens: 3000 });
    expect((await readFile(file)).length).toBe(TOKEN_SHARD_HEADER_BYTES + 4 * 3000);
    expect(await verifyTokenShard(file)).toEqual(info);
    const reader = await openTokenShard(file);
    expect(await reader.read(0, 3000)).toEqual(tokens);
    await reader.close();
    const fromUint32 = await writeTokenShard(path.join(scratch, 'u32-again.tokens'), Uint32Array.from(tokens), 100_000);
    expect(fromUint32.sha256).toBe(info.sha256);
  });

  it('lays the header out byte for byte as documented (little-endian, 64 bytes)', async () => {
    const file = path.join(scratch, 'layout.tokens');
    const info = await writeTokenShard(file, Int32Array.of(1, 2, 65535), 65536);
    const bytes = await readFile(file);
    const tokenBytes = Buffer.from([0x01, 0x00, 0x02, 0x00, 0xff, 0xff]);
    const digest = createHash('sha256').update(tokenBytes).digest();
    const expected = Buffer.concat([
      Buffer.from('MSTOKENS', 'ascii'),
      Buffer.from([1, 0, 0, 0]), // version
      Buffer.from([64, 0, 0, 0]), // header bytes
      Buffer.from([0x00, 0x00, 0x01, 0x00]), // vocabulary size 65536
      Buffer.from([2, 0, 0, 0]), // token width
      Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), // token count (u64)
      digest,
      tokenBytes,
    ]);
    expect(bytes.subarray(0, 64).length).toBe(64);
    expect(bytes).toEqual(expected);
    expect(info.sha256).toBe(digest.toString('hex'));
  });

  it('writes an empty shard, and refuses tokens outside the vocabulary or a bad vocabulary size', async () => {
    const empty = path.join(scratch, 'empty.tokens');
    expect(await writeTokenShard(empty, new Int32Array(0), 10)).toMatchObject({ tokens: 0, sha256: createHash('sha256').digest('hex') });
    expect(await verifyTokenShard(empty)).toMatchObject({ tokens: 0 });
    const file = path.join(scratch, 'refused.tokens');
    await expect(writeTokenShard(file, Int32Array.of(0, 10), 10)).rejects.toThrow(/tokens\[1\] is 10, not in \[0, 10\)/);
    await expect(writeTokenShard(file, Int32Array.of(-1), 10)).rejects.toThrow(RangeError);
    await expect(writeTokenShard(file, Int32Array.of(0), 0)).rejects.toThrow(/vocabSize/);
    await expect(writeTokenShard(file, [1, 2] as unknown as Int32Array, 10)).rejects.toThrow(TypeError);
    expect((await readdir(scratch)).filter((name) => name.startsWith('refused'))).toEqual([]); // nothing left behind
  });
});

describe('malformed shards', () => {
  async function copyOf(name: string, change: (bytes: Buffer) => Buffer): Promise<string> {
    const source = path.join(scratch, 'source.tokens');
    await writeTokenShard(source, randomTokens(100, 1000, 3), 1000);
    const file = path.join(scratch, name);
    await writeFile(file, change(await readFile(source)));
    return file;
  }

  it('a truncated file: short tokens, or shorter than the header', async () => {
    const short = await copyOf('short.tokens', (bytes) => bytes.subarray(0, bytes.length - 1));
    const error = await shardError(readTokenShardHeader(short));
    expect(error.field).toBe('tokens');
    expect(error.path).toBe(short);
    expect(error.message).toMatch(/truncated: the header says 100 tokens .* but the file has 263 bytes/);
    await shardError(verifyTokenShard(short));
    await shardError(openTokenShard(short));

    const headerOnly = await copyOf('header-only.tokens', (bytes) => bytes.subarray(0, 40));
    expect((await shardError(readTokenShardHeader(headerOnly))).field).toBe('header');

    const truncated = path.join(scratch, 'truncated.tokens');
    await writeTokenShard(truncated, randomTokens(50, 1000, 4), 1000);
    await truncate(truncated, 64 + 60);
    expect((await shardError(readTokenShardHeader(truncated))).message).toMatch(/truncated/);
  });

  it('bytes after the tokens', async () => {
    const longer = await copyOf('longer.tokens', (bytes) => Buffer.concat([bytes, Buffer.from([0, 0])]));
    const error = await shardError(readTokenShardHeader(longer));
    expect(error.field).toBe('tokens');
    expect(error.message).toMatch(/2 bytes follow the 100 tokens/);
  });

  it('a bad magic, version, header size or token width', async () => {
    const magic = await copyOf('magic.tokens', (bytes) => Buffer.concat([Buffer.from('NOTTOKEN'), bytes.subarray(8)]));
    const magicError = await shardError(readTokenShardHeader(magic));
    expect(magicError.field).toBe('magic');
    expect(magicError.message).toMatch(/not a token shard/);
    expect((await shardError(readTokenShardHeader(await copyOf('tiny.tokens', () => Buffer.from('MST'))))).field).toBe('magic');

    const patch = (offset: number, value: number) => (bytes: Buffer) => {
      const copy = Buffer.from(bytes);
      copy.writeUInt32LE(value, offset);
      return copy;
    };
    expect((await shardError(readTokenShardHeader(await copyOf('version.tokens', patch(8, 2))))).field).toBe('version');
    expect((await shardError(readTokenShardHeader(await copyOf('header-bytes.tokens', patch(12, 32))))).field).toBe('headerBytes');
    expect((await shardError(readTokenShardHeader(await copyOf('vocab.tokens', patch(16, 0))))).field).toBe('vocabSize');
    expect((await shardError(readTokenShardHeader(await copyOf('width.tokens', patch(20, 3))))).field).toBe('tokenBytes');
    expect((await shardError(readTokenShardHeader(await copyOf('narrow.tokens', patch(16, 70_000))))).field).toBe('tokenBytes');
    // 4-byte tokens of a vocabulary that fits 2 bytes (the file's length matching the header's count).
    const wide = await copyOf('wide.tokens', (bytes) => {
      const copy = Buffer.alloc(64 + 2 * (bytes.length - 64));
      bytes.copy(copy, 0, 0, 64);
      copy.writeUInt32LE(4, 20);
      return copy;
    });
    const wideError = await shardError(readTokenShardHeader(wide));
    expect(wideError.field).toBe('tokenBytes');
    expect(wideError.message).toMatch(/is 4, but a vocabulary of 1000 is stored in 2-byte tokens/);
  });

  it('a flipped token byte: the header reads, verification fails the checksum', async () => {
    const flipped = await copyOf('flipped.tokens', (bytes) => {
      const copy = Buffer.from(bytes);
      copy[64 + 76] = copy[64 + 76]! ^ 0x01; // the low bit of token 38: still below the vocabulary size 1000
      return copy;
    });
    await expect(readTokenShardHeader(flipped)).resolves.toMatchObject({ tokens: 100 });
    const error = await shardError(verifyTokenShard(flipped));
    expect(error.field).toBe('sha256');
    expect(error.message).toMatch(/checksum mismatch/);

    const outOfVocabulary = await copyOf('oov.tokens', (bytes) => {
      const copy = Buffer.from(bytes);
      copy.writeUInt16LE(5000, 64 + 2 * 10);
      return copy;
    });
    const oov = await shardError(verifyTokenShard(outOfVocabulary));
    expect(oov.field).toBe('tokens');
    expect(oov.message).toMatch(/token 10 is 5000, not below the vocabulary size 1000/);
  });

  it('a missing file', async () => {
    const missing = path.join(scratch, 'missing.tokens');
    const error = await shardError(readTokenShardHeader(missing));
    expect(error.message).toMatch(/no such file/);
    expect((await shardError(readTokenShardHeader(scratch))).message).toBe(`${scratch}: is a folder, not a token shard`);
    expect((await shardError(openTokenShard(scratch))).message).toBe(`${scratch}: is a folder, not a token shard`);
  });
});

describe('openTokenShard', () => {
  it('reads any range by position, concurrently, and refuses ranges past the end', async () => {
    const tokens = randomTokens(10_000, 50_000, 5);
    const file = path.join(scratch, 'positional.tokens');
    await writeTokenShard(file, tokens, 50_000);
    const reader = await openTokenShard(file);
    try {
      const ranges: [number, number][] = [
        [0, 1],
        [9999, 1],
        [1234, 5678],
        [5000, 0],
        [10_000, 0],
        [17, 4096],
      ];
      const reads = await Promise.all(ranges.map(([start, count]) => reader.read(start, count)));
      ranges.forEach(([start, count], i) => expect(reads[i]).toEqual(tokens.subarray(start, start + count)));
      await expect(reader.read(9990, 11)).rejects.toThrow(/\[9990, 10001\) are past the end/);
      await expect(reader.read(-1, 1)).rejects.toThrow(RangeError);
      await expect(reader.read(0.5, 1)).rejects.toThrow(RangeError);
    } finally {
      await reader.close();
    }
    await expect(reader.read(0, 1)).rejects.toThrow(/closed/);
    await reader.close(); // twice is fine
  });

  it('preloaded, serves the same ranges from memory (read: copies; view: views), with the file already closed', async () => {
    const tokens = randomTokens(7_001, 300, 6);
    const file = path.join(scratch, 'preloaded.tokens');
    await writeTokenShard(file, tokens, 300);
    const reader = await openTokenShard(file, { preload: true });
    expect(reader.preloaded).toBe(true);
    const fromFile = await openTokenShard(file);
    expect(fromFile.preloaded).toBe(false);
    expect(() => fromFile.view(0, 1)).toThrow(/view\(\) needs a preloaded reader/);
    await fromFile.close();
    await rm(file); // everything is in memory: the file is no longer needed
    const first = await reader.read(100, 50);
    expect(first).toEqual(tokens.subarray(100, 150));
    first.fill(0); // a copy: the shard's tokens are unchanged
    expect(await reader.read(100, 50)).toEqual(tokens.subarray(100, 150));
    expect(await reader.read(0, 7_001)).toEqual(tokens);
    expect(reader.view(100, 50)).toEqual(tokens.subarray(100, 150)); // the same tokens, without a copy
    expect(() => reader.view(7_000, 2)).toThrow(/\[7000, 7002\) are past the end/);
    await expect(reader.read(7_000, 2)).rejects.toThrow(/\[7000, 7002\) are past the end/);
    await reader.close();
    await expect(reader.read(0, 1)).rejects.toThrow(/closed/);
    expect(() => reader.view(0, 1)).toThrow(/closed/);
    await reader.close();
  });
});
