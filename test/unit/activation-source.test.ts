import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { float32ToBf16 } from '../../lib/bf16.js';
import { ActivationFileError, openActivationFile, openActivationFiles } from '../../lib/data/activation-files.js';
import {
  ActivationSourceError,
  openActivationSource,
  type ActivationSource,
  type ActivationSourceOptions,
  describeActivations,
} from '../../lib/data/activation-source.js';
import { mixSeed, permutation, permutationYielding } from '../../lib/data/stream-common.js';
import { Rng } from '../../lib/random.js';
import { encodeNpy } from '../../lib/io/npy.js';
import { encodeSafetensors } from '../../lib/io/safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'monosemantic-activations-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirCount = 0;

function freshDir(): string {
  const dir = join(root, `case-${dirCount++}`);
  mkdirSync(dir);
  return dir;
}

const D = 7;
const ROWS = { npy: 1000, safetensors: 777, manifest: [600, 634] } as const;
const TOTAL_ROWS = 1000 + 777 + 600 + 634;

/** Rows [firstId, firstId + rows) of the id-encoded data: row id's values are id*8 + j. */
function idRows(firstId: number, rows: number, d = D): Float32Array {
  const values = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) values[r * d + j] = (firstId + r) * 8 + j;
  return values;
}

/** The row ids of a batch, checking that every row is intact. */
function rowIds(batch: Float32Array, d = D): number[] {
  const ids: number[] = [];
  for (let r = 0; r < batch.length / d; r++) {
    const id = batch[r * d]! / 8;
    for (let j = 0; j < d; j++) if (batch[r * d + j] !== id * 8 + j) throw new Error(`row ${r} is corrupt`);
    ids.push(id);
  }
  return ids;
}

function writeManifest(dir: string, name: string, dtype: string, d: number, shards: { path: string; rows: number; sha256?: string }[], extra: object = {}): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify({ format: 'monosemantic-activations', version: 1, dtype, d, shards, ...extra }));
  return path;
}

/** a.npy (ids 0..999), b.safetensors (1000..1776), c.json with shards (1777..3010), and a stray notes.json. */
function mixedDataset(): string {
  const dir = freshDir();
  writeFileSync(join(dir, 'a.npy'), encodeNpy(idRows(0, ROWS.npy), [ROWS.npy, D]));
  writeFileSync(
    join(dir, 'b.safetensors'),
    encodeSafetensors({
      acts: { dtype: 'F32', shape: [ROWS.safetensors, D], data: idRows(1000, ROWS.safetensors) },
      tokens: { dtype: 'I32', shape: [ROWS.safetensors], data: new Int32Array(ROWS.safetensors) },
    }),
  );
  let id = 1000 + ROWS.safetensors;
  const shards = ROWS.manifest.map((rows, i) => {
    const path = `c-00${i}.bin`;
    const values = idRows(id, rows);
    writeFileSync(join(dir, path), new Uint8Array(values.buffer));
    id += rows;
    return { path, rows };
  });
  writeManifest(dir, 'c.json', 'f32', D, shards);
  writeFileSync(join(dir, 'notes.json'), JSON.stringify({ about: 'not a manifest' }));
  return dir;
}

const dataset = mixedDataset();
const small = { chunkRows: 50, bufferChunks: 8 };

async function take(source: ActivationSource, batches: number, batch: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < batches; i++) ids.push(...rowIds(await source.next(batch)));
  return ids;
}

async function withSource<T>(options: ActivationSourceOptions, use: (source: ActivationSource) => Promise<T>): Promise<T> {
  const source = await openActivationSource(options);
  try {
    return await use(source);
  } finally {
    await source.close();
  }
}

describe('permutation', () => {
  it('is Fisher–Yates from the generator, one draw per step from the top, across its chunks of 65,536 swaps', () => {
    // The reference: each step i = n − 1 .. 1 draws j = rng.int(i + 1) and swaps order[i] with order[j].
    const fisherYates = (n: number, rng: Rng) => {
      const order = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      return order;
    };
    for (const n of [0, 1, 2, 3, 65_536, 65_537, 65_538, 131_075]) {
      for (const seed of [1, 77]) expect(Array.from(permutation(n, new Rng(seed)))).toEqual(fisherYates(n, new Rng(seed)));
    }
  });
});

describe('permutationYielding', () => {
  it('draws the same order as permutation while letting other work run between chunks', async () => {
    for (const n of [0, 1, 2, 1000, 70_001]) {
      let ticks = 0;
      let counting = true;
      const tick = () => {
        if (!counting) return;
        ticks++;
        setImmediate(tick);
      };
      setImmediate(tick);
      const yielded = await permutationYielding(n, new Rng(n + 3), 1024);
      counting = false;
      expect(Array.from(yielded)).toEqual(Array.from(permutation(n, new Rng(n + 3))));
      if (n === 70_001) expect(ticks).toBeGreaterThan(30); // other work ran between the 68 chunks
      expect([...yielded].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    }
    for (const chunk of [0, 1.5, -1]) await expect(permutationYielding(10, new Rng(1), chunk)).rejects.toThrow(/chunk must be a positive integer/);
  });
});

describe('openActivationSource', () => {
  it('finds the files of a directory and serves every row exactly once per epoch', async () => {
    await withSource({ paths: [dataset], seed: 1, ...small }, async (source) => {
      expect(source.d).toBe(D);
      expect(source.rowsPerEpoch).toBe(TOTAL_ROWS);
      expect(source.files.map((path) => path.slice(dataset.length + 1))).toEqual(['a.npy', 'b.safetensors', 'c-000.bin', 'c-001.bin']);
      const identity = Array.from({ length: TOTAL_ROWS }, (_, i) => i);
      // 31 batches of 97 rows and one of 4 = exactly one epoch of 3011 rows.
      const epoch0 = [...(await take(source, 31, 97)), ...rowIds(await source.next(4))];
      expect([...epoch0].sort((a, b) => a - b)).toEqual(identity);
      expect(epoch0).not.toEqual(identity);
      expect(source.state()).toMatchObject({ epoch: 1, window: 0, offset: 0, rowsServed: TOTAL_ROWS });
      const epoch1 = rowIds(await source.next(TOTAL_ROWS));
      expect([...epoch1].sort((a, b) => a - b)).toEqual(identity);
      expect(epoch1).not.toEqual(epoch0);
    });
  });

  it('mixes rows of several files within a batch', async () => {
    await withSource({ paths: [dataset], seed: 2, ...small }, async (source) => {
      const fileOf = (id: number): number => (id < 1000 ? 0 : id < 1777 ? 1 : id < 2377 ? 2 : 3);
      let distinctFiles = 0;
      let adjacent = 0;
      const batches = 40;
      for (let b = 0; b < batches; b++) {
        const ids = rowIds(await source.next(64));
        distinctFiles += new Set(ids.map(fileOf)).size;
        for (let i = 1; i < ids.length; i++) if (Math.abs(ids[i]! - ids[i - 1]!) === 1) adjacent++;
      }
      // 8 chunks of a window come from 4 files; a batch almost always spans at least 3 of them.
      expect(distinctFiles / batches).toBeGreaterThan(2.5);
      // Rows within a window are shuffled, not served chunk by chunk.
      expect(adjacent).toBeLessThan(batches * 63 * 0.05);
    });
  });

  it('gives the same stream for the same seed and another stream for another seed', async () => {
    const stream = (seed: number, batch: number, batches: number) =>
      withSource({ paths: [dataset], seed, ...small }, (source) => take(source, batches, batch));
    const a = await stream(7, 100, 40);
    expect(await stream(7, 100, 40)).toEqual(a);
    // The stream does not depend on how it is cut into batches.
    expect(await stream(7, 8, 500)).toEqual(a);
    // Calls made without waiting are served in call order.
    const concurrent = await withSource({ paths: [dataset], seed: 7, ...small }, async (source) => {
      const batches = await Promise.all(Array.from({ length: 40 }, () => source.next(100)));
      return batches.flatMap((values) => rowIds(values));
    });
    expect(concurrent).toEqual(a);
    const other = await stream(8, 100, 40);
    expect(other).not.toEqual(a);
    expect(other.slice(0, 100)).not.toEqual(a.slice(0, 100));
  });

  it('resumes exactly from a saved state, across window and epoch boundaries', async () => {
    const batch = 97;
    const total = 80; // 7760 rows: more than two epochs of 3011
    const reference = await withSource({ paths: [dataset], seed: 11, ...small }, (source) => take(source, total, batch));
    for (const k of [1, 4, 30, 31, 32, 63]) {
      const saved = await withSource({ paths: [dataset], seed: 11, ...small }, async (source) => {
        await take(source, k, batch);
        return JSON.parse(JSON.stringify(source.state()));
      });
      expect(saved.rowsServed).toBe(k * batch);
      const rest = await withSource({ paths: [dataset], seed: 11, ...small, state: saved }, async (source) => {
        expect(source.state()).toEqual(saved);
        return take(source, total - k, batch);
      });
      expect(rest).toEqual(reference.slice(k * batch));
    }
    // A state saved exactly at the end of an epoch points at the start of the next one.
    const atBoundary = await withSource({ paths: [dataset], seed: 11, ...small }, async (source) => {
      await source.next(TOTAL_ROWS);
      return source.state();
    });
    expect(atBoundary).toMatchObject({ epoch: 1, window: 0, offset: 0, rowsServed: TOTAL_ROWS });
    const afterBoundary = await withSource({ paths: [dataset], seed: 11, ...small, state: atBoundary }, (source) => take(source, 10, batch));
    expect(afterBoundary).toEqual(reference.slice(TOTAL_ROWS, TOTAL_ROWS + 10 * batch));
  });

  it('resumes bit-identically with the default chunking and a value buffer passed in', async () => {
    const options = { paths: [dataset], seed: 3, chunkRows: 100, bufferChunks: 4 };
    const out = new Float32Array(333 * D);
    const reference = await withSource(options, async (source) => {
      const all: Float32Array[] = [];
      for (let i = 0; i < 20; i++) all.push((await source.next(333, out)).slice());
      return all;
    });
    const state = await withSource(options, async (source) => {
      for (let i = 0; i < 13; i++) await source.next(333);
      return source.state();
    });
    await withSource({ ...options, state }, async (source) => {
      for (let i = 13; i < 20; i++) expect(await source.next(333)).toEqual(reference[i]);
    });
  });

  it('rejects a state saved for other data or chunking', async () => {
    const state = await withSource({ paths: [dataset], seed: 4, ...small }, async (source) => {
      await source.next(500);
      return source.state();
    });
    await expect(openActivationSource({ paths: [dataset], seed: 4, chunkRows: 60, bufferChunks: 8, state })).rejects.toThrow(
      /data changed since this state was saved.*chunkRows 50.*chunkRows 60/,
    );
    await expect(openActivationSource({ paths: [join(dataset, 'a.npy'), join(dataset, 'c.json')], seed: 4, ...small, state })).rejects.toThrow(
      ActivationSourceError,
    );
    await expect(openActivationSource({ paths: [dataset], seed: 5, ...small, state })).rejects.toThrow(/state\.seed 4 differs/);
    await expect(openActivationSource({ paths: [dataset], seed: 4, ...small, state: { ...state, rowsServed: 1 } })).rejects.toThrow(
      /state\.rowsServed/,
    );
    await expect(openActivationSource({ paths: [dataset], seed: 4, ...small, state: { ...state, window: 999 } })).rejects.toThrow(
      /state\.window/,
    );
  });

  it('tells apart two caches of the same size by their recorded checksums; a state saved before they counted still resumes', async () => {
    const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
    const cache = (firstId: number): string => {
      const dir = freshDir();
      const bytes = new Uint8Array(idRows(firstId, 120, 3).buffer);
      writeFileSync(join(dir, 'acts-000000.bin'), bytes);
      return writeManifest(dir, 'manifest.json', 'f32', 3, [{ path: 'acts-000000.bin', rows: 120, sha256: sha256(bytes) }]);
    };
    const [one, other] = [cache(0), cache(1000)];
    const options = { seed: 2, chunkRows: 10, bufferChunks: 4 };
    const state = await withSource({ paths: [one], ...options }, async (source) => {
      await source.next(25);
      return source.state();
    });
    await expect(openActivationSource({ paths: [other], ...options, state })).rejects.toThrow(/data changed since this state was saved/);
    // The fingerprint of names, rows and widths only, as states were saved before: accepted.
    const summary = JSON.stringify([['acts-000000.bin', 120, 3]]);
    const legacy = `1f-120r-10c-4b-${createHash('sha256').update(summary).digest('hex').slice(0, 16)}`;
    const expected = await withSource({ paths: [one], ...options, state }, (source) => source.next(30));
    await withSource({ paths: [one], ...options, state: { ...state, fingerprint: legacy } }, async (source) => {
      expect(await source.next(30)).toEqual(expected);
    });
  });

  it('takes files and globs, and rejects patterns that match nothing', async () => {
    await withSource({ paths: [join(dataset, '*.npy'), join(dataset, 'b.safetensors'), join(dataset, 'a.npy')], seed: 1 }, async (source) => {
      expect(source.files.map((path) => path.slice(dataset.length + 1))).toEqual(['a.npy', 'b.safetensors']);
      expect(source.rowsPerEpoch).toBe(1777);
      expect(rowIds(await source.next(1777)).sort((a, b) => a - b)).toEqual(Array.from({ length: 1777 }, (_, i) => i));
    });
    const nothing = join(dataset, '*.parquet');
    await expect(openActivationSource({ paths: [nothing], seed: 1 })).rejects.toThrow(`no activation files (.safetensors, .npy or manifest .json) matched "${nothing}"`);
  });

  it('rejects files of different widths, naming both', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'a.npy'), encodeNpy(idRows(0, 10), [10, D]));
    writeFileSync(join(dir, 'b.safetensors'), encodeSafetensors({ x: { dtype: 'F32', shape: [10, 8], data: idRows(0, 10, 8) } }));
    await expect(openActivationSource({ paths: [dir], seed: 1 })).rejects.toThrow(
      `activation widths differ: ${join(dir, 'a.npy')} has d=7 but ${join(dir, 'b.safetensors')} has d=8`,
    );
  });

  it('rejects a file with no rows, naming it', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'a.npy'), encodeNpy(idRows(0, 10), [10, D]));
    writeFileSync(join(dir, 'empty.npy'), encodeNpy(new Float32Array(0), [0, D]));
    await expect(openActivationSource({ paths: [dir], seed: 1 })).rejects.toThrow(`${join(dir, 'empty.npy')} holds 0 rows`);
  });

  it('reads bf16 shards and a bf16 safetensors file', async () => {
    const dir = freshDir();
    const rows = 300;
    // Small integers and halves are exact in bf16.
    const values = Float32Array.from({ length: rows * D }, (_, i) => ((i * 37) % 201) - 100 + (i % 2) * 0.5);
    const bits = float32ToBf16(values);
    writeFileSync(join(dir, 's0.bin'), new Uint8Array(bits.buffer, 0, 100 * D * 2));
    writeFileSync(join(dir, 's1.bin'), new Uint8Array(bits.buffer, 100 * D * 2));
    writeManifest(dir, 'm.json', 'bf16', D, [
      { path: 's0.bin', rows: 100 },
      { path: 's1.bin', rows: 200 },
    ]);
    writeFileSync(join(dir, 't.safetensors'), encodeSafetensors({ acts: { dtype: 'BF16', shape: [rows, D], data: bits } }));

    const [s0, s1] = await openActivationFiles(join(dir, 'm.json'));
    expect([s0!.dtype, s0!.rows, s1!.rows]).toEqual(['bf16', 100, 200]);
    const out = new Float32Array(200 * D);
    await s1!.readRows(50, 150, out, 50 * D);
    expect(out.subarray(50 * D)).toEqual(values.subarray(150 * D));
    await Promise.all([s0!.close(), s1!.close()]);

    await withSource({ paths: [join(dir, 't.safetensors')], seed: 1, chunkRows: 32, bufferChunks: 3 }, async (source) => {
      const served = await source.next(rows);
      const sortRows = (m: Float32Array) =>
        Array.from({ length: rows }, (_, r) => Array.from(m.subarray(r * D, (r + 1) * D)).join(',')).sort();
      expect(sortRows(served)).toEqual(sortRows(values));
    });
  });

  it('mixes seeds so that nearby seeds, epochs and windows give unrelated generators', () => {
    const seeds = new Set<number>();
    for (let seed = 0; seed < 20; seed++) for (let epoch = 0; epoch < 20; epoch++) seeds.add(mixSeed([2, seed, epoch, 0]));
    expect(seeds.size).toBe(400);
    expect(mixSeed([1, 5, 0])).not.toBe(mixSeed([2, 5, 0]));
    expect(mixSeed([1, 2 ** 40, 0])).not.toBe(mixSeed([1, 0, 0]));
    expect(Number.isInteger(mixSeed([1, -3, 7]))).toBe(true);
  });

  it('validates its options', async () => {
    await expect(openActivationSource({ paths: [], seed: 1 })).rejects.toThrow(TypeError);
    await expect(openActivationSource({ paths: [dataset], seed: 1.5 })).rejects.toThrow(/seed/);
    await expect(openActivationSource({ paths: [dataset], seed: 1, chunkRows: 0 })).rejects.toThrow(/chunkRows must be a positive integer/);
    await withSource({ paths: [dataset], seed: 1, ...small }, async (source) => {
      await expect(source.next(0)).rejects.toThrow(/batch/);
      await expect(source.next(2, new Float32Array(3))).rejects.toThrow(/out\.length must be batch \* d/);
    });
  });
});

describe('openActivationFile', () => {
  it('reads f16 and f64 safetensors and chooses tensors by name', async () => {
    const dir = freshDir();
    const values = idRows(0, 5, 4);
    const f16 = new Uint16Array([0x3c00, 0x4000, 0x0001, 0xfc00, 0x7bff, 0x8000]); // 1, 2, 2^-24, -inf, 65504, -0
    const path = join(dir, 'two.safetensors');
    writeFileSync(
      path,
      encodeSafetensors({
        wide: { dtype: 'F64', shape: [5, 4], data: Float64Array.from(values) },
        half: { dtype: 'F16', shape: [3, 2], data: f16 },
      }),
    );
    const ambiguous = await openActivationFile(path).catch((e: unknown) => e);
    expect(ambiguous).toBeInstanceOf(ActivationFileError);
    expect((ambiguous as Error).message).toMatch(/holds 2 2-D tensors \(.*half F16\[3, 2\].*wide F64\[5, 4\].*\); choose one with the tensor option/);
    await expect(openActivationFile(path, { tensor: 'missing' })).rejects.toThrow(/has no tensor "missing"/);

    const wide = await openActivationFile(path, { tensor: 'wide' });
    expect([wide.rows, wide.d, wide.dtype]).toEqual([5, 4, 'f64']);
    const out = new Float32Array(3 * 4);
    await wide.readRows(2, 3, out);
    expect(out).toEqual(values.subarray(8));
    await expect(wide.readRows(3, 3, out)).rejects.toThrow(RangeError);
    await wide.close();
    await expect(wide.readRows(0, 1, out)).rejects.toThrow(/after close/);

    const half = await openActivationFile(path, { tensor: 'half' });
    const halfOut = new Float32Array(6);
    await half.readRows(0, 3, halfOut);
    expect(Array.from(halfOut)).toEqual([1, 2, 2 ** -24, -Infinity, 65504, -0]);
    await half.close();
  });

  it('rejects bad manifests naming the field, and shards of the wrong size', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 's.bin'), new Uint8Array(10 * 3 * 4));
    const bad = writeManifest(dir, 'bad.json', 'f32', -3, [{ path: 's.bin', rows: 'ten' as unknown as number }]);
    const error = await openActivationFiles(bad).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ActivationFileError);
    expect((error as Error).message).toContain(bad);
    expect((error as Error).message).toMatch(/\bd: /);
    expect((error as Error).message).toMatch(/shards\.0\.rows: /);
    await expect(openActivationFiles(writeManifest(dir, 'v2.json', 'f32', 3, [{ path: 's.bin', rows: 10 }], { version: 2 }))).rejects.toThrow(
      /version: /,
    );
    const wrongSize = writeManifest(dir, 'size.json', 'f32', 3, [{ path: 's.bin', rows: 11 }]);
    await expect(openActivationFiles(wrongSize)).rejects.toThrow(/shards\.0: .*s\.bin is 120 bytes, but 11 rows × d=3 of f32 need 132/);
    const missing = writeManifest(dir, 'missing.json', 'f32', 3, [{ path: 'nope.bin', rows: 10 }]);
    await expect(openActivationFiles(missing)).rejects.toThrow(/shards\.0\.path: cannot read/);

    const two = writeManifest(dir, 'two.json', 'f32', 3, [
      { path: 's.bin', rows: 10 },
      { path: 's.bin', rows: 10 },
    ]);
    await expect(openActivationFile(two)).rejects.toThrow(/lists 2 shards; open it with openActivationFiles/);
    const one = await openActivationFile(writeManifest(dir, 'one.json', 'f32', 3, [{ path: 's.bin', rows: 10 }]));
    expect([one.rows, one.d]).toEqual([10, 3]);
    await one.close();
    await expect(openActivationFile(join(dir, 's.bin'))).rejects.toThrow(/unknown activation file type ".bin"/);
  });

  it('checks a shard against the SHA-256 its manifest records on the first read, naming the shard', async () => {
    const dir = freshDir();
    const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
    const good = new Uint8Array(idRows(0, 10, 3).buffer);
    const bad = new Uint8Array(idRows(10, 10, 3).buffer);
    const recorded = sha256(bad);
    bad.set(new Uint8Array(Float32Array.of(Number.NaN).buffer), 4 * 7); // one value, same size
    writeFileSync(join(dir, 'good.bin'), good);
    writeFileSync(join(dir, 'bad.bin'), bad);
    const manifest = writeManifest(dir, 'm.json', 'f32', 3, [
      { path: 'good.bin', rows: 10, sha256: sha256(good) },
      { path: 'bad.bin', rows: 10, sha256: recorded },
    ]);
    const [first, second] = await openActivationFiles(manifest); // sizes agree: opening succeeds
    const out = new Float32Array(30);
    await first!.readRows(2, 3, out);
    expect(rowIds(out.subarray(0, 9), 3)).toEqual([2, 3, 4]);
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await second!.readRows(0, 1, out).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ActivationFileError);
      expect((error as ActivationFileError).path).toBe(join(dir, 'bad.bin'));
      expect((error as Error).message).toMatch(/bad\.bin: fails its SHA-256 check .*: the shard is corrupt$/);
    }
    await Promise.all([first!.close(), second!.close()]);

    // The shuffled source reads both shards in its first window: it fails before serving a row.
    await expect(openActivationSource({ paths: [manifest], seed: 0 })).rejects.toThrow(/bad\.bin: fails its SHA-256 check/);
    const malformed = writeManifest(dir, 'x.json', 'f32', 3, [{ path: 'good.bin', rows: 10, sha256: 'abc' }]);
    await expect(openActivationFiles(malformed)).rejects.toThrow(/shards\.0\.sha256: must be 64 lowercase hex digits/);
  });

  it('rejects a .npy that is not a 2-D matrix', async () => {
    const dir = freshDir();
    const path = join(dir, 'flat.npy');
    writeFileSync(path, encodeNpy(new Float32Array(6), [6]));
    await expect(openActivationFile(path)).rejects.toThrow(/shape \(6\) is not 2-D/);
  });
});

describe('describeActivations', () => {
  it('gives each field the manifests agree on, and nothing for files that say nothing', async () => {
    const dir = join(root, 'described');
    mkdirSync(dir);
    const manifest = (name: string, describes?: object) =>
      writeFileSync(join(dir, name), JSON.stringify({ format: 'monosemantic-activations', version: 1, dtype: 'f32', d: 2, shards: [{ path: 'x.bin', rows: 1 }], ...(describes ? { describes } : {}) }));
    const a = { modelName: 'b', hookName: 'blocks.0.mlp.hook_post', contextSize: 128, datasetPath: '/c/one' };
    manifest('a.json', a);
    manifest('b.json', { ...a, datasetPath: '/c/two' });
    manifest('plain.json');
    expect(await describeActivations([join(dir, 'a.json')])).toEqual(a);
    expect(await describeActivations([join(dir, 'a.json'), join(dir, 'b.json')])).toEqual({ ...a, datasetPath: null });
    expect(await describeActivations([join(dir, 'a.json'), join(dir, 'plain.json')])).toEqual({ modelName: null, hookName: null, contextSize: null, datasetPath: null });
  });
});
