/**
 * The CPU SAE step's sparse products (native/cpu/sae_sparse_cpu.cpp): once at most 5% of f's
 * entries are active, sae_grads runs the decoder product, dW_dec, the masked ∂f and dW_enc over
 * the active entries only. Here on low-density batches (b_enc well below zero: about 1% active),
 * against the float64 reference (tolerances of test/helpers/sae-parity.ts), against the dense
 * products (MONOSEMANTIC_CPU_SAE_SPARSE=never) and across thread counts. The full parity suite
 * also runs with the sparse products forced (sae-parity.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';

import { nativeAddon } from '../../lib/backend.js';
import type { Penalty, Precision } from '../../lib/sae/config.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';
import { lossAndGrads64 } from '../reference/sae-reference.js';
import { relDiff, relError, toF64 } from '../helpers/data.js';
import { TOLERANCE, drawCase, params64 } from '../helpers/sae-parity.js';

const backend = 'cpu' as const;
const l1Coeff = 0.7;
const LOW_DENSITY = [-2.0, -1.0] as const; // b_enc range: about 1% of the features fire
const SPARSE_DENSITY = 0.05; // kSparseDensity in native/cpu/sae_sparse_cpu.h
const names = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const;

const mode = process.env.MONOSEMANTIC_CPU_SAE_SPARSE;
afterEach(() => {
  if (mode === undefined) delete process.env.MONOSEMANTIC_CPU_SAE_SPARSE;
  else process.env.MONOSEMANTIC_CPU_SAE_SPARSE = mode;
});

async function gradients(B: number, d: number, n: number, penalty: Penalty, precision: Precision, seed: number) {
  const drawn = drawCase({ B, d, n, penalty, precision }, seed, { bEnc: LOW_DENSITY });
  using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, penalty, precision, l1Coeff });
  sae.writeParameters(drawn.params);
  using x = Tensor.from(drawn.x, [B, d], { backend });
  for (const t of Object.values(sae.gradients)) t.fill(Number.NaN);
  const stats = await sae.computeGradients(x);
  const grads = Object.fromEntries(names.map((k) => [k, sae.gradients[k].toFloat32()])) as Record<(typeof names)[number], Float32Array>;
  return { drawn, stats, grads, fireCounts: Array.from(sae.fireCounts()) };
}

describe('SAE step on the CPU, sparse products', () => {
  const cases = [
    [130, 72, 301],
    [64, 31, 1000],
    [257, 40, 2049],
  ] as const;
  for (const [B, d, n] of cases)
    for (const penalty of ['l1', 'l1_decnorm'] as const)
      for (const precision of ['f32', 'bf16'] as const)
        it(`low-density batch B=${B} d=${d} n=${n} ${penalty} ${precision}: matches the reference`, async () => {
          const got = await gradients(B, d, n, penalty, precision, 300 + B + n);
          const ref = lossAndGrads64(params64(got.drawn, d, n), toF64(got.drawn.x), B, { l1Coeff, penalty });
          // The batch is sparse enough for the sparse products, and not empty.
          expect(ref.l0 / n).toBeLessThan(SPARSE_DENSITY);
          expect(ref.l0).toBeGreaterThan(0);
          const tol = TOLERANCE[precision];
          expect(relDiff(got.stats.loss, ref.loss)).toBeLessThan(tol);
          expect(relDiff(got.stats.mse, ref.mse)).toBeLessThan(tol);
          expect(relDiff(got.stats.sparsity, ref.sparsity)).toBeLessThan(tol);
          expect(got.stats.l0).toBe(ref.l0);
          expect(got.fireCounts).toEqual(Array.from(ref.fireCounts));
          expect(relError(got.grads.W_enc, ref.dW_enc)).toBeLessThan(tol);
          expect(relError(got.grads.b_enc, ref.db_enc)).toBeLessThan(tol);
          expect(relError(got.grads.W_dec, ref.dW_dec)).toBeLessThan(tol);
          expect(relError(got.grads.b_dec, ref.db_dec)).toBeLessThan(tol);
        });

  it('agrees with the dense products to fp32 rounding, and gives the same bits for 1 and 3 threads', async () => {
    const [B, d, n] = [257, 40, 2049];
    const addon = nativeAddon();
    const threads = addon.cpuInfo().threads;
    const runs: Awaited<ReturnType<typeof gradients>>[] = [];
    try {
      for (const [setting, t] of [['never', threads], ['auto', 1], ['auto', 3]] as const) {
        process.env.MONOSEMANTIC_CPU_SAE_SPARSE = setting;
        addon.setThreads(t);
        runs.push(await gradients(B, d, n, 'l1', 'f32', 41));
      }
    } finally {
      addon.setThreads(threads);
    }
    const [dense, one, three] = runs as [(typeof runs)[0], (typeof runs)[0], (typeof runs)[0]];
    for (const k of names) {
      expect(three.grads[k], k).toEqual(one.grads[k]);
      expect(relError(one.grads[k], toF64(dense.grads[k])), k).toBeLessThan(1e-6);
    }
    expect(three.stats).toEqual(one.stats);
    expect(one.fireCounts).toEqual(dense.fireCounts);
    expect(relDiff(one.stats.loss, dense.stats.loss)).toBeLessThan(1e-6);
  });
});
