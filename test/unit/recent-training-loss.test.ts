import { describe, expect, it } from 'vitest';

import { recentTrainingLoss } from '../../lib/lm/lm-trainer.js';

describe('recentTrainingLoss (the model card\'s final training loss)', () => {
  // Logged every 10 steps, then a last window of 3 steps (a run of 53 steps).
  const records = [
    { step: 0, samples: 0, valLoss: 9 },
    ...Array.from({ length: 5 }, (_, k) => ({ step: 10 * (k + 1), samples: 0, loss: 5 - 0.37 * k })),
    { step: 53, samples: 0, loss: 1.25 },
    { step: 53, samples: 0, valLoss: 2 },
  ];

  it('weights each logged window by its steps and spans at least the asked steps', () => {
    // The last 12 steps: the 3-step window and the 10-step one before it, so 13 steps.
    const last = recentTrainingLoss(records, 12)!;
    expect(last.steps).toBe(13);
    expect(last.loss).toBeCloseTo((1.25 * 3 + (5 - 0.37 * 4) * 10) / 13, 12);
    // More than the run: every step.
    const all = recentTrainingLoss(records, 1000)!;
    expect(all.steps).toBe(53);
    const sum = [0, 1, 2, 3, 4].reduce((s, k) => s + (5 - 0.37 * k) * 10, 0) + 1.25 * 3;
    expect(all.loss).toBeCloseTo(sum / 53, 12);
  });

  it('leaves out a window whose loss is not finite (logged as null), steps and all', () => {
    const diverged = records.map((r) => (r.step === 50 && 'loss' in r ? { ...r, loss: null } : r));
    expect(recentTrainingLoss(diverged as typeof records, 12)).toEqual({ loss: 1.25, steps: 3 });
    expect(recentTrainingLoss(diverged as typeof records, 14)!.steps).toBe(13);
  });

  it('skips a repeated record and is null without losses', () => {
    const repeated = [...records.slice(0, 6), { step: 50, samples: 0, loss: 99 }, ...records.slice(6)];
    expect(recentTrainingLoss(repeated, 12)).toEqual(recentTrainingLoss(records, 12));
    expect(recentTrainingLoss([{ step: 0, samples: 0, valLoss: 3 }], 100)).toBeNull();
  });
});
