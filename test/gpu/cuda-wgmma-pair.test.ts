/**
 * The Hopper GEMM's wide tiles in pairs (MONOSEMANTIC_CUDA_WGMMA_PAIR=on, read at each call): the
 * two blocks of a 2-block cluster take tiles (n, 2p) and (n, 2p + 1), each loading its A and half of
 * B, which TMA multicasts to both. Only the loads change: each tile's products, k order, splits and
 * epilogue are the unpaired kernel's, so every output must have the same bits as without pairs
 * (every product on wgmma, MONOSEMANTIC_CUDA_GEMM=wgmma):
 * - plain stores in NT, NN and TN: odd and even counts of tile rows (a pair's second tile past the
 *   matrix), split K, short K with pairs taking tiles in turn, linearBackward's dx and dW;
 * - the SAE step's fused epilogues (bias-ReLU with column sums and firing counts, the feature
 *   gradient with its mask): gradients, statistics, firing counts and encoding on ragged shapes;
 * - deterministic.
 * Products with one row of tiles (M <= 128) run unpaired.
 * Equal bits cannot tell that the pairs ran: the playground's version 9 (clusters in its launch)
 * and the ncu profile of the `next` stage name the kernel instantiated with pairs.
 * In a file of its own: a kernel that never completes a barrier traps and takes its process's CUDA
 * context with it. Skipped, saying why, without the CUDA backend or a compute 9.0 GPU.
 */
import { describe, expect, it } from 'vitest';

import { backendStatus, nativeAddon } from '../../lib/backend.js';
import { Rng } from '../../lib/random.js';
import { bf16LinearBackward, bf16Product } from '../helpers/bf16-products.js';
import { gradients } from '../helpers/cuda-sae-gradients.js';
import { normalArray } from '../helpers/data.js';
import { withEnv } from '../helpers/env.js';
import { expectSameValues } from '../helpers/same-values.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

/** Runs fn with every product on wgmma's wide tiles, in pairs or not. */
function onWide<T>(pairs: boolean, fn: () => Promise<T>): Promise<T> {
  return withEnv({ MONOSEMANTIC_CUDA_GEMM: 'wgmma', MONOSEMANTIC_CUDA_WGMMA_TILE: '256', MONOSEMANTIC_CUDA_WGMMA_PAIR: pairs ? 'on' : 'off' }, fn);
}

describe.skipIf(!hasCuda)('the Hopper GEMM with wide tiles in pairs sharing B', () => {
  const info = hasCuda ? nativeAddon().backendInfo('cuda') : null;
  const hopper = info?.devices[0]?.computeCapability === '9.0';
  if (hasCuda && !hopper) console.warn('test/gpu/cuda-wgmma-pair: SKIPPED — not a compute 9.0 GPU');

  it.skipIf(!hopper)('plain stores: the bits of the unpaired tiles in NT, NN and TN, split and not, in turn and not', async () => {
    const rng = new Rng(91);
    // [rows, K, N] and the product: 3 and 4 tile rows; split K (few tiles, long K); short K with
    // more tiles than multiprocessors (pairs take them in turn); a ragged last k tile.
    const xt = normalArray(rng, 300 * 4096);
    const wt = normalArray(rng, 700 * 4096, 0.05);
    const xs = normalArray(rng, 4000 * 512);
    const ws = normalArray(rng, 3000 * 512, 0.05);
    const xn = normalArray(rng, 1000 * 4168);
    const wn = normalArray(rng, 4168 * 520, 0.05);
    const xb = normalArray(rng, 4104 * 200);
    const wb = normalArray(rng, 200 * 600, 0.05);
    const db0 = normalArray(rng, 4104 * 600);
    const products = (pairs: boolean) =>
      onWide(pairs, async () => {
        const nt = await bf16Product('NT', xt, wt, [300, 4096, 700]);
        const ntTurns = await bf16Product('NT', xs, ws, [4000, 512, 3000]);
        const nn = await bf16Product('NN', xn, wn, [1000, 4168, 520]);
        const { dx, dw } = await bf16LinearBackward(db0, xb, wb, [4104, 200, 600]);
        return { nt, ntTurns, nn, dx, dw };
      });
    const single = await products(false);
    const paired = await products(true);
    for (const k of ['nt', 'ntTurns', 'nn', 'dx', 'dw'] as const) {
      expect(paired[k].every(Number.isFinite), `${k} written`).toBe(true);
      expectSameValues(paired[k], single[k], `${k} in pairs`);
    }
  });

  for (const [B, d, n] of [
    [1000, 264, 1032], // 8 tile rows of the encoder's ragged tiles
    [4100, 136, 8200], // 33 tile rows: the last pair's second tile past B; short K, pairs in turn
  ] as const) {
    it.skipIf(!hopper)(`the SAE step's fused epilogues: the bits of the unpaired tiles, B=${B} d=${d} n=${n}`, async () => {
      const seed = B + d + n;
      const single = await onWide(false, () => gradients(B, d, n, 'l1_decnorm', seed));
      const paired = await onWide(true, () => gradients(B, d, n, 'l1_decnorm', seed));
      for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) expectSameValues(paired.grads[k], single.grads[k], k);
      expectSameValues(paired.f, single.f, 'encode');
      expectSameValues(paired.fire, single.fire, 'firing counts');
      expect(paired.stats).toEqual(single.stats);
    });
  }

  it.skipIf(!hopper)('is deterministic', async () => {
    const a = await onWide(true, () => gradients(700, 136, 2056, 'l1', 5));
    const b = await onWide(true, () => gradients(700, 136, 2056, 'l1', 5));
    for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) expectSameValues(a.grads[k], b.grads[k], k);
    expect(a.stats).toEqual(b.stats);
  });
});
