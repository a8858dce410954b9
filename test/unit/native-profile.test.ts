/** MONOSEMANTIC_PROFILE's wrapper: calls, promises and constructions are counted per name and timed. */
import { describe, expect, it } from 'vitest';

import type { NativeAddon } from '../../lib/native/binding.js';
import { profileTable, profiled } from '../../lib/native/profile.js';

describe('profiled addon', () => {
  it('times synchronous calls, settled promises (also rejected ones) and constructions, and keeps results', async () => {
    class FakeTensor {
      constructor(readonly n: number) {}
    }
    const fake = {
      syncOp: (x: number) => x * 2,
      slowOp: () => new Promise<string>((resolve) => setTimeout(() => resolve('done'), 30)),
      failingOp: () => Promise.reject(new Error('boom')),
      FakeTensor,
      constant: 7,
    };
    const addon = profiled(fake as unknown as NativeAddon, false) as unknown as typeof fake;
    expect(addon.syncOp(4)).toBe(8);
    expect(addon.syncOp(5)).toBe(10);
    expect(await addon.slowOp()).toBe('done');
    await expect(addon.failingOp()).rejects.toThrow('boom');
    const t = new addon.FakeTensor(3);
    expect(t).toBeInstanceOf(FakeTensor);
    expect(t.n).toBe(3);
    expect(addon.constant).toBe(7);
    expect(addon.syncOp).toBe(addon.syncOp); // one wrapper per function

    const rows = new Map(
      profileTable()
        .split('\n')
        .slice(2)
        .map((line) => line.trim().split(/\s+/))
        .map((cols) => [cols.slice(0, -5).join(' '), { calls: Number(cols.at(-5)), totalMs: Number(cols.at(-4)) }]),
    );
    expect(rows.get('syncOp')?.calls).toBe(2);
    expect(rows.get('slowOp')?.calls).toBe(1);
    expect(rows.get('slowOp')!.totalMs).toBeGreaterThanOrEqual(25);
    expect(rows.get('failingOp')?.calls).toBe(1);
    expect(rows.get('new FakeTensor')?.calls).toBe(1);
    expect(rows.has('constant')).toBe(false);
  });
});
