/**
 * featureMap on two dictionaries built from three families of directions: in the 2-D map every
 * point's nearest neighbour belongs to its own family, whichever dictionary it comes from, and the
 * map is the same for the same seed.
 */
import { expect, it } from 'vitest';

import { featureMap } from '../../lib/analysis/feature-map.js';
import { Rng } from '../../lib/random.js';

it('keeps families of decoder directions together across dictionaries, reproducibly', () => {
  const d = 16;
  const rng = new Rng(7);
  const centres = Array.from({ length: 3 }, () => rng.fillNormal(new Float32Array(d)));
  const dictionary = (n: number) => {
    const W = new Float32Array(n * d);
    const family: number[] = [];
    for (let i = 0; i < n; i++) {
      const k = i % 3;
      family.push(k);
      for (let j = 0; j < d; j++) W[i * d + j] = centres[k]![j]! + 0.15 * rng.normal();
    }
    return { W_dec: W, dSae: n, family };
  };
  const small = dictionary(30);
  const large = dictionary(60);
  const points = featureMap([small, large], d, { seed: 1, nEpochs: 200 });
  expect(points.length).toBe(90);
  const familyOf = (p: (typeof points)[number]) => (p.dictionary === 0 ? small : large).family[p.feature]!;
  for (const p of points) {
    let best = null;
    let bestD = Infinity;
    for (const q of points) {
      if (q === p) continue;
      const dist = (p.x - q.x) ** 2 + (p.y - q.y) ** 2;
      if (dist < bestD) [best, bestD] = [q, dist];
    }
    expect(familyOf(best!)).toBe(familyOf(p));
  }
  expect(featureMap([small, large], d, { seed: 1, nEpochs: 200 })).toEqual(points);
});
