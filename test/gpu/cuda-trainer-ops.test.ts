/**
 * The CUDA backend's trainer ops against the CPU backend: sums of squares, scaling, row
 * distances, gradient clipping, the streamed resampling sample and the re-initialisation, and a
 * short training run with resampling that a resume continues within tolerance. Skipped, with the
 * reason printed, where the CUDA backend is not available.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { type BackendName, backendStatus, nativeAddon } from '../../lib/backend.js';
import { readSafetensors, tensorToFloat32 } from '../../lib/io/safetensors.js';
import { gatherRows, rowSqDist, scaleInPlace, sumSquares } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { train } from '../../lib/sae/trainer.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, relDiff, relError } from '../helpers/data.js';
import { expectSameValues } from '../helpers/same-values.js';
import { tempDir, testConfig, writePlantedActivations } from '../helpers/run-fixtures.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

describe.skipIf(!hasCuda)('cuda trainer ops', () => {
  it('sumSquares, scaleInPlace and rowSqDist match the CPU backend on awkward sizes', async () => {
    const rng = new Rng(1);
    const [rows, d] = [1031, 77];
    const a = normalArray(rng, rows * d);
    const b = normalArray(rng, rows * d);
    const results: Record<BackendName, { ss: number; scaled: Float32Array; dist: Float32Array; norms: Float32Array }> = {} as never;
    for (const backend of ['cpu', 'cuda'] as const) {
      using ta = Tensor.from(a, [rows, d], { backend });
      using tb = Tensor.from(b, [rows, d], { backend });
      const ss = await sumSquares(ta);
      using dist = await rowSqDist(ta, tb);
      using norms = await rowSqDist(ta, null);
      await scaleInPlace(ta, 1.7);
      results[backend] = { ss, scaled: ta.toArray() as Float32Array, dist: dist.toArray() as Float32Array, norms: norms.toArray() as Float32Array };
    }
    expect(relDiff(results.cuda.ss, results.cpu.ss)).toBeLessThan(1e-12);
    expect(results.cuda.scaled).toEqual(results.cpu.scaled); // one IEEE multiply each
    for (let r = 0; r < rows; r++) {
      expect(relDiff(results.cuda.dist[r]!, results.cpu.dist[r]!)).toBeLessThan(1e-6);
      expect(relDiff(results.cuda.norms[r]!, results.cpu.norms[r]!)).toBeLessThan(1e-6);
    }
  });

  it('gatherRows matches the CPU backend and rejects a bad index', async () => {
    const rng = new Rng(6);
    const [N, d, count] = [3001, 67, 2049];
    const src = normalArray(rng, N * d);
    const idx = Int32Array.from({ length: count }, () => rng.int(N));
    const out: Record<string, Float32Array> = {};
    for (const backend of ['cpu', 'cuda'] as const) {
      using s = Tensor.from(src, [N, d], { backend });
      using i = Tensor.from(idx, [count], { backend, dtype: 'i32' });
      using dst = Tensor.zeros([count + 5, d], { backend });
      await gatherRows(s, i, dst, 5);
      out[backend] = dst.toArray() as Float32Array;
      // Indices vouched for by the caller: the device check is skipped, the rows are the same.
      using checked = Tensor.zeros([count + 5, d], { backend });
      await gatherRows(s, i, checked, 5, { indicesChecked: true });
      expectSameValues(checked.toArray() as Float32Array, out[backend]!, `${backend} with indices checked by the caller`);
      using bad = Tensor.from(Int32Array.from([0, -1]), [2], { backend, dtype: 'i32' });
      await expect(gatherRows(s, bad, dst)).rejects.toThrow(/idx\[1\] = -1/);
    }
    expectSameValues(out.cuda!, out.cpu!, 'cuda against cpu');
  });

  it('keeps the same resampling candidates as the CPU backend over a chunked stream', async () => {
    const rng = new Rng(2);
    const [N, d, k, seed] = [5003, 19, 301, 123456789];
    const x = normalArray(rng, N * d);
    const loss = Float32Array.from({ length: N }, (_, i) => (i % 97 === 0 ? 0 : rng.range(0, 4)));
    const out: Record<string, { keys: Float32Array; rows: Float32Array }> = {};
    for (const backend of ['cpu', 'cuda'] as const) {
      using keys = Tensor.full([k], Number.NEGATIVE_INFINITY, { backend });
      using rows = Tensor.zeros([k, d], { backend });
      let offset = 0;
      for (const n of [1000, 7, 2500, 1496]) {
        using xc = Tensor.from(x.subarray(offset * d, (offset + n) * d), [n, d], { backend });
        using lc = Tensor.from(loss.subarray(offset, offset + n), [n], { backend });
        await nativeAddon().resampleCandidates({ k, batch: n, d, seed, offset, x: xc.native, loss: lc.native, candKeys: keys.native, candRows: rows.native });
        offset += n;
      }
      out[backend] = { keys: keys.toArray() as Float32Array, rows: rows.toArray() as Float32Array };
    }
    expect(out.cuda!.keys).toEqual(out.cpu!.keys);
    expect(out.cuda!.rows).toEqual(out.cpu!.rows);
  });

  it('re-initialises dead features like the CPU backend and clips gradients like it', async () => {
    const rng = new Rng(3);
    const [B, d, n] = [129, 33, 301];
    const data = normalArray(rng, B * d);
    const dead = Int32Array.from({ length: 40 }, (_, i) => (i * 7) % n);
    const candRows = normalArray(rng, dead.length * d);
    const candKeys = Float32Array.from({ length: dead.length }, (_, i) => (i === 5 ? Number.NEGATIVE_INFINITY : -i));
    const results: Record<string, { params: ReturnType<SparseAutoencoder['readParameters']>; opt: ReturnType<SparseAutoencoder['readOptimizerState']>; gradNorm: number; mean: number }> = {};
    for (const backend of ['cpu', 'cuda'] as const) {
      using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, precision: 'f32', seed: 9, l1Coeff: 0.5, lr: 1e-3 });
      using x = Tensor.from(data, [B, d], { backend });
      let gradNorm = 0;
      for (let s = 0; s < 3; s++) gradNorm = (await sae.step(x, { clipGradNorm: 0.5 })).gradNorm;
      using keys = Tensor.from(candKeys, [dead.length], { backend });
      using rows = Tensor.from(candRows, [dead.length, d], { backend });
      const r = await sae.resampleFeatures(dead, { keys, rows }, 0.2);
      expect(r.resampled).toBe(dead.length - 1);
      results[backend] = { params: sae.readParameters(), opt: sae.readOptimizerState(), gradNorm, mean: r.meanLiveEncoderNorm };
    }
    const [c, g] = [results.cpu!, results.cuda!];
    expect(relDiff(g.gradNorm, c.gradNorm)).toBeLessThan(1e-4);
    expect(relDiff(g.mean, c.mean)).toBeLessThan(1e-4);
    for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
      expect(relError(g.params[k], c.params[k]), k).toBeLessThan(1e-4);
      expect(relError(g.opt.m[k], c.opt.m[k]), `m.${k}`).toBeLessThan(1e-3);
    }
    for (const j of dead) if (j !== dead[5]) expect(g.opt.v.b_enc[j]).toBe(0);
  });

  // With every feature dead there are no live columns to average: both backends take the mean norm
  // of all the encoder columns (resample.cu: column_norms_kernel's `all`, mean_norm_kernel's n).
  it('re-initialises like the CPU backend when every feature is dead (the scale of all the columns)', async () => {
    const rng = new Rng(4);
    const [d, n] = [37, 1030]; // n past four blocks of column_norms_kernel, not a multiple of 256
    const dead = Int32Array.from({ length: n }, (_, i) => (i * 7) % n); // every feature, out of order
    const candRows = normalArray(rng, n * d);
    candRows.fill(0, 11 * d, 12 * d); // slot 11: an input of zero norm (not applied)
    const candKeys = Float32Array.from({ length: n }, (_, i) => (i === 5 ? Number.NEGATIVE_INFINITY : -i)); // slot 5: no input
    const results: Record<string, { W_enc: Float32Array; W_dec: Float32Array; mean: number; live: number; resampled: number }> = {};
    for (const backend of ['cpu', 'cuda'] as const) {
      using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, precision: 'f32', seed: 9 });
      // Encoder columns of norms 0.5 .. 0.5 n (the default initialisation's are all alike).
      const W_enc = sae.readParameters().W_enc;
      for (let j = 0; j < n; j++) {
        const norm = Math.hypot(...Array.from({ length: d }, (_, r) => W_enc[r * n + j]!));
        for (let r = 0; r < d; r++) W_enc[r * n + j] = (W_enc[r * n + j]! / norm) * 0.5 * (j + 1);
      }
      sae.writeParameters({ W_enc });
      using keys = Tensor.from(candKeys, [n], { backend });
      using rows = Tensor.from(candRows, [n, d], { backend });
      const r = await sae.resampleFeatures(dead, { keys, rows }, 0.2);
      const p = sae.readParameters();
      results[backend] = { W_enc: p.W_enc, W_dec: p.W_dec, mean: r.meanLiveEncoderNorm, live: r.live, resampled: r.resampled };
    }
    const [c, g] = [results.cpu!, results.cuda!];
    const mean = (0.5 * (n + 1)) / 2; // the mean of 0.5, 1, ..., 0.5 n
    for (const b of [c, g]) {
      expect(b.live).toBe(0);
      expect(b.resampled).toBe(n - 2);
      expect(relDiff(b.mean, mean)).toBeLessThan(1e-6);
    }
    expect(relDiff(g.mean, c.mean)).toBeLessThan(1e-12);
    expect(relError(g.W_enc, c.W_enc), 'W_enc').toBeLessThan(1e-6);
    expect(relError(g.W_dec, c.W_dec), 'W_dec').toBeLessThan(1e-6);
    // A re-initialised column has norm 0.2 · mean; the two slots without a usable input keep theirs.
    const colNorm = (W: Float32Array, j: number) => Math.hypot(...Array.from({ length: d }, (_, r) => W[r * n + j]!));
    for (let i = 0; i < n; i++) {
      const j = dead[i]!;
      const want = i === 5 || i === 11 ? 0.5 * (j + 1) : 0.2 * mean;
      expect(relDiff(colNorm(g.W_enc, j), want), `column ${j} (slot ${i})`).toBeLessThan(1e-5);
    }
  });

  it('a resumed CUDA run with resampling ends within tolerance of an uninterrupted one', async () => {
    const root = tempDir('cuda-resume');
    const data = path.join(root, 'data');
    mkdirSync(data);
    writePlantedActivations(data, { atoms: 48, d: 16, files: 3, rowsPerFile: 1500, seed: 1 });
    const overrides = {
      training: { batchSize: 64, totalSteps: 120, lr: 3e-2, l1Coeff: 2 },
      resampling: { enabled: true, steps: [50, 90], deadWindowSteps: 20, samples: 300 },
    };
    const cfg = (name: string) => ({ ...testConfig(data, path.join(root, name), overrides), backend: 'cuda' as const });
    const whole = await train(cfg('whole'));
    const controller = new AbortController();
    await train(cfg('cut'), { signal: controller.signal, onStep: (s) => s === 55 && controller.abort() });
    const resumed = await train(cfg('cut'), { resume: true });
    expect(resumed.resamples.map((r) => r.step)).toEqual(whole.resamples.map((r) => r.step));
    const load = async (dir: string) => (await readSafetensors(path.join(dir, 'sae_weights.safetensors'))).tensors;
    const [a, b] = [await load(whole.exportDir!), await load(resumed.exportDir!)];
    for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec']) expect(relError(tensorToFloat32(b[k]!), tensorToFloat32(a[k]!)), k).toBeLessThan(1e-3);
  });
});
