/**
 * The language-model trainer's learning rate (lmLearningRateAt, lib/lm/train-config.ts): a linear
 * warm-up whose first step already moves (lr / warmupSteps at step 0, lr at step warmupSteps − 1),
 * then a cosine that falls, never rises, from lr to minLrFraction × lr at the last step. Step
 * counts are awkward (7 warm-up steps of 53) so that no boundary lands on a round number.
 * Tolerance: 1e-12 relative, float64 rounding of a few operations.
 */
import { describe, expect, it } from 'vitest';

import { lmLearningRateAt, parseLmTrainConfig } from '../../lib/lm/train-config.js';

const lr = 3e-3;
const warmupSteps = 7;
const total = 53;
const minLrFraction = 0.15;
const t = parseLmTrainConfig({ training: { totalSteps: total, lr, warmupSteps, minLrFraction } }).training;

const close = (got: number, want: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-12 * Math.abs(want));

describe('lmLearningRateAt', () => {
  it('warms up from lr / warmupSteps at step 0 to lr at step warmupSteps − 1, linearly', () => {
    close(lmLearningRateAt(t, 0, total), lr / warmupSteps);
    for (let s = 0; s < warmupSteps; s++) close(lmLearningRateAt(t, s, total), (lr * (s + 1)) / warmupSteps);
    close(lmLearningRateAt(t, warmupSteps - 1, total), lr);
  });

  it('starts the cosine at lr, is halfway between lr and the floor halfway, and ends at minLrFraction × lr on the last step', () => {
    close(lmLearningRateAt(t, warmupSteps, total), lr);
    // The cosine runs over steps 7 … 52 (p = (step − 7) / 45): p = 1/2 falls between steps 29 and 30.
    const half = (lr * (1 + minLrFraction)) / 2;
    expect(lmLearningRateAt(t, 29, total)).toBeGreaterThan(half);
    expect(lmLearningRateAt(t, 30, total)).toBeLessThan(half);
    const p = (30 - warmupSteps) / (total - warmupSteps - 1);
    close(lmLearningRateAt(t, 30, total), lr * (minLrFraction + ((1 - minLrFraction) * (1 + Math.cos(Math.PI * p))) / 2));
    close(lmLearningRateAt(t, total - 1, total), minLrFraction * lr);
  });

  it('falls at every step after the warm-up, never below the floor', () => {
    for (let s = warmupSteps + 1; s < total; s++) {
      const [before, now] = [lmLearningRateAt(t, s - 1, total), lmLearningRateAt(t, s, total)];
      expect(now, `step ${s}`).toBeLessThan(before);
      expect(now).toBeGreaterThanOrEqual(minLrFraction * lr * (1 - 1e-12));
    }
  });

  it('without a warm-up starts at lr', () => {
    const t0 = parseLmTrainConfig({ training: { totalSteps: total, lr, warmupSteps: 0, minLrFraction } }).training;
    close(lmLearningRateAt(t0, 0, total), lr);
    close(lmLearningRateAt(t0, total - 1, total), minLrFraction * lr);
  });
});
