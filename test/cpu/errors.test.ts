/** Bad input to the SAE API: each mistake is a TypeError/RangeError naming the argument. */
import { describe, expect, it } from 'vitest';

import { nativeAddon } from '../../lib/backend.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';

describe('SparseAutoencoder argument errors (cpu)', () => {
  it('rejects bad options', () => {
    expect(() => SparseAutoencoder.create({ dIn: 0, dSae: 4, backend: 'cpu' })).toThrow(/dIn must be a positive integer \(got 0\)/);
    expect(() => SparseAutoencoder.create({ dIn: 3, dSae: 2.5, backend: 'cpu' })).toThrow(RangeError);
    expect(() => SparseAutoencoder.create({ dIn: 2 ** 31, dSae: 1, backend: 'cpu' })).toThrow('dIn must be at most 2^30 (got 2147483648)');
    expect(() => SparseAutoencoder.create({ dIn: 3, dSae: 4, backend: 'cpu', lr: Number.NaN })).toThrow(/lr must be finite/);
    expect(() => SparseAutoencoder.create({ dIn: 3, dSae: 4, backend: 'cpu', l1Coeff: Infinity })).toThrow(/l1Coeff must be finite/);
    expect(() => SparseAutoencoder.create({ dIn: 3, dSae: 4, backend: 'cpu', beta2: 1 })).toThrow(/beta2 must be in \[0, 1\)/);
    expect(() => SparseAutoencoder.create({ dIn: 3, dSae: 4, backend: 'cpu', lr: '0.1' as never })).toThrow(TypeError);
    expect(() => SparseAutoencoder.create({ dIn: 3, dSae: 4, backend: 'cpu', penalty: 'l2' as never })).toThrow(/penalty must be one of 'l1', 'l1_decnorm'/);
    expect(() => SparseAutoencoder.create({ dIn: 3, dSae: 4, backend: 'tpu' as never })).toThrow(/backend must be 'cpu' or 'cuda'/);
    using sae = SparseAutoencoder.create({ dIn: 3, dSae: 4, backend: 'cpu' });
    expect(() => sae.setHyperparameters({ eps: -1 })).toThrow(/eps must be > 0/);
    expect(() => sae.setHyperparameters({ l1Coeff: Number.NaN })).toThrow(/l1Coeff must be finite/);
  });

  it('rejects batches of the wrong shape, dtype or state, naming the shapes', () => {
    using sae = SparseAutoencoder.create({ dIn: 6, dSae: 10, backend: 'cpu' });
    using wrongWidth = Tensor.zeros([4, 5], { backend: 'cpu' });
    expect(() => sae.step(wrongWidth)).toThrow(/x must have shape \[batch >= 1, 6\] \(got \[4, 5\]\)/);
    using flat = Tensor.zeros([24], { backend: 'cpu' });
    expect(() => sae.step(flat)).toThrow(RangeError);
    using ints = Tensor.zeros([4, 6], { dtype: 'i32', backend: 'cpu' });
    expect(() => sae.step(ints)).toThrow(/x must have dtype f32 \(got i32/);
    const gone = Tensor.zeros([4, 6], { backend: 'cpu' });
    gone.dispose();
    expect(() => sae.step(gone)).toThrow(/x has been disposed/);
    expect(() => sae.step(new Float32Array(24) as never)).toThrow(/x must be a Tensor/);
    using f = Tensor.zeros([4, 9], { backend: 'cpu' });
    expect(() => sae.decode(f)).toThrow(/f must have shape \[batch >= 1, 10\] \(got \[4, 9\]\)/);
    using x = Tensor.zeros([4, 6], { backend: 'cpu' });
    using out = Tensor.zeros([3, 10], { backend: 'cpu' });
    expect(() => sae.encode(x, out)).toThrow(/out must have shape \[4, 10\] \(got \[3, 10\]\)/);
    expect(() => sae.writeParameters({ W_dec: new Float32Array(59) })).toThrow(/W_dec holds 59 values; shape \[10, 6\] needs 60/);
  });

  it('refuses use after dispose', async () => {
    const sae = SparseAutoencoder.create({ dIn: 2, dSae: 3, backend: 'cpu' });
    sae.dispose();
    using x = Tensor.zeros([1, 2], { backend: 'cpu' });
    expect(() => sae.step(x)).toThrow(/disposed/);
    expect(() => sae.readParameters()).toThrow(/disposed/);
  });

  it('native checks keep every access inside its allocation even when the TS checks are bypassed', async () => {
    const addon = nativeAddon();
    using small = Tensor.zeros([3], { backend: 'cpu' });
    using big = Tensor.zeros([100], { backend: 'cpu' });
    const dims = { batch: 2, d: 3, n: 4, precision: 0 };
    expect(() => addon.saeEncode({ ...dims, x: small.native, W_enc: big.native, b_enc: big.native, b_dec: big.native, out: big.native })).toThrow(
      /x holds 3 elements; 6 needed/,
    );
    expect(() => addon.saeEncode({ ...dims, x: {} as never, W_enc: big.native, b_enc: big.native, b_dec: big.native, out: big.native })).toThrow(
      /x must be a Tensor/,
    );
    expect(() => addon.saeEncode({ ...dims, precision: 7, x: big.native, W_enc: big.native, b_enc: big.native, b_dec: big.native, out: big.native })).toThrow(
      /precision must be an integer in \[0, 1\]/,
    );
  });
});
