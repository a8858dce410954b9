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

it('gives constant units no correlation, and an identical pair a correlation of exactly 1', async () => {
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
  expect(correlation[2]).toBeGreaterThan(1 - 1e-6);
});
