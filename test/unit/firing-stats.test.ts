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

describe('FiringStats.density (the export)', () => {
  /** Snapshots of 100 inputs: feature 0 fires on every input of the first `on` snapshots, then never; feature 1 always. */
  function run(stats: FiringStats, snapshots: number, on: number): void {
    for (let k = 0; k < snapshots; k++) stats.absorb(Int32Array.of(k < on ? 100 : 0, 100, 0), (k + 1) * 10, 100, true);
  }

  it('covers the latest window, not the last one that closed', () => {
    const stats = new FiringStats(3, 1_000);
    run(stats, 24, 15); // 2,400 inputs: windows closed at 1,000 and 2,000; feature 0 stopped at 1,500
    expect(stats.summary()).toEqual({ dead: 1, ultraLow: 0, samples: 1_000 }); // metrics: the window [1,000, 2,000)
    const exported = stats.density()!;
    expect(exported.samples).toBe(1_000); // [1,400, 2,400): snapshots are the buckets here
    // Feature 0 fired on 100 of those inputs (the window that closed last, [1,000, 2,000): 500).
    expect(Array.from(exported.density)).toEqual([0.1, 1, 0]);
  });

  it('covers the latter half of a run shorter than two windows', () => {
    const stats = new FiringStats(3, 3_000); // buckets of at least 93.75 inputs: one snapshot each
    run(stats, 10, 5); // 1,000 inputs, feature 0 only in the first half
    expect(stats.summary()).toBeNull();
    const exported = stats.density()!;
    expect(exported.samples).toBe(500);
    expect(Array.from(exported.density)).toEqual([0, 1, 0]);
    stats.absorb(Int32Array.of(50, 100, 0), 110, 100); // the span grows to 550: the fewest buckets that cover it
    expect(stats.density()!.samples).toBe(600);
    expect(stats.density()!.density[0]).toBeCloseTo(50 / 600, 15);
  });

  it('keeps about a window of buckets, each at least a 32nd of one', () => {
    const stats = new FiringStats(2, 3_200); // buckets of at least 100 inputs
    for (let k = 0; k < 400; k++) stats.absorb(Int32Array.of(k % 2, 1), k, 30);
    const { recent } = stats.state();
    const sizes = recent.map((bucket) => bucket.samples);
    expect(sizes.slice(0, -1).every((samples) => samples === 120)).toBe(true); // four snapshots of 30 each
    const covered = sizes.reduce((a, b) => a + b, 0);
    expect(covered - sizes[0]!).toBeLessThan(3_200); // the oldest is still needed ...
    expect(covered).toBeGreaterThanOrEqual(3_200); // ... to cover the window
    expect(recent.length).toBeLessThanOrEqual(28);
    // Absorbing nothing (a snapshot right after another) adds no bucket.
    stats.absorb(Int32Array.of(0, 0), 400, 0);
    expect(stats.state().recent.length).toBe(recent.length);
  });

  it('is restored exactly from its state, and is null before anything was seen', () => {
    expect(new FiringStats(3, 1_000).density()).toBeNull();
    const stats = new FiringStats(3, 1_000);
    run(stats, 17, 12);
    const again = new FiringStats(3, 1_000, stats.state());
    run(stats, 5, 0);
    run(again, 5, 0);
    expect(again.density()).toEqual(stats.density());
    expect(again.state()).toEqual(stats.state());
  });
});
