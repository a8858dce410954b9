import { describe, expect, it } from 'vitest';

import { pickToken } from '../../lib/lm/generate.js';
import { Rng } from '../../lib/random.js';

/** Pearson's chi-squared statistic of observed counts against expected probabilities. */
function chiSquared(counts: number[], probabilities: number[]): number {
  const n = counts.reduce((a, b) => a + b, 0);
  return counts.reduce((s, c, i) => s + (c - n * probabilities[i]!) ** 2 / (n * probabilities[i]!), 0);
}

describe('pickToken', () => {
  // generate() draws its first token from a generator made from the seed: over many seeds, that
  // token must follow the model's distribution (not, say, always the least likely candidate).
  const probabilities = [0.05, 0.4, 0.1, 0.3, 0.15];
  const logits = Float32Array.from(probabilities, (p) => Math.log(p) + 2.5);
  const firstTokens = (options: { temperature: number; topK: number; topP: number }, seeds: number) => {
    const counts = new Array<number>(logits.length).fill(0);
    for (let seed = 0; seed < seeds; seed++) counts[pickToken(logits, options, new Rng(seed))]!++;
    return counts;
  };

  it('samples the first token of each seed from the softmax of the logits', () => {
    const counts = firstTokens({ temperature: 1, topK: 0, topP: 1 }, 4000);
    expect(chiSquared(counts, probabilities)).toBeLessThan(18.5); // 4 degrees of freedom, p = 0.001
  });

  it('with top-k and top-p, from the renormalised candidates', () => {
    // top-k 3 keeps tokens 1, 3, 4 (0.4, 0.3, 0.15 of 0.85); top-p 0.65 keeps tokens 1 and 3 (0.4, then 0.7 ≥ 0.65).
    const k = firstTokens({ temperature: 1, topK: 3, topP: 1 }, 3000);
    expect(k[0]! + k[2]!).toBe(0);
    expect(chiSquared([k[1]!, k[3]!, k[4]!], [0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85])).toBeLessThan(13.8); // 2 d.o.f.
    const p = firstTokens({ temperature: 1, topK: 0, topP: 0.65 }, 3000);
    expect(p[0]! + p[2]! + p[4]!).toBe(0);
    expect(chiSquared([p[1]!, p[3]!], [0.4 / 0.7, 0.3 / 0.7])).toBeLessThan(10.8); // 1 d.o.f.
  });

  it('top-k keeps every token tied with the k-th (as HF), each drawn alike', () => {
    const tied = Float32Array.of(0, 1, 1, 1);
    const counts = [0, 0, 0, 0];
    for (let seed = 0; seed < 3000; seed++) counts[pickToken(tied, { temperature: 1, topK: 1, topP: 1 }, new Rng(seed))]!++;
    expect(counts[0]).toBe(0);
    expect(chiSquared(counts.slice(1), [1 / 3, 1 / 3, 1 / 3])).toBeLessThan(13.8); // 2 d.o.f., p = 0.001
  });

  it('orders candidates as a comparator sort by decreasing logit, ties by id, does: the same tokens for each seed', () => {
    // The reference: the candidates sorted with a comparator, then the same top-k, softmax, top-p and draw.
    const reference = (logits: Float32Array, o: { temperature: number; topK: number; topP: number }, rng: Rng): number => {
      let order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
      if (o.topK > 0 && o.topK < order.length) {
        let k = o.topK;
        while (k < order.length && logits[order[k]!] === logits[order[o.topK - 1]!]) k++;
        order = order.slice(0, k);
      }
      const weights = order.map((v) => Math.exp((logits[v]! - logits[order[0]!]!) / o.temperature));
      const total = weights.reduce((a, b) => a + b, 0);
      let keep = order.length;
      if (o.topP < 1) {
        let cumulative = 0;
        for (let i = 0; i < order.length; i++) if ((cumulative += weights[i]! / total) >= o.topP) { keep = i + 1; break; }
      }
      let u = rng.uniform() * weights.slice(0, keep).reduce((a, b) => a + b, 0);
      for (let i = 0; i < keep; i++) if ((u -= weights[i]!) < 0) return order[i]!;
      return order[keep - 1]!;
    };
    const rng = new Rng(5);
    for (let trial = 0; trial < 60; trial++) {
      const V = 1 + rng.int(700);
      // Ties, negative and positive values, and both zeros.
      const logits = Float32Array.from({ length: V }, () => [0, -0, 1.5, -1.5][rng.int(4)]! + (rng.uniform() < 0.5 ? 0 : Math.fround(rng.normal() * 3)));
      for (const o of [{ temperature: 0.8, topK: 5, topP: 1 }, { temperature: 1.3, topK: 0, topP: 0.9 }, { temperature: 1, topK: 40, topP: 0.5 }]) {
        for (let seed = 0; seed < 5; seed++) expect(pickToken(logits, o, new Rng(seed))).toBe(reference(logits, o, new Rng(seed)));
      }
    }
  });
  it('never returns a token of zero probability when rounding leaves the draw past the last weight', () => {
    // A draw of 1 (the end of the interval: what rounding can leave) walks past every weight. The
    // weights of tokens 2 and 3, exp(-1e4) and exp(-2e4), underflow to 0, so every way of drawing must
    // land on token 1, the last that can be drawn (top-k 3 keeps token 2 as a candidate).
    const edge = { uniform: () => 1 } as unknown as Rng;
    const logits = Float32Array.of(0, 0, -1e4, -2e4);
    expect(pickToken(logits, { temperature: 1, topK: 0, topP: 1 }, edge)).toBe(1);
    expect(pickToken(logits, { temperature: 1, topK: 3, topP: 1 }, edge)).toBe(1);
  });
});
