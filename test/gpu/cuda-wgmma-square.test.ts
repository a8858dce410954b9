/**
 * The Hopper GEMM's square tiles (MONOSEMANTIC_CUDA_WGMMA_TILE=128, read at each call): 128 x 128
 * tiles (wgmma.m64n128k16), two blocks per multiprocessor with three stages each, against the wide
 * 128 x 256 tiles, every product on wgmma (MONOSEMANTIC_CUDA_GEMM=wgmma).
 * - Plain stores: the same bf16 products summed in fp32, within 1e-5 of the wide tiles' and of
 *   mma.sync's (MONOSEMANTIC_CUDA_GEMM=mma), in the three orders: linearT (NT, split K; and K = 512
 *   with blocks taking tiles in turn), linear (NN, N = 128 split K with a ragged last k tile; 40,000
 *   rows at K 512 in turn, unsplit; GPT-2's q/k/v product, N = 2304 at K 768; 20 tiles at K 2,048,
 *   which the wide tiles split in 6 and the square ones, counting two blocks per multiprocessor, in
 *   8: other bits, the sign that the square kernel ran), linearBackward's dx (NT) and dW (TN, split
 *   K, accumulated onto zeros). Whether the other products' bits match the wide tiles' is printed.
 * - The fused epilogues (the SAE step's encoder with bias, ReLU, column sums and firing counts; its
 *   feature gradient with the mask and L1 term): the step's gradients, statistics, firing counts and
 *   encoding within 1e-3 of the simple path on ragged shapes, as the wide tiles are checked in
 *   cuda-tensor-kernels, and deterministic.
 * In a file of its own: a kernel that never completes a barrier traps and takes its process's CUDA
 * context with it. Skipped, saying why, without the CUDA backend or a compute 9.0 GPU.
 */
import { describe, expect, it } from 'vitest';

import { backendStatus, nativeAddon } from '../../lib/backend.js';
import { Rng } from '../../lib/random.js';
import { bf16LinearBackward, bf16Product } from '../helpers/bf16-products.js';
import { gradients, withSimpleKernels } from '../helpers/cuda-sae-gradients.js';
import { normalArray, relDiff, relError } from '../helpers/data.js';
import { withEnv } from '../helpers/env.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

const TILE = 'MONOSEMANTIC_CUDA_WGMMA_TILE';
const GEMM = 'MONOSEMANTIC_CUDA_GEMM';

/** Runs fn with every product on wgmma's square or wide tiles, or on mma.sync. */
function onGemm<T>(gemm: 'square' | 'wide' | 'mma', fn: () => Promise<T>): Promise<T> {
  return withEnv({ [GEMM]: gemm === 'mma' ? 'mma' : 'wgmma', [TILE]: gemm === 'square' ? '128' : '256' }, fn);
}

describe.skipIf(!hasCuda)('the Hopper GEMM with square tiles, two blocks per multiprocessor', () => {
  const info = hasCuda ? nativeAddon().backendInfo('cuda') : null;
  const hopper = info?.devices[0]?.computeCapability === '9.0';
  if (hasCuda && !hopper) console.warn('test/gpu/cuda-wgmma-square: SKIPPED — not a compute 9.0 GPU');

  it.skipIf(!hopper)('plain stores agree with the wide tiles in NT, NN and TN, split and not, in turn and not', async () => {
    const rng = new Rng(81);
    const xt = normalArray(rng, 300 * 4096);
    const wt = normalArray(rng, 100 * 4096, 0.05);
    const xs = normalArray(rng, 4096 * 512);
    const ws = normalArray(rng, 3000 * 512, 0.05);
    const xn = normalArray(rng, 1000 * 4168);
    const wn = normalArray(rng, 4168 * 128, 0.05);
    const xp = normalArray(rng, 40000 * 512);
    const wp = normalArray(rng, 512 * 120, 0.05);
    const xq = normalArray(rng, 2048 * 768);
    const wq = normalArray(rng, 768 * 2304, 0.05);
    const xr = normalArray(rng, 2560 * 2048);
    const wr = normalArray(rng, 2048 * 120, 0.05);
    const xb = normalArray(rng, 4104 * 200);
    const wb = normalArray(rng, 200 * 72, 0.05);
    const db0 = normalArray(rng, 4104 * 72);
    const products = (gemm: 'square' | 'wide' | 'mma') =>
      onGemm(gemm, async () => {
        const nt = await bf16Product('NT', xt, wt, [300, 4096, 100]);
        const ntTurns = await bf16Product('NT', xs, ws, [4096, 512, 3000]);
        const nn = await bf16Product('NN', xn, wn, [1000, 4168, 128]);
        const persistent = await bf16Product('NN', xp, wp, [40000, 512, 120]);
        const qkv = await bf16Product('NN', xq, wq, [2048, 768, 2304]);
        const resplit = await bf16Product('NN', xr, wr, [2560, 2048, 120]);
        const { dx, dw } = await bf16LinearBackward(db0, xb, wb, [4104, 200, 72]);
        return { nt, ntTurns, nn, persistent, qkv, resplit, nt2: dx, tn: dw };
      });
    const wide = await products('wide');
    const square = await products('square');
    const mma = await products('mma');
    const sameBits = (a: Float32Array, b: Float32Array) => a.every((v, i) => Object.is(v, b[i]));
    for (const k of ['nt', 'ntTurns', 'nn', 'persistent', 'qkv', 'resplit', 'nt2', 'tn'] as const) {
      expect(square[k].every(Number.isFinite), `${k} written`).toBe(true);
      expect(relError(square[k], wide[k]), `${k} against the wide tiles`).toBeLessThan(1e-5);
      expect(relError(square[k], mma[k]), `${k} against mma.sync`).toBeLessThan(1e-5);
      const same = sameBits(square[k], wide[k]);
      console.log(`square wgmma tiles, ${k}: ${same ? 'the same bits' : `relative difference ${relError(square[k], wide[k]).toExponential(2)}`} as the wide ones`);
    }
    // Split 8 ways on square tiles and 6 on wide ones: the sums differ in their last bits, unless
    // the square tiles never ran (the variable unread, or a fallback to another kernel).
    expect(sameBits(square.resplit, wide.resplit), 'the square tiles ran').toBe(false);
    expect(sameBits(square.resplit, mma.resplit), 'the square tiles ran, not mma.sync').toBe(false);
  });

  const shapes = [
    [1000, 264, 1032], // ragged tiles: 128 x 128 blocks over 1000 x 1032, K tails of the 64-wide stages
    [4100, 136, 8200], // the encoder and ∂f: 33 x 65 ragged tiles of K = 136, blocks taking them in turn
  ] as const;
  for (const [B, d, n] of shapes) {
    it.skipIf(!hopper)(`the SAE step's fused epilogues agree with the simple path: B=${B} d=${d} n=${n}`, async () => {
      const seed = B + d + n;
      const square = await onGemm('square', () => gradients(B, d, n, 'l1_decnorm', seed));
      const wide = await onGemm('wide', () => gradients(B, d, n, 'l1_decnorm', seed));
      const simple = await withSimpleKernels(() => gradients(B, d, n, 'l1_decnorm', seed));
      for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
        expect(square.grads[k].every(Number.isFinite), `${k} written`).toBe(true);
        expect(relError(square.grads[k], simple.grads[k]), k).toBeLessThan(1e-3);
      }
      expect(relError(square.f, simple.f), 'encode').toBeLessThan(1e-3);
      expect(relDiff(square.stats.mse, simple.stats.mse)).toBeLessThan(1e-4);
      expect(relDiff(square.stats.sparsity, simple.stats.sparsity)).toBeLessThan(1e-4);
      let flips = 0;
      for (let i = 0; i < n; i++) flips += Math.abs(square.fire[i]! - simple.fire[i]!);
      // Activations within rounding of zero may fire on one path only: a few per 10M.
      expect(flips).toBeLessThanOrEqual(5 + Math.ceil(B * n * 3e-7));
      console.log(`square vs wide wgmma tiles, B=${B} d=${d} n=${n}: relative difference of dW_enc ${relError(square.grads.W_enc, wide.grads.W_enc).toExponential(2)}`);
    });
  }

  it.skipIf(!hopper)('is deterministic', async () => {
    const a = await onGemm('square', () => gradients(700, 136, 2056, 'l1', 5));
    const b = await onGemm('square', () => gradients(700, 136, 2056, 'l1', 5));
    for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) expect(a.grads[k], k).toEqual(b.grads[k]);
    expect(a.stats).toEqual(b.stats);
  });
});
