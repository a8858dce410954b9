/** The on-disk activation cache: build, interrupt, resume to identical shards, read back, verify. */
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { openActivationSource } from '../../lib/data/activation-source.js';
import { buildActivationCache, verifyActivationCache } from '../../lib/data/activation-cache.js';
import type { TrainingDataSource } from '../../lib/sae/trainer.js';
import { bf16ToFloat32, float32ToBf16 } from '../../lib/bf16.js';
import { tempDir } from '../helpers/run-fixtures.js';

const d = 5;

/** Row r holds (r, r/7, sin r, ...): identifiable and exactly reproducible from the position. */
function countingSource(state: unknown): Promise<TrainingDataSource> {
  let next = (state as number | undefined) ?? 0;
  return Promise.resolve({
    d,
    async next(rows, out) {
      const data = new Float32Array(rows * d);
      for (let r = 0; r < rows; r++) for (let c = 0; c < d; c++) data[r * d + c] = c === 0 ? next + r : Math.sin((next + r) * (c + 1));
      next += rows;
      out.upload(data);
    },
    state: () => next,
    close: async () => {},
  });
}

describe('activation cache', () => {
  it('resumes an interrupted build to the same shards, reads back through the file source, and verifies checksums', async () => {
    const whole = path.join(tempDir('cache'), 'whole');
    const full = await buildActivationCache({ dir: whole, openSource: countingSource, rows: 1000, shardRows: 128, backend: 'cpu' });
    expect(full).toMatchObject({ rows: 1000, shards: 8, complete: true, resumedFrom: 0 });

    const cut = path.join(tempDir('cache'), 'cut');
    const controller = new AbortController();
    let calls = 0;
    const interrupted = await buildActivationCache({
      dir: cut,
      rows: 1000,
      shardRows: 128,
      backend: 'cpu',
      signal: controller.signal,
      openSource: async (s) => {
        const src = await countingSource(s);
        return { ...src, state: src.state, next: async (rows, out) => (++calls === 3 && controller.abort(), src.next(rows, out)) };
      },
    });
    expect(interrupted).toMatchObject({ rows: 384, shards: 3, complete: false });
    // Until the build finishes, the manifest says so and train's reader refuses it.
    await expect(openActivationSource({ paths: [path.join(cut, 'manifest.json')], seed: 1, chunkRows: 128, bufferChunks: 1 })).rejects.toThrow(
      'the activation cache is incomplete: 384 of 1,000 rows were built before its build stopped',
    );
    // What a build killed mid-write leaves (a process that is gone: pid 2^22 + 1 is above Linux's
    // pid_max), and a temporary file of a build still running (this process) or of another file.
    const abandoned = ['acts-000003.bin.tmp-4194305-0123456789ab', 'cache-build.json.tmp-4194305-ba9876543210'];
    const kept = [`acts-000003.bin.tmp-${process.pid}-0123456789ab`, 'notes.txt.tmp-4194305-0123456789ab'];
    for (const name of [...abandoned, ...kept]) writeFileSync(path.join(cut, name), 'partial');
    const resumed = await buildActivationCache({ dir: cut, openSource: countingSource, rows: 1000, shardRows: 128, backend: 'cpu' });
    expect(resumed).toMatchObject({ rows: 1000, shards: 8, complete: true, resumedFrom: 384 });
    const left = readdirSync(cut);
    for (const name of abandoned) expect(left, name).not.toContain(name);
    for (const name of kept) expect(left, name).toContain(name);
    for (const name of kept) rmSync(path.join(cut, name));
    for (const name of readdirSync(whole).filter((n) => n.endsWith('.bin') || n === 'manifest.json')) {
      expect(readFileSync(path.join(cut, name)).equals(readFileSync(path.join(whole, name))), name).toBe(true);
    }
    expect(await verifyActivationCache(cut)).toEqual({ shards: 8, rows: 1000 });

    // Read back in order through the ordinary activation-file source (one chunk per window, no shuffle needed to check content).
    const source = await openActivationSource({ paths: [path.join(cut, 'manifest.json')], seed: 1, chunkRows: 1000, bufferChunks: 1 });
    const rows = await source.next(1000);
    const firstColumn = Array.from({ length: 1000 }, (_, r) => rows[r * d]!).sort((a, b) => a - b);
    expect(firstColumn).toEqual(Array.from({ length: 1000 }, (_, r) => r));
    await source.close();

    const shard = path.join(cut, 'acts-000004.bin');
    const bytes = readFileSync(shard);
    bytes[17]! ^= 1;
    writeFileSync(shard, bytes);
    await expect(verifyActivationCache(cut)).rejects.toThrow(/acts-000004\.bin: fails its SHA-256 check/);
    writeFileSync(shard, bytes.subarray(0, 40));
    await expect(verifyActivationCache(cut)).rejects.toThrow(/holds 40 bytes; 128 rows of 5 f32 need 2560/);
  });

  it('refuses a new build in a folder of other files, and resumes one stopped before its first build record', async () => {
    const users = path.join(tempDir('cache'), 'users');
    mkdirSync(users);
    const theirs = '{"format": "monosemantic-activations", "version": 1, "dtype": "f32", "d": 5, "shards": [{"path": "mine.bin", "rows": 1}]}\n';
    writeFileSync(path.join(users, 'manifest.json'), theirs);
    writeFileSync(path.join(users, 'mine.bin'), Buffer.alloc(20, 1));
    await expect(buildActivationCache({ dir: users, openSource: countingSource, rows: 100, shardRows: 64, backend: 'cpu' })).rejects.toThrow(
      `${users}: holds files that are not an activation cache's (manifest.json, mine.bin): a build would replace files there; choose a new or empty folder`,
    );
    expect(readFileSync(path.join(users, 'manifest.json'), 'utf8')).toBe(theirs);

    // A build killed after its first shard and manifest, before cache-build.json: built again from the start.
    const whole = path.join(tempDir('cache'), 'whole');
    await buildActivationCache({ dir: whole, openSource: countingSource, rows: 100, shardRows: 64, backend: 'cpu' });
    const early = path.join(tempDir('cache'), 'early');
    const controller = new AbortController();
    controller.abort();
    await buildActivationCache({ dir: early, openSource: countingSource, rows: 100, shardRows: 64, signal: controller.signal, backend: 'cpu' });
    rmSync(path.join(early, 'cache-build.json'));
    writeFileSync(path.join(early, '.DS_Store'), 'a file manager');
    expect(await buildActivationCache({ dir: early, openSource: countingSource, rows: 100, shardRows: 64, backend: 'cpu' })).toMatchObject({ rows: 100, complete: true, resumedFrom: 0 });
    for (const name of ['acts-000000.bin', 'acts-000001.bin', 'manifest.json']) {
      expect(readFileSync(path.join(early, name)).equals(readFileSync(path.join(whole, name))), name).toBe(true);
    }
  });

  it('stores bf16 rounded to nearest even, and refuses a resume with other options', async () => {
    const dir = path.join(tempDir('cache'), 'bf16');
    await buildActivationCache({ dir, openSource: countingSource, rows: 100, shardRows: 64, dtype: 'bf16', backend: 'cpu' });
    const data = new Uint16Array(Uint8Array.from(readFileSync(path.join(dir, 'acts-000000.bin'))).buffer);
    const want = new Float32Array(64 * d);
    for (let r = 0; r < 64; r++) for (let c = 0; c < d; c++) want[r * d + c] = c === 0 ? r : Math.sin(r * (c + 1));
    expect(Array.from(bf16ToFloat32(data))).toEqual(Array.from(bf16ToFloat32(float32ToBf16(want))));
    const half = path.join(tempDir('cache'), 'half');
    const controller = new AbortController();
    controller.abort();
    await buildActivationCache({ dir: half, openSource: countingSource, rows: 100, shardRows: 64, signal: controller.signal, backend: 'cpu' });
    await expect(buildActivationCache({ dir: half, openSource: countingSource, rows: 100, shardRows: 32, backend: 'cpu' })).rejects.toThrow(/shards of 64 \(f32\) is being built here; options ask for 100, 32 \(f32\)/);
  });
});

describe('activation cache: what it is of', () => {
  /** A build of 1000 rows in shards of 128, stopped after `shards` shards (all of them: complete). */
  async function build(dir: string, options: { of?: Record<string, unknown>; inputs?: Record<string, string>; shards?: number } = {}) {
    const controller = new AbortController();
    let calls = 0;
    return buildActivationCache({
      dir,
      rows: 1000,
      shardRows: 128,
      backend: 'cpu',
      signal: controller.signal,
      ...(options.of ? { of: options.of } : {}),
      ...(options.inputs ? { inputs: options.inputs } : {}),
      openSource: async (s) => {
        const src = await countingSource(s);
        return { ...src, state: src.state, next: async (rows, out) => (++calls === options.shards && controller.abort(), src.next(rows, out)) };
      },
    });
  }

  it('refuses a resume or re-run whose options or model differ, naming them, and resumes with the same ones', async () => {
    const root = tempDir('cache');
    const model = path.join(root, 'model');
    mkdirSync(model);
    writeFileSync(path.join(model, 'config.json'), '{}');
    writeFileSync(path.join(model, 'model.safetensors'), 'weights');
    const other = path.join(root, 'other-model');
    mkdirSync(other);
    writeFileSync(path.join(other, 'model.safetensors'), 'weights');
    const of = { hook: 'blocks.0.mlp.hook_post', context: 128, corpus: ['a.jsonl'] };
    const dir = path.join(root, 'cache');
    expect(await build(dir, { of, inputs: { model }, shards: 2 })).toMatchObject({ rows: 256, complete: false });

    const refused = (options: Parameters<typeof build>[1]) => build(dir, options).then(() => 'accepted', (e: unknown) => String(e));
    expect(await refused({ of: { ...of, hook: 'blocks.0.hook_resid_post' }, inputs: { model } })).toMatch(
      /^ActivationCacheError: .*cache-build\.json: the cache here is of other options: hook \(saved blocks\.0\.mlp\.hook_post, now blocks\.0\.hook_resid_post\); give the same options, or another folder$/,
    );
    expect(await refused({ of: { ...of, context: 64, corpus: ['b.jsonl'] }, inputs: { model } })).toMatch(
      /other options: context \(saved 128, now 64\); corpus \(saved \["a\.jsonl"\], now \["b\.jsonl"\]\);/,
    );
    expect(await refused({ of, inputs: { model: other } })).toMatch(new RegExp(`model \\(saved ${model}, now ${other}\\)`));
    expect(await refused({ of })).toMatch(new RegExp(`model \\(saved ${model}, now none\\)`));
    const weights = path.join(model, 'model.safetensors');
    const saved = statSync(weights).mtime;
    utimesSync(weights, saved, new Date(saved.getTime() + 5000)); // the weights replaced, same size
    expect(await refused({ of, inputs: { model } })).toMatch(new RegExp(`model \\(${model}: model\\.safetensors changed since\\)`));
    utimesSync(weights, saved, saved);

    expect(await build(dir, { of, inputs: { model } })).toMatchObject({ rows: 1000, complete: true, resumedFrom: 256 });
    // A complete cache is not reported as one of other options either.
    expect(await refused({ of: { ...of, hook: 'blocks.1.mlp.hook_post' }, inputs: { model } })).toMatch(/hook \(saved blocks\.0\.mlp\.hook_post, now blocks\.1\.mlp\.hook_post\)/);
    expect(await build(dir, { of, inputs: { model } })).toMatchObject({ rows: 1000, complete: true, resumedFrom: 1000 });
  });

  it('refuses a resume whose source gives rows of another width', async () => {
    const dir = path.join(tempDir('cache'), 'width');
    expect(await build(dir, { shards: 1 })).toMatchObject({ rows: 128, complete: false });
    const wider = async (s: unknown) => ({ ...(await countingSource(s)), d: d + 1 });
    await expect(buildActivationCache({ dir, openSource: wider, rows: 1000, shardRows: 128, backend: 'cpu' })).rejects.toThrow(
      /manifest\.json: holds rows of width 5, but the source gives 6/,
    );
  });
});

describe('activation cache: shards already written', () => {
  const options = (dir: string, log: string[] = []) => ({ dir, openSource: countingSource, rows: 1000, shardRows: 128, backend: 'cpu' as const, log: (line: string) => log.push(line) });
  const shardFiles = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.bin') || n === 'manifest.json');

  it('builds a resumed cache again from its first missing or damaged shard, giving the same shards', async () => {
    const whole = path.join(tempDir('cache'), 'whole');
    await buildActivationCache(options(whole));
    const dir = path.join(tempDir('cache'), 'damaged');
    const controller = new AbortController();
    let calls = 0;
    await buildActivationCache({
      ...options(dir),
      signal: controller.signal,
      openSource: async (s) => {
        const src = await countingSource(s);
        return { ...src, state: src.state, next: async (rows, out) => (++calls === 4 && controller.abort(), src.next(rows, out)) };
      },
    });
    rmSync(path.join(dir, 'acts-000001.bin'));
    const log: string[] = [];
    expect(await buildActivationCache(options(dir, log))).toMatchObject({ rows: 1000, shards: 8, complete: true, resumedFrom: 128 });
    expect(log[0]).toBe(`${path.join(dir, 'acts-000001.bin')}: missing; building the cache again from it (row 128)`);
    for (const name of shardFiles(whole)) expect(readFileSync(path.join(dir, name)).equals(readFileSync(path.join(whole, name))), name).toBe(true);
  });

  it('does not report a complete cache with a truncated or corrupt shard as cached, and builds it again from that shard', async () => {
    const whole = path.join(tempDir('cache'), 'whole');
    await buildActivationCache(options(whole));
    const dir = path.join(tempDir('cache'), 'complete');
    await buildActivationCache(options(dir));
    truncateSync(path.join(dir, 'acts-000005.bin'), 100);
    const flipped = readFileSync(path.join(dir, 'acts-000006.bin'));
    flipped[3]! ^= 1;
    writeFileSync(path.join(dir, 'acts-000006.bin'), flipped);
    const log: string[] = [];
    expect(await buildActivationCache(options(dir, log))).toMatchObject({ rows: 1000, shards: 8, complete: true, resumedFrom: 640 });
    expect(log[0]).toBe(`${path.join(dir, 'acts-000005.bin')}: holds 100 bytes; 128 rows of 5 f32 need 2560 (truncated?); building the cache again from it (row 640)`);
    for (const name of shardFiles(whole)) expect(readFileSync(path.join(dir, name)).equals(readFileSync(path.join(whole, name))), name).toBe(true);

    // Only the checksum is off.
    writeFileSync(path.join(dir, 'acts-000002.bin'), flipped);
    log.length = 0;
    expect(await buildActivationCache(options(dir, log))).toMatchObject({ complete: true, resumedFrom: 256 });
    expect(log[0]).toMatch(/acts-000002\.bin: fails its SHA-256 check \(corrupt\); building the cache again from it \(row 256\)$/);
    expect(await verifyActivationCache(dir)).toEqual({ shards: 8, rows: 1000 });

    // A build state of an older version holds no positions to build again from: the shard is named.
    const buildFile = path.join(dir, 'cache-build.json');
    const { starts: _, ...older } = JSON.parse(readFileSync(buildFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(buildFile, JSON.stringify(older));
    rmSync(path.join(dir, 'acts-000003.bin'));
    await expect(buildActivationCache(options(dir))).rejects.toThrow(
      /acts-000003\.bin: missing; cache-build\.json \(of an older version\) holds no position to build it again from: delete the cache folder to rebuild it$/,
    );
  });

  it('gives train’s reader the checksums, so a corrupt value in a shard fails naming it', async () => {
    const dir = path.join(tempDir('cache'), 'nan');
    await buildActivationCache(options(dir));
    const shard = path.join(dir, 'acts-000003.bin');
    const bytes = readFileSync(shard);
    bytes.writeFloatLE(Number.NaN, 40);
    writeFileSync(shard, bytes);
    await expect(openActivationSource({ paths: [path.join(dir, 'manifest.json')], seed: 0 })).rejects.toThrow(
      new RegExp(`^${shard}: fails its SHA-256 check`),
    );
  });
});
