/** The feature-analysis ops (lib/ops.ts sparseRows, columnStats) on the CPU backend, against references. */
import { describe, expect, it } from 'vitest';

import { nativeAddon } from '../../lib/backend.js';
import { addCrossProducts, columnStats, sparseRows } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { csrReference, normalArray, relDiff, sparseActivations } from '../helpers/data.js';

const backend = 'cpu' as const;

describe('sparseRows', () => {
  it('gives the entries above 0 row by row, whatever the capacity guess', async () => {
    const [rows, n] = [333, 1031];
    const x = sparseActivations(new Rng(1), rows, n);
    x[5 * n + 7] = Number.NaN; // never kept
    x[5 * n + 8] = -0;
    x[5 * n + 9] = -3;
    const ref = csrReference(x, rows, n);
    expect(ref.values.length).toBeGreaterThan(rows * n * 0.04); // about 5% fire
    using t = Tensor.from(x, [rows, n], { backend });
    for (const capacity of [undefined, 0, ref.values.length, ref.values.length - 1]) {
      const csr = await sparseRows(t, capacity === undefined ? {} : { capacity });
      expect(csr.rows).toBe(rows);
      expect(csr.n).toBe(n);
      expect(csr).toEqual(ref);
    }
  });

  it('takes a threshold, and a matrix where nothing is above it', async () => {
    const [rows, n] = [17, 5];
    const x = normalArray(new Rng(2), rows * n);
    using t = Tensor.from(x, [rows, n], { backend });
    const ref = csrReference(x, rows, n, 0.75);
    const csr = await sparseRows(t, { threshold: 0.75, capacity: 1 });
    expect(csr).toEqual(ref);
    const none = await sparseRows(t, { threshold: 100 });
    expect(Array.from(none.rowPtr)).toEqual(new Array(rows + 1).fill(0));
    expect(none.cols.length).toBe(0);
  });

  it('rejects a tensor that is not a matrix of f32, and a bad threshold', async () => {
    using v = Tensor.from(new Float32Array(6).fill(1), [6], { backend });
    await expect(sparseRows(v)).rejects.toThrow(/shape \[rows, n >= 1\]/);
    using b = Tensor.from(new Float32Array(6).fill(1), [2, 3], { backend, dtype: 'bf16' });
    await expect(sparseRows(b)).rejects.toThrow(/dtype f32/);
    using m = Tensor.from(new Float32Array(6).fill(1), [2, 3], { backend });
    await expect(sparseRows(m, { threshold: Number.NaN })).rejects.toThrow(/threshold/);
  });
});

describe('columnStats', () => {
  it('matches float64 column sums, sums of squares and nonzero counts, independent of the thread count', async () => {
    const [rows, n] = [1037, 131];
    const x = normalArray(new Rng(3), rows * n);
    for (let i = 0; i < x.length; i += 3) x[i] = 0;
    const sum = new Float64Array(n);
    const sumsq = new Float64Array(n);
    const nonzero = new Float64Array(n);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < n; j++) {
        const v = x[r * n + j]!; // x[r, j]
        sum[j]! += v;
        sumsq[j]! += v * v;
        nonzero[j]! += v !== 0 ? 1 : 0;
      }
    }
    using t = Tensor.from(x, [rows, n], { backend });
    const addon = nativeAddon();
    const threads = addon.cpuInfo().threads;
    const results = [];
    for (const k of [1, 3]) {
      addon.setThreads(k);
      try {
        results.push(await columnStats(t));
      } finally {
        addon.setThreads(threads);
      }
    }
    const s = results[0]!;
    for (let j = 0; j < n; j++) {
      expect(Math.abs(s.sum[j]! - sum[j]!)).toBeLessThan(1e-9 * Math.sqrt(sumsq[j]!));
      expect(relDiff(s.sumsq[j]!, sumsq[j]!)).toBeLessThan(1e-12);
    }
    expect(Array.from(s.nonzero)).toEqual(Array.from(nonzero));
    expect(results[1]).toEqual(s);
  });
});

describe('addCrossProducts', () => {
  it('adds aᵀ b to out (float64 reference) and checks shapes', async () => {
    const [rows, nA, nB] = [301, 37, 19];
    const rng = new Rng(4);
    const a = sparseActivations(rng, rows, nA, 0.3);
    const b = normalArray(rng, rows * nB);
    using ta = Tensor.from(a, [rows, nA], { backend });
    using tb = Tensor.from(b, [rows, nB], { backend });
    using out = Tensor.from(new Float32Array(nA * nB).fill(0.5), [nA, nB], { backend });
    await addCrossProducts(ta, tb, out);
    const got = out.toArray() as Float32Array;
    for (let i = 0; i < nA; i++) {
      for (let j = 0; j < nB; j++) {
        let ref = 0.5;
        let mag = 0;
        for (let r = 0; r < rows; r++) {
          ref += a[r * nA + i]! * b[r * nB + j]!; // a[r, i] b[r, j]
          mag += Math.abs(a[r * nA + i]! * b[r * nB + j]!);
        }
        expect(Math.abs(got[i * nB + j]! - ref)).toBeLessThan(1e-5 * (mag + 1));
      }
    }
    using wrong = Tensor.zeros([nB, nA], { backend });
    await expect(addCrossProducts(ta, tb, wrong)).rejects.toThrow(/out must have shape \[37, 19\]/);
    using short = Tensor.zeros([rows - 1, nB], { backend });
    await expect(addCrossProducts(ta, short, out)).rejects.toThrow(/same rows/);
  });
});
