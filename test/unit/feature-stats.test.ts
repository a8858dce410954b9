/**
 * FeatureStatsCollector against brute force on random sparse activations: density, max, mean,
 * histogram, the top-k examples with their windows, and the reservoir samples; then against a
 * whole-summary reference on edge cases (ties, k of 0 and 1, empty windows, several storage blocks,
 * token ids past 16 bits, empty batches).
 */
import { describe, expect, it } from 'vitest';

import { type FeatureExample, type FeatureStatsOptions, FeatureStatsCollector, HISTOGRAM_BINS, HISTOGRAM_BINS_PER_DECADE, HISTOGRAM_LOG10_MIN } from '../../lib/analysis/feature-stats.js';
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

  // Each case: features, T, options, the contexts of each batch, and how activations and ids are drawn.
  const cases: { name: string; n: number; T: number; options: FeatureStatsOptions; batches: number[]; values: 'ties' | 'spread'; wideFrom?: number }[] = [
    { name: 'ties, k = 1, a one-token window, an empty batch', n: 9, T: 6, options: { topK: 1, samples: 1, before: 0, after: 0, seed: 4 }, batches: [3, 0, 1, 12], values: 'ties' },
    { name: 'ties, windows cut by both ends of a context', n: 9, T: 5, options: { topK: 3, samples: 2, before: 0, after: 7, seed: 5 }, batches: [2, 9, 4], values: 'ties' },
    { name: 'no top-k', n: 9, T: 7, options: { topK: 0, samples: 3, before: 2, after: 0 }, batches: [5, 6], values: 'spread' },
    { name: 'no samples', n: 9, T: 7, options: { topK: 4, samples: 0, before: 1, after: 1 }, batches: [5, 6], values: 'ties' },
    { name: 'nothing kept', n: 9, T: 4, options: { topK: 0, samples: 0 }, batches: [4, 3], values: 'spread' },
    { name: 'defaults over several storage blocks, ids past 16 bits from batch 2', n: 300, T: 17, options: {}, batches: [2, 5, 3], values: 'ties', wideFrom: 1 },
    { name: 'one feature per storage block', n: 5, T: 40, options: { topK: 300, samples: 300, before: 60, after: 60, seed: 2 }, batches: [1, 2], values: 'spread', wideFrom: 0 },
  ];

  it.each(cases)('matches a reference on edge cases: $name', ({ n, T, options, batches, values, wideFrom }) => {
    const rng = new Rng(n + T);
    const contexts = batches.reduce((x, y) => x + y, 0);
    const f = new Float32Array(contexts * T * n);
    const hot = rng.int(n); // fires on most tokens; the last feature never fires
    for (let e = 0; e < f.length; e++) {
      const i = e % n;
      if (i < n - 1 && rng.uniform() < (i === hot ? 0.8 : 0.15)) f[e] = values === 'ties' ? [0.25, 1, 1, 3][rng.int(4)]! : 10 ** rng.range(-3.5, 3.5);
    }
    const ids = Int32Array.from({ length: contexts * T }, (_, r) => (wideFrom !== undefined && r >= batches.slice(0, wideFrom).reduce((x, y) => x + y, 0) * T && rng.uniform() < 0.2 ? [-7, 65536, 2 ** 31 - 1][rng.int(3)]! : rng.int(65536)));
    const collector = new FeatureStatsCollector(n, options);
    let c0 = 0;
    for (const count of batches) {
      collector.absorb(csrReference(f.subarray(c0 * T * n, (c0 + count) * T * n), count * T, n), ids.subarray(c0 * T, (c0 + count) * T), T);
      c0 += count;
    }

    // The reference keeps every event, and draws the reservoir (algorithm R) with the same generator in the same order: rows, then features.
    const { topK = 20, samples: sampleCount = 10, before = 12, after = 4, seed = 0 } = options;
    const example = (c: number, t: number, i: number): FeatureExample => {
      const [from, to] = [Math.max(1, t - before), Math.min(T - 1, t + after)];
      const rows = Array.from({ length: to - from + 1 }, (_, s) => c * T + from + s);
      return { activation: f[(c * T + t) * n + i]!, tokens: rows.map((r) => ids[r]!), activations: rows.map((r) => Math.round(f[r * n + i]! * 1e4) / 1e4), at: t - from };
    };
    const events: FeatureExample[][] = Array.from({ length: n }, () => []);
    const reservoirs: FeatureExample[][] = Array.from({ length: n }, () => []);
    const draws = new Rng(seed);
    for (let c = 0; c < contexts; c++) {
      for (let t = 1; t < T; t++) {
        for (let i = 0; i < n; i++) {
          if (!(f[(c * T + t) * n + i]! > 0)) continue;
          const e = example(c, t, i);
          events[i]!.push(e);
          const reservoir = reservoirs[i]!;
          if (reservoir.length < sampleCount) reservoir.push(e);
          else if (sampleCount > 0) {
            const j = draws.int(events[i]!.length);
            if (j < sampleCount) reservoir[j] = e;
          }
        }
      }
    }
    const byActivation = (x: FeatureExample, y: FeatureExample): number => y.activation - x.activation;
    const tokens = contexts * (T - 1);
    expect(collector.tokens).toBe(tokens);
    for (let i = 0; i < n; i++) {
      const s = collector.summary(i);
      const all = events[i]!;
      const histogram = new Array<number>(HISTOGRAM_BINS).fill(0);
      for (const e of all) histogram[Math.min(HISTOGRAM_BINS - 1, Math.max(0, Math.floor((Math.log10(e.activation) - HISTOGRAM_LOG10_MIN) * HISTOGRAM_BINS_PER_DECADE)))]! += 1;
      expect({ ...s, meanActivation: 0, top: [] }).toEqual({
        index: i,
        density: all.length / tokens,
        fires: all.length,
        maxActivation: all.length > 0 ? Math.max(...all.map((e) => e.activation)) : 0,
        meanActivation: 0,
        histogram,
        top: [],
        samples: [...reservoirs[i]!].sort(byActivation),
      });
      expect(s.meanActivation).toBeCloseTo(all.length > 0 ? all.reduce((x, e) => x + e.activation, 0) / all.length : 0, 9);
      if (i === n - 1) expect(all.length).toBe(0);
      // The top-k: the k largest activations, in order, each example the whole window of a distinct event (which of tied events is kept is the heap's business).
      expect(s.top.map((e) => e.activation)).toEqual([...all].sort(byActivation).slice(0, topK).map((e) => e.activation));
      const unused = [...all];
      for (const e of s.top) {
        const match = unused.findIndex((u) => JSON.stringify(u) === JSON.stringify(e));
        expect(match).toBeGreaterThanOrEqual(0);
        unused.splice(match, 1);
      }
    }
  });

  it('refuses mismatched shapes', () => {
    const collector = new FeatureStatsCollector(3);
    expect(() => collector.absorb(csrReference(new Float32Array(10), 5, 2), new Int32Array(4), 2)).toThrow(/f must be \[4, 3\]/);
    expect(() => collector.absorb(csrReference(new Float32Array(9), 3, 3), new Int32Array(3), 2)).toThrow(/whole contexts/);
    expect(() => collector.summary(3)).toThrow(/outside \[0, 3\)/);
  });
});
