/** FiringStats (lib/sae/firing-stats.ts): density windows and their dead / ultra-low counts. */
import { describe, expect, it } from 'vitest';

import { FiringStats } from '../../lib/sae/firing-stats.js';

describe('FiringStats', () => {
  it('counts dead features apart from ultra-low-density ones, as sae-eval and sae info do', () => {
    const stats = new FiringStats(4, 4_000_000);
    expect(stats.summary()).toBeNull(); // no window closed yet
    stats.absorb(Int32Array.of(0, 2, 4000, 0), 10, 2_000_000);
    expect(stats.summary()).toBeNull();
    stats.absorb(Int32Array.of(0, 1, 5000, 30), 20, 2_000_000);
    // densities 0, 7.5e-7, 2.25e-3, 7.5e-6 over 4M inputs
    expect(stats.summary()).toEqual({ dead: 1, ultraLow: 1, samples: 4_000_000 });
    expect(Array.from(stats.deadSince(10))).toEqual([0]);
  });
});
