/** FiringRecord keeps its firings in typed arrays: V8's JS arrays die (a fatal error, no exception) near 2^27 elements. */
import { describe, expect, it } from 'vitest';

import { FiringRecord } from '../../lib/analysis/automata.js';

describe('FiringRecord', () => {
  it('keeps firings in typed arrays that grow past their first capacity, in order', () => {
    const T = 4;
    const record = new FiringRecord(8, 16);
    // One context of T tokens per batch; positions 1..3 fire features (t, t + 1) with activation t.
    const rows = T;
    const rowPtr = Int32Array.from([0, 0, 2, 4, 6]);
    const cols = Int32Array.from([1, 2, 2, 3, 3, 4]);
    const values = Float32Array.from([1, 1, 2, 2, 3, 3]);
    const ids = Int32Array.from([0, 5, 6, 7]);
    const batches = 20_000; // 120,000 firings: past the first capacity (65,536)
    for (let b = 0; b < batches; b++) record.absorb({ rows, n: 8, rowPtr, cols, values }, ids, T);
    expect(record.features).toBeInstanceOf(Int32Array);
    expect(record.values).toBeInstanceOf(Float32Array);
    const firings = record.rowStart.at(-1)!;
    expect(firings).toBe(6 * batches);
    expect(record.firings).toBe(firings);
    expect(record.features.length).toBeGreaterThanOrEqual(firings);
    const last = firings - 6;
    expect(Array.from(record.features.subarray(last, firings))).toEqual([1, 2, 2, 3, 3, 4]);
    expect(Array.from(record.values.subarray(last, firings))).toEqual([1, 1, 2, 2, 3, 3]);
    expect(record.rowStart.slice(-5)).toEqual([last, last + 2, last + 4, last + 6, last + 6]);
    expect(record.mass[2 * 16 + 5]).toBe(batches); // feature 2 fired on token 5 once per batch, activation 1
  });
});
