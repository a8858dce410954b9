/**
 * FeatureStatsCollector against brute force on random sparse activations: density, max, mean,
 * histogram, the top-k examples with their windows, and the reservoir samples.
 */
import { describe, expect, it } from 'vitest';

import { FeatureStatsCollector, HISTOGRAM_BINS } from '../../lib/analysis/feature-stats.js';
import { Rng } from '../../lib/random.js';
import { csrReference } from '../helpers/data.js';

const [N, T, CONTEXTS] = [7, 19, 23];

function sparseActivations(rng: Rng): { f: Float32Array; ids: Int32Array } {
  const f = new Float32Array(CONTEXTS * T * N);
  for (let i = 0; i < f.length; i++) {
    const feature = i % N;
    // feature 6 never fires; the others with rising probability; values over six decades
    if (feature < 6 && rng.uniform() < 0.05 * (feature + 1)) f[i] = 10 ** rng.range(-3.5, 2.5);
  }
  const ids = Int32Array.from({ length: CONTEXTS * T }, () => rng.int(500));
  return { f, ids };
}

describe('FeatureStatsCollector', () => {
  it('matches brute force, fed in uneven batches', () => {
    const { f, ids } = sparseActivations(new Rng(8));
    const collector = new FeatureStatsCollector(N, { topK: 5, samples: 4, before: 3, after: 2, seed: 1 });
    for (const [c0, c1] of [[0, 1], [1, 9], [9, 23]] as const) {
      collector.absorb(csrReference(f.subarray(c0 * T * N, c1 * T * N), (c1 - c0) * T, N), ids.subarray(c0 * T, c1 * T), T);
    }
    const tokens = CONTEXTS * (T - 1);
    expect(collector.tokens).toBe(tokens);
    for (let i = 0; i < N; i++) {
      const events: { a: number; c: number; t: number }[] = [];
      for (let c = 0; c < CONTEXTS; c++) for (let t = 1; t < T; t++) if (f[(c * T + t) * N + i]! > 0) events.push({ a: f[(c * T + t) * N + i]!, c, t });
      const s = collector.summary(i);
      expect(s.fires).toBe(events.length);
      expect(s.density).toBeCloseTo(events.length / tokens, 12);
      if (events.length === 0) {
        expect(i).toBe(6);
        expect(s.top).toEqual([]);
        expect(s.samples).toEqual([]);
        continue;
      }
      expect(s.maxActivation).toBe(Math.max(...events.map((e) => e.a)));
      expect(s.meanActivation).toBeCloseTo(events.reduce((x, e) => x + e.a, 0) / events.length, 9);
      expect(s.histogram.length).toBe(HISTOGRAM_BINS);
      expect(s.histogram.reduce((x, y) => x + y, 0)).toBe(events.length);
      const best = [...events].sort((x, y) => y.a - x.a).slice(0, 5);
      expect(s.top.map((e) => e.activation)).toEqual(best.map((e) => e.a));
      const first = best[0]!;
      const from = Math.max(1, first.t - 3);
      const to = Math.min(T - 1, first.t + 2);
      expect(s.top[0]!.tokens).toEqual(Array.from(ids.subarray(first.c * T + from, first.c * T + to + 1)));
      expect(s.top[0]!.at).toBe(first.t - from);
      // the window's activations are the feature's on each token of it, zeros included
      expect(s.top[0]!.activations).toEqual(Array.from({ length: to - from + 1 }, (_, k) => Math.round(f[(first.c * T + from + k) * N + i]! * 1e4) / 1e4));
      expect(s.samples.length).toBe(Math.min(4, events.length));
      for (const sample of s.samples) expect(events.some((e) => e.a === sample.activation)).toBe(true);
      expect(s.samples.map((e) => e.activation)).toEqual([...s.samples.map((e) => e.activation)].sort((x, y) => y - x));
    }
  });

  it('refuses mismatched shapes', () => {
    const collector = new FeatureStatsCollector(3);
    expect(() => collector.absorb(csrReference(new Float32Array(10), 5, 2), new Int32Array(4), 2)).toThrow(/f must be \[4, 3\]/);
    expect(() => collector.absorb(csrReference(new Float32Array(9), 3, 3), new Int32Array(3), 2)).toThrow(/whole contexts/);
    expect(() => collector.summary(3)).toThrow(/outside \[0, 3\)/);
  });
});
