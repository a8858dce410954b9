/**
 * findAutomata on a planted case: features 0 → 1 → 2 → 0 each promote the token the next one fires
 * on (a three-step loop), feature 3 promotes the token it fires on (a self-loop), feature 4 fires
 * but promotes nothing anyone fires on. Both loops are found with their examples and scores (the
 * geometric mean of logit strength and transition rate); nothing else is.
 */
import { expect, it } from 'vitest';

import { FiringRecord, findAutomata } from '../../lib/analysis/automata.js';
import { sparseRows } from '../../lib/ops.js';
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
