/** Test data and comparisons shared by the native test suites. */
import { expect } from 'vitest';

import { bf16ToFloat32, float32ToBf16 } from '../../lib/bf16.js';
import type { SparseRows } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';

export function uniformArray(rng: Rng, length: number, lo = -1, hi = 1): Float32Array {
  return rng.fillUniform(new Float32Array(length), lo, hi);
}

export function normalArray(rng: Rng, length: number, std = 1): Float32Array {
  return rng.fillNormal(new Float32Array(length), std);
}

/** ‖a − ref‖ / ‖ref‖ in float64 (Frobenius); Infinity if a holds a non-finite value. */
export function relError(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== ref.length) throw new Error(`length ${a.length} vs reference ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) return Infinity;
    num += (a[i]! - ref[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** The largest |a − ref| / scale(i) over elements; Infinity when a holds a non-finite value. */
/** max |a − ref| / max |ref| (max |a − ref| where ref is all zeros); Infinity when a holds a non-finite value. */
export function maxErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== ref.length) throw new RangeError(`maxErr: ${a.length} values against ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) return Infinity;
    num = Math.max(num, Math.abs(a[i]! - ref[i]!));
    den = Math.max(den, Math.abs(ref[i]!));
  }
  return den === 0 ? num : num / den;
}

export function worst(a: ArrayLike<number>, ref: ArrayLike<number>, scale: (i: number) => number): number {
  expect(a.length).toBe(ref.length);
  let w = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) return Infinity;
    w = Math.max(w, Math.abs(a[i]! - ref[i]!) / scale(i));
  }
  return w;
}

/** The scale max(1, |ref[i]|): relative error, absolute below 1. */
export const relFloor1 = (ref: ArrayLike<number>) => (i: number) => Math.max(1, Math.abs(ref[i]!));

/** |a − ref| / max(|ref|, floor) for scalars. */
export function relDiff(a: number, ref: number, floor = 1e-12): number {
  return Math.abs(a - ref) / Math.max(Math.abs(ref), floor);
}

/** The value nearest to v that bf16 represents (round to nearest even). */
export function roundBf16(v: number): number {
  return bf16ToFloat32(float32ToBf16([v]))[0]!;
}

export function roundArrayBf16(a: Float32Array): Float32Array {
  return bf16ToFloat32(float32ToBf16(a));
}

export function toF64(a: Float32Array): Float64Array {
  return Float64Array.from(a);
}

/**
 * Feature-like activations [rows, n]: about `density` of the entries positive (log-normal sizes),
 * the rest exactly 0, with one all-zero row (1) and one all-positive row (2) when rows > 2.
 */
export function sparseActivations(rng: Rng, rows: number, n: number, density = 0.05): Float32Array {
  const x = new Float32Array(rows * n);
  for (let i = 0; i < x.length; i++) if (rng.uniform() < density) x[i] = Math.exp(rng.normal());
  if (rows > 2) {
    x.fill(0, n, 2 * n); // x[1, :]
    for (let j = 0; j < n; j++) x[2 * n + j] = 0.5 + rng.uniform(); // x[2, :]
  }
  return x;
}

/** The CSR form of the entries of x [rows, n] greater than threshold (reference for sparseRows). */
export function csrReference(x: Float32Array, rows: number, n: number, threshold = 0): SparseRows {
  const rowPtr = [0];
  const cols: number[] = [];
  const values: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < n; j++) {
      const v = x[r * n + j]!; // x[r, j]
      if (v > threshold) {
        cols.push(j);
        values.push(v);
      }
    }
    rowPtr.push(cols.length);
  }
  return { rows, n, rowPtr: Int32Array.from(rowPtr), cols: Int32Array.from(cols), values: Float32Array.from(values) };
}
