/**
 * The fast array comparison of the GPU suites (test/helpers/same-values.ts) fails where toEqual
 * fails and passes where it passes: NaN equals NaN, +0 differs from -0, lengths and keys count.
 */
import { expect, it } from 'vitest';

import { expectSameRecords, expectSameValues } from '../helpers/same-values.js';

it('passes equal arrays, NaN included, and fails on the first difference, naming it', () => {
  const a = Float32Array.from([1, Number.NaN, -0, 3.5]);
  expectSameValues(a, Float32Array.from(a));
  expectSameValues(Int32Array.from([1, 2]), [1, 2]);
  expect(() => expectSameValues(a, Float32Array.from([1, Number.NaN, 0, 3.5]), 'x')).toThrow(/x: element 2 of 4/);
  expect(() => expectSameValues(a, Float32Array.from([1, Number.NaN, -0, 3.25]))).toThrow(/element 3/);
  expect(() => expectSameValues(a, a.subarray(0, 3), 'x')).toThrow(/x: length/);
});

it('compares records of arrays key by key', () => {
  const r = { p: Float32Array.from([1, 2]), m: Float32Array.from([3]) };
  expectSameRecords(r, { m: Float32Array.from([3]), p: Float32Array.from([1, 2]) });
  expect(() => expectSameRecords(r, { p: r.p, m: Float32Array.from([4]) }, 'cuda')).toThrow(/cuda m: element 0/);
  expect(() => expectSameRecords(r, { p: r.p })).toThrow(/keys/);
});
