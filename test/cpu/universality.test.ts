/**
 * CorrelationAccumulator on two "dictionaries" with a known permutation of features: every A
 * feature finds its permuted twin, correlations agree with a float64 Pearson computed directly,
 * and a dead feature has no match.
 */
import { expect, it } from 'vitest';

import { CorrelationAccumulator, median } from '../../lib/analysis/universality.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';

it('finds a planted permutation and matches float64 Pearson correlations', async () => {
  const [nA, nB, rows] = [23, 29, 1000];
  const rng = new Rng(12);
  const a = new Float32Array(rows * nA);
  for (let i = 0; i < a.length; i++) if (i % nA !== 5 && rng.uniform() < 0.2) a[i] = rng.range(0.1, 3); // feature 5 is dead
  const perm = Array.from({ length: nB }, (_, j) => j).sort(() => rng.uniform() - 0.5);
  const b = new Float32Array(rows * nB);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < nB; j++) {
      const source = perm[j]!; // B's feature j copies A's feature perm[j] (when < nA) with noise
      b[r * nB + j] = (source < nA ? a[r * nA + source]! : 0) + rng.normal() * 0.05;
    }
  }
  const acc = new CorrelationAccumulator(nA, nB);
  for (const [r0, r1] of [[0, 300], [300, rows]] as const) { // two uneven chunks
    using ta = Tensor.from(a.subarray(r0 * nA, r1 * nA), [r1 - r0, nA], { backend: 'cpu' });
    using tb = Tensor.from(b.subarray(r0 * nB, r1 * nB), [r1 - r0, nB], { backend: 'cpu' });
    await acc.add(ta, tb);
  }
  const { index, correlation } = acc.bestMatches();
  const pearson = (i: number, j: number) => {
    let sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    for (let r = 0; r < rows; r++) {
      const x = a[r * nA + i]!, y = b[r * nB + j]!;
      sa += x; sb += y; saa += x * x; sbb += y * y; sab += x * y;
    }
    return (sab - (sa * sb) / rows) / Math.sqrt((saa - (sa * sa) / rows) * (sbb - (sb * sb) / rows));
  };
  for (let i = 0; i < nA; i++) {
    if (i === 5) {
      expect(index[i]).toBe(-1);
      expect(correlation[i]).toBeNaN();
      continue;
    }
    expect(perm[index[i]!]).toBe(i);
    expect(correlation[i]).toBeGreaterThan(0.95);
    expect(Math.abs(correlation[i]! - pearson(i, index[i]!))).toBeLessThan(1e-4);
  }
  const fires = acc.nonzeroA;
  for (let i = 0; i < nA; i++) expect(fires[i]).toBe(Array.from({ length: rows }, (_, r) => a[r * nA + i]!).filter((v) => v !== 0).length);
  expect(median([3, Number.NaN, 1, 2])).toBe(2);
});

it('gives constant units no correlation, and an identical pair a correlation of 1', async () => {
  // A: constants 0.1 and 0.3 (nonzero, never varying), and a sparse feature; B: that feature and noise.
  const rows = 1016;
  const rng = new Rng(3);
  const acc = new CorrelationAccumulator(3, 3);
  for (let chunk = 0; chunk < 8; chunk++) {
    const a = new Float32Array(rows * 3);
    const b = new Float32Array(rows * 3);
    for (let r = 0; r < rows; r++) {
      const feature = rng.uniform() < 0.3 ? rng.range(0, 2) : 0;
      a.set([0.1, 0.3, feature], r * 3); // a[r, :]
      b.set([feature, rng.uniform() < 0.3 ? rng.range(0, 2) : 0, rng.normal()], r * 3); // b[r, :]
    }
    using ta = Tensor.from(a, [rows, 3], { backend: 'cpu' });
    using tb = Tensor.from(b, [rows, 3], { backend: 'cpu' });
    await acc.add(ta, tb);
  }
  const { index, correlation } = acc.bestMatches();
  expect(Array.from(index)).toEqual([-1, -1, 0]);
  expect(correlation[0]).toBeNaN();
  expect(correlation[1]).toBeNaN();
  expect(correlation[2]).toBeLessThanOrEqual(1);
  expect(correlation[2]).toBeGreaterThan(1 - 1e-5); // float32 cross products of 1,016-row chunks against float64 sums of squares
});

it('keeps the covariance of units with a large mean when centred, over more chunks than it sums on the backend', async () => {
  // Units of mean 300 and spread 1 (mean/sd 300, an always-on neuron): in float32, Σab − ΣaΣb/N
  // loses about 1e-3 of the correlation. 20 chunks: more than one flush of the backend's sums.
  const [nA, nB, rows, chunks] = [3, 2, 509, 20];
  const rng = new Rng(8);
  const all = { a: new Float32Array(rows * chunks * nA), b: new Float32Array(rows * chunks * nB) };
  for (let r = 0; r < rows * chunks; r++) {
    const z = rng.normal();
    all.a.set([300 + z, 300 + rng.normal(), 0.5 * z + rng.normal()], r * nA); // a[r, :]
    all.b.set([300 + 0.6 * z + 0.8 * rng.normal(), rng.normal()], r * nB); // b[r, :]
  }
  using acc = new CorrelationAccumulator(nA, nB, { centre: true });
  for (let c = 0; c < chunks; c++) {
    using ta = Tensor.from(all.a.subarray(c * rows * nA, (c + 1) * rows * nA), [rows, nA], { backend: 'cpu' });
    using tb = Tensor.from(all.b.subarray(c * rows * nB, (c + 1) * rows * nB), [rows, nB], { backend: 'cpu' });
    await acc.add(ta, tb);
  }
  // Two-pass float64 Pearson.
  const N = rows * chunks;
  const column = (x: Float32Array, n: number, i: number) => Array.from({ length: N }, (_, r) => x[r * n + i]!);
  const pearson = (x: number[], y: number[]) => {
    const mx = x.reduce((s, v) => s + v, 0) / N;
    const my = y.reduce((s, v) => s + v, 0) / N;
    let sxy = 0, sxx = 0, syy = 0;
    for (let r = 0; r < N; r++) {
      sxy += (x[r]! - mx) * (y[r]! - my);
      sxx += (x[r]! - mx) ** 2;
      syy += (y[r]! - my) ** 2;
    }
    return sxy / Math.sqrt(sxx * syy);
  };
  const { index, correlation } = acc.bestMatches();
  expect(acc.rows).toBe(N);
  for (let i = 0; i < nA; i++) {
    const r = [0, 1].map((j) => pearson(column(all.a, nA, i), column(all.b, nB, j)));
    const best = r[0]! >= r[1]! ? 0 : 1;
    expect(index[i]).toBe(best);
    expect(Math.abs(correlation[i]! - r[best]!)).toBeLessThan(1e-5);
  }
  expect(correlation[0]).toBeGreaterThan(0.5); // the planted pair is found, not noise
});

it('refuses a table of cross products larger than it keeps', () => {
  expect(() => new CorrelationAccumulator(2 ** 15, 2 ** 15)).toThrow(/needs a table of 1,073,741,824 cross products; at most 536,870,912 \(4 GiB\)/);
});
