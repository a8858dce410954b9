/**
 * The CPU kernels at the edges of their inputs, at every SIMD level the machine has: masked
 * (-inf or huge negative) logits in the KL divergence, NaN logits and scores (a NaN anywhere in a
 * row makes its softmax NaN, as std::exp gives, not a finite loss), layer norm of rows whose mean
 * is large against their spread, the GELUs at ±inf, and sparseRows' threshold compared exactly.
 * References in float64; tolerances as the ops' own suites (1e-5 relative).
 */
import { afterAll, describe, expect, it } from 'vitest';

import { nativeAddon } from '../../lib/backend.js';
import { activationBackward, crossEntropyForwardBackward, layerNormBackward } from '../../lib/lm/grad-ops.js';
import { activation, crossEntropy, klRows, layerNorm } from '../../lib/lm/ops.js';
import { sparseRows } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';

const backend = 'cpu' as const;
const addon = nativeAddon();
const detected = addon.cpuInfo().simdDetected as 'scalar' | 'avx2' | 'avx512';
const levels = (['scalar', 'avx2', 'avx512'] as const).filter((_, i) => i <= ['scalar', 'avx2', 'avx512'].indexOf(detected));
afterAll(() => {
  addon.setSimdCap(detected);
});

/** log Σ exp(row) in float64. */
function logSumExp(row: Float32Array): number {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return m + Math.log(s);
}

/** KL(softmax(p) ‖ softmax(q)) in float64; entries where P is 0 add nothing. */
function klRef(p: Float32Array, q: Float32Array): number {
  const [lp, lq] = [logSumExp(p), logSumExp(q)];
  let kl = 0;
  for (let i = 0; i < p.length; i++) {
    const P = Math.exp(p[i]! - lp);
    if (P !== 0) kl += P * (p[i]! - lp - (q[i]! - lq));
  }
  return kl;
}

for (const simd of levels) {
  describe(`cpu kernels at the edges, simd ${simd}`, () => {
    it('klRows: P with masked entries (-inf, -1e32, -1e30) over a GPT-2-sized vocabulary', async () => {
      addon.setSimdCap(simd);
      const V = 50257;
      const rng = new Rng(21);
      for (const mask of [-Infinity, -1e32, -1e30]) {
        const p = Float32Array.from({ length: V }, (_, i) => (i < 100 ? rng.uniform() * 4 : mask));
        const q = Float32Array.from({ length: V }, (_, i) => (i % 997 === 5 ? mask : rng.uniform() * 4)); // Q masked where P is too
        for (let i = 5; i < 100; i += 997) p[i] = mask;
        using tp = Tensor.from(p, [1, V], { backend });
        using tq = Tensor.from(q, [1, V], { backend });
        using out = Tensor.empty([1], { backend });
        await klRows(tp, tq, out);
        const got = (out.toArray() as Float32Array)[0]!;
        const want = klRef(p, q);
        expect(Math.abs(got - want) / Math.abs(want), `mask ${mask}: got ${got}, want ${want}`).toBeLessThan(1e-5);
      }
    });

    it('a NaN logit or attention score makes the row NaN', async () => {
      addon.setSimdCap(simd);
      const V = 37;
      const logits = Float32Array.from({ length: 2 * V }, (_, i) => Math.sin(i));
      logits[5] = Number.NaN; // row 0 only
      using targets = Tensor.from(Int32Array.of(3, 4), [2], { backend, dtype: 'i32' });
      using tl = Tensor.from(logits, [2, V], { backend });
      using losses = Tensor.empty([2], { backend });
      await crossEntropy(tl, targets, losses);
      const [nanRow, clean] = losses.toArray() as Float32Array;
      expect(nanRow).toBeNaN();
      expect(clean).toBeCloseTo(logSumExp(logits.subarray(V)) - logits[V + 4]!, 5);
      using grads = Tensor.from(logits, [2, V], { backend });
      await crossEntropyForwardBackward(grads, targets, losses, 1);
      const g = grads.toArray() as Float32Array;
      expect(g.subarray(0, V).every(Number.isNaN)).toBe(true);
      expect(g.subarray(V).every(Number.isFinite)).toBe(true);
    });
  });
}

describe('cpu kernels at the edges', () => {
  it('layerNorm keeps the deviations of rows whose mean is large against their spread', async () => {
    const C = 129;
    const rng = new Rng(5);
    for (const [offset, spread] of [
      [1e4, 1],
      [1e3, 0.01],
      [3e5, 10],
    ] as const) {
      const x = Float32Array.from({ length: 3 * C }, () => offset + spread * (rng.uniform() * 2 - 1));
      using tx = Tensor.from(x, [3, C], { backend });
      using ones = Tensor.full([C], 1, { backend });
      using zeros = Tensor.zeros([C], { backend });
      using out = Tensor.empty([3, C], { backend });
      await layerNorm(tx, ones, zeros, 1e-5, out);
      const y = out.toArray() as Float32Array;
      for (let r = 0; r < 3; r++) {
        const row = Array.from(x.subarray(r * C, (r + 1) * C), Number);
        const mean = row.reduce((a, b) => a + b, 0) / C;
        const rs = 1 / Math.sqrt(row.reduce((a, b) => a + (b - mean) ** 2, 0) / C + 1e-5);
        for (let j = 0; j < C; j++) expect(Math.abs(y[r * C + j]! - (row[j]! - mean) * rs), `offset ${offset}`).toBeLessThan(1e-5 * Math.max(1, Math.abs((row[j]! - mean) * rs)));
      }
    }
  });

  it('layerNormBackward on such rows matches float64 (the forward and backward normalise alike)', async () => {
    const [R, C] = [3, 129];
    const rng = new Rng(6);
    const x = Float32Array.from({ length: R * C }, () => 1e4 + (rng.uniform() * 2 - 1));
    const w = Float32Array.from({ length: C }, () => 0.5 + rng.uniform());
    const g = Float32Array.from({ length: R * C }, () => rng.uniform() * 2 - 1);
    const t = (a: Float32Array, shape: number[]) => Tensor.from(a, shape, { backend });
    using tx = t(x, [R, C]);
    using tw = t(w, [C]);
    using tb = Tensor.zeros([C], { backend });
    using out = Tensor.empty([R, C], { backend });
    using mean = Tensor.empty([R], { backend });
    using rstd = Tensor.empty([R], { backend });
    await layerNorm(tx, tw, tb, 1e-5, out, { mean, rstd });
    using tg = t(g, [R, C]);
    using dx = Tensor.empty([R, C], { backend });
    using dw = Tensor.zeros([C], { backend });
    using db = Tensor.zeros([C], { backend });
    await layerNormBackward(tg, tx, tw, mean, rstd, dx, dw, db, false);
    const [gotDx, gotDw] = [dx.toArray() as Float32Array, dw.toArray() as Float32Array];
    const wantDw = new Float64Array(C);
    let worstDx = 0;
    for (let r = 0; r < R; r++) {
      const row = Array.from(x.subarray(r * C, (r + 1) * C), Number);
      const m = row.reduce((a, b) => a + b, 0) / C;
      const rs = 1 / Math.sqrt(row.reduce((a, b) => a + (b - m) ** 2, 0) / C + 1e-5);
      const n = row.map((v) => (v - m) * rs);
      const gw = n.map((_, j) => g[r * C + j]! * w[j]!);
      const mg = gw.reduce((a, b) => a + b, 0) / C;
      const mgn = gw.reduce((a, b, j) => a + b * n[j]!, 0) / C;
      for (let j = 0; j < C; j++) {
        wantDw[j] = wantDw[j]! + g[r * C + j]! * n[j]!;
        const want = rs * (gw[j]! - mg - n[j]! * mgn);
        worstDx = Math.max(worstDx, Math.abs(gotDx[r * C + j]! - want) / Math.max(1, Math.abs(want)));
      }
    }
    expect(worstDx).toBeLessThan(1e-4);
    for (let j = 0; j < C; j++) expect(Math.abs(gotDw[j]! - wantDw[j]!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(wantDw[j]!)));
  });

  it('the GELUs at ±inf give their limits (forward inf, 0; slope 1, 0), not NaN', async () => {
    for (const kind of ['gelu', 'gelu_new'] as const) {
      using x = Tensor.from([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1], [3], { backend });
      using y = Tensor.empty([3], { backend });
      await activation(kind, x, y);
      const fwd = Array.from(y.toArray() as Float32Array);
      expect(fwd.slice(0, 2), kind).toEqual([Number.POSITIVE_INFINITY, 0]);
      expect(fwd[2]!, kind).toBeGreaterThan(0.8);
      using dpost = Tensor.full([3], 1, { backend });
      using dpre = Tensor.empty([3], { backend });
      await activationBackward(kind, dpost, x, dpre);
      const slope = Array.from(dpre.toArray() as Float32Array);
      expect(slope.slice(0, 2), kind).toEqual([1, 0]);
      expect(slope[2]!, kind).toBeGreaterThan(1);
    }
  });

  it("sparseRows takes exactly the entries above the threshold, compared as numbers, not after rounding it to fp32", async () => {
    // 0.1f = 0.10000000149... > 0.1; 0.1 rounds to that same float, so a float comparison would drop it.
    using x = Tensor.from([0.1, 0.2, 0.05, 0.3], [1, 4], { backend });
    expect(Array.from((await sparseRows(x, { threshold: 0.1 })).cols)).toEqual([0, 1, 3]);
    expect(Array.from((await sparseRows(x, { threshold: 0.10000000149011613 })).cols)).toEqual([1, 3]); // just at 0.1f: not above it
  });
});
