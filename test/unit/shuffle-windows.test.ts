/**
 * The seeded shuffles draw a fresh order for every epoch and every window, not one order reused:
 *   - activation files (lib/data/activation-source.ts): each epoch deals the chunks into windows
 *     in its own order, and each window serves its rows in its own order — checked on windows of
 *     equal size, where one reused order would show as the same pattern in every window;
 *   - text contexts (lib/data/contexts.ts): each window of documents is served in its own order.
 * "Another order" is asserted where a coincidence has a chance below 1e-6 (stated per case).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { openActivationSource } from '../../lib/data/activation-source.js';
import { openContextStream } from '../../lib/data/contexts.js';
import { encodeNpy } from '../../lib/io/npy.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';

const root = mkdtempSync(path.join(tmpdir(), 'monosemantic-shuffle-windows-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('activation source', () => {
  // 72 rows of width 5 in one file; chunks of 3 rows (24 chunks) and windows of 4 chunks (6 windows
  // of 12 rows, all the same size). Row id r is stored as r + 0.25 + noise in column 0, so the
  // values are not small integers, and the id is recovered by rounding.
  const rows = 72;
  const d = 5;
  const chunkRows = 3;
  const bufferChunks = 4;
  const windowRows = chunkRows * bufferChunks;
  const file = path.join(root, 'acts.npy');
  const rng = new Rng(3);
  const values = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    values[r * d] = r + 0.25 + rng.range(-0.1, 0.1); // x[r, 0]: the id
    for (let j = 1; j < d; j++) values[r * d + j] = rng.normal(); // x[r, j]
  }
  writeFileSync(file, encodeNpy(values, [rows, d]));

  /** The row ids served in `epochs` whole epochs, [epoch][window][position]. */
  async function served(seed: number, epochs: number): Promise<number[][][]> {
    const source = await openActivationSource({ paths: [file], seed, chunkRows, bufferChunks });
    try {
      const out: number[][][] = [];
      for (let e = 0; e < epochs; e++) {
        const batch = await source.next(rows);
        const ids = Array.from({ length: rows }, (_, r) => Math.round(batch[r * d]! - 0.25));
        out.push(Array.from({ length: rows / windowRows }, (_, w) => ids.slice(w * windowRows, (w + 1) * windowRows)));
      }
      return out;
    } finally {
      await source.close();
    }
  }

  it('deals the chunks into windows in another order in each epoch', async () => {
    const epochs = await served(11, 3);
    // Which chunks each window holds (sorted chunk indices, windows in serving order).
    const dealt = epochs.map((windows) => windows.map((ids) => [...new Set(ids.map((id) => Math.floor(id / chunkRows)))].sort((a, b) => a - b)));
    for (const windows of dealt) expect(windows.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, c) => c));
    // Two uniform deals of 24 chunks agree with a chance of 24!⁻¹·(4!)⁶ ≈ 3e-16.
    expect(dealt[1]).not.toEqual(dealt[0]);
    expect(dealt[2]).not.toEqual(dealt[0]);
    expect(dealt[2]).not.toEqual(dealt[1]);
  });

  it('serves the rows of equal-size windows in other orders', async () => {
    const [epoch] = await served(12, 1);
    // A window's buffer holds its chunks one after another, 3 rows each, so the position of a row
    // within its chunk (id mod 3) is the buffer position's mod 3, whatever the chunk order: one
    // order reused by every window would give every window the same sequence of these.
    const pattern = epoch!.map((ids) => ids.map((id) => id % chunkRows).join(''));
    // Two uniform orders of 12 rows give the same pattern with a chance of (4!)³/12! ≈ 2.9e-5;
    // all 6 windows pairwise distinct is asserted as "at least 5 patterns", failing by chance below 1e-7.
    expect(new Set(pattern).size).toBeGreaterThanOrEqual(5);
  });
});

describe('text contexts', () => {
  it('serves each window of documents in another order', async () => {
    // 24 documents in windows of 4 (6 windows of equal size), each naming its number once.
    const dir = path.join(root, 'texts');
    mkdirSync(dir);
    const count = 24;
    for (let i = 0; i < count; i++) writeFileSync(path.join(dir, `doc-${String(i).padStart(2, '0')}.txt`), `Zebra${String(i).padStart(2, '0')} walks along the river bank today.\n`);
    const tokenizer = await Tokenizer.load(path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied'));
    const stream = await openContextStream({ paths: [dir] }, { tokenizer, contextLength: 9, seed: 5, shuffleDocuments: 4, tokenizerThreads: 0 });
    const ids: number[] = [];
    // Each context's tokens after its BOS: the documents' tokens in serving order.
    for (let batch = await stream.next(16); batch; batch = await stream.next(16)) for (let r = 0; r < batch.length; r += 9) ids.push(...batch.subarray(r + 1, r + 9));
    await stream.close();
    const text = tokenizer.decode(ids);
    // The order of each window's documents: positions of Zebra00 … Zebra23 in the text, ranked within the window.
    const at = Array.from({ length: count }, (_, i) => text.indexOf(`Zebra${String(i).padStart(2, '0')}`));
    const orders: string[] = [];
    for (let w = 0; w < count / 4; w++) {
      const pos = at.slice(4 * w, 4 * w + 4);
      if (pos.some((p) => p < 0)) continue; // the last window may lose its end with the last partial context
      orders.push([0, 1, 2, 3].sort((a, b) => pos[a]! - pos[b]!).join(''));
    }
    expect(orders.length).toBeGreaterThanOrEqual(5);
    // One order reused would make them all equal; independent uniform orders of 4 are all equal
    // with a chance of 24⁻⁴ ≈ 3e-6 (for 5 windows).
    expect(new Set(orders).size).toBeGreaterThan(1);
  });
});
