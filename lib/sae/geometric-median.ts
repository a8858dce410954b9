/**
 * Geometric median of a set of points by Weiszfeld's algorithm, in float64. The standard SAE
 * initialises b_dec with it (a robust centre of the activations).
 */

export interface GeometricMedianOptions {
  /** Stop when the estimate moves less than tol * (1 + ||estimate||). Default 1e-7. */
  tol?: number;
  /** Default 500. */
  maxIterations?: number;
}

/**
 * points: [rows, d] row-major. Returns the d-vector minimising sum_r ||points[r] - m||.
 * Starts at the coordinate-wise mean; a point that coincides with the estimate is skipped in the
 * weights (the usual guard against division by zero).
 */
export function geometricMedian(
  points: Float32Array | Float64Array,
  rows: number,
  d: number,
  options: GeometricMedianOptions = {},
): Float64Array {
  if (!Number.isInteger(rows) || !Number.isInteger(d) || rows < 1 || d < 1) {
    throw new RangeError(`geometricMedian: rows and d must be positive integers (got ${rows}, ${d})`);
  }
  if (points.length !== rows * d) {
    throw new RangeError(`geometricMedian: points holds ${points.length} values, [${rows}, ${d}] needs ${rows * d}`);
  }
  const tol = options.tol ?? 1e-7;
  const maxIterations = options.maxIterations ?? 500;
  const median = new Float64Array(d);
  for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) median[j]! += points[r * d + j]! / rows; // points[r, j]

  const next = new Float64Array(d);
  for (let iter = 0; iter < maxIterations; iter++) {
    next.fill(0);
    let weightSum = 0;
    for (let r = 0; r < rows; r++) {
      let dist2 = 0;
      for (let j = 0; j < d; j++) {
        const diff = points[r * d + j]! - median[j]!; // points[r, j] - m[j]
        dist2 += diff * diff;
      }
      const dist = Math.sqrt(dist2);
      if (dist < 1e-12) continue;
      const w = 1 / dist;
      weightSum += w;
      for (let j = 0; j < d; j++) next[j]! += w * points[r * d + j]!;
    }
    if (weightSum === 0) break; // every point coincides with the estimate
    let moved2 = 0;
    let norm2 = 0;
    for (let j = 0; j < d; j++) {
      const v = next[j]! / weightSum;
      moved2 += (v - median[j]!) ** 2;
      norm2 += v * v;
      median[j] = v;
    }
    if (Math.sqrt(moved2) < tol * (1 + Math.sqrt(norm2))) break;
  }
  return median;
}
