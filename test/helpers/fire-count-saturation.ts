/**
 * Firing counts near INT32_MAX through one native gradient pass (saeGrads), which is the only way to
 * give the counts a start value: the SparseAutoencoder class keeps its counts private and can only
 * reset them. Features 0, 2, 4, ... have b_enc = +20 and fire on every row; the others have
 * b_enc = -20 and never fire. Every count starts at INT32_MAX - 3 and the batch has more rows
 * than that margin, so a firing feature's count must stop at INT32_MAX (not wrap negative) and a
 * silent one's stay where it was.
 */
import { nativeAddon } from '../../lib/backend.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { uniformArray } from './data.js';

export const COUNT_START = 2 ** 31 - 1 - 3;

export async function countsAfterOneBatch(backend: 'cpu' | 'cuda', precision: 'f32' | 'bf16', B = 37, d = 19, n = 45): Promise<Int32Array> {
  const rng = new Rng(11);
  const on = { backend };
  const precisionCode = precision === 'f32' ? 0 : 1;
  const b_enc = Float32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 20 : -20));
  using x = Tensor.from(uniformArray(rng, B * d, -0.1, 0.1), [B, d], on);
  using W_enc = Tensor.from(uniformArray(rng, d * n, -0.1, 0.1), [d, n], on);
  using bEnc = Tensor.from(b_enc, [n], on);
  using W_dec = Tensor.from(uniformArray(rng, n * d, -0.1, 0.1), [n, d], on);
  using b_dec = Tensor.from(uniformArray(rng, d, -0.1, 0.1), [d], on);
  using dW_enc = Tensor.empty([d, n], on);
  using db_enc = Tensor.empty([n], on);
  using dW_dec = Tensor.empty([n, d], on);
  using db_dec = Tensor.empty([d], on);
  using fireCounts = Tensor.full([n], COUNT_START, { ...on, dtype: 'i32' });
  const bytes = nativeAddon().saeWorkspaceBytes(backend, B, d, n, precisionCode);
  using workspace = Tensor.empty([Math.ceil(bytes / 4)], on);
  await nativeAddon().saeGrads({
    batch: B,
    d,
    n,
    precision: precisionCode,
    penalty: 0,
    l1Coeff: 0.1,
    x: x.native,
    W_enc: W_enc.native,
    b_enc: bEnc.native,
    W_dec: W_dec.native,
    b_dec: b_dec.native,
    dW_enc: dW_enc.native,
    db_enc: db_enc.native,
    dW_dec: dW_dec.native,
    db_dec: db_dec.native,
    fireCounts: fireCounts.native,
    workspace: workspace.native,
  });
  return fireCounts.toArray() as Int32Array;
}

/** The counts expected after countsAfterOneBatch: INT32_MAX for even features, the start for odd. */
export function expectedSaturatedCounts(n = 45): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 2 ** 31 - 1 : COUNT_START));
}
