/** Weiszfeld's geometric median against its defining property and known cases. */
import { describe, expect, it } from 'vitest';

import { Rng } from '../../lib/random.js';
import { geometricMedian } from '../../lib/sae/geometric-median.js';

/** Sum of distances from m to the rows of points [rows, d]. */
function totalDistance(points: Float64Array, rows: number, d: number, m: ArrayLike<number>): number {
  let total = 0;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += (points[r * d + j]! - m[j]!) ** 2; // points[r, j]
    total += Math.sqrt(s);
  }
  return total;
}

describe('geometricMedian', () => {
  it('is the middle point of collinear points and ignores an outlier the mean follows', () => {
    const pts = Float64Array.from([0, 0, 1, 0, 2, 0, 3, 0, 1000, 0]); // 5 points in 2-D
    const m = geometricMedian(pts, 5, 2);
    expect(m[0]).toBeCloseTo(2, 4);
    expect(m[1]).toBeCloseTo(0, 6);
  });

  it('minimises the sum of distances: no nearby point does better', () => {
    const rng = new Rng(9);
    const rows = 57;
    const d = 13;
    const pts = rng.fillNormal(new Float64Array(rows * d));
    const m = geometricMedian(pts, rows, d, { tol: 1e-12, maxIterations: 10_000 });
    const best = totalDistance(pts, rows, d, m);
    for (let trial = 0; trial < 50; trial++) {
      const probe = Array.from(m, (v) => v + 1e-3 * rng.normal());
      expect(totalDistance(pts, rows, d, probe)).toBeGreaterThan(best);
    }
  });

  it('rejects inconsistent sizes', () => {
    expect(() => geometricMedian(new Float32Array(10), 3, 3)).toThrow(/holds 10 values, \[3, 3\] needs 9/);
    expect(() => geometricMedian(new Float32Array(0), 0, 3)).toThrow(RangeError);
  });
});
