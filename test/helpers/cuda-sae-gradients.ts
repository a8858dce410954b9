/**
 * One bf16 SAE training step's gradients, statistics, firing counts and encoding on the CUDA
 * backend from seeded parameters and data, for comparing its kernel paths (the variables that
 * choose them are read at each call).
 */
import { Rng } from '../../lib/random.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, uniformArray } from './data.js';
import { withEnv } from './env.js';

/** The variable that selects the simple kernels. */
export const KERNELS = 'MONOSEMANTIC_CUDA_KERNELS';

/** Runs fn with the simple kernels selected (the variable is read at each call). */
export function withSimpleKernels<T>(fn: () => Promise<T>): Promise<T> {
  return withEnv({ [KERNELS]: 'simple' }, fn);
}

export interface GradResult {
  stats: { mse: number; sparsity: number; l0: number; loss: number };
  grads: Record<'W_enc' | 'b_enc' | 'W_dec' | 'b_dec', Float32Array>;
  fire: Int32Array;
  f: Float32Array;
}

export async function gradients(B: number, d: number, n: number, penalty: 'l1' | 'l1_decnorm', seed: number): Promise<GradResult> {
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

