/**
 * The CUDA backend's tensor-core bf16 path (mma.sync GEMMs whose epilogues apply the encoder's
 * bias and ReLU and the backward's mask and L1 term, and reduce f and gp over rows) against its
 * simple path (MONOSEMANTIC_CUDA_KERNELS=simple: SIMT GEMMs and separate elementwise and
 * column-sum passes) and against the float64 reference (cuda.test.ts runs the parity suite on the
 * default, tensor path; this file adds it for the simple path).
 *
 * Both paths round the same operands to bf16 and accumulate in fp32, so they differ only in the
 * order of summation: gradients agree to 1e-3 relative (Frobenius), far inside bf16's 2e-2 parity
 * tolerance; an activation within rounding of 0 may fire in one path and not the other, so firing
 * counts may differ by a few. Shapes cover several 128 x 128 tiles, K tails, and leading
 * dimensions that are and are not multiples of 8 (16-byte copies or element-wise edge loads).
 * Skipped where the CUDA backend is not available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { backendStatus, nativeAddon } from '../../lib/backend.js';
import { Rng } from '../../lib/random.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, relDiff, relError, uniformArray } from '../helpers/data.js';
import { countsAfterOneBatch, expectedSaturatedCounts } from '../helpers/fire-count-saturation.js';
import { defineSaeParityTests } from '../helpers/sae-parity.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

const KERNELS = 'MONOSEMANTIC_CUDA_KERNELS';

/** Runs fn with the simple kernels selected (the variable is read at each call). */
async function withSimpleKernels<T>(fn: () => Promise<T>): Promise<T> {
  process.env[KERNELS] = 'simple';
  try {
    return await fn();
  } finally {
    delete process.env[KERNELS];
  }
}

interface GradResult {
  stats: { mse: number; sparsity: number; l0: number; loss: number };
  grads: Record<'W_enc' | 'b_enc' | 'W_dec' | 'b_dec', Float32Array>;
  fire: Int32Array;
  f: Float32Array;
}

async function gradients(B: number, d: number, n: number, penalty: 'l1' | 'l1_decnorm', seed: number): Promise<GradResult> {
  const rng = new Rng(seed);
  using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend: 'cuda', precision: 'bf16', penalty, l1Coeff: 0.4 });
  sae.writeParameters({
    W_enc: uniformArray(rng, d * n, -1 / Math.sqrt(d), 1 / Math.sqrt(d)),
    b_enc: uniformArray(rng, n, -0.3, 0.3),
    W_dec: uniformArray(rng, n * d, -1 / Math.sqrt(n), 1 / Math.sqrt(n)),
    b_dec: uniformArray(rng, d, -0.2, 0.2),
  });
  using x = Tensor.from(normalArray(rng, B * d), [B, d], { backend: 'cuda' });
  using f = Tensor.full([B, n], Number.NaN, { backend: 'cuda' });
  for (const t of Object.values(sae.gradients)) t.fill(Number.NaN);
  const stats = await sae.computeGradients(x);
  await sae.encode(x, f);
  const g = sae.gradients;
  return {
    stats,
    grads: { W_enc: g.W_enc.toFloat32(), b_enc: g.b_enc.toFloat32(), W_dec: g.W_dec.toFloat32(), b_dec: g.b_dec.toFloat32() },
    fire: sae.fireCounts(),
    f: f.toFloat32(),
  };
}

describe.skipIf(!hasCuda)('cuda tensor-core kernels', () => {
  const shapes = [
    [1000, 264, 1030], // several tiles in every product; ld % 8 == 0 (16-byte copies), K tails
    [333, 77, 1001], // ld % 8 != 0: element-wise edge loads everywhere
    [512, 512, 4096], // whole tiles only
  ] as const;
  for (const [B, d, n] of shapes) {
    for (const penalty of ['l1', 'l1_decnorm'] as const) {
      it(`bf16 gradients, statistics and encode agree with the simple path: B=${B} d=${d} n=${n} ${penalty}`, async () => {
        const seed = B + d + n;
        const fast = await gradients(B, d, n, penalty, seed);
        const simple = await withSimpleKernels(() => gradients(B, d, n, penalty, seed));
        for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
          expect(fast.grads[k].every(Number.isFinite), `${k} written`).toBe(true);
          expect(relError(fast.grads[k], simple.grads[k]), k).toBeLessThan(1e-3);
        }
        expect(relError(fast.f, simple.f), 'encode').toBeLessThan(1e-3);
        expect(relDiff(fast.stats.mse, simple.stats.mse)).toBeLessThan(1e-4);
        expect(relDiff(fast.stats.sparsity, simple.stats.sparsity)).toBeLessThan(1e-4);
        expect(Math.abs(fast.stats.l0 - simple.stats.l0) * B).toBeLessThanOrEqual(5);
        let flips = 0;
        for (let i = 0; i < n; i++) flips += Math.abs(fast.fire[i]! - simple.fire[i]!);
        // Activations within rounding of zero may fire on one path only: a few per 10M.
        expect(flips).toBeLessThanOrEqual(5 + Math.ceil(B * n * 3e-7));
      });
    }
  }

  it('is deterministic: the same step twice gives the same bits', async () => {
    const a = await gradients(700, 136, 2050, 'l1_decnorm', 5);
    const b = await gradients(700, 136, 2050, 'l1_decnorm', 5);
    for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) expect(a.grads[k], k).toEqual(b.grads[k]);
    expect(a.stats).toEqual(b.stats);
  });

  // The fused path counts in the encoder's epilogue, the f32 and simple paths in the column pass.
  it('firing counts saturate at INT32_MAX on every path (bf16 fused, bf16 simple, f32)', async () => {
    const want = Array.from(expectedSaturatedCounts());
    expect(Array.from(await countsAfterOneBatch('cuda', 'bf16')), 'bf16').toEqual(want);
    expect(Array.from(await withSimpleKernels(() => countsAfterOneBatch('cuda', 'bf16'))), 'bf16 simple').toEqual(want);
    expect(Array.from(await countsAfterOneBatch('cuda', 'f32')), 'f32').toEqual(want);
  });

  // The Hopper GEMM (wgmma + TMA, sm_90a): by default it takes the step's long-K products (x̂,
  // dW_dec, dW_enc) on a compute 9.0 GPU, which this build must run it on (hopperGemm); with
  // MONOSEMANTIC_CUDA_GEMM=wgmma every product where d and n are multiples of 8, and with =mma
  // none. Its results stay within 1e-3 of the simple path.
  describe('the Hopper GEMM (MONOSEMANTIC_CUDA_GEMM=wgmma)', () => {
    const GEMM = 'MONOSEMANTIC_CUDA_GEMM';
    const info = hasCuda ? nativeAddon().backendInfo('cuda') : null;
    const hopper = info?.devices[0]?.computeCapability === '9.0';
    it.skipIf(!hopper)('runs on this compute 9.0 GPU', () => expect(info!.runtime.hopperGemm).toBe(true));
    const withGemm = async <T>(value: 'wgmma' | 'mma', fn: () => Promise<T>): Promise<T> => {
      process.env[GEMM] = value;
      try {
        return await fn();
      } finally {
        delete process.env[GEMM];
      }
    };
    const withWgmma = <T>(fn: () => Promise<T>): Promise<T> => withGemm('wgmma', fn);
    const wgmmaShapes = [
      [1000, 264, 1032], // ragged tiles: 128 x 256 blocks over 1000 x 1032, K tails of the 64-wide stages
      [4096, 512, 16384], // the first shape: x̂ splits K in two
      [300, 768, 2048], // x̂ with N = 768 (three 256-wide tiles): 9 tiles on 132 SMs, K split in eight
      [4100, 136, 8200], // the encoder and ∂f: 33 x 33 ragged tiles of K = 136, a block per SM taking them in turn
    ] as const;
    for (const [B, d, n] of wgmmaShapes) {
      it.skipIf(!hopper)(`bf16 gradients agree with the simple path, all on wgmma and as chosen by default: B=${B} d=${d} n=${n}`, async () => {
        const seed = B + d + n;
        const wgmma = await withWgmma(() => gradients(B, d, n, 'l1_decnorm', seed));
        const chosen = await gradients(B, d, n, 'l1_decnorm', seed);
        const mma = await withGemm('mma', () => gradients(B, d, n, 'l1_decnorm', seed));
        const simple = await withSimpleKernels(() => gradients(B, d, n, 'l1_decnorm', seed));
        for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
          expect(wgmma.grads[k].every(Number.isFinite), `${k} written`).toBe(true);
          expect(relError(wgmma.grads[k], simple.grads[k]), k).toBeLessThan(1e-3);
          expect(relError(chosen.grads[k], simple.grads[k]), `${k} as chosen`).toBeLessThan(1e-3);
        }
        expect(relDiff(wgmma.stats.mse, simple.stats.mse)).toBeLessThan(1e-4);
        expect(relDiff(wgmma.stats.sparsity, simple.stats.sparsity)).toBeLessThan(1e-4);
        let flips = 0;
        for (let i = 0; i < n; i++) flips += Math.abs(wgmma.fire[i]! - simple.fire[i]!);
        // Activations within rounding of zero may fire on one path only: a few per 10M.
        expect(flips).toBeLessThanOrEqual(5 + Math.ceil(B * n * 3e-7));
        console.log(`wgmma vs mma.sync, B=${B} d=${d} n=${n}: relative difference of dW_enc ${relError(wgmma.grads.W_enc, mma.grads.W_enc).toExponential(2)}`);
      });
    }
    it.skipIf(!hopper)('is deterministic', async () => {
      const a = await withWgmma(() => gradients(700, 136, 2056, 'l1', 5));
      const b = await withWgmma(() => gradients(700, 136, 2056, 'l1', 5));
      for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) expect(a.grads[k], k).toEqual(b.grads[k]);
      expect(a.stats).toEqual(b.stats);
    });
    describe.skipIf(!hopper)('and matches the float64 reference', () => {
      beforeAll(() => {
        process.env[GEMM] = 'wgmma';
      });
      afterAll(() => {
        delete process.env[GEMM];
      });
      defineSaeParityTests('cuda', ['bf16']);
    });
  });

  describe('the simple path still matches the float64 reference', () => {
    beforeAll(() => {
      process.env[KERNELS] = 'simple';
    });
    afterAll(() => {
      delete process.env[KERNELS];
    });
    defineSaeParityTests('cuda', ['bf16']);
  });
});
