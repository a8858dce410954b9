/**
 * Decoder-row cosines (lib/analysis/decoder-cosine.ts) against a float64 reference: each row's k
 * nearest other rows (the feature browser's "similar features") and, for two dictionaries, each
 * row's best match in the other (compare's splitting view). Ranks come from the exact cosines;
 * only the reported values are rounded (to 1e-4).
 */
import { expect, it } from 'vitest';

import { bestDecoderCosine, nearestByDecoder } from '../../lib/analysis/decoder-cosine.js';
import { Rng } from '../../lib/random.js';

function cosines(wA: Float32Array, nA: number, wB: Float32Array, nB: number, d: number): number[][] {
  const norm = (w: Float32Array, i: number) => Math.hypot(...w.subarray(i * d, (i + 1) * d));
  return Array.from({ length: nA }, (_, i) =>
    Array.from({ length: nB }, (_, j) => {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += wA[i * d + c]! * wB[j * d + c]!;
      return dot / (norm(wA, i) * norm(wB, j));
    }),
  );
}

/** Two random dictionaries A [n, d] and B [m, d], A's float64 self-cosines, and its k nearest rows as the library finds them. */
async function dictionaries(seed: number, n: number, m: number, d: number, k: number) {
  const rng = new Rng(seed);
  const wA = Float32Array.from({ length: n * d }, () => rng.normal());
  const wB = Float32Array.from({ length: m * d }, () => rng.normal());
  return { wA, wB, self: cosines(wA, n, wA, n, d), nearest: await nearestByDecoder(wA, n, d, k, 'cpu') };
}

it('ranks neighbours on exact cosines, not on the rounded values it reports', async () => {
  const row = (c: number) => [c, Math.sqrt(1 - c * c), 0];
  // Rows 1 and 2 have cosines 0.12345 and 0.12349 with row 0: equal once rounded to 1e-4.
  const W = Float32Array.from([1, 0, 0, ...row(0.12345), ...row(0.12349), ...row(-0.9), 0, 0, 1]);
  const [nearest] = await nearestByDecoder(W, 5, 3, 1, 'cpu');
  expect(nearest!.map(([j]) => j)).toEqual([2]);
  expect(nearest![0]![1]).toBe(0.1235);
});

it('finds the k nearest rows and the best match in another dictionary as float64 does', async () => {
  const [n, m, d, k] = [70, 45, 13, 5];
  const { wA, wB, self, nearest } = await dictionaries(11, n, m, d, k);
  for (let i = 0; i < n; i++) {
    const want = self[i]!.map((c, j) => [j, c] as const).filter(([j]) => j !== i).sort((p, q) => q[1] - p[1]).slice(0, k);
    expect(nearest[i]!.map(([j]) => j)).toEqual(want.map(([j]) => j));
    nearest[i]!.forEach(([, c], r) => expect(Math.abs(c - want[r]![1])).toBeLessThanOrEqual(5e-5 + 1e-6));
  }
  const cross = cosines(wA, n, wB, m, d);
  const best = await bestDecoderCosine(wA, n, wB, m, d, 'cpu');
  for (let i = 0; i < n; i++) {
    const j = cross[i]!.indexOf(Math.max(...cross[i]!));
    expect(best.index[i]).toBe(j);
    expect(best.cosine[i]).toBeCloseTo(cross[i]![j]!, 5);
  }
});

// Past one chunk of 512 rows the rows are numbered from the chunk's start (i0 + r): the second
// chunk's rows must exclude themselves, not row r of the first chunk, and store their best match
// at their own index. Compared by float64 cosine values (1e-5: fp32 products of unit rows), so
// that near-ties ranked in another order by fp32 do not count.
it('numbers the rows of a second chunk from its start: 600 rows, each excluding itself, each match at its own index', async () => {
  const [n, m, d, k] = [600, 37, 11, 3];
  const { wA, wB, self, nearest } = await dictionaries(29, n, m, d, k);
  expect(nearest.length).toBe(n);
  for (let i = 0; i < n; i++) {
    const got = nearest[i]!.map(([j]) => j);
    expect(got, `row ${i}`).not.toContain(i);
    const want = self[i]!.filter((_, j) => j !== i).sort((p, q) => q - p).slice(0, k);
    got.forEach((j, r) => expect(Math.abs(self[i]![j]! - want[r]!), `row ${i}`).toBeLessThan(1e-5));
  }
  const cross = cosines(wA, n, wB, m, d);
  const best = await bestDecoderCosine(wA, n, wB, m, d, 'cpu');
  for (let i = 0; i < n; i++) {
    const max = Math.max(...cross[i]!);
    expect(Math.abs(cross[i]![best.index[i]!]! - max), `row ${i}`).toBeLessThan(1e-5);
    expect(Math.abs(best.cosine[i]! - max), `row ${i}`).toBeLessThan(1e-5);
  }
});
