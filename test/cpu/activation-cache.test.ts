/** The on-disk activation cache: build, interrupt, resume to identical shards, read back, verify. */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
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
    const resumed = await buildActivationCache({ dir: cut, openSource: countingSource, rows: 1000, shardRows: 128, backend: 'cpu' });
    expect(resumed).toMatchObject({ rows: 1000, shards: 8, complete: true, resumedFrom: 384 });
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
