/** Small tensor ops (lib/ops.ts) and gradient-norm clipping on the CPU backend, against float64 references. */
import { describe, expect, it } from 'vitest';

import { gatherRows, reduceSumInto, rowSqDist, scaleInPlace, sumSquares } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, relDiff } from '../helpers/data.js';

const backend = 'cpu' as const;

describe('vector ops', () => {
  it('sumSquares matches a float64 sum on an awkward length', async () => {
    const a = normalArray(new Rng(1), 200_003);
    using t = Tensor.from(a, [a.length], { backend });
    const ref = a.reduce((s, v) => s + v * v, 0);
    expect(relDiff(await sumSquares(t), ref)).toBeLessThan(1e-12);
  });

  it('reduceSumInto leaves scale·Σx or scale·Σx² in one element of a backend tensor, accumulating when asked', async () => {
    const a = normalArray(new Rng(11), 70_001);
    const b = normalArray(new Rng(12), 513);
    using ta = Tensor.from(a, [a.length], { backend });
    using tb = Tensor.from(b, [b.length], { backend });
    using out = Tensor.full([3], 7, { backend });
    await reduceSumInto(ta, out, { square: true });
    await reduceSumInto(tb, out, { square: true, accumulate: true });
    await reduceSumInto(ta, out, { scale: 0.25, index: 2 });
    await reduceSumInto(tb, out, { scale: 0.25, index: 2, accumulate: true });
    const [s0, s1, s2] = Array.from(out.toArray());
    const sq = (x: Float32Array) => x.reduce((s, v) => s + v * v, 0);
    const sum = (x: Float32Array) => x.reduce((s, v) => s + v, 0);
    // Each call rounds its result to f32 once, after adding in double.
    expect(s0).toBe(Math.fround(Math.fround(sq(a)) + sq(b)));
    expect(s1).toBe(7); // untouched
    expect(relDiff(s2!, 0.25 * (sum(a) + sum(b)))).toBeLessThan(1e-6);
    expect(() => reduceSumInto(ta, out, { index: 3 })).toThrow(/index must be an integer in \[0, 3\)/);
    expect(() => reduceSumInto(ta, out, { scale: Number.NaN })).toThrow(/scale must be a finite number/);
  });

  it('scaleInPlace multiplies every element (rounded once to f32)', async () => {
    const a = normalArray(new Rng(2), 1031);
    using t = Tensor.from(a, [a.length], { backend });
    await scaleInPlace(t, 0.37);
    expect(Array.from(t.toArray())).toEqual(Array.from(a, (v) => Math.fround(v * Math.fround(0.37))));
  });

  it('rowSqDist gives ‖a − b‖² and ‖a‖² per row, writing every row', async () => {
    const rng = new Rng(3);
    const rows = 37;
    const d = 13;
    const a = normalArray(rng, rows * d);
    const b = normalArray(rng, rows * d);
    using ta = Tensor.from(a, [rows, d], { backend });
    using tb = Tensor.from(b, [rows, d], { backend });
    using out = Tensor.full([rows], Number.NaN, { backend });
    await rowSqDist(ta, tb, out);
    const dist = out.toArray() as Float32Array;
    using norms = await rowSqDist(ta, null);
    const sq = norms.toArray() as Float32Array;
    for (let r = 0; r < rows; r++) {
      let ref = 0;
      let refNorm = 0;
      for (let j = 0; j < d; j++) {
        ref += (a[r * d + j]! - b[r * d + j]!) ** 2; // (a[r, j] − b[r, j])²
        refNorm += a[r * d + j]! ** 2;
      }
      expect(relDiff(dist[r]!, ref)).toBeLessThan(1e-6);
      expect(relDiff(sq[r]!, refNorm)).toBeLessThan(1e-6);
    }
  });

  it('gatherRows copies the indexed rows to an offset, and rejects a bad index before writing', async () => {
    const rng = new Rng(5);
    const [N, d] = [29, 7];
    const src = normalArray(rng, N * d);
    const idx = Int32Array.from([28, 0, 5, 5, 17]);
    using s = Tensor.from(src, [N, d], { backend });
    using i = Tensor.from(idx, [idx.length], { backend, dtype: 'i32' });
    using dst = Tensor.full([9, d], Number.NaN, { backend });
    await gatherRows(s, i, dst, 3);
    const out = dst.toArray() as Float32Array;
    for (let r = 0; r < 9; r++) {
      for (let c = 0; c < d; c++) {
        const want = r >= 3 && r < 8 ? src[idx[r - 3]! * d + c]! : Number.NaN;
        expect(out[r * d + c]).toBe(want);
      }
    }
    using bad = Tensor.from(Int32Array.from([1, 29]), [2], { backend, dtype: 'i32' });
    await expect(gatherRows(s, bad, dst)).rejects.toThrow(/idx\[1\] = 29 is outside the 29 source rows/);
    expect(Number.isNaN((dst.toArray() as Float32Array)[0])).toBe(true);
    expect(() => gatherRows(s, i, dst, 5)).toThrow(/do not fit/);

    // A range of idx: idx[1..3] = 0, 5, 5 into rows 0..2; rows past it untouched.
    using part = Tensor.full([9, d], Number.NaN, { backend });
    await gatherRows(s, i, part, 0, { offset: 1, count: 3 });
    const got = part.toArray() as Float32Array;
    for (let r = 0; r < 9; r++) {
      for (let c = 0; c < d; c++) expect(got[r * d + c]).toBe(r < 3 ? src[idx[r + 1]! * d + c]! : Number.NaN);
    }
    expect(() => gatherRows(s, i, part, 0, { offset: 3, count: 3 })).toThrow(/outside idx's 5 elements/);

    // An offset alone takes the rest of idx; indicesChecked (the caller vouches for the indices)
    // gives the same rows. The CPU backend checks them anyway: the check is cheap on the host.
    using rest = Tensor.full([9, d], Number.NaN, { backend });
    await gatherRows(s, i, rest, 1, { offset: 2, indicesChecked: true });
    const restOut = rest.toArray() as Float32Array;
    for (let r = 0; r < 9; r++) {
      for (let c = 0; c < d; c++) expect(restOut[r * d + c]).toBe(r >= 1 && r < 4 ? src[idx[r + 1]! * d + c]! : Number.NaN);
    }
    await expect(gatherRows(s, bad, dst, 0, { indicesChecked: true })).rejects.toThrow(/idx\[1\] = 29/);
    expect(() => gatherRows(s, i, dst, 0, { indicesChecked: 1 as unknown as boolean })).toThrow(/indicesChecked must be a boolean/);
  });

  it('rejects mismatched shapes and dtypes with the shapes named', async () => {
    using a = Tensor.zeros([4, 3], { backend });
    using b = Tensor.zeros([4, 2], { backend });
    using i = Tensor.zeros([4], { backend, dtype: 'i32' });
    await expect(rowSqDist(a, b)).rejects.toThrow(/b must have the shape of a, \[4, 3\] \(got \[4, 2\]\)/);
    expect(() => sumSquares(i)).toThrow(/dtype f32/);
    expect(() => scaleInPlace(a, Number.NaN)).toThrow(RangeError);
  });
});

describe('gradient-norm clipping', () => {
  it('reports the global gradient norm and scales the gradient Adam sees to the limit', async () => {
    const rng = new Rng(4);
    const d = 9;
    const n = 23;
    const B = 17;
    const data = normalArray(rng, B * d);
    // Unconstrained decoder, so the gradient Adam sees is exactly computeGradients' gradient.
    const make = () => SparseAutoencoder.create({ dIn: d, dSae: n, backend, seed: 6, penalty: 'l1_decnorm', l1Coeff: 0.5 });
    using x = Tensor.from(data, [B, d], { backend });
    using probe = make();
    await probe.computeGradients(x);
    let ss = 0;
    for (const g of Object.values(probe.gradients)) ss += await sumSquares(g);
    const norm = Math.sqrt(ss);

    using free = make();
    using clipped = make();
    const unclippedStats = await free.step(x, { clipGradNorm: 1e30 });
    const limit = norm / 4;
    const clippedStats = await clipped.step(x, { clipGradNorm: limit });
    expect(relDiff(unclippedStats.gradNorm, norm)).toBeLessThan(1e-9);
    expect(relDiff(clippedStats.gradNorm, norm)).toBeLessThan(1e-9);
    // After one step m = (1 − β1) · scale · g: the clipped run's first moments are the free run's × limit/norm.
    const mFree = free.readOptimizerState().m;
    const mClip = clipped.readOptimizerState().m;
    const ratio = limit / norm;
    for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
      for (let i = 0; i < mFree[name].length; i++) {
        expect(Math.abs(mClip[name][i]! - ratio * mFree[name][i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(mFree[name][i]!) + 1e-30);
      }
    }
    using plainSae = make();
    const plain = await plainSae.step(x);
    expect(Number.isNaN(plain.gradNorm)).toBe(true);
    expect(() => free.step(x, { clipGradNorm: -1 })).toThrow(RangeError);
  });
});
