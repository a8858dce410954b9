import { describe, expect, it } from 'vitest';

import { bf16ToFloat32, float32ToBf16 } from '../../lib/bf16.js';
import { Rng } from '../../lib/random.js';

describe('Rng', () => {
  it('is reproducible from a seed and from a saved state', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const seq = Array.from({ length: 5 }, () => a.uniform());
    expect(Array.from({ length: 5 }, () => b.uniform())).toEqual(seq);
    const state = a.state();
    const next = Array.from({ length: 5 }, () => a.normal());
    const restored = Rng.fromState(state);
    expect(Array.from({ length: 5 }, () => restored.normal())).toEqual(next);
    expect(new Rng(43).uniform()).not.toBe(seq[0]);
  });

  it('draws uniform and normal values with the right moments', () => {
    const rng = new Rng(1);
    const u = rng.fillUniform(new Float64Array(100_000), -1, 3);
    const mean = u.reduce((s, v) => s + v, 0) / u.length;
    expect(Math.min(...u)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...u)).toBeLessThan(3);
    expect(mean).toBeCloseTo(1, 1);
    const z = rng.fillNormal(new Float64Array(100_000));
    const zm = z.reduce((s, v) => s + v, 0) / z.length;
    const zv = z.reduce((s, v) => s + (v - zm) ** 2, 0) / z.length;
    expect(Math.abs(zm)).toBeLessThan(0.02);
    expect(Math.abs(zv - 1)).toBeLessThan(0.02);
  });
});

describe('bf16 conversion', () => {
  it('rounds to nearest even and keeps NaN and infinities', () => {
    const values = [1, 1.00390625, 1.01171875, -3.140625, 65504, Infinity, -Infinity, 1e-40];
    const back = bf16ToFloat32(float32ToBf16(values));
    expect(Array.from(back.slice(0, 7))).toEqual([1, 1, 1.015625, -3.140625, 65536, Infinity, -Infinity]);
    expect(Number.isNaN(bf16ToFloat32(float32ToBf16([Number.NaN]))[0])).toBe(true);
  });
});
