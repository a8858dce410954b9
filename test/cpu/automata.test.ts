/**
 * findAutomata on a planted case: features 0 → 1 → 2 → 0 each promote the token the next one fires
 * on (a three-step loop), feature 3 promotes the token it fires on (a self-loop), feature 4 fires
 * but promotes nothing anyone fires on. Both loops are found with their examples and scores (the
 * geometric mean of logit strength and transition rate); nothing else is.
 */
import { expect, it } from 'vitest';

import { FiringRecord, findAutomata } from '../../lib/analysis/automata.js';
import { sparseRows } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';

it('finds a planted three-step loop and a self-loop, with examples and empirical rates', async () => {
  const V = 10;
  const n = 5;
  const firesOn = [1, 2, 3, 5, 7]; // feature i fires on token firesOn[i]
  const promotes = [2, 3, 1, 5, 9]; // and promotes token promotes[i]
  const stream = [1, 2, 3, 1, 2, 3, 5, 5, 5, 7, 0, 1, 2];
  const T = stream.length + 1; // one context: BOS (id 0) then the stream
  const ids = Int32Array.from([0, ...stream]);
  const f = new Float32Array(T * n);
  stream.forEach((token, k) => {
    const feature = firesOn.indexOf(token);
    if (feature >= 0) f[(k + 1) * n + feature] = 1 + feature / 10; // f[position k + 1, feature]
  });
  const record = new FiringRecord(n, V);
  using tf = Tensor.from(f, [T, n], { backend: 'cpu' });
  record.absorb(await sparseRows(tf), ids, T);
  const logits = new Float32Array(n * V).fill(-1);
  promotes.forEach((token, feature) => (logits[feature * V + token] = 4));
  const { cycles, edges } = await findAutomata(record, logits, { topTokens: 1, minScore: 0.5, minCount: 1 });
  expect(cycles.map((c) => c.features)).toEqual(expect.arrayContaining([[0, 1, 2], [3]]));
  expect(cycles.length).toBe(2);
  // Logit strengths are all 1; the weakest transition rates are 2 → 0 (once in two) and 3 → 3 (twice in three).
  expect(cycles.find((c) => c.features.length === 3)!.strength).toBeCloseTo(Math.sqrt(0.5), 6);
  expect(cycles.find((c) => c.features.length === 1)!.strength).toBeCloseTo(Math.sqrt(2 / 3), 6);
  const loop = cycles.find((c) => c.features.length === 3)!;
  expect(loop.example!.tokens).toEqual([1, 2, 3, 1]);
  expect(loop.example!.activations).toEqual([1, 1.1, 1.2, 1]);
  expect(cycles.find((c) => c.features.length === 1)!.example!.tokens).toEqual([5, 5]);
  // 0 fires 3 times (tokens 1), followed by 1 (token 2) each time; 2 fires twice, followed by 0 once.
  expect(edges.every((e) => e.strength > 0.99)).toBe(true);
  expect(edges.find((e) => e.from === 0 && e.to === 1)!.empirical).toBe(1);
  expect(edges.find((e) => e.from === 2 && e.to === 0)!.empirical).toBe(0.5);
  expect(edges.some((e) => e.from === 4)).toBe(false);
});

it('scores every observed transition as the dense definition does, on random firings', async () => {
  const n = 37; // features
  const V = 23; // vocabulary
  const T = 19;
  const contexts = 11;
  const gen = new Rng(5);
  const rng = () => gen.uniform();
  const ids = Int32Array.from({ length: contexts * T }, () => Math.floor(rng() * V));
  // Each feature fires on a few preferred tokens (so transitions repeat), sometimes elsewhere.
  const f = new Float32Array(contexts * T * n);
  for (let r = 0; r < contexts * T; r++) {
    for (let x = 0; x < n; x++) if ((ids[r]! + x) % 7 === 0 || rng() < 0.04) f[r * n + x] = 0.25 + rng();
  }
  const record = new FiringRecord(n, V);
  using tf = Tensor.from(f, [contexts * T, n], { backend: 'cpu' });
  record.absorb(await sparseRows(tf), ids, T);
  const logits = Float32Array.from({ length: n * V }, () => rng() * 2 - 0.7);
  const topTokens = 4;
  const { edges } = await findAutomata(record, logits, { topTokens, minScore: 0.05, minCount: 2, maxOutEdges: 1000 });

  // The reference, in float64 from the definitions: b_X over X's top tokens, p_Y over all of Y's
  // activation, transitions counted position by position (positions 1 .. T − 1 of each context).
  const b = Array.from({ length: n }, (_, x) => {
    const row = Array.from(logits.subarray(x * V, (x + 1) * V));
    const top = row.map((v, t) => t).sort((p, q) => row[q]! - row[p]!).slice(0, topTokens).filter((t) => row[t]! > 0);
    const total = top.reduce((s, t) => s + row[t]!, 0);
    const weights = new Float64Array(V);
    for (const t of top) weights[t] = row[t]! / total;
    return weights;
  });
  const mass = Array.from({ length: n }, () => new Float64Array(V));
  const fired = new Float64Array(n);
  const counts = Array.from({ length: n }, () => new Float64Array(n));
  for (let c = 0; c < contexts; c++) {
    for (let t = 1; t < T; t++) {
      const r = c * T + t;
      for (let x = 0; x < n; x++) {
        if (f[r * n + x]! > 0) mass[x]![ids[r]!]! += f[r * n + x]!;
        if (t + 1 < T && f[r * n + x]! > 0) {
          fired[x]! += 1;
          for (let y = 0; y < n; y++) if (f[(r + 1) * n + y]! > 0) counts[x]![y]! += 1;
        }
      }
    }
  }
  const expected: { from: number; to: number; strength: number; empirical: number; score: number }[] = [];
  for (let x = 0; x < n; x++) {
    for (let y = 0; y < n; y++) {
      if (counts[x]![y]! < 2) continue;
      const total = mass[y]!.reduce((s, v) => s + v, 0);
      let strength = 0;
      for (let t = 0; t < V; t++) strength += b[x]![t]! * (total > 0 ? mass[y]![t]! / total : 0);
      const empirical = counts[x]![y]! / fired[x]!;
      const score = Math.sqrt(Math.max(0, strength) * empirical);
      if (score >= 0.05) expected.push({ from: x, to: y, strength, empirical, score });
    }
  }
  expect(expected.length).toBeGreaterThan(30); // the case is not empty
  const key = (e: { from: number; to: number }) => e.from * n + e.to;
  expect(edges.map(key).sort((p, q) => p - q)).toEqual(expected.map(key).sort((p, q) => p - q));
  const byKey = new Map(edges.map((e) => [key(e), e]));
  for (const e of expected) {
    const got = byKey.get(key(e))!;
    expect(got.strength).toBeCloseTo(e.strength, 6); // float32 mass and logits: 1e-6 absolute
    expect(got.empirical).toBe(e.empirical);
    expect(got.score).toBeCloseTo(e.score, 6);
  }
});


it('takes only a feature\'s positive logit weights, skips NaN ones, and refuses bad options', async () => {
  // Feature 0 fires on token 1 and promotes token 2 (its only positive weight among NaN and
  // negatives: topTokens 5 keeps just that one); feature 1 fires on token 2 and promotes token 1.
  const [n, V] = [2, 4];
  const stream = [1, 2, 1, 2, 1, 2];
  const T = stream.length + 1;
  const ids = Int32Array.from([0, ...stream]);
  const f = new Float32Array(T * n);
  stream.forEach((token, k) => (f[(k + 1) * n + (token === 1 ? 0 : 1)] = 1));
  const record = new FiringRecord(n, V);
  using tf = Tensor.from(f, [T, n], { backend: 'cpu' });
  record.absorb(await sparseRows(tf), ids, T);
  const logits = Float32Array.from([Number.NaN, -1, 3, -2, /* feature 1: */ -1, 2, Number.NaN, -3]);
  const { cycles, edges } = await findAutomata(record, logits, { topTokens: 5, minScore: 0.5, minCount: 1 });
  expect(cycles.map((c) => c.features)).toEqual([[0, 1]]);
  expect(edges.map((e) => [e.from, e.to, e.strength])).toEqual([[0, 1, 1], [1, 0, 1]]);
  for (const bad of [{ topTokens: -1 }, { topTokens: 2.5 }, { minCount: Number.NaN }, { minScore: -0.1 }]) {
    await expect(findAutomata(record, logits, bad)).rejects.toThrow(RangeError);
  }
});

it('counts more distinct transitions than a Map holds (8,192 features, 40 firing per token)', async () => {
  const [n, V, T, contexts, L0] = [8192, 64, 129, 300, 40];
  const rng = new Rng(1);
  const record = new FiringRecord(n, V);
  for (let c = 0; c < contexts; c++) {
    const rowPtr = new Int32Array(T + 1);
    const cols: number[] = [];
    for (let t = 0; t < T; t++) {
      const fired = new Set<number>();
      while (fired.size < L0) fired.add(rng.int(n));
      cols.push(...[...fired].sort((a, b) => a - b));
      rowPtr[t + 1] = cols.length;
    }
    const f = { rows: T, n, rowPtr, cols: Int32Array.from(cols), values: new Float32Array(cols.length).fill(1) };
    record.absorb(f, Int32Array.from({ length: T }, () => rng.int(V)), T);
  }
  // About 60M transitions over up to 67M pairs: a Map of every pair stops at 2^24 entries.
  const logits = Float32Array.from({ length: n * V }, () => rng.normal());
  const { edges } = await findAutomata(record, logits, { minCount: 2 });
  expect(edges.every((e) => e.empirical > 0 && e.strength >= 0)).toBe(true);
}, 60_000);
