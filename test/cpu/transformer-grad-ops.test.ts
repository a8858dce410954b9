/**
 * The GPT-2 backward ops and AdamW (lib/lm/grad-ops.ts) on the CPU backend:
 *   - the float64 references (test/reference/transformer-grad-reference.ts) against central
 *     differences of the float64 forward references, at random coordinates (relative error < 1e-6);
 *   - each op against its reference on awkward sizes (rows 37, C 76, 4 heads of 19, V 1013, B 3,
 *     T 7), with overwritten outputs poisoned with NaN and accumulated outputs starting from random
 *     values (+= keeps them). Errors are measured as max |out − ref| / max |ref| per tensor;
 *   - argument errors (shapes, dtypes, aliasing, hyperparameters) and bad indices found in the
 *     backend (nothing written);
 *   - whole-model gradients of two tiny GPT-2s from lib/lm/training-model.ts (test/helpers/gpt2-grads.ts),
 *     against PyTorch float64 autograd (test/fixtures/gpt2/<name>/grads.safetensors,
 *     scripts/fixtures/make_gpt2_grad_fixtures.py).
 */
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { nativeAddon } from '../../lib/backend.js';
import { bf16ToFloat32 } from '../../lib/bf16.js';
import { MonosemanticError } from '../../lib/errors.js';
import { readSafetensors, tensorToFloat32 } from '../../lib/io/safetensors.js';
import { loadGpt2Config } from '../../lib/lm/config.js';
import {
  activationBackward,
  adamW,
  attentionBackward,
  attentionBackwardQkv,
  attentionForwardTrain,
  crossEntropyForwardBackward,
  embedBackward,
  layerNormBackward,
  linearBackward,
  linearTBackward,
  splitQkvTrain,
} from '../../lib/lm/grad-ops.js';
import { attention, crossEntropy, layerNorm } from '../../lib/lm/ops.js';
import { reduceSumInto } from '../../lib/ops.js';
import { loadGpt2Weights } from '../../lib/lm/weights.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, relError, roundArrayBf16, uniformArray } from '../helpers/data.js';
import { gpt2LossAndGrads } from '../helpers/gpt2-grads.js';
import { rejection } from '../helpers/rejection.js';
import {
  adamWRef,
  attentionBackwardRef,
  attentionForwardTrainRef,
  crossEntropyBackwardRef,
  embedBackwardRef,
  geluErfGradRef,
  geluNewGradRef,
  layerNormBackwardRef,
  linearBackwardRef,
  mergeQkvRef,
  reluGradRef,
} from '../reference/transformer-grad-reference.js';
import { attentionRef, crossEntropyRef, embedRef, geluErfRef, geluNewRef, layerNormRef, linearRef, reluRef } from '../reference/transformer-reference.js';

const backend = 'cpu' as const;
const [ROWS, C, N_HEAD, V, B, T] = [37, 76, 4, 1013, 3, 7];

/** Measured errors, printed at the end (the report's numbers). */
const measured: Record<string, number> = {};
afterAll(() => {
  const width = Math.max(...Object.keys(measured).map((k) => k.length));
  console.log(Object.entries(measured).map(([k, v]) => `${k.padEnd(width)}  ${v.toExponential(2)}`).join('\n'));
});

function f32(t: Tensor): Float32Array {
  return t.toArray() as Float32Array;
}

/** max |a − ref| / max |ref|; Infinity when a holds a non-finite value. Recorded under `name`. */
function maxErr(name: string, a: ArrayLike<number>, ref: ArrayLike<number>): number {
  expect(a.length, name).toBe(ref.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) return (measured[name] = Infinity);
    num = Math.max(num, Math.abs(a[i]! - ref[i]!));
    den = Math.max(den, Math.abs(ref[i]!));
  }
  const e = den === 0 ? num : num / den;
  measured[name] = Math.max(measured[name] ?? 0, e);
  return e;
}

function plus(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, (x, i) => x + b[i]!);
}

// ---- central differences ------------------------------------------------------------------------

const H = 1e-3;

/**
 * dL/dx[i] by central differences with one Richardson step, (4 D(h/2) − D(h)) / 3 where
 * D(h) = (L(x + h e_i) − L(x − h e_i)) / 2h and h = 1e-3 · max(1, |x[i]|): error O(h⁴) from
 * truncation and about 1e-13 · |L| from rounding. x is perturbed in place and restored.
 */
function centralDiff(x: Float64Array, i: number, loss: () => number): number {
  const x0 = x[i]!;
  const D = (h: number) => {
    x[i] = x0 + h;
    const up = loss();
    x[i] = x0 - h;
    const down = loss();
    x[i] = x0;
    return (up - down) / (2 * h);
  };
  const h = H * Math.max(1, Math.abs(x0));
  return (4 * D(h / 2) - D(h)) / 3;
}

/** |fd − g| / max(|fd|, |g|, floor): relative, floored where both are tiny. */
function relGap(fd: number, g: number, floor: number): number {
  return Math.abs(fd - g) / Math.max(Math.abs(fd), Math.abs(g), floor);
}

/**
 * Checks grad[i] against centralDiff at `count` random coordinates i of x for which pick(i)
 * holds; returns the worst relGap, floored at 1e-4 · max |grad| (the gradient's own scale).
 */
function fdCheck(rng: Rng, x: Float64Array, grad: ArrayLike<number>, loss: () => number, count: number, pick: (i: number) => boolean = () => true): number {
  let scale = 0;
  for (let i = 0; i < grad.length; i++) scale = Math.max(scale, Math.abs(grad[i]!));
  let worst = 0;
  for (let n = 0; n < count; n++) {
    let i = rng.int(x.length);
    for (let tries = 0; !pick(i) && tries < 1000; tries++) i = rng.int(x.length);
    worst = Math.max(worst, relGap(centralDiff(x, i, loss), grad[i]!, 1e-4 * scale));
  }
  return worst;
}

function dotAll(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

const f64 = (a: Float32Array) => Float64Array.from(a);

describe('float64 references agree with central differences of the forward references', () => {
  it('attention: dq, dk, dv', () => {
    const rng = new Rng(101);
    const q = f64(normalArray(rng, B * T * C));
    const k = f64(normalArray(rng, B * T * C, 1.5));
    const v = f64(normalArray(rng, B * T * C));
    const dout = f64(normalArray(rng, B * T * C));
    const ref = attentionBackwardRef(dout, q, k, v, B, T, C, N_HEAD);
    const loss = () => dotAll(dout, attentionRef(q, k, v, B, T, T, 0, C, N_HEAD));
    const e = Math.max(fdCheck(rng, q, ref.dq, loss, 12), fdCheck(rng, k, ref.dk, loss, 12), fdCheck(rng, v, ref.dv, loss, 12));
    measured['fd attention'] = e;
    expect(e).toBeLessThan(1e-6);
    // The training forward's lse: out is attentionRef's, and exp(s - lse) sums to 1 per query.
    const fwd = attentionForwardTrainRef(q, k, v, B, T, C, N_HEAD);
    expect(Array.from(fwd.out)).toEqual(Array.from(attentionRef(q, k, v, B, T, T, 0, C, N_HEAD)));
    expect(fwd.lse.every(Number.isFinite)).toBe(true);
  });

  it('layer norm: dx, dweight, dbias', () => {
    const rng = new Rng(102);
    const x = f64(normalArray(rng, ROWS * C, 2)).map((val, i) => val + (i % 5));
    const w = f64(uniformArray(rng, C, 0.5, 1.5));
    const b = f64(normalArray(rng, C, 0.3));
    const dout = f64(normalArray(rng, ROWS * C));
    const { mean, rstd } = layerNormRef(x, w, b, ROWS, C, 1e-5);
    const ref = layerNormBackwardRef(dout, x, w, mean, rstd, ROWS, C);
    const loss = () => dotAll(dout, layerNormRef(x, w, b, ROWS, C, 1e-5).out);
    const e = Math.max(fdCheck(rng, x, ref.dx, loss, 12), fdCheck(rng, w, ref.dweight, loss, 8), fdCheck(rng, b, ref.dbias, loss, 8));
    measured['fd layerNorm'] = e;
    expect(e).toBeLessThan(1e-6);
  });

  for (const transW of [false, true]) {
    it(`linear (transW ${transW}): dx, dW, db`, () => {
      const rng = new Rng(103);
      const nOut = 53;
      const x = f64(normalArray(rng, ROWS * C));
      const W = f64(normalArray(rng, C * nOut, 0.2));
      const bias = f64(normalArray(rng, nOut));
      const dout = f64(normalArray(rng, ROWS * nOut));
      const ref = linearBackwardRef(dout, x, W, ROWS, C, nOut, transW);
      const loss = () => dotAll(dout, linearRef(x, W, bias, ROWS, C, nOut, transW));
      const e = Math.max(fdCheck(rng, x, ref.dx, loss, 8), fdCheck(rng, W, ref.dW, loss, 8), fdCheck(rng, bias, ref.db, loss, 8));
      measured[`fd linear transW=${transW}`] = e;
      expect(e).toBeLessThan(1e-6);
    });
  }

  it('activations: gelu_new, gelu, relu', () => {
    const rng = new Rng(104);
    const xs = [...Array.from(uniformArray(rng, 200, -6, 6)), 0.3, -0.3, 2, -2, 5, -5];
    let worst = 0;
    for (const [f, g] of [[geluNewRef, geluNewGradRef], [geluErfRef, geluErfGradRef], [reluRef, reluGradRef]] as const) {
      for (const x0 of xs) {
        if (f === reluRef && Math.abs(x0) < 1e-2) continue; // the kink
        const x = Float64Array.of(x0);
        worst = Math.max(worst, relGap(centralDiff(x, 0, () => f(x[0]!)), g(x0), 1e-4)); // gradients are O(1)
      }
    }
    measured['fd activations'] = worst;
    expect(worst).toBeLessThan(1e-6);
  });

  it('cross-entropy: dlogits, also at the targets and on ignored rows', () => {
    const rng = new Rng(105);
    const logits = f64(normalArray(rng, ROWS * V, 3));
    const targets = Int32Array.from({ length: ROWS }, (_, r) => (r % 9 === 4 ? -1 : rng.int(V)));
    const scale = 1 / 33;
    const ref = crossEntropyBackwardRef(logits, targets, ROWS, V, scale);
    const loss = () => crossEntropyRef(logits, targets, ROWS, V).reduce((acc, x) => acc + x, 0) * scale;
    expect(Array.from(ref.losses)).toEqual(Array.from(crossEntropyRef(logits, targets, ROWS, V)));
    const atTarget = (i: number) => targets[Math.floor(i / V)] === i % V;
    const e = Math.max(fdCheck(rng, logits, ref.dlogits, loss, 12), fdCheck(rng, logits, ref.dlogits, loss, 8, atTarget));
    measured['fd crossEntropy'] = e;
    expect(e).toBeLessThan(1e-6);
    for (let r = 4; r < ROWS; r += 9) expect(ref.dlogits.subarray(r * V, (r + 1) * V).every((x) => x === 0)).toBe(true);
  });

  it('embeddings: dwte, dwpe', () => {
    const rng = new Rng(106);
    const nPositions = 13;
    const ids = Int32Array.from({ length: B * T }, () => rng.int(12)); // repeated ids
    const wte = f64(normalArray(rng, V * C));
    const wpe = f64(normalArray(rng, nPositions * C));
    const dtok = f64(normalArray(rng, B * T * C));
    const dpos = f64(normalArray(rng, B * T * C));
    const ref = embedBackwardRef(ids, B, T, dtok, dpos, V, nPositions, C);
    const loss = () => {
      const { tok, pos } = embedRef(ids, B, T, wte, wpe, C, 0);
      return dotAll(dtok, tok) + dotAll(dpos, pos);
    };
    const used = (i: number) => ids.includes(Math.floor(i / C));
    const e = Math.max(fdCheck(rng, wte, ref.dwte, loss, 8, used), fdCheck(rng, wpe, ref.dwpe, loss, 8, (i) => Math.floor(i / C) < T));
    measured['fd embed'] = e;
    expect(e).toBeLessThan(1e-6);
  });
});

describe('transformer backward ops (cpu)', () => {
  // T 150: three blocks of query rows, the last one ragged (the CPU kernels work in blocks of 64).
  for (const [batch, steps] of [[B, T], [2, 29], [2, 150]] as const) {
    it(`attentionForwardTrain and attentionBackward (B ${batch}, T ${steps}) match the references`, async () => {
      const rng = new Rng(200 + steps);
      const rows = batch * steps;
      const q = normalArray(rng, rows * C);
      const k = normalArray(rng, rows * C, 1.5);
      const v = normalArray(rng, rows * C);
      const dout = normalArray(rng, rows * C);
      using tq = Tensor.from(q, [rows, C], { backend });
      using tk = Tensor.from(k, [batch, steps, C], { backend });
      using tv = Tensor.from(v, [rows, C], { backend });
      using out = Tensor.full([rows, C], Number.NaN, { backend });
      using lse = Tensor.full([batch, N_HEAD, steps], Number.NaN, { backend });
      await attentionForwardTrain(tq, tk, tv, batch, steps, N_HEAD, out, lse);
      const fwd = attentionForwardTrainRef(q, k, v, batch, steps, C, N_HEAD);
      expect(maxErr('attentionForwardTrain out', f32(out), fwd.out)).toBeLessThan(1e-5);
      expect(maxErr('attentionForwardTrain lse', f32(lse), fwd.lse)).toBeLessThan(1e-6);
      // The same output as the inference op with a cache of exactly T positions.
      using out2 = Tensor.full([rows, C], Number.NaN, { backend });
      await attention(tq, tk, tv, batch, steps, steps, 0, N_HEAD, out2);
      expect(Array.from(f32(out2))).toEqual(Array.from(f32(out)));

      using tdout = Tensor.from(dout, [rows, C], { backend });
      using dq = Tensor.full([rows, C], Number.NaN, { backend });
      using dk = Tensor.full([rows, C], Number.NaN, { backend });
      using dv = Tensor.full([rows, C], Number.NaN, { backend });
      await attentionBackward(tdout, tq, tk, tv, out, lse, batch, steps, N_HEAD, dq, dk, dv);
      const ref = attentionBackwardRef(dout, q, k, v, batch, steps, C, N_HEAD);
      expect(maxErr('attentionBackward dq', f32(dq), ref.dq)).toBeLessThan(1e-5);
      expect(maxErr('attentionBackward dk', f32(dk), ref.dk)).toBeLessThan(1e-5);
      expect(maxErr('attentionBackward dv', f32(dv), ref.dv)).toBeLessThan(1e-5);

      // Into one [rows, 3C] gradient: dq | dk | dv side by side in each row, bit for bit.
      using dqkv = Tensor.full([rows, 3 * C], Number.NaN, { backend });
      await attentionBackwardQkv(tdout, tq, tk, tv, out, lse, batch, steps, N_HEAD, dqkv);
      expect(Array.from(f32(dqkv))).toEqual(Array.from(mergeQkvRef(f32(dq), f32(dk), f32(dv), rows, C)));
    });
  }

  it('attentionForwardTrain and attentionBackward give the same bits for any thread count', async () => {
    const rng = new Rng(205);
    const [batch, steps] = [3, 131];
    const rows = batch * steps;
    const inputs = [normalArray(rng, rows * C), normalArray(rng, rows * C, 1.5), normalArray(rng, rows * C), normalArray(rng, rows * C)];
    using tq = Tensor.from(inputs[0]!, [rows, C], { backend });
    using tk = Tensor.from(inputs[1]!, [batch, steps, C], { backend });
    using tv = Tensor.from(inputs[2]!, [rows, C], { backend });
    using tdout = Tensor.from(inputs[3]!, [rows, C], { backend });
    const results: number[][] = [];
    const threads = nativeAddon().cpuInfo().threads;
    try {
      for (const n of [threads, 1, 3]) {
        nativeAddon().setThreads(n);
        using out = Tensor.full([rows, C], Number.NaN, { backend });
        using lse = Tensor.full([batch, N_HEAD, steps], Number.NaN, { backend });
        using dq = Tensor.full([rows, C], Number.NaN, { backend });
        using dk = Tensor.full([rows, C], Number.NaN, { backend });
        using dv = Tensor.full([rows, C], Number.NaN, { backend });
        await attentionForwardTrain(tq, tk, tv, batch, steps, N_HEAD, out, lse);
        await attentionBackward(tdout, tq, tk, tv, out, lse, batch, steps, N_HEAD, dq, dk, dv);
        results.push([...f32(out), ...f32(lse), ...f32(dq), ...f32(dk), ...f32(dv)]);
      }
    } finally {
      nativeAddon().setThreads(threads);
    }
    expect(results[0]!.some(Number.isNaN)).toBe(false);
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });

  it('splitQkvTrain splits q | k | v', async () => {
    const rng = new Rng(210);
    const qkv = normalArray(rng, ROWS * 3 * C);
    using tqkv = Tensor.from(qkv, [ROWS, 3 * C], { backend });
    using q = Tensor.full([ROWS, C], Number.NaN, { backend });
    using k = Tensor.full([ROWS, C], Number.NaN, { backend });
    using v = Tensor.full([ROWS, C], Number.NaN, { backend });
    await splitQkvTrain(tqkv, q, k, v);
    for (const [i, t] of [q, k, v].entries()) {
      const want = Float32Array.from({ length: ROWS * C }, (_, n) => qkv[Math.floor(n / C) * 3 * C + i * C + (n % C)]!);
      expect(Array.from(f32(t))).toEqual(Array.from(want));
    }
    expect(Array.from(mergeQkvRef(f32(q), f32(k), f32(v), ROWS, C))).toEqual(Array.from(qkv));
  });

  it('layerNormBackward: dx (= and +=), dweight and dbias accumulate', async () => {
    const rng = new Rng(220);
    const x = normalArray(rng, ROWS * C, 2).map((val, i) => val + 3 + (i % 5));
    const w = uniformArray(rng, C, 0.5, 1.5);
    const b = normalArray(rng, C, 0.3);
    const dout = normalArray(rng, ROWS * C);
    const dx0 = normalArray(rng, ROWS * C);
    const dw0 = normalArray(rng, C);
    const db0 = normalArray(rng, C);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tw = Tensor.from(w, [C], { backend });
    using tb = Tensor.from(b, [C], { backend });
    using y = Tensor.empty([ROWS, C], { backend });
    using mean = Tensor.empty([ROWS], { backend });
    using rstd = Tensor.empty([ROWS], { backend });
    await layerNorm(tx, tw, tb, 1e-5, y, { mean, rstd });
    const ref = layerNormBackwardRef(dout, x, w, f32(mean), f32(rstd), ROWS, C);
    using tdout = Tensor.from(dout, [ROWS, C], { backend });
    for (const accumulate of [false, true]) {
      using dx = accumulate ? Tensor.from(dx0, [ROWS, C], { backend }) : Tensor.full([ROWS, C], Number.NaN, { backend });
      using dw = Tensor.from(dw0, [C], { backend });
      using db = Tensor.from(db0, [C], { backend });
      await layerNormBackward(tdout, tx, tw, mean, rstd, dx, dw, db, accumulate);
      expect(maxErr('layerNormBackward dx', f32(dx), accumulate ? plus(dx0, ref.dx) : ref.dx)).toBeLessThan(1e-5);
      expect(maxErr('layerNormBackward dweight', f32(dw), plus(dw0, ref.dweight))).toBeLessThan(1e-6);
      expect(maxErr('layerNormBackward dbias', f32(db), plus(db0, ref.dbias))).toBeLessThan(1e-6);
    }
  });

  for (const precision of ['f32', 'bf16'] as const) {
    it(`linearBackward and linearTBackward (${precision}): dx (= and +=), dW and db accumulate, optional outputs`, async () => {
      const rng = new Rng(precision === 'f32' ? 230 : 231);
      const nOut = 53;
      const x = normalArray(rng, ROWS * C);
      const dout = normalArray(rng, ROWS * nOut);
      const op = (a: Float32Array) => (precision === 'bf16' ? roundArrayBf16(a) : a);
      const tol = 1e-6;
      for (const transW of [false, true]) {
        const W = normalArray(rng, C * nOut, 0.2);
        const wShape = transW ? [nOut, C] : [C, nOut];
        const ref = linearBackwardRef(op(dout), op(x), op(W), ROWS, C, nOut, transW);
        const dbRef = linearBackwardRef(dout, x, W, ROWS, C, nOut, transW).db; // fp32 dout in every mode
        const dx0 = normalArray(rng, ROWS * C);
        const dW0 = normalArray(rng, C * nOut);
        const db0 = normalArray(rng, nOut);
        using tx = Tensor.from(x, [ROWS, C], { backend });
        using tW = Tensor.from(W, wShape, { backend });
        using tdout = Tensor.from(dout, [ROWS, nOut], { backend });
        const tag = `${precision} transW=${transW}`;
        for (const accumulate of [false, true]) {
          using dx = accumulate ? Tensor.from(dx0, [ROWS, C], { backend }) : Tensor.full([ROWS, C], Number.NaN, { backend });
          using dW = Tensor.from(dW0, wShape, { backend });
          using db = Tensor.from(db0, [nOut], { backend });
          if (transW) await linearTBackward(tdout, tx, tW, dx, dW, precision, accumulate);
          else await linearBackward(tdout, tx, tW, dx, dW, db, precision, accumulate);
          expect(maxErr(`linearBackward ${tag} dx`, f32(dx), accumulate ? plus(dx0, ref.dx) : ref.dx)).toBeLessThan(tol);
          expect(maxErr(`linearBackward ${tag} dW`, f32(dW), plus(dW0, ref.dW))).toBeLessThan(tol);
          if (!transW) expect(maxErr(`linearBackward ${tag} db`, f32(db), plus(db0, dbRef))).toBeLessThan(tol);
          else expect(Array.from(f32(db))).toEqual(Array.from(db0));
        }
        // dx and db null: only dW.
        using dW = Tensor.from(dW0, wShape, { backend });
        if (transW) await linearTBackward(tdout, tx, tW, null, dW, precision);
        else await linearBackward(tdout, tx, tW, null, dW, null, precision);
        expect(maxErr(`linearBackward ${tag} dW`, f32(dW), plus(dW0, ref.dW))).toBeLessThan(tol);
        if (precision === 'bf16') {
          // The rounding really happened: the f32 product is measurably different.
          const exact = linearBackwardRef(dout, x, W, ROWS, C, nOut, transW);
          expect(relError(f32(dW), plus(dW0, exact.dW))).toBeGreaterThan(1e-4);
        }
      }
    });
  }

  it('linearBackward and linearTBackward at bf16 take a bf16 x as the f32 x of the same values', async () => {
    const rng = new Rng(246);
    const nOut = 41;
    const x = roundArrayBf16(normalArray(rng, ROWS * C));
    const dout = normalArray(rng, ROWS * nOut);
    const W = normalArray(rng, C * nOut, 0.2);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using txh = Tensor.from(x, [ROWS, C], { backend, dtype: 'bf16' });
    using tg = Tensor.from(dout, [ROWS, nOut], { backend });
    for (const transW of [false, true]) {
      using tW = Tensor.from(W, transW ? [nOut, C] : [C, nOut], { backend });
      const results: Float32Array[][] = [];
      for (const input of [tx, txh]) {
        using dx = Tensor.full([ROWS, C], Number.NaN, { backend });
        using dW = Tensor.zeros(transW ? [nOut, C] : [C, nOut], { backend });
        await (transW ? linearTBackward(tg, input, tW, dx, dW, 'bf16') : linearBackward(tg, input, tW, dx, dW, null, 'bf16'));
        results.push([f32(dx), f32(dW)]);
      }
      expect(Array.from(results[1]![0]!), `dx, transW ${transW}`).toEqual(Array.from(results[0]![0]!));
      expect(Array.from(results[1]![1]!), `dW, transW ${transW}`).toEqual(Array.from(results[0]![1]!));
    }
    using tW = Tensor.from(W, [C, nOut], { backend });
    using dW = Tensor.zeros([C, nOut], { backend });
    expect(() => linearBackward(tg, txh, tW, null, dW, null, 'f32')).toThrow(/a bf16 x needs precision 'bf16'/);
  });

  it('linearTBackward handles the tied unembedding [V, C]', async () => {
    const rng = new Rng(232);
    const x = normalArray(rng, ROWS * C);
    const wte = normalArray(rng, V * C, 0.1);
    const dlogits = normalArray(rng, ROWS * V, 0.01);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tw = Tensor.from(wte, [V, C], { backend });
    using tg = Tensor.from(dlogits, [ROWS, V], { backend });
    using dx = Tensor.full([ROWS, C], Number.NaN, { backend });
    using dW = Tensor.zeros([V, C], { backend });
    await linearTBackward(tg, tx, tw, dx, dW, 'f32');
    const ref = linearBackwardRef(dlogits, x, wte, ROWS, C, V, true);
    expect(maxErr('linearTBackward [V, C] dx', f32(dx), ref.dx)).toBeLessThan(1e-6);
    expect(maxErr('linearTBackward [V, C] dW', f32(dW), ref.dW)).toBeLessThan(1e-6);
  });

  it('activationBackward computes dpost · act′(pre) for gelu_new, gelu and relu, also in place', async () => {
    const rng = new Rng(240);
    const pre = uniformArray(rng, ROWS * C, -6, 6);
    pre.set([0, -0, 1e-30, -1e-30, 10, -10, 30, -30, 1e20, -1e20], 0);
    const dpost = normalArray(rng, ROWS * C);
    const grads = { gelu_new: geluNewGradRef, gelu: geluErfGradRef, relu: reluGradRef };
    for (const kind of ['gelu_new', 'gelu', 'relu'] as const) {
      const ref = Float64Array.from(pre, (x, i) => dpost[i]! * grads[kind](x));
      using tpre = Tensor.from(pre, [ROWS, C], { backend });
      using tdpost = Tensor.from(dpost, [ROWS, C], { backend });
      using dpre = Tensor.full([ROWS, C], Number.NaN, { backend });
      await activationBackward(kind, tdpost, tpre, dpre);
      expect(maxErr(`activationBackward ${kind}`, f32(dpre), ref)).toBeLessThan(2e-6);
      await activationBackward(kind, tdpost, tpre, tdpost);
      expect(Array.from(f32(tdpost)), `${kind} in place`).toEqual(Array.from(f32(dpre)));
    }
  });

  it('activationBackward takes a bf16 pre as the f32 pre of the same values', async () => {
    const rng = new Rng(241);
    const pre = roundArrayBf16(uniformArray(rng, ROWS * C + 5, -6, 6));
    pre.set([0, -0, 1e-30, -1e-30], 0);
    const dpost = normalArray(rng, pre.length);
    using tf = Tensor.from(pre, [pre.length], { backend });
    using th = Tensor.from(pre, [pre.length], { backend, dtype: 'bf16' });
    using tdpost = Tensor.from(dpost, [pre.length], { backend });
    for (const kind of ['gelu_new', 'gelu', 'relu'] as const) {
      using a = Tensor.full([pre.length], Number.NaN, { backend });
      using b = Tensor.full([pre.length], Number.NaN, { backend });
      await activationBackward(kind, tdpost, tf, a);
      await activationBackward(kind, tdpost, th, b);
      expect(Array.from(f32(b)), kind).toEqual(Array.from(f32(a)));
    }
  });

  it('crossEntropyForwardBackward writes the losses and, in place, the gradient', async () => {
    const rng = new Rng(250);
    const logits = normalArray(rng, ROWS * V, 3);
    const targets = Int32Array.from({ length: ROWS }, (_, r) => (r % 9 === 4 ? -1 : rng.int(V)));
    targets[0] = 0;
    targets[1] = V - 1;
    const scale = 1 / 33;
    const ref = crossEntropyBackwardRef(logits, targets, ROWS, V, scale);
    using tl = Tensor.from(logits, [ROWS, V], { backend });
    using tt = Tensor.from(targets, [ROWS], { backend, dtype: 'i32' });
    using forward = Tensor.full([ROWS], Number.NaN, { backend });
    await crossEntropy(tl, tt, forward);
    using losses = Tensor.full([ROWS], Number.NaN, { backend });
    await crossEntropyForwardBackward(tl, tt, losses, scale);
    expect(maxErr('crossEntropy losses', f32(losses), ref.losses)).toBeLessThan(1e-6);
    expect(Array.from(f32(losses))).toEqual(Array.from(f32(forward))); // the same arithmetic as the forward op
    expect(maxErr('crossEntropy dlogits', f32(tl), ref.dlogits)).toBeLessThan(1e-6);
    // Each counted row of the gradient sums to 0; ignored rows are 0.
    const g = f32(tl);
    for (let r = 0; r < ROWS; r++) {
      const row = g.subarray(r * V, (r + 1) * V);
      if (targets[r]! < 0) expect(row.every((x) => x === 0)).toBe(true);
      else expect(Math.abs(row.reduce((acc, x) => acc + x, 0))).toBeLessThan(1e-7);
    }
  });

  it('crossEntropyForwardBackward can write the gradient as bf16, which the linear backward takes as its dout, bit for bit', async () => {
    const rng = new Rng(251);
    const logits = normalArray(rng, ROWS * V, 3);
    const targets = Int32Array.from({ length: ROWS }, (_, r) => (r % 7 === 3 ? -1 : rng.int(V)));
    const scale = 1 / 29;
    // In place (the f32 gradient) and into a bf16 tensor (the logits stay).
    using inPlace = Tensor.from(logits, [ROWS, V], { backend });
    using tt = Tensor.from(targets, [ROWS], { backend, dtype: 'i32' });
    using losses = Tensor.full([ROWS], Number.NaN, { backend });
    await crossEntropyForwardBackward(inPlace, tt, losses, scale);
    using tl = Tensor.from(logits, [ROWS, V], { backend });
    using grad = Tensor.empty([ROWS, V], { backend, dtype: 'bf16' });
    using losses2 = Tensor.full([ROWS], Number.NaN, { backend });
    await crossEntropyForwardBackward(tl, tt, losses2, scale, { gradient: grad });
    expect(Array.from(f32(tl))).toEqual(Array.from(logits));
    expect(Array.from(f32(losses2))).toEqual(Array.from(f32(losses)));
    expect(Array.from(bf16ToFloat32(grad.toArray() as Uint16Array))).toEqual(Array.from(roundArrayBf16(f32(inPlace))));

    // linearTBackward at bf16 from the bf16 gradient = from the f32 one (which it rounds the same way).
    const x = normalArray(rng, ROWS * C);
    const W = normalArray(rng, V * C, 0.2);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tW = Tensor.from(W, [V, C], { backend });
    const results: Float32Array[] = [];
    for (const dout of [inPlace, grad]) {
      using dx = Tensor.full([ROWS, C], Number.NaN, { backend });
      using dW = Tensor.zeros([V, C], { backend });
      await linearTBackward(dout, tx, tW, dx, dW, 'bf16');
      results.push(f32(dx), f32(dW));
    }
    expect(Array.from(results[2]!)).toEqual(Array.from(results[0]!));
    expect(Array.from(results[3]!)).toEqual(Array.from(results[1]!));

    // Misuse: a bf16 dout at f32 precision or with a bias gradient; a gradient of the wrong dtype or size.
    using dW = Tensor.zeros([V, C], { backend });
    expect(() => linearTBackward(grad, tx, tW, null, dW, 'f32')).toThrow(/a bf16 dout needs precision 'bf16'/);
    using gradT = Tensor.empty([ROWS, V], { backend, dtype: 'bf16' });
    using wT = Tensor.from(W, [C, V], { backend });
    using dWT = Tensor.zeros([C, V], { backend });
    using db = Tensor.zeros([V], { backend });
    expect(() => linearBackward(gradT, tx, wT, null, dWT, db, 'bf16')).toThrow(/dbias needs an f32 dout/);
    using wrongDtype = Tensor.empty([ROWS, V], { backend });
    expect(() => crossEntropyForwardBackward(tl, tt, losses2, scale, { gradient: wrongDtype })).toThrow(/gradient must have dtype bf16/);
    using short = Tensor.empty([ROWS, V - 1], { backend, dtype: 'bf16' });
    expect(() => crossEntropyForwardBackward(tl, tt, losses2, scale, { gradient: short })).toThrow(/gradient must hold/);
  });

  it('crossEntropyForwardBackward over bf16 logits: the losses of their f32 values, the rounded gradient in place or in a tensor of its own', async () => {
    const rng = new Rng(252);
    const logits = roundArrayBf16(normalArray(rng, ROWS * V, 3));
    const targets = Int32Array.from({ length: ROWS }, (_, r) => (r % 5 === 2 ? -1 : rng.int(V)));
    const scale = 1 / 31;
    using tf = Tensor.from(logits, [ROWS, V], { backend });
    using tt = Tensor.from(targets, [ROWS], { backend, dtype: 'i32' });
    using lossesF = Tensor.full([ROWS], Number.NaN, { backend });
    await crossEntropyForwardBackward(tf, tt, lossesF, scale); // the f32 gradient, in place
    const rounded = Array.from(roundArrayBf16(f32(tf)));

    using th = Tensor.from(logits, [ROWS, V], { backend, dtype: 'bf16' });
    using lossesH = Tensor.full([ROWS], Number.NaN, { backend });
    await crossEntropyForwardBackward(th, tt, lossesH, scale);
    expect(Array.from(f32(lossesH))).toEqual(Array.from(f32(lossesF)));
    expect(Array.from(th.toFloat32())).toEqual(rounded);

    using th2 = Tensor.from(logits, [ROWS, V], { backend, dtype: 'bf16' });
    using grad = Tensor.empty([ROWS, V], { backend, dtype: 'bf16' });
    using lossesG = Tensor.full([ROWS], Number.NaN, { backend });
    await crossEntropyForwardBackward(th2, tt, lossesG, scale, { gradient: grad });
    expect(Array.from(th2.toFloat32())).toEqual(Array.from(logits)); // the logits stay
    expect(Array.from(grad.toFloat32())).toEqual(rounded);
    expect(Array.from(f32(lossesG))).toEqual(Array.from(f32(lossesF)));
  });

  it('the cross-entropy exponentials agree with float64 at every SIMD level, down to underflow', async () => {
    // Logits spread over [-150, 40]: many rows have entries whose exp(l - max) underflows fp32,
    // which the vectorised exp flushes to 0 below -87 (exp_kernel_avx2.cpp).
    const addon = nativeAddon();
    const detected = addon.cpuInfo().simdDetected as 'scalar' | 'avx2' | 'avx512';
    const levels = (['scalar', 'avx2', 'avx512'] as const).filter((_, i) => i <= ['scalar', 'avx2', 'avx512'].indexOf(detected));
    const rng = new Rng(255);
    const logits = uniformArray(rng, ROWS * V, -150, 40);
    const targets = Int32Array.from({ length: ROWS }, () => rng.int(V));
    const ref = crossEntropyBackwardRef(logits, targets, ROWS, V, 0.5);
    try {
      for (const simd of levels) {
        addon.setSimdCap(simd);
        using tl = Tensor.from(logits, [ROWS, V], { backend });
        using tt = Tensor.from(targets, [ROWS], { backend, dtype: 'i32' });
        using losses = Tensor.empty([ROWS], { backend });
        await crossEntropyForwardBackward(tl, tt, losses, 0.5);
        expect(maxErr(`crossEntropy losses (${simd})`, f32(losses), ref.losses), simd).toBeLessThan(2e-5);
        expect(maxErr(`crossEntropy dlogits (${simd})`, f32(tl), ref.dlogits), simd).toBeLessThan(1e-6);
      }
    } finally {
      addon.setSimdCap(detected);
    }
  });

  it('embedBackward accumulates rows of dwte and dwpe, deterministically for any thread count', async () => {
    const rng = new Rng(260);
    const nPositions = 13;
    const ids = Int32Array.from({ length: B * T }, () => rng.int(9)); // repeated ids
    ids[B * T - 1] = V - 1;
    const dres = normalArray(rng, B * T * C);
    const dpos = normalArray(rng, B * T * C);
    const wte0 = normalArray(rng, V * C);
    const wpe0 = normalArray(rng, nPositions * C);
    using tids = Tensor.from(ids, [B, T], { backend, dtype: 'i32' });
    using tres = Tensor.from(dres, [B * T, C], { backend });
    using tpos = Tensor.from(dpos, [B, T, C], { backend });
    const results: Float32Array[] = [];
    const threads = nativeAddon().cpuInfo().threads;
    try {
      for (const n of [threads, 1, 3]) {
        nativeAddon().setThreads(n);
        using dwte = Tensor.from(wte0, [V, C], { backend });
        using dwpe = Tensor.from(wpe0, [nPositions, C], { backend });
        await embedBackward(tids, B, T, tres, tpos, dwte, dwpe);
        const ref = embedBackwardRef(ids, B, T, dres, dpos, V, nPositions, C);
        expect(maxErr('embedBackward dwte', f32(dwte), plus(wte0, ref.dwte))).toBeLessThan(1e-6);
        expect(maxErr('embedBackward dwpe', f32(dwpe), plus(wpe0, ref.dwpe))).toBeLessThan(1e-6);
        results.push(new Float32Array([...f32(dwte), ...f32(dwpe)]));
        // GPT-2: the token and position gradients are the same tensor.
        await embedBackward(tids, B, T, tres, tres, dwte, dwpe);
      }
    } finally {
      nativeAddon().setThreads(threads);
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });

  it('adamW takes decoupled-weight-decay Adam steps as torch.optim.AdamW', async () => {
    const rng = new Rng(270);
    const n = 1001;
    let p = Float64Array.from(normalArray(rng, n));
    let m = new Float64Array(n);
    let v = new Float64Array(n);
    using tp = Tensor.from(Float32Array.from(p), [n], { backend });
    using tm = Tensor.zeros([n], { backend });
    using tv = Tensor.zeros([n], { backend });
    for (let step = 1; step <= 5; step++) {
      const grad = normalArray(rng, n, 0.5);
      const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step, gradScale: step === 3 ? 0.25 : 1 };
      using tg = Tensor.from(grad, [n], { backend });
      await adamW(tp, tg, tm, tv, step === 3 ? hp : { ...hp, gradScale: undefined });
      ({ param: p, m, v } = adamWRef(p, grad, m, v, hp));
      expect(maxErr('adamW param', f32(tp), p)).toBeLessThan(1e-6);
      expect(maxErr('adamW m', f32(tm), m)).toBeLessThan(1e-6);
      expect(maxErr('adamW v', f32(tv), v)).toBeLessThan(1e-6);
    }
    // weightDecay 0 with a zero gradient and zero moments leaves the parameter as it is.
    using z = Tensor.zeros([n], { backend });
    using m0 = Tensor.zeros([n], { backend });
    using v0 = Tensor.zeros([n], { backend });
    const before = f32(tp);
    await adamW(tp, z, m0, v0, { lr: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 });
    expect(Array.from(f32(tp))).toEqual(Array.from(before));
  });

  it('adamW clips with the squared norm held on the backend exactly as with the scale computed on the host', async () => {
    const rng = new Rng(271);
    const n = 777;
    const p0 = normalArray(rng, n);
    const grad = normalArray(rng, n, 3);
    using tg = Tensor.from(grad, [n], { backend });
    using ss = Tensor.zeros([1], { backend });
    await reduceSumInto(tg, ss, { square: true });
    const norm = Math.sqrt(f32(ss)[0]!);
    const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1 };
    const run = async (extra: object) => {
      using tp = Tensor.from(p0, [n], { backend });
      using tm = Tensor.zeros([n], { backend });
      using tv = Tensor.zeros([n], { backend });
      await adamW(tp, tg, tm, tv, { ...hp, ...extra });
      return [f32(tp), f32(tm), f32(tv)].map((a) => Array.from(a));
    };
    for (const maxNorm of [norm / 7, norm * 2, 0]) {
      const limit = Math.fround(maxNorm); // the backend takes the limit as f32
      const host = await run({ gradScale: limit > 0 && norm > limit ? limit / norm : 1 });
      expect(await run({ clip: { sumSquares: ss, maxNorm } }), `maxNorm ${maxNorm}`).toEqual(host);
    }
    expect(await run({ clip: { sumSquares: ss, maxNorm: norm / 7 } })).not.toEqual(await run({}));
    using two = Tensor.zeros([2], { backend });
    await expect(async () => run({ clip: { sumSquares: two, maxNorm: 1 } })).rejects.toThrow(/clip.sumSquares must be one f32 value/);
  });
});

describe('argument errors', () => {
  const t = (shape: number[], dtype: 'f32' | 'i32' = 'f32') => Tensor.zeros(shape, { backend, dtype });

  it('attention ops name bad shapes, dtypes and aliases', () => {
    using q = t([B * T, C]);
    using k = t([B * T, C]);
    using v = t([B * T, C]);
    using out = t([B * T, C]);
    using lse = t([B, N_HEAD, T]);
    using bad = t([B * T, C + 1]);
    using small = t([B, N_HEAD, T - 1]);
    using qi = t([B * T, C], 'i32');
    expect(() => attentionForwardTrain(q, k, v, B, T, N_HEAD, bad, lse)).toThrow(/out must have shape \[21, 76\]/);
    expect(() => attentionForwardTrain(q, k, v, B, T, N_HEAD, out, small)).toThrow(/lse must hold 84 elements/);
    expect(() => attentionForwardTrain(q, k, v, B, T, 5, out, lse)).toThrow(/nHead 5 must divide C 76/);
    expect(() => attentionForwardTrain(q, k, v, B, T + 1, N_HEAD, out, lse)).toThrow(/q must have shape \[24, 76\]/);
    expect(() => attentionForwardTrain(qi, k, v, B, T, N_HEAD, out, lse)).toThrow(TypeError);
    expect(() => attentionForwardTrain(q, k, v, B, T, N_HEAD, q, lse)).toThrow(/out must not be the same tensor as q/);
    expect(() => attentionForwardTrain(q, k, v, 0, T, N_HEAD, out, lse)).toThrow(/batch must be an integer/);
    expect(() => attentionBackward(out, q, k, v, out, lse, B, T, N_HEAD, q, k, v)).toThrow(/dq must not be the same tensor as q/);
    expect(() => attentionBackward(out, q, k, v, out, lse, B, T, N_HEAD, bad, k, v)).toThrow(/dq must have shape/);
    using dq = t([B * T, C]);
    expect(() => attentionBackward(out, q, k, v, out, lse, B, T, N_HEAD, dq, dq, v)).toThrow(/dq must not be the same tensor as dk/);
    expect(() => splitQkvTrain(bad, q, k, v)).toThrow(/the last dim of qkv \[21, 77\] must be 3·C/);
    using qkv = t([B * T, 3 * C]);
    expect(() => splitQkvTrain(qkv, q, k, bad)).toThrow(/v must have shape \[21, 76\]/);
    expect(() => attentionBackwardQkv(out, q, k, v, out, lse, B, T, N_HEAD, out)).toThrow(/dqkv must have shape \[21, 228\]/);
    expect(() => attentionBackwardQkv(out, q, k, v, out, lse, B, T, N_HEAD + 1, qkv)).toThrow(/nHead 5 must divide C 76/);
  });

  it('layer norm, linear, activation, loss and embedding backwards name bad arguments', async () => {
    using x = t([ROWS, C]);
    using w = t([C]);
    using stat = t([ROWS]);
    using dx = t([ROWS, C]);
    using dw = t([C]);
    using db = t([C]);
    await layerNormBackward(x, x, w, stat, stat, dx, dw, db, false); // dout may be x
    expect(() => layerNormBackward(x, x, w, stat, stat, x, dw, db, false)).toThrow(/dx must not be the same tensor as dout/);
    expect(() => layerNormBackward(x, x, w, stat, stat, dx, dw, dw, false)).toThrow(/dweight must not be the same tensor as dbias/);
    using shortStat = t([ROWS - 1]);
    expect(() => layerNormBackward(x, x, w, shortStat, stat, dx, dw, db, false)).toThrow(/mean must hold 37 elements/);
    expect(() => layerNormBackward(x, x, w, stat, stat, dx, dw, db, 1 as unknown as boolean)).toThrow(/accumulate must be a boolean/);

    using W = t([C, 53]);
    using dW = t([C, 53]);
    using dout = t([ROWS, 53]);
    using dWt = t([53, C]);
    using db53 = t([53]);
    expect(() => linearBackward(dout, x, W, dx, dWt, db53, 'f32')).toThrow(/dweight must have shape \[76, 53\]/);
    expect(() => linearBackward(dout, x, W, dx, dW, db, 'f32')).toThrow(/dbias must have shape \[53\]/);
    expect(() => linearBackward(x, x, W, dx, dW, db53, 'f32')).toThrow(/dout must have shape \[37, 53\]/);
    expect(() => linearBackward(dout, x, W, dx, dW, db53, 'f16' as 'f32')).toThrow(/precision must be 'f32' or 'bf16'/);
    expect(() => linearBackward(dout, x, W, x, dW, db53, 'f32')).toThrow(/dx must not be the same tensor as x/);
    expect(() => linearTBackward(dout, x, W, dx, dW, 'f32')).toThrow(/weight \[76, 53\] \(\[out, in\]\) has 53 inputs but x \[37, 76\] has 76 columns/);

    using pre = t([ROWS, C]);
    expect(() => activationBackward('swish' as 'relu', x, pre, dx)).toThrow(/kind must be one of gelu_new, gelu, relu/);
    expect(() => activationBackward('relu', x, pre, pre)).toThrow(/dpre must not be the same tensor as pre/);
    expect(() => activationBackward('relu', stat, pre, dx)).toThrow(/dpost must hold 2812 elements/);

    using logits = t([ROWS, V]);
    using targets = t([ROWS], 'i32');
    using targetsF = t([ROWS]);
    expect(() => crossEntropyForwardBackward(logits, targetsF, stat, 1)).toThrow(/targets must have dtype i32/);
    expect(() => crossEntropyForwardBackward(logits, targets, shortStat, 1)).toThrow(/losses must hold 37 elements/);
    expect(() => crossEntropyForwardBackward(logits, targets, stat, Number.NaN)).toThrow(/scale must be finite/);

    using ids = t([B * T], 'i32');
    using dres = t([B * T, C]);
    using dwte = t([V, C]);
    using dwpe = t([5, C]);
    expect(() => embedBackward(ids, B, T, dres, dres, dwte, dwpe)).toThrow(/T 7 exceeds the 5 positions of dwpe \[5, 76\]/);
    using dwpe2 = t([13, C + 1]);
    expect(() => embedBackward(ids, B, T, dres, dres, dwte, dwpe2)).toThrow(/dwpe must have shape \[nPositions, 76\]/);
    using dwpe3 = t([13, C]);
    expect(() => embedBackward(ids, B, T, dres, dres, dwte, dwte)).toThrow(/dwpe must have shape|dwte must not be the same tensor/);
    expect(() => embedBackward(ids, B, T, dwte, dres, dwte, dwpe3)).toThrow(/dtok must have shape \[21, 76\]/);
  });

  it('bad token ids and targets are found in the backend, with nothing written', async () => {
    const rng = new Rng(280);
    using dres = Tensor.from(normalArray(rng, B * T * C), [B * T, C], { backend });
    using dwte = Tensor.zeros([V, C], { backend });
    using dwpe = Tensor.zeros([13, C], { backend });
    const ids = Int32Array.from({ length: B * T }, (_, i) => i);
    ids[5] = V;
    ids[9] = -3;
    using tids = Tensor.from(ids, [B * T], { backend, dtype: 'i32' });
    const e = await rejection(embedBackward(tids, B, T, dres, dres, dwte, dwpe));
    expect(e).toBeInstanceOf(MonosemanticError);
    expect((e as MonosemanticError).code).toBe('E_INVALID');
    expect((e as MonosemanticError).message).toContain(`ids[5] = ${V} is outside the vocabulary [0, ${V})`);
    expect(f32(dwte).every((x) => x === 0) && f32(dwpe).every((x) => x === 0)).toBe(true);

    const logits = normalArray(rng, ROWS * V);
    using tl = Tensor.from(logits, [ROWS, V], { backend });
    const targets = new Int32Array(ROWS);
    targets[7] = V + 2;
    using tt = Tensor.from(targets, [ROWS], { backend, dtype: 'i32' });
    using losses = Tensor.full([ROWS], Number.NaN, { backend });
    const e2 = await rejection(crossEntropyForwardBackward(tl, tt, losses, 1));
    expect((e2 as MonosemanticError).code).toBe('E_INVALID');
    expect((e2 as MonosemanticError).message).toContain(`targets[7] = ${V + 2} is outside the vocabulary`);
    expect(Array.from(f32(tl))).toEqual(Array.from(logits));
    expect(f32(losses).every(Number.isNaN)).toBe(true);
  });

  it('adamW names bad tensors and hyperparameters', () => {
    using p = t([10]);
    using g = t([10]);
    using m = t([10]);
    using v = t([11]);
    using v10 = t([10]);
    const hp = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 };
    expect(() => adamW(p, g, m, v, hp)).toThrow(/v must hold 10 elements like param \[10\]/);
    expect(() => adamW(p, g, m, m, hp)).toThrow(/m must not be the same tensor as v/);
    expect(() => adamW(p, p, m, v10, hp)).toThrow(/param must not be the same tensor as grad/);
    expect(() => adamW(p, g, m, v10, { ...hp, beta1: 1 })).toThrow(/hp\.beta1 must be in \[0, 1\)/);
    expect(() => adamW(p, g, m, v10, { ...hp, step: 0 })).toThrow(/hp\.step must be an integer/);
    expect(() => adamW(p, g, m, v10, { ...hp, lr: Number.NaN })).toThrow(/hp\.lr must be a finite number >= 0/);
    expect(() => adamW(p, g, m, v10, { ...hp, weightDecay: '0' as unknown as number })).toThrow(TypeError);
    expect(() => adamW(p, g, m, v10, { ...hp, gradScale: -1 })).toThrow(/hp\.gradScale/);
  });
});

const fixtures = path.join(packageRoot(), 'test/fixtures/gpt2');

describe.each(['tiny-relu-untied', 'tiny-gelu-new-tied'])('whole-model gradients of %s', (name) => {
  // f32: every parameter's gradient within 1e-5 (Frobenius, relative) of PyTorch's float64 one, and
  // all of them together too. bf16 matrix products (8-bit mantissas, rounding errors compounding
  // through the backward pass; small gradients such as a bias's suffer most): each tensor within
  // 0.2 and all together within 6e-2, far below the errors of order 1 a wrong operand or layout gives.
  for (const [precision, tol, tolAll] of [['f32', 1e-5, 1e-5], ['bf16', 0.2, 6e-2]] as const) {
    it(`match PyTorch float64 autograd for every parameter (${precision} products)`, async () => {
      const dir = path.join(fixtures, name);
      const config = await loadGpt2Config(dir);
      const weights = await loadGpt2Weights(dir, config);
      const { tensors: ref } = await readSafetensors(path.join(dir, 'reference.safetensors'));
      const { tensors: want } = await readSafetensors(path.join(dir, 'grads.safetensors'));
      const ids = new Int32Array(ref.input_ids!.bytes.slice().buffer);
      const [batch] = ref.input_ids!.shape as [number, number];
      const { loss, grads } = await gpt2LossAndGrads(config, weights, ids, batch, backend, precision);
      const wantLoss = tensorToFloat32(want.loss!, 'loss')[0]!;
      measured[`${name} ${precision} loss`] = Math.abs(loss - wantLoss) / wantLoss;
      expect(Math.abs(loss - wantLoss) / wantLoss).toBeLessThan(precision === 'f32' ? 1e-6 : 1e-2);
      const names = Object.keys(want).filter((k) => k !== 'loss');
      expect(Object.keys(grads).sort()).toEqual(names.sort());
      let worst = 0;
      for (const key of names) {
        const e = relError(grads[key]!, tensorToFloat32(want[key]!, key));
        worst = Math.max(worst, e);
        expect(e, key).toBeLessThan(tol);
      }
      const all = relError(Float32Array.from(names.flatMap((k) => Array.from(grads[k]!))), Float32Array.from(names.flatMap((k) => Array.from(tensorToFloat32(want[k]!, k)))));
      measured[`${name} ${precision} grads (worst tensor)`] = worst;
      measured[`${name} ${precision} grads (all together)`] = all;
      expect(all).toBeLessThan(tolAll);
    });
  }
});
