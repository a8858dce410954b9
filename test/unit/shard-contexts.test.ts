/**
 * Contexts from token shards: every window of every shard served once per epoch, exactly as a
 * plain reference cutter makes them (BOS first, a separator right after the BOS dropped, windows
 * never spanning two shards), in a seeded order, resumable exactly from state(), and states or
 * shards that do not fit refused. The shards' tokens are their positions, so a context shows
 * where it came from.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ContextStreamError } from '../../lib/data/contexts.js';
import type { ContextSource } from '../../lib/data/lm-activations.js';
import { openShardContextStream, type ShardContextOptions, type ShardContextStream } from '../../lib/data/shard-contexts.js';
import { TokenShardError, writeTokenShard } from '../../lib/data/token-shards.js';
import { Rng } from '../../lib/random.js';
import { tempDir } from '../helpers/run-fixtures.js';

const EOS = 0;
const VOCAB = 65536;

const scratch = tempDir('shard-contexts');
let shardA: string;
let shardB: string;
let streamA: Int32Array;
let streamB: Int32Array;

/**
 * A stream of documents separated by EOS; document tokens are distinct (1, 2, 3, ...) so every
 * context can be traced. The document lengths put an EOS at some window starts for the context
 * lengths tested.
 */
function documentStream(lengths: number[], firstToken: number): Int32Array {
  const tokens: number[] = [];
  let next = firstToken;
  lengths.forEach((length, i) => {
    if (i > 0) tokens.push(EOS);
    for (let j = 0; j < length; j++) tokens.push(next++);
  });
  return Int32Array.from(tokens);
}

beforeAll(async () => {
  const rng = new Rng(11);
  const lengthsA = [7, 6, 15, 1, 30, 6, ...Array.from({ length: 40 }, () => 1 + rng.int(40))];
  streamA = documentStream(lengthsA, 1);
  streamB = documentStream([5, 12, 3, 9, 22, 7, 7], 30_000);
  shardA = path.join(scratch, 'a.tokens');
  shardB = path.join(scratch, 'b.tokens');
  await writeTokenShard(shardA, streamA, VOCAB);
  await writeTokenShard(shardB, streamB, VOCAB);
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** The contexts of one shard by the documented rule, written the plain way, in window order. */
function referenceContexts(stream: Int32Array, contextLength: number, bos: number | null): number[][] {
  const width = bos === null ? contextLength : contextLength - 1;
  const contexts: number[][] = [];
  for (let start = 0; start + width <= stream.length; start += width) {
    const shift = bos !== null && stream[start] === EOS && start + width < stream.length ? 1 : 0;
    const window = Array.from(stream.subarray(start + shift, start + shift + width));
    contexts.push(bos === null ? window : [bos, ...window]);
  }
  return contexts;
}

function rowsOf(batch: Int32Array, contextLength: number): number[][] {
  return Array.from({ length: batch.length / contextLength }, (_, row) => Array.from(batch.subarray(row * contextLength, (row + 1) * contextLength)));
}

async function drain(stream: ShardContextStream, batch: number): Promise<number[][]> {
  const rows: number[][] = [];
  for (let b = await stream.next(batch); b !== null; b = await stream.next(batch)) rows.push(...rowsOf(b, stream.contextLength));
  return rows;
}

const sortKey = (row: number[]) => row.join(',');

function open(options: Partial<ShardContextOptions> = {}): Promise<ShardContextStream> {
  return openShardContextStream({ paths: [shardA, shardB], contextLength: 8, seed: 5, bosTokenId: EOS, ...options });
}

describe('openShardContextStream', () => {
  it('serves every window of every shard once per epoch, BOS first, no separator right after it', async () => {
    const contextLength = 8;
    const expected = [...referenceContexts(streamA, contextLength, EOS), ...referenceContexts(streamB, contextLength, EOS)];
    // The test data has windows that start with the separator, and each is served shifted.
    const shifted = [streamA, streamB].flatMap((stream) => Array.from({ length: Math.floor(stream.length / 7) }, (_, k) => stream[k * 7])).filter((token) => token === EOS);
    expect(shifted.length).toBeGreaterThan(0);

    const stream = await open({ contextLength });
    expect(stream.contextsPerEpoch).toBe(expected.length);
    expect(stream.contextsPerEpoch).toBe(Math.floor(streamA.length / 7) + Math.floor(streamB.length / 7));
    expect(stream.vocabSize).toBe(VOCAB);
    const rows = await drain(stream, 5);
    expect(rows.length).toBe(expected.length);
    for (const row of rows) {
      expect(row[0]).toBe(EOS);
      expect(row[1]).not.toBe(EOS);
      // Tokens of a context are consecutive stream tokens of one shard.
      const body = row.slice(1).filter((token) => token !== EOS);
      expect(body.every((token) => token < 30_000) || body.every((token) => token >= 30_000)).toBe(true);
    }
    expect(rows.map(sortKey).sort()).toEqual(expected.map(sortKey).sort());
    expect(await stream.next(5)).toBeNull();
    expect(stream.state()).toMatchObject({ epoch: 1, index: 0, contextsServed: expected.length });
    await stream.close();
  });

  it('serves the same stream from memory (small shards, the default) as from the files (preloadBytes 0)', async () => {
    const fromMemory = await drain(await open({ epochs: 2 }), 9);
    const fromFiles = await drain(await open({ epochs: 2, preloadBytes: 0 }), 9);
    expect(fromFiles.length).toBeGreaterThan(0);
    expect(fromMemory).toEqual(fromFiles);
    await expect(open({ preloadBytes: -1 })).rejects.toThrow(/preloadBytes must be a non-negative number/);
  });

  it('without BOS: windows of contextLength stream tokens, separators kept', async () => {
    const expected = [...referenceContexts(streamA, 6, null), ...referenceContexts(streamB, 6, null)];
    const stream = await open({ contextLength: 6, bosTokenId: null, eosTokenId: null });
    const rows = await drain(stream, 64);
    expect(rows.map(sortKey).sort()).toEqual(expected.map(sortKey).sort());
    const tokens = rows.flat().filter((token) => token !== EOS).sort((a, b) => a - b);
    expect(new Set(tokens).size).toBe(tokens.length); // no token served twice in an epoch
    await stream.close();
  });

  it('shuffles by seed: the same seed gives the same order, another seed or epoch another', async () => {
    const first = await drain(await open({ epochs: 2 }), 7);
    const again = await drain(await open({ epochs: 2 }), 3);
    const other = await drain(await open({ seed: 6, epochs: 2 }), 7);
    const perEpoch = first.length / 2;
    expect(again).toEqual(first);
    expect(other).not.toEqual(first);
    expect(first.slice(perEpoch)).not.toEqual(first.slice(0, perEpoch));
    expect(first.slice(perEpoch).map(sortKey).sort()).toEqual(first.slice(0, perEpoch).map(sortKey).sort());
    // Not file order.
    const inOrder = [...referenceContexts(streamA, 8, EOS), ...referenceContexts(streamB, 8, EOS)];
    expect(first.slice(0, perEpoch)).not.toEqual(inOrder);
  });

  it('runs batches across epoch boundaries and ends with a short batch, then null', async () => {
    const stream = await open({ epochs: 3 });
    const total = 3 * stream.contextsPerEpoch;
    const batch = stream.contextsPerEpoch - 1;
    let rows = 0;
    let last = 0;
    for (let b = await stream.next(batch); b !== null; b = await stream.next(batch)) {
      last = b.length / 8;
      rows += last;
    }
    expect(rows).toBe(total);
    expect(last).toBe(total % batch === 0 ? batch : total % batch);
    expect(stream.state()).toMatchObject({ epoch: 3, index: 0, contextsServed: total });
    await stream.close();
    expect(await stream.next(1)).toBeNull();
  });

  it('resumes exactly from state(), mid-epoch and at an epoch boundary', async () => {
    const whole = await drain(await open({ epochs: 3 }), 4);
    for (const served of [0, 1, 9, 13, 14]) {
      const stream = await open({ epochs: 3 });
      const before: number[][] = [];
      for (let i = 0; i < served; i++) before.push(...rowsOf((await stream.next(3))!, 8));
      const state = JSON.parse(JSON.stringify(stream.state()));
      const rest = await drain(stream, 5);
      const resumed = await open({ epochs: 3, state });
      expect(resumed.state()).toEqual(state);
      const after = await drain(resumed, 2);
      expect(after).toEqual(rest);
      expect([...before, ...after]).toEqual(whole);
    }
    const atBoundary = await open({ epochs: 2 });
    await atBoundary.next(atBoundary.contextsPerEpoch);
    const boundaryState = atBoundary.state();
    expect(boundaryState).toMatchObject({ epoch: 1, index: 0 });
    expect(await drain(await open({ epochs: 2, state: boundaryState }), 6)).toEqual(await drain(atBoundary, 6));
  });

  it('refuses a state saved for other shards, another context length, BOS or seed', async () => {
    const stream = await open();
    await stream.next(3);
    const state = stream.state();
    await expect(open({ contextLength: 9, state })).rejects.toThrow(ContextStreamError);
    await expect(open({ contextLength: 9, state })).rejects.toThrow(/contextLength \(saved ctx8, now ctx9\)/);
    await expect(open({ paths: [shardB, shardA], state })).rejects.toThrow(/shard contents/);
    await expect(open({ paths: [shardA], state })).rejects.toThrow(/shards \(saved 2s, now 1s\)/);
    await expect(open({ bosTokenId: 1, state })).rejects.toThrow(/bosTokenId/);
    await expect(open({ seed: 6, state })).rejects.toThrow(/state\.seed 5 differs from the seed option 6/);
    await expect(open({ state: { ...state, version: 2 as 1 } })).rejects.toThrow(/state\.version/);
    await expect(open({ state: { ...state, index: 10_000 } })).rejects.toThrow(/past the end/);
    await stream.close();
  });

  it('refuses shards of different vocabularies, tokens outside the vocabulary, and shards too short', async () => {
    const otherVocab = path.join(scratch, 'other-vocab.tokens');
    await writeTokenShard(otherVocab, Int32Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9), 100);
    const mismatch = await open({ paths: [shardA, otherVocab] }).catch((error: unknown) => error);
    expect(mismatch).toBeInstanceOf(TokenShardError);
    expect((mismatch as TokenShardError).field).toBe('vocabSize');
    expect((mismatch as TokenShardError).path).toBe(otherVocab);

    await expect(open({ bosTokenId: VOCAB })).rejects.toThrow(/bosTokenId must be null or an integer in \[0, 65536\)/);
    await expect(open({ eosTokenId: -1 })).rejects.toThrow(RangeError);
    await expect(open({ contextLength: 1 })).rejects.toThrow(/at least 2 with a BOS/);
    await expect(open({ epochs: 0 })).rejects.toThrow(/epochs/);
    await expect(openShardContextStream({ paths: [shardA], contextLength: 8, seed: 1 } as ShardContextOptions)).rejects.toThrow(/bosTokenId must be given/);
    await expect(open({ paths: [otherVocab], contextLength: 11 })).rejects.toThrow(/no whole context of 11 tokens/);
    await expect(open({ paths: [path.join(scratch, 'missing.tokens')] })).rejects.toThrow(TokenShardError);
  });

  it('verifies checksums on opening when asked, and is a ContextSource', async () => {
    const stream = await open({ verify: true, epochs: Infinity });
    const source: ContextSource = stream;
    for (let i = 0; i < 10; i++) expect((await source.next(16))!.length).toBe(16 * 8); // endless
    expect((source.state() as { epoch: number }).epoch).toBeGreaterThan(0);
    await source.close?.();
  });
});
