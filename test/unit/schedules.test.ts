/** Learning-rate and λ schedules at their boundaries. */
import { describe, expect, it } from 'vitest';

import { decayStart, l1CoeffAt, learningRateAt, type LrSchedule } from '../../lib/sae/schedules.js';

const base: LrSchedule = { lr: 1e-3, warmupSteps: 0, decay: 'constant', decayFraction: 0.2, minFraction: 0, rewarmupSteps: 0 };

describe('learning rate', () => {
  it('is constant without warm-up or decay', () => {
    for (const step of [0, 1, 500, 999]) expect(learningRateAt(base, step, 1000)).toBe(1e-3);
  });

  it('warms up linearly, reaching lr at step warmupSteps - 1', () => {
    const s = { ...base, warmupSteps: 10 };
    expect(learningRateAt(s, 0, 1000)).toBeCloseTo(1e-4, 15);
    expect(learningRateAt(s, 4, 1000)).toBeCloseTo(5e-4, 15);
    expect(learningRateAt(s, 9, 1000)).toBe(1e-3);
    expect(learningRateAt(s, 10, 1000)).toBe(1e-3);
  });

  it("decays linearly to 0 over the last 20% (Anthropic's schedule)", () => {
    const s = { ...base, decay: 'linear' as const };
    expect(decayStart(s, 1000)).toBe(800);
    expect(learningRateAt(s, 799, 1000)).toBe(1e-3);
    expect(learningRateAt(s, 800, 1000)).toBe(1e-3);
    expect(learningRateAt(s, 900, 1000)).toBeCloseTo(5e-4, 15);
    expect(learningRateAt(s, 999, 1000)).toBeCloseTo(1e-3 / 200, 15);
  });

  it('follows a half cosine to minFraction', () => {
    const s = { ...base, decay: 'cosine' as const, decayFraction: 1, minFraction: 0.1 };
    expect(learningRateAt(s, 0, 100)).toBeCloseTo(1e-3, 15);
    expect(learningRateAt(s, 50, 100)).toBeCloseTo(1e-3 * (0.1 + 0.9 * 0.5), 15);
    expect(learningRateAt(s, 99, 100)).toBeGreaterThan(1e-4);
    expect(learningRateAt(s, 99, 100)).toBeLessThan(1.01e-4);
  });

  it('re-warms up after a resample and multiplies with the other factors', () => {
    const s = { ...base, rewarmupSteps: 4, decay: 'linear' as const, decayFraction: 0.5 };
    expect(learningRateAt(s, 99, 200, 100)).toBe(1e-3); // before the resample step: untouched
    expect(learningRateAt(s, 100, 200, 100)).toBeCloseTo(1e-3 * 0.25, 15);
    expect(learningRateAt(s, 103, 200, 100)).toBeCloseTo(1e-3 * (1 - 3 / 100), 15);
  });
});

describe('λ warm-up', () => {
  it('ramps linearly and then stays', () => {
    const s = { l1Coeff: 5, warmupSteps: 4 };
    expect(l1CoeffAt(s, 0)).toBe(1.25);
    expect(l1CoeffAt(s, 3)).toBe(5);
    expect(l1CoeffAt(s, 1000)).toBe(5);
    expect(l1CoeffAt({ l1Coeff: 5, warmupSteps: 0 }, 0)).toBe(5);
  });
});
