/**
 * expect(actual).toEqual(expected) for long numeric arrays: element by element with Object.is (NaN
 * equals NaN, +0 differs from -0, as toEqual has it), failing on the first difference with its
 * index. vitest's deep equality takes seconds per million elements, and the GPU suites compare
 * tens of millions.
 */
import { expect } from 'vitest';

export function expectSameValues(actual: ArrayLike<number>, expected: ArrayLike<number>, what = 'values'): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    if (!Object.is(actual[i], expected[i])) expect(actual[i], `${what}: element ${i} of ${actual.length}`).toBe(expected[i]);
  }
}

/** expectSameValues for each array-valued key of two records of arrays (the same keys). */
export function expectSameRecords(actual: Record<string, ArrayLike<number>>, expected: Record<string, ArrayLike<number>>, what = ''): void {
  expect(Object.keys(actual).sort(), `${what} keys`).toEqual(Object.keys(expected).sort());
  for (const key of Object.keys(expected)) expectSameValues(actual[key]!, expected[key]!, `${what} ${key}`.trim());
}
