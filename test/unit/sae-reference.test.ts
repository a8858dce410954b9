/**
 * The float64 SAE reference (test/reference/sae-reference.ts) against central finite differences
 * and against the definitions of its helper operations. Everything here is float64, so the checks
 * are tight:
 *
 *   gradients: for every element of every parameter tensor, |FD − analytic| ≤ 1e-6 · max|analytic|
 *              over that tensor, with central differences of step H = 1e-5. Inside one ReLU
 *              pattern the loss is quadratic in each single W_enc, b_enc, b_dec element (and in
 *              W_dec for 'l1'), so central differences are exact up to rounding (~1e-10 here);
 *              'l1_decnorm' adds a ‖W_dec[i]‖ term whose O(H²) truncation error is ~1e-10.
 *   The inputs are redrawn until every pre-activation is at least MARGIN = 1e-3 from 0, which is
 *   far more than any ±H perturbation can move it (asserted), so the ReLU pattern is fixed across
 *   each finite difference.
 */
import { describe, expect, it } from 'vitest';

import {
  type Penalty,
  type SaeParams64,
  PARAM_NAMES,
  adamUpdate64,
  createAdamState64,
  decode64,
  decoderRemoveParallelGrad64,
  decoderRenormalize64,
  decoderRowNorms64,
  encode64,
  lossAndGrads64,
  step64,
} from '../reference/sae-reference.js';

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
function makeRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform in ±[lo, hi]: random sign, magnitude in [lo, hi], so never zero. */
function nonzeroUniform(rng: () => number, length: number, lo: number, hi: number): Float64Array {
  const a = new Float64Array(length);
  for (let e = 0; e < length; e++) a[e] = (rng() < 0.5 ? -1 : 1) * (lo + (hi - lo) * rng());
  return a;
}

const H = 1e-5;
const MARGIN = 1e-3;
const FD_TOL = 1e-6;

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let e = 0; e < a.length; e++) m = Math.max(m, Math.abs(a[e]!));
  return m;
}

function minAbs(a: ArrayLike<number>): number {
  let m = Infinity;
  for (let e = 0; e < a.length; e++) m = Math.min(m, Math.abs(a[e]!));
  return m;
}

/** Pre-activations (x − b_dec)·W_enc + b_enc of one row x[b, :], computed directly, [n]. */
function preActivationsOfRow(p: SaeParams64, x: Float64Array, b: number): Float64Array {
  const pre = new Float64Array(p.n);
  for (let i = 0; i < p.n; i++) {
    let s = p.b_enc[i]!;
    for (let k = 0; k < p.d; k++) s += (x[b * p.d + k]! - p.b_dec[k]!) * p.W_enc[k * p.n + i]!; // x[b, k] at b*d + k; W_enc[k, i] at k*n + i
    pre[i] = s;
  }
  return pre;
}

interface Problem {
  p: SaeParams64;
  x: Float64Array; // [B, d]
  B: number;
  minAbsPre: number;
}

/** Random parameters and a batch whose pre-activations all stay at least MARGIN away from 0. */
function drawProblem(B: number, d: number, n: number, seed: number): Problem {
  const rng = makeRng(seed);
  const p: SaeParams64 = {
    d,
    n,
    W_enc: nonzeroUniform(rng, d * n, 0.05, 1 / Math.sqrt(d)),
    b_enc: nonzeroUniform(rng, n, 0.01, 0.3),
    W_dec: nonzeroUniform(rng, n * d, 0.05, 1 / Math.sqrt(n)),
    b_dec: nonzeroUniform(rng, d, 0.01, 0.5),
  };
  const x = new Float64Array(B * d);
  let minAbsPre = Infinity;
  for (let b = 0; b < B; b++) {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 10_000) throw new Error('could not draw a row with every pre-activation away from 0');
      x.set(nonzeroUniform(rng, d, 0.05, 1), b * d); // x[b, :] at b*d
      const rowMin = minAbs(preActivationsOfRow(p, x, b));
      if (rowMin >= MARGIN) {
        minAbsPre = Math.min(minAbsPre, rowMin);
        break;
      }
    }
  }
  return { p, x, B, minAbsPre };
}

function cloneParams(p: SaeParams64): SaeParams64 {
  return { d: p.d, n: p.n, W_enc: p.W_enc.slice(), b_enc: p.b_enc.slice(), W_dec: p.W_dec.slice(), b_dec: p.b_dec.slice() };
}

const SHAPES: ReadonlyArray<readonly [B: number, d: number, n: number]> = [
  [5, 7, 11],
  [3, 4, 9],
  [1, 3, 2],
];
const PENALTIES: readonly Penalty[] = ['l1', 'l1_decnorm'];
const L1 = 0.7;

describe('float64 SAE reference: forward and statistics', () => {
  it('matches a hand-computed 1-row example', () => {
    // d = 2, n = 2. W_enc = [[1, -1], [2, 0.5]], b_enc = [0.1, -0.2], W_dec = [[3, 4], [0, -2]], b_dec = [0.5, -0.5].
    const p: SaeParams64 = {
      d: 2,
      n: 2,
      W_enc: Float64Array.from([1, -1, 2, 0.5]),
      b_enc: Float64Array.from([0.1, -0.2]),
      W_dec: Float64Array.from([3, 4, 0, -2]),
      b_dec: Float64Array.from([0.5, -0.5]),
    };
    const x = Float32Array.from([1.5, 0.5]); // float32 input is accepted
    // xc = [1, 1]; pre = [1 + 2 + 0.1, -1 + 0.5 - 0.2] = [3.1, -0.7]; f = [3.1, 0]
    const f = encode64(p, x, 1);
    expect(f[0]).toBeCloseTo(3.1, 14);
    expect(f[1]).toBe(0);
    // xhat = 3.1·[3, 4] + [0.5, -0.5] = [9.8, 11.9]
    const xhat = decode64(p, f, 1);
    expect(xhat[0]).toBeCloseTo(9.8, 12);
    expect(xhat[1]).toBeCloseTo(11.9, 12);
    for (const penalty of PENALTIES) {
      const r = lossAndGrads64(p, x, 1, { l1Coeff: 0.5, penalty });
      const mse = (1.5 - 9.8) ** 2 + (0.5 - 11.9) ** 2;
      const c0 = penalty === 'l1' ? 1 : 5; // ‖[3, 4]‖ = 5
      expect(r.mse).toBeCloseTo(mse, 10);
      expect(r.sparsity).toBeCloseTo(3.1 * c0, 12);
      expect(r.loss).toBeCloseTo(mse + 0.5 * 3.1 * c0, 10);
      expect(r.l0).toBe(1);
      expect(Array.from(r.fireCounts)).toEqual([1, 0]);
    }
  });

  it.each(SHAPES)('statistics agree with encode64/decode64 (B=%i, d=%i, n=%i)', (B, d, n) => {
    const { p, x } = drawProblem(B, d, n, 11 + B * 100 + n);
    const f = encode64(p, x, B);
    const xhat = decode64(p, f, B);
    const norms = decoderRowNorms64(p.W_dec, n, d);
    for (const penalty of PENALTIES) {
      const r = lossAndGrads64(p, x, B, { l1Coeff: L1, penalty });
      let sq = 0;
      for (let e = 0; e < B * d; e++) sq += (x[e]! - xhat[e]!) ** 2; // [b, j] at b*d + j
      let sp = 0;
      let active = 0;
      const counts = new Array<number>(n).fill(0);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < n; i++) {
          const v = f[b * n + i]!; // f[b, i] at b*n + i
          sp += v * (penalty === 'l1' ? 1 : norms[i]!);
          if (v > 0) {
            active++;
            counts[i]!++;
          }
        }
      }
      expect(r.mse).toBeCloseTo(sq / B, 12);
      expect(r.sparsity).toBeCloseTo(sp / B, 12);
      expect(r.loss).toBeCloseTo(sq / B + L1 * (sp / B), 12);
      expect(r.l0).toBe(active / B);
      expect(Array.from(r.fireCounts)).toEqual(counts);
    }
  });
});

describe('float64 SAE reference: gradients against central finite differences', () => {
  const cases = SHAPES.flatMap(([B, d, n]) => PENALTIES.map((penalty) => [B, d, n, penalty] as const));

  it.each(cases)('B=%i d=%i n=%i penalty=%s', (B, d, n, penalty) => {
    const { p, x, minAbsPre } = drawProblem(B, d, n, 1234 + B * 31 + d * 7 + n);
    const opts = { l1Coeff: L1, penalty };

    // No ±H perturbation of one parameter can move a pre-activation by more than
    // H·max(max|xc|, max|W_enc|, 1), which must stay well inside the margin.
    const xc = x.map((v, e) => v - p.b_dec[e % d]!); // xc[b, k] at b*d + k, k = e % d
    const maxShift = H * Math.max(maxAbs(xc), maxAbs(p.W_enc), 1);
    expect(minAbsPre).toBeGreaterThanOrEqual(MARGIN);
    expect(maxShift).toBeLessThan(MARGIN / 10);

    const analytic = lossAndGrads64(p, x, B, opts);
    // The ReLU mask must be non-trivial: some units on and, for the larger shapes, some off.
    expect(analytic.l0).toBeGreaterThan(0);
    if (B * n > 4) expect(analytic.l0).toBeLessThan(n);

    const grads = { W_enc: analytic.dW_enc, b_enc: analytic.db_enc, W_dec: analytic.dW_dec, b_dec: analytic.db_dec };
    for (const name of PARAM_NAMES) {
      const g = grads[name];
      const scale = maxAbs(g);
      expect(scale, `${name} gradient is all zeros`).toBeGreaterThan(0);
      let worst = 0;
      for (let e = 0; e < g.length; e++) {
        const q = cloneParams(p);
        const theta = q[name][e]!;
        q[name][e] = theta + H;
        const up = lossAndGrads64(q, x, B, opts).loss;
        q[name][e] = theta - H;
        const down = lossAndGrads64(q, x, B, opts).loss;
        const fd = (up - down) / (2 * H);
        worst = Math.max(worst, Math.abs(fd - g[e]!) / scale);
      }
      expect(worst, `${name}: max |FD − analytic| / max|analytic|`).toBeLessThan(FD_TOL);
    }
  });
});

describe('float64 SAE reference: Adam', () => {
  it('first step moves each element by ≈ lr·sign(g) and writes the moments', () => {
    const rng = makeRng(7);
    const len = 37;
    const p = nonzeroUniform(rng, len, 0.1, 2);
    const before = p.slice();
    const g = nonzeroUniform(rng, len, 1e-2, 10);
    const m = new Float64Array(len);
    const v = new Float64Array(len);
    const hp = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: 1 };
    adamUpdate64(p, Float32Array.from(g), m, v, hp); // float32 gradient accepted
    const g32 = Float32Array.from(g);
    for (let e = 0; e < len; e++) {
      // m̂ = g, v̂ = g², so the step is exactly lr·g/(|g| + ε), which is lr·sign(g) to within lr·ε/|g| ≤ 1e-9.
      const ge = g32[e]!;
      const delta = p[e]! - before[e]!;
      expect(Math.abs(delta + (hp.lr * ge) / (Math.abs(ge) + hp.eps))).toBeLessThan(1e-15);
      expect(Math.abs(delta + hp.lr * Math.sign(ge))).toBeLessThanOrEqual((hp.lr * hp.eps) / Math.abs(ge) + 1e-15);
      expect(m[e]).toBeCloseTo(0.1 * g32[e]!, 14);
      expect(v[e]).toBeCloseTo(0.001 * g32[e]! ** 2, 14);
    }
  });

  it('second step follows the bias-corrected formula', () => {
    const hp = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    const p = Float64Array.from([1]);
    const m = new Float64Array(1);
    const v = new Float64Array(1);
    adamUpdate64(p, Float64Array.from([2]), m, v, { ...hp, t: 1 });
    adamUpdate64(p, Float64Array.from([-1]), m, v, { ...hp, t: 2 });
    const m2 = 0.9 * 0.2 + 0.1 * -1;
    const v2 = 0.999 * 0.004 + 0.001 * 1;
    const p1 = 1 - (0.01 * 2) / (2 + 1e-8); // first step: lr·g/(|g| + ε)
    const expected = p1 - (0.01 * (m2 / (1 - 0.81))) / (Math.sqrt(v2 / (1 - 0.999 ** 2)) + 1e-8);
    expect(m[0]).toBeCloseTo(m2, 15);
    expect(v[0]).toBeCloseTo(v2, 15);
    expect(Math.abs(p[0]! - expected)).toBeLessThan(1e-15);
  });
});

describe('float64 SAE reference: decoder constraint', () => {
  const [n, d] = [9, 6];

  it('remove-parallel leaves dW_dec[i] orthogonal to W_dec[i] and keeps zero rows untouched', () => {
    const rng = makeRng(99);
    const W = nonzeroUniform(rng, n * d, 0.05, 1);
    W.fill(0, 3 * d, 4 * d); // row 3 is zero
    const dW = nonzeroUniform(rng, n * d, 0.05, 1);
    const before = dW.slice();
    decoderRemoveParallelGrad64(W, dW, n, d);
    for (let i = 0; i < n; i++) {
      let dot = 0;
      let wn = 0;
      let gn = 0;
      for (let j = 0; j < d; j++) {
        dot += dW[i * d + j]! * W[i * d + j]!; // [i, j] at i*d + j
        wn += W[i * d + j]! ** 2;
        gn += before[i * d + j]! ** 2;
      }
      expect(Math.abs(dot) / Math.sqrt(wn * gn || 1)).toBeLessThan(1e-14);
      if (i === 3) expect(Array.from(dW.subarray(i * d, (i + 1) * d))).toEqual(Array.from(before.subarray(i * d, (i + 1) * d)));
      // What was removed is a multiple of W_dec[i].
      if (i !== 3) {
        const k = (before[i * d]! - dW[i * d]!) / W[i * d]!;
        for (let j = 0; j < d; j++) expect(before[i * d + j]! - dW[i * d + j]!).toBeCloseTo(k * W[i * d + j]!, 13);
      }
    }
  });

  it('renormalise gives unit rows in the same direction and leaves zero rows at zero', () => {
    const rng = makeRng(5);
    const W = nonzeroUniform(rng, n * d, 0.05, 3);
    W.fill(0, 0, d); // row 0 is zero
    const before = W.slice();
    decoderRenormalize64(W, n, d);
    const norms = decoderRowNorms64(W, n, d);
    const normsBefore = decoderRowNorms64(before, n, d);
    expect(norms[0]).toBe(0);
    for (let i = 1; i < n; i++) {
      expect(Math.abs(norms[i]! - 1)).toBeLessThan(1e-14);
      for (let j = 0; j < d; j++) expect(W[i * d + j]! * normsBefore[i]!).toBeCloseTo(before[i * d + j]!, 13); // [i, j] at i*d + j
    }
  });
});

describe('float64 SAE reference: step64', () => {
  const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8 };

  it.each(PENALTIES)('constrained decoder keeps unit-norm rows over several steps (penalty %s)', (penalty) => {
    const [B, d, n] = [5, 7, 11];
    const { p, x } = drawProblem(B, d, n, 4242);
    const x32 = Float32Array.from(x); // step64 accepts float32 input
    decoderRenormalize64(p.W_dec, n, d);
    const state = createAdamState64(p);
    const cfg = { ...hp, l1Coeff: L1, penalty, constrainDecoder: true };
    let first = Infinity;
    let last = Infinity;
    for (let s = 0; s < 25; s++) {
      const before = lossAndGrads64(p, x32, B, cfg);
      const stats = step64(p, state, x32, B, cfg);
      expect(stats.loss).toBe(before.loss); // statistics are those before the update
      expect(stats.fireCounts.reduce((a, c) => a + c, 0)).toBe(Math.round(stats.l0 * B));
      if (s === 0) first = stats.loss;
      last = stats.loss;
      expect(state.t).toBe(s + 1);
      const norms = decoderRowNorms64(p.W_dec, n, d);
      for (let i = 0; i < n; i++) expect(Math.abs(norms[i]! - 1)).toBeLessThan(1e-12);
    }
    expect(last).toBeLessThan(first); // training makes progress
  });

  it.each([true, false])('equals the composition of its parts (constrainDecoder %s)', (constrainDecoder) => {
    const [B, d, n] = [3, 4, 9];
    const { p, x } = drawProblem(B, d, n, 31337);
    if (constrainDecoder) decoderRenormalize64(p.W_dec, n, d);
    const cfg = { ...hp, l1Coeff: L1, penalty: 'l1_decnorm' as const, constrainDecoder };
    const q = cloneParams(p);
    const state = createAdamState64(p);
    const m = createAdamState64(q);
    for (let t = 1; t <= 3; t++) {
      const stats = step64(p, state, x, B, cfg);
      const r = lossAndGrads64(q, x, B, cfg);
      expect(stats.loss).toBe(r.loss);
      expect(stats.mse).toBe(r.mse);
      expect(stats.sparsity).toBe(r.sparsity);
      expect(stats.l0).toBe(r.l0);
      expect(Array.from(stats.fireCounts)).toEqual(Array.from(r.fireCounts));
      if (constrainDecoder) decoderRemoveParallelGrad64(q.W_dec, r.dW_dec, n, d);
      const grads = { W_enc: r.dW_enc, b_enc: r.db_enc, W_dec: r.dW_dec, b_dec: r.db_dec };
      for (const k of PARAM_NAMES) adamUpdate64(q[k], grads[k], m.m[k], m.v[k], { ...hp, t });
      if (constrainDecoder) decoderRenormalize64(q.W_dec, n, d);
      for (const k of PARAM_NAMES) expect(Array.from(p[k])).toEqual(Array.from(q[k]));
    }
  });
});

