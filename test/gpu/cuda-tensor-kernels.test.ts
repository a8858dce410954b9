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
import { linearBackward } from '../../lib/lm/grad-ops.js';
import { linear, linearT } from '../../lib/lm/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { KERNELS, gradients, withSimpleKernels } from '../helpers/cuda-sae-gradients.js';
import { normalArray, relDiff, relError } from '../helpers/data.js';
import { withEnv } from '../helpers/env.js';
import { countsAfterOneBatch, expectedSaturatedCounts } from '../helpers/fire-count-saturation.js';
import { defineSaeParityTests } from '../helpers/sae-parity.js';
import { expectSameValues } from '../helpers/same-values.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

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
    const withGemm = <T>(value: 'wgmma' | 'mma', fn: () => Promise<T>): Promise<T> => withEnv({ [GEMM]: value }, fn);
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

  // The mma.sync kernel's staged store (plain stores, the default) and its direct one compute the
  // same values and write them in another order: the same bits, for the plain stores (split K, a
  // bias, a bf16 output, beta 1 when a gradient accumulates) next to the fused epilogues, which store
  // directly either way (the encoder's bias-ReLU with its column sums, the feature gradient), on
  // ragged and whole tiles.
  describe('the staged store against the direct one (MONOSEMANTIC_CUDA_EPILOGUE=direct): the same bits', () => {
    const mma = { MONOSEMANTIC_CUDA_GEMM: 'mma' };
    const direct = { ...mma, MONOSEMANTIC_CUDA_EPILOGUE: 'direct' };
    for (const [B, d, n] of [[1000, 264, 1030], [333, 77, 1001], [4096, 512, 16384]] as const) {
      it(`the SAE step's products: B=${B} d=${d} n=${n}`, async () => {
        const staged = await withEnv(mma, () => gradients(B, d, n, 'l1_decnorm', 11));
        const plain = await withEnv(direct, () => gradients(B, d, n, 'l1_decnorm', 11));
        for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
          expect(staged.grads[k].every(Number.isFinite), `${k} written`).toBe(true);
          expectSameValues(staged.grads[k], plain.grads[k], k);
        }
        expectSameValues(staged.f, plain.f, 'f');
        expect(staged.stats).toEqual(plain.stats);
        expectSameValues(staged.fire, plain.fire, 'firing counts');
      });
    }
    it('linear and its backward: bias, fp32 and bf16 outputs, accumulated gradients', async () => {
      const run = async () => {
        const rng = new Rng(31);
        const [rows, nIn, nOut] = [333, 130, 1001];
        using x = Tensor.from(normalArray(rng, rows * nIn), [rows, nIn], { backend: 'cuda' });
        using w = Tensor.from(normalArray(rng, nIn * nOut, 0.1), [nIn, nOut], { backend: 'cuda' });
        using b = Tensor.from(normalArray(rng, nOut), [nOut], { backend: 'cuda' });
        using out = Tensor.full([rows, nOut], Number.NaN, { backend: 'cuda' });
        using outBf = Tensor.empty([rows, nOut], { backend: 'cuda', dtype: 'bf16' });
        using relu = Tensor.full([rows, nOut], Number.NaN, { backend: 'cuda' });
        await linear(x, w, b, out, 'bf16');
        await linear(x, w, b, outBf, 'bf16');
        await linear(x, w, b, relu, 'bf16', { activation: 'relu' });
        using dout = Tensor.from(normalArray(rng, rows * nOut), [rows, nOut], { backend: 'cuda' });
        using dx = Tensor.full([rows, nIn], Number.NaN, { backend: 'cuda' });
        using dw = Tensor.from(normalArray(rng, nIn * nOut), [nIn, nOut], { backend: 'cuda' });
        using db = Tensor.from(normalArray(rng, nOut), [nOut], { backend: 'cuda' });
        await linearBackward(dout, x, w, dx, dw, db, 'bf16', true); // dW += xᵀ dout: beta 1
        return [out, outBf, relu, dx, dw, db].map((t) => t.toFloat32());
      };
      const staged = await withEnv(mma, run);
      const plain = await withEnv(direct, run);
      for (const [i, name] of ['out', 'bf16 out', 'relu', 'dx', 'dW (accumulated)', 'db'].entries()) {
        expect(staged[i]!.every(Number.isFinite), `${name} written`).toBe(true);
        expectSameValues(staged[i]!, plain[i]!, name);
      }
    });
  });

  // The short-K kernel (NT store products with K <= 128, a multiple of 8: the logits product x Wᵀ,
  // and linear's input gradient dout Wᵀ for outputs that narrow) against the general mma.sync
  // kernel (MONOSEMANTIC_CUDA_SHORT_K=off): the same sums in the same order, so the same bits, fp32
  // and bf16 outputs, with a bias; ragged tiles, K a multiple of 8 but not of 16. On a GPU of 132
  // multiprocessors the last two shapes give blocks runs of 4 and of 3 N tiles (the next tile's
  // rows loaded while one is stored; the last run of each M tile short, over a ragged N tile). And
  // against the CPU's bf16 product where it is small.
  describe('the short-K kernel against the general one (MONOSEMANTIC_CUDA_SHORT_K=off): the same bits', () => {
    const KEY = 'MONOSEMANTIC_CUDA_SHORT_K';
    const run = async (rows: number, K: number, N: number, backend: 'cuda' | 'cpu' = 'cuda') => {
      const rng = new Rng(rows + K + N);
      using x = Tensor.from(normalArray(rng, rows * K), [rows, K], { backend });
      using w = Tensor.from(normalArray(rng, N * K, 0.1), [N, K], { backend });
      using b = Tensor.from(normalArray(rng, N), [N], { backend });
      using out = Tensor.full([rows, N], Number.NaN, { backend });
      using outBf = Tensor.empty([rows, N], { backend, dtype: 'bf16' });
      await linearT(x, w, b, out, 'bf16');
      await linearT(x, w, null, outBf, 'bf16');
      return { out: out.toFloat32(), outBf: outBf.toFloat32() };
    };
    const withGeneral = <T>(fn: () => Promise<T>): Promise<T> => withEnv({ [KEY]: 'off' }, fn);
    for (const [rows, K, N] of [[333, 128, 1001], [1000, 72, 300], [64, 8, 4097], [4096, 128, 8192], [16384, 128, 4096], [1024, 64, 50000]] as const) {
      it(`linearT [${rows}, ${K}] x [${N}, ${K}]ᵀ`, async () => {
        const fast = await run(rows, K, N);
        const general = await withGeneral(() => run(rows, K, N));
        expect(fast.out.every(Number.isFinite), 'written').toBe(true);
        expectSameValues(fast.out, general.out, 'fp32 out');
        expectSameValues(fast.outBf, general.outBf, 'bf16 out');
        if (rows * N <= 1e6) expect(relError(fast.out, (await run(rows, K, N, 'cpu')).out)).toBeLessThan(1e-5);
      });
    }
    it("linear's backward with 128 outputs: dx = dout Wᵀ (short K), dW accumulated", async () => {
      const backward = async () => {
        const rng = new Rng(77);
        const [rows, nIn, nOut] = [1000, 300, 128];
        using x = Tensor.from(normalArray(rng, rows * nIn), [rows, nIn], { backend: 'cuda' });
        using w = Tensor.from(normalArray(rng, nIn * nOut, 0.1), [nIn, nOut], { backend: 'cuda' });
        using dout = Tensor.from(normalArray(rng, rows * nOut), [rows, nOut], { backend: 'cuda' });
        using dx = Tensor.full([rows, nIn], Number.NaN, { backend: 'cuda' });
        using dw = Tensor.from(normalArray(rng, nIn * nOut), [nIn, nOut], { backend: 'cuda' });
        using db = Tensor.from(normalArray(rng, nOut), [nOut], { backend: 'cuda' });
        await linearBackward(dout, x, w, dx, dw, db, 'bf16', true);
        return [dx, dw, db].map((t) => t.toFloat32());
      };
      const fast = await backward();
      const general = await withGeneral(backward);
      for (const [i, name] of ['dx', 'dW', 'db'].entries()) {
        expect(fast[i]!.every(Number.isFinite), `${name} written`).toBe(true);
        expectSameValues(fast[i]!, general[i]!, name);
      }
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
