/**
 * Dead-feature resampling on the CPU backend: the streamed loss²-weighted sampling against a
 * TypeScript reference, its distribution, the paper's re-initialisation on a crafted case, and
 * the whole procedure through resampleDeadFeatures.
 */
import { describe, expect, it } from 'vitest';

import { nativeAddon } from '../../lib/backend.js';
import { Rng } from '../../lib/random.js';
import { resampleDeadFeatures } from '../../lib/sae/resample.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';
import { sampleKey } from '../helpers/counter-rng.js';
import { normalArray } from '../helpers/data.js';

const backend = 'cpu' as const;

/** Streams x [N, d] with losses [N] through resampleCandidates in chunks of the given sizes. */
async function streamCandidates(x: Float32Array, loss: Float32Array, d: number, k: number, seed: number, chunks: number[]) {
  using keys = Tensor.full([k], Number.NEGATIVE_INFINITY, { backend });
  using rows = Tensor.full([k, d], 12345, { backend });
  let offset = 0;
  for (const n of chunks) {
    using xc = Tensor.from(x.subarray(offset * d, (offset + n) * d), [n, d], { backend });
    using lc = Tensor.from(loss.subarray(offset, offset + n), [n], { backend });
    await nativeAddon().resampleCandidates({ k, batch: n, d, seed, offset, x: xc.native, loss: lc.native, candKeys: keys.native, candRows: rows.native });
    offset += n;
  }
  return { keys: keys.toArray() as Float32Array, rows: rows.toArray() as Float32Array };
}

describe('resampleCandidates', () => {
  it('keeps the k largest keys log(u)/loss² over a chunked stream, in descending order, with their rows', async () => {
    const rng = new Rng(5);
    const d = 7;
    const N = 203;
    const k = 13;
    const seed = 987654321;
    const x = normalArray(rng, N * d);
    const loss = Float32Array.from({ length: N }, (_, i) => (i % 17 === 0 ? 0 : rng.range(0.1, 3)));
    const { keys, rows } = await streamCandidates(x, loss, d, k, seed, [50, 1, 64, 88]);

    const ref = Array.from({ length: N }, (_, i) => ({ i, key: sampleKey(seed, i, loss[i]!) }));
    ref.sort((a, b) => b.key - a.key || a.i - b.i);
    for (let s = 0; s < k; s++) {
      const want = ref[s]!;
      expect(keys[s]).toBe(want.key);
      expect(Array.from(rows.subarray(s * d, (s + 1) * d))).toEqual(Array.from(x.subarray(want.i * d, (want.i + 1) * d)));
    }
  });

  it('never picks a zero-loss input and leaves -inf slots when fewer inputs than k have weight', async () => {
    const d = 3;
    const x = Float32Array.from({ length: 6 * d }, (_, i) => i + 1);
    const loss = Float32Array.from([0, 2, 0, 0, 1, 0]);
    const { keys, rows } = await streamCandidates(x, loss, d, 4, 1, [6]);
    expect(Number.isFinite(keys[0]) && Number.isFinite(keys[1])).toBe(true);
    expect(keys[2]).toBe(Number.NEGATIVE_INFINITY);
    expect(keys[3]).toBe(Number.NEGATIVE_INFINITY);
    const picked = new Set([rows[0], rows[d]]); // first element of each kept row identifies it
    expect(picked).toEqual(new Set([1 * d + 1, 4 * d + 1]));
  });

  it('draws inputs with probability proportional to loss² (k = 1, 3000 seeds)', async () => {
    const d = 1;
    const x = Float32Array.from([0, 1, 2]);
    const loss = Float32Array.from([1, 2, 3]); // weights 1, 4, 9 → 1/14, 4/14, 9/14
    const counts = [0, 0, 0];
    using xt = Tensor.from(x, [3, 1], { backend });
    using lt = Tensor.from(loss, [3], { backend });
    using keys = Tensor.empty([1], { backend });
    using rows = Tensor.empty([1, 1], { backend });
    const trials = 3000;
    for (let s = 0; s < trials; s++) {
      keys.fill(Number.NEGATIVE_INFINITY);
      await nativeAddon().resampleCandidates({ k: 1, batch: 3, d, seed: s, offset: 0, x: xt.native, loss: lt.native, candKeys: keys.native, candRows: rows.native });
      counts[(rows.toArray() as Float32Array)[0]!]! += 1;
    }
    const expected = [1 / 14, 4 / 14, 9 / 14];
    for (let i = 0; i < 3; i++) {
      const p = expected[i]!;
      const sd = Math.sqrt((p * (1 - p)) / trials);
      expect(Math.abs(counts[i]! / trials - p)).toBeLessThan(4.5 * sd);
    }
  });
});

describe('SparseAutoencoder.resampleFeatures', () => {
  it('re-initialises exactly the dead features as the paper describes and leaves everything else untouched', async () => {
    const rng = new Rng(21);
    const d = 5;
    const n = 11;
    using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, seed: 3 });
    // Non-trivial parameters and Adam moments: a few steps on random data.
    using x = Tensor.from(normalArray(rng, 9 * d), [9, d], { backend });
    for (let s = 0; s < 3; s++) await sae.step(x);
    const before = sae.readParameters();
    const opt = sae.readOptimizerState();

    const dead = Int32Array.from([7, 2, 9]);
    const candRows = normalArray(rng, 3 * d);
    candRows.fill(0, 2 * d, 3 * d); // slot 2: a zero input, must be skipped
    using keys = Tensor.from(Float32Array.from([-0.5, -1, -2]), [3], { backend });
    using rows = Tensor.from(candRows, [3, d], { backend });
    const result = await sae.resampleFeatures(dead, { keys, rows }, 0.2);

    // Mean encoder-column norm over features not listed as dead.
    let sum = 0;
    for (let j = 0; j < n; j++) {
      if (dead.includes(j)) continue;
      let ss = 0;
      for (let r = 0; r < d; r++) ss += before.W_enc[r * n + j]! ** 2; // W_enc[r, j]
      sum += Math.sqrt(ss);
    }
    const meanNorm = sum / (n - dead.length);
    expect(result.resampled).toBe(2);
    expect(result.live).toBe(n - 3);
    expect(Math.abs(result.meanLiveEncoderNorm - meanNorm)).toBeLessThan(1e-12 * meanNorm);

    const after = sae.readParameters();
    const optAfter = sae.readOptimizerState();
    const changed = new Set([7, 2]);
    for (let slot = 0; slot < 2; slot++) {
      const j = dead[slot]!;
      const r = candRows.subarray(slot * d, (slot + 1) * d);
      const norm = Math.hypot(...r);
      for (let c = 0; c < d; c++) {
        expect(after.W_dec[j * d + c]).toBeCloseTo(r[c]! / norm, 6); // W_dec[j, c]
        expect(after.W_enc[c * n + j]).toBeCloseTo((0.2 * meanNorm * r[c]!) / norm, 6); // W_enc[c, j]
        for (const which of ['m', 'v'] as const) {
          expect(optAfter[which].W_dec[j * d + c]).toBe(0);
          expect(optAfter[which].W_enc[c * n + j]).toBe(0);
        }
      }
      expect(after.b_enc[j]).toBe(0);
      expect(optAfter.m.b_enc[j]).toBe(0);
      expect(optAfter.v.b_enc[j]).toBe(0);
    }
    // Every other entry is bit-identical, the zero-input slot's feature 9 included.
    for (let j = 0; j < n; j++) {
      if (changed.has(j)) continue;
      expect(after.b_enc[j]).toBe(before.b_enc[j]);
      for (let c = 0; c < d; c++) {
        expect(after.W_dec[j * d + c]).toBe(before.W_dec[j * d + c]);
        expect(after.W_enc[c * n + j]).toBe(before.W_enc[c * n + j]);
        expect(optAfter.m.W_enc[c * n + j]).toBe(opt.m.W_enc[c * n + j]);
        expect(optAfter.v.W_dec[j * d + c]).toBe(opt.v.W_dec[j * d + c]);
      }
    }
    expect(Array.from(after.b_dec)).toEqual(Array.from(before.b_dec));
    expect(Array.from(optAfter.m.b_dec)).toEqual(Array.from(opt.m.b_dec));
    expect(optAfter.steps).toBe(3);
  });

  it('rejects bad dead lists', async () => {
    using sae = SparseAutoencoder.create({ dIn: 3, dSae: 4, backend });
    using keys = Tensor.zeros([2], { backend });
    using rows = Tensor.zeros([2, 3], { backend });
    expect(() => sae.resampleFeatures(Int32Array.from([1, 4]), { keys, rows })).toThrow(/outside \[0, 4\)/);
    expect(() => sae.resampleFeatures(Int32Array.from([1, 1]), { keys, rows })).toThrow(/twice/);
    expect(() => sae.resampleFeatures(Int32Array.from([0, 1, 2]), { keys, rows })).toThrow(RangeError);
    const gone = Tensor.zeros([2, 3], { backend });
    gone.dispose();
    expect(() => sae.resampleFeatures(Int32Array.from([1, 2]), { keys, rows: gone })).toThrow('candidates.rows has been disposed');
    // Refused before anything was queued: the SAE takes its next call at once.
    await sae.resampleFeatures(Int32Array.from([1, 2]), { keys, rows });
  });
});

describe('resampleDeadFeatures', () => {
  it('gives dead features the inputs the SAE reconstructs worst', async () => {
    const rng = new Rng(8);
    const d = 6;
    const n = 10;
    using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, seed: 1 });
    // Inputs: small noise everywhere (reconstructed well enough) plus two far-away outliers.
    const N = 64;
    const data = normalArray(rng, N * d, 0.01);
    const outliers = [17, 40];
    for (const o of outliers) for (let c = 0; c < d; c++) data[o * d + c] = (c + 1) * 50 * (o === 17 ? 1 : -1);
    let served = 0;
    const tensors = new Map<number, Tensor>();
    const next = async (rows: number) => {
      let t = tensors.get(rows);
      if (!t) tensors.set(rows, (t = Tensor.empty([rows, d], { backend })));
      const start = served % N;
      const chunk = new Float32Array(rows * d);
      for (let r = 0; r < rows; r++) chunk.set(data.subarray(((start + r) % N) * d, ((start + r) % N + 1) * d), r * d);
      served += rows;
      t.upload(chunk);
      return t;
    };
    const dead = Int32Array.from([3, 8]);
    const report = await resampleDeadFeatures(sae, dead, next, { samples: N, batchSize: 24, encNormFactor: 0.2, seed: 77 });
    for (const t of tensors.values()) t.dispose();
    expect(report).toMatchObject({ dead: 2, resampled: 2, inputs: N });
    const W_dec = sae.readParameters().W_dec;
    const directions = [3, 8].map((j) => Array.from(W_dec.subarray(j * d, (j + 1) * d)));
    const expected = outliers.map((o) => {
      const v = Array.from(data.subarray(o * d, (o + 1) * d));
      const norm = Math.hypot(...v);
      return v.map((c) => c / norm);
    });
    // Each dead feature got one of the two outliers, and they got different ones.
    const matches = directions.map((dir) => expected.findIndex((e) => e.every((c, i) => Math.abs(c - dir[i]!) < 1e-6)));
    expect(matches.sort()).toEqual([0, 1]);
    expect(Array.from(report.applied)).toEqual([3, 8]);
  });

  it('reports which dead features it re-initialised: not those left without an input', async () => {
    const d = 4;
    using sae = SparseAutoencoder.create({ dIn: d, dSae: 12, backend, seed: 2 });
    // Two inputs, one of them zero (loss 0: never drawn): one dead feature of five gets an input.
    using x = Tensor.from([0, 0, 0, 0, 3, -1, 2, 5], [2, d], { backend });
    const report = await resampleDeadFeatures(sae, Int32Array.from([1, 4, 6, 9, 11]), async () => x, { samples: 2, batchSize: 2, encNormFactor: 0.2, seed: 3 });
    expect(report.resampled).toBe(1);
    expect(report.applied.length).toBe(1);
    expect([1, 4, 6, 9, 11]).toContain(report.applied[0]);
  });

  it('with every feature dead, new encoder columns take the scale of all the encoder columns', async () => {
    const d = 5;
    const n = 6;
    using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, seed: 4 });
    // Encoder columns of norms 0.5, 1, ..., 3 (not the unit norms of the default initialisation).
    const W_enc = sae.readParameters().W_enc; // [d, n]
    for (let j = 0; j < n; j++) {
      const norm = Math.hypot(...Array.from({ length: d }, (_, r) => W_enc[r * n + j]!));
      for (let r = 0; r < d; r++) W_enc[r * n + j] = (W_enc[r * n + j]! / norm) * 0.5 * (j + 1);
    }
    sae.writeParameters({ ...sae.readParameters(), W_enc });
    const mean = (0.5 * (n * (n + 1))) / 2 / n; // 1.75
    using x = Tensor.from(normalArray(new Rng(5), 8 * d), [8, d], { backend });
    const report = await resampleDeadFeatures(sae, Int32Array.from({ length: n }, (_, j) => j), async () => x, { samples: 8, batchSize: 8, encNormFactor: 0.2, seed: 6 });
    expect(report.live).toBe(0);
    expect(report.meanLiveEncoderNorm).toBeCloseTo(mean, 5);
    const after = sae.readParameters().W_enc;
    for (const j of report.applied) {
      expect(Math.hypot(...Array.from({ length: d }, (_, r) => after[r * n + j]!))).toBeCloseTo(0.2 * mean, 5);
    }
    expect(report.applied.length).toBeGreaterThan(0);
  });
});
