/**
 * The GPT-2 forward ops (lib/lm/ops.ts) on the CPU backend against the float64 references in
 * test/reference/transformer-reference.ts, on awkward sizes (rows 37, C 76, 4 heads of 19, V 1013,
 * B 3, T 7, Tmax 11). Outputs start as NaN (or a sentinel for i32) to prove every element is
 * written; cache rows that must not be read hold NaN. Tolerances:
 *   - f32 matrix products: |out − ref| <= 1e-5 · (Σ_k |x_k w_k| + |b|) per element; bf16 products
 *     the same, against a reference whose operands are rounded to bf16 first;
 *   - layer norm, activations, cross-entropy: |out − ref| <= 1e-5 · max(1, |ref|) (activations 2e-6);
 *   - attention: |out − ref| <= 1e-5 · max |v| (the output is a convex combination of v rows);
 *   - add, embed, the q/k/v split and argmax: exact.
 */
import { describe, expect, it } from 'vitest';

import { nativeAddon } from '../../lib/backend.js';
import { MonosemanticError } from '../../lib/errors.js';
import { activation, add, argmaxRows, attention, crossEntropy, embed, klRows, layerNorm, linear, linearQkv, linearT, splitQkv } from '../../lib/lm/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, relFloor1, roundArrayBf16, uniformArray, worst } from '../helpers/data.js';
import {
  argmaxRowsRef,
  attentionRef,
  crossEntropyRef,
  klRowsRef,
  embedRef,
  erfRef,
  geluErfRef,
  geluNewRef,
  layerNormRef,
  linearRef,
  reluRef,
  splitQkvRef,
} from '../reference/transformer-reference.js';

const backend = 'cpu' as const;
const [ROWS, C, N_HEAD, V, B, T, TMAX] = [37, 76, 4, 1013, 3, 7, 11];

/** Σ_k |x[r, k] W[k, o]| + |b[o]| per output element: the scale of a dot product's rounding error. */
function absScale(x: Float32Array, W: Float32Array, bias: Float32Array | null, rows: number, nIn: number, nOut: number, transW: boolean): Float64Array {
  const absX = Float64Array.from(x, Math.abs);
  const absW = Float64Array.from(W, Math.abs);
  const absB = bias ? Float64Array.from(bias, Math.abs) : null;
  return linearRef(absX, absW, absB, rows, nIn, nOut, transW);
}

function f32(t: Tensor): Float32Array {
  return t.toArray() as Float32Array;
}

describe('reference', () => {
  it('erfRef matches tabulated values', () => {
    const table: [number, number][] = [
      [0.01, 0.011283415555849618],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [-1.5, -0.9661051464753108],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
      [4, 0.9999999845827421],
    ];
    for (const [x, v] of table) expect(Math.abs(erfRef(x) - v)).toBeLessThan(1e-13);
  });
});

describe('transformer ops (cpu)', () => {
  it('layerNorm normalises each row, saves mean/rstd, and runs in place', async () => {
    const rng = new Rng(1);
    const x = normalArray(rng, ROWS * C, 2).map((v, i) => v + 3 + (i % 5)); // offset rows: centring matters
    const w = uniformArray(rng, C, 0.5, 1.5);
    const b = normalArray(rng, C, 0.3);
    const eps = 1e-5;
    // Row 5 has a variance of about eps (spread 3e-3 around 3): there eps moves rstd by a factor
    // of about √2 (1/√(2e-5), not 1/√1e-5), so an eps left out of the kernel cannot pass.
    for (let j = 0; j < C; j++) x[5 * C + j] = 3 + rng.normal() * Math.sqrt(eps);
    const ref = layerNormRef(x, w, b, ROWS, C, eps);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tw = Tensor.from(w, [C], { backend });
    using tb = Tensor.from(b, [C], { backend });
    using out = Tensor.full([ROWS, C], Number.NaN, { backend });
    using mean = Tensor.full([ROWS], Number.NaN, { backend });
    using rstd = Tensor.full([ROWS], Number.NaN, { backend });
    await layerNorm(tx, tw, tb, eps, out, { mean, rstd });
    expect(worst(f32(out), ref.out, relFloor1(ref.out))).toBeLessThan(1e-5);
    expect(worst(f32(mean), ref.mean, relFloor1(ref.mean))).toBeLessThan(1e-6);
    expect(worst(f32(rstd), ref.rstd, relFloor1(ref.rstd))).toBeLessThan(1e-6);

    // In place, [B, T, C]-shaped (rows read over the leading dims), no saved statistics.
    using inPlace = Tensor.from(x.subarray(0, B * T * C), [B, T, C], { backend });
    await layerNorm(inPlace, tw, tb, eps, inPlace);
    expect(Array.from(f32(inPlace))).toEqual(Array.from(f32(out).subarray(0, B * T * C)));

    // Into bf16: the f32 output rounded, the same statistics.
    using outBf = Tensor.full([ROWS, C], Number.NaN, { backend, dtype: 'bf16' });
    using mean2 = Tensor.full([ROWS], Number.NaN, { backend });
    using rstd2 = Tensor.full([ROWS], Number.NaN, { backend });
    await layerNorm(tx, tw, tb, eps, outBf, { mean: mean2, rstd: rstd2 });
    expect(Array.from(outBf.toFloat32())).toEqual(Array.from(roundArrayBf16(f32(out))));
    expect(Array.from(f32(mean2))).toEqual(Array.from(f32(mean)));
    expect(Array.from(f32(rstd2))).toEqual(Array.from(f32(rstd)));
  });

  for (const precision of ['f32', 'bf16'] as const) {
    it(`linear and linearT (${precision}) match x W + b with ${precision === 'bf16' ? 'bf16-rounded operands' : 'f32 operands'}`, async () => {
      const rng = new Rng(precision === 'f32' ? 2 : 3);
      const nOut = 53;
      const x = normalArray(rng, ROWS * C);
      const W = normalArray(rng, C * nOut, 0.2); // [C, nOut]
      const Wt = normalArray(rng, nOut * C, 0.2); // [nOut, C]
      const bias = normalArray(rng, nOut);
      const op = (a: Float32Array) => (precision === 'bf16' ? roundArrayBf16(a) : a);
      using tx = Tensor.from(x, [ROWS, C], { backend });
      using tW = Tensor.from(W, [C, nOut], { backend });
      using tWt = Tensor.from(Wt, [nOut, C], { backend });
      using tb = Tensor.from(bias, [nOut], { backend });
      for (const [transW, Wdata, tWeight] of [[false, W, tW], [true, Wt, tWt]] as const) {
        for (const b of [bias, null]) {
          using out = Tensor.full([ROWS, nOut], Number.NaN, { backend });
          await (transW ? linearT : linear)(tx, tWeight, b ? tb : null, out, precision);
          const ref = linearRef(op(x), op(Wdata), b, ROWS, C, nOut, transW);
          const scale = absScale(x, Wdata, b, ROWS, C, nOut, transW);
          expect(worst(f32(out), ref, (i) => scale[i]!), `transW ${transW}, bias ${b !== null}`).toBeLessThan(1e-5);
          if (precision === 'bf16') {
            // The rounding really happened: the f32 product is measurably different.
            const exact = linearRef(x, Wdata, b, ROWS, C, nOut, transW);
            expect(worst(f32(out), exact, (i) => scale[i]!)).toBeGreaterThan(1e-4);
          }
        }
      }
    });
  }

  it('linearT computes tied-unembedding logits x wteᵀ [rows, V]', async () => {
    const rng = new Rng(4);
    const x = normalArray(rng, ROWS * C);
    const wte = normalArray(rng, V * C, 0.1);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tw = Tensor.from(wte, [V, C], { backend });
    using logits = Tensor.full([ROWS, V], Number.NaN, { backend });
    await linearT(tx, tw, null, logits, 'f32');
    const ref = linearRef(x, wte, null, ROWS, C, V, true);
    const scale = absScale(x, wte, null, ROWS, C, V, true);
    expect(worst(f32(logits), ref, (i) => scale[i]!)).toBeLessThan(1e-5);
  });

  it('linear with an activation gives the bits of linear then activation', async () => {
    const rng = new Rng(41);
    const nOut = 53;
    const x = normalArray(rng, ROWS * C);
    const W = normalArray(rng, C * nOut, 0.2);
    const bias = normalArray(rng, nOut);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tw = Tensor.from(W, [C, nOut], { backend });
    using twT = Tensor.from(W, [nOut, C], { backend });
    using tb = Tensor.from(bias, [nOut], { backend });
    for (const kind of ['relu', 'gelu_new', 'gelu'] as const) {
      for (const precision of ['f32', 'bf16'] as const) {
        for (const transW of [false, true]) {
          using fused = Tensor.full([ROWS, nOut], Number.NaN, { backend });
          using separate = Tensor.full([ROWS, nOut], Number.NaN, { backend });
          await (transW ? linearT : linear)(tx, transW ? twT : tw, tb, fused, precision, { activation: kind });
          await (transW ? linearT : linear)(tx, transW ? twT : tw, tb, separate, precision);
          await activation(kind, separate, separate);
          expect(Array.from(f32(fused)), `${kind} ${precision} transW ${transW}`).toEqual(Array.from(f32(separate)));
        }
      }
    }
    using out = Tensor.empty([ROWS, nOut], { backend });
    expect(() => linear(tx, tw, tb, out, 'f32', { activation: 'swish' as never })).toThrow(/activation must be one of gelu_new, gelu, relu \(got "swish"\)/);
  });

  it('linear with accumulate gives the bits of linear into a temporary, then add', async () => {
    const rng = new Rng(43);
    const nOut = 53;
    const x = normalArray(rng, ROWS * C);
    const W = normalArray(rng, C * nOut, 0.2);
    const bias = normalArray(rng, nOut);
    const resid = normalArray(rng, ROWS * nOut, 3);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tw = Tensor.from(W, [C, nOut], { backend });
    using twT = Tensor.from(W, [nOut, C], { backend });
    using tb = Tensor.from(bias, [nOut], { backend });
    for (const precision of ['f32', 'bf16'] as const) {
      for (const transW of [false, true]) {
        for (const b of [tb, null]) {
          const what = `${precision} transW ${transW} bias ${b !== null}`;
          using fused = Tensor.from(resid, [ROWS, nOut], { backend });
          using branch = Tensor.full([ROWS, nOut], Number.NaN, { backend });
          using separate = Tensor.from(resid, [ROWS, nOut], { backend });
          await (transW ? linearT : linear)(tx, transW ? twT : tw, b, fused, precision, { accumulate: true });
          await (transW ? linearT : linear)(tx, transW ? twT : tw, b, branch, precision);
          await add(separate, branch, separate);
          expect(Array.from(f32(fused)), what).toEqual(Array.from(f32(separate)));
          expect(f32(fused).some((v, i) => v !== resid[i]), `${what}: out changed`).toBe(true);
        }
      }
    }
    using out = Tensor.from(resid, [ROWS, nOut], { backend });
    using outBf = Tensor.zeros([ROWS, nOut], { backend, dtype: 'bf16' });
    expect(() => linear(tx, tw, tb, out, 'f32', { accumulate: true, activation: 'relu' })).toThrow(/accumulate takes no activation/);
    expect(() => linear(tx, tw, tb, outBf, 'bf16', { accumulate: true })).toThrow(/out must have dtype f32 \(got bf16\)/);
    expect(() => linear(tx, tw, tb, out, 'f32', { accumulate: 1 as never })).toThrow(/accumulate must be a boolean/);
  });

  it('activation computes gelu_new, gelu and relu elementwise, also in place', async () => {
    const rng = new Rng(5);
    const x = uniformArray(rng, ROWS * C, -6, 6);
    x.set([0, -0, 1e-30, -1e-30, 10, -10, 30, -30], 0);
    const refs = { gelu_new: geluNewRef, gelu: geluErfRef, relu: reluRef };
    for (const kind of ['gelu_new', 'gelu', 'relu'] as const) {
      const ref = Float64Array.from(x, refs[kind]);
      using tx = Tensor.from(x, [ROWS, C], { backend });
      using out = Tensor.full([ROWS, C], Number.NaN, { backend });
      await activation(kind, tx, out);
      expect(worst(f32(out), ref, (i) => Math.max(1, Math.abs(ref[i]!))), kind).toBeLessThan(2e-6);
      await activation(kind, tx, tx);
      expect(Array.from(f32(tx)), `${kind} in place`).toEqual(Array.from(f32(out)));
    }
  });

  it('add sums elementwise, with out aliasing a or b', async () => {
    const rng = new Rng(6);
    const a = normalArray(rng, ROWS * C);
    const b = normalArray(rng, ROWS * C);
    const ref = Array.from(a, (v, i) => Math.fround(v + b[i]!));
    using ta = Tensor.from(a, [ROWS, C], { backend });
    using tb = Tensor.from(b, [ROWS * C], { backend });
    using out = Tensor.full([ROWS, C], Number.NaN, { backend });
    await add(ta, tb, out);
    expect(Array.from(f32(out))).toEqual(ref);
    await add(ta, tb, ta);
    expect(Array.from(f32(ta))).toEqual(ref);
    using tb2 = Tensor.from(b, [ROWS, C], { backend });
    using ta2 = Tensor.from(a, [ROWS, C], { backend });
    await add(ta2, tb2, tb2);
    expect(Array.from(f32(tb2))).toEqual(ref);
  });

  it('embed gathers token and position rows; bad ids fail on the device with nothing written', async () => {
    const rng = new Rng(7);
    const nPositions = 13;
    const posOffset = 3;
    const wte = normalArray(rng, V * C);
    const wpe = normalArray(rng, nPositions * C);
    const ids = Int32Array.from({ length: B * T }, () => rng.int(V));
    ids[0] = 0;
    ids[B * T - 1] = V - 1;
    using tIds = Tensor.from(ids, [B, T], { backend, dtype: 'i32' });
    using tWte = Tensor.from(wte, [V, C], { backend });
    using tWpe = Tensor.from(wpe, [nPositions, C], { backend });
    using tok = Tensor.full([B * T, C], Number.NaN, { backend });
    using pos = Tensor.full([B, T, C], Number.NaN, { backend });
    await embed(tIds, B, T, tWte, tWpe, posOffset, tok, pos);
    const ref = embedRef(ids, B, T, wte, wpe, C, posOffset);
    expect(Array.from(f32(tok))).toEqual(Array.from(ref.tok));
    expect(Array.from(f32(pos))).toEqual(Array.from(ref.pos));
    // Ids the caller vouches for: the same rows (the CPU checks them anyway; see the bad ids below).
    tok.fill(Number.NaN);
    await embed(tIds, B, T, tWte, tWpe, posOffset, tok, pos, { indicesChecked: true });
    expect(Array.from(f32(tok))).toEqual(Array.from(ref.tok));
    expect(() => embed(tIds, B, T, tWte, tWpe, posOffset, tok, pos, { indicesChecked: 'yes' as unknown as boolean })).toThrow(/indicesChecked must be a boolean/);
    // Without posOut: their sum, the bits of add(tok, pos).
    using sum = Tensor.full([B * T, C], Number.NaN, { backend });
    await embed(tIds, B, T, tWte, tWpe, posOffset, sum, null);
    using added = Tensor.full([B * T, C], Number.NaN, { backend });
    await add(tok, pos, added);
    expect(Array.from(f32(sum))).toEqual(Array.from(f32(added)));

    for (const [index, bad] of [[5, V], [11, -1]] as const) {
      const badIds = Int32Array.from(ids);
      badIds[index] = bad;
      badIds[index + 3] = V + 7; // a later bad id: the first is reported
      using tBad = Tensor.from(badIds, [B * T], { backend, dtype: 'i32' });
      using tok2 = Tensor.full([B * T, C], Number.NaN, { backend });
      using pos2 = Tensor.full([B * T, C], Number.NaN, { backend });
      // The CPU backend checks ids even when the caller vouches for them (the second case).
      const failure = await embed(tBad, B, T, tWte, tWpe, 0, tok2, pos2, { indicesChecked: index === 11 }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(failure).toBeInstanceOf(MonosemanticError);
      expect((failure as MonosemanticError).code).toBe('E_INVALID');
      expect((failure as MonosemanticError).message).toContain(`ids[${index}] = ${bad} is outside the vocabulary [0, ${V})`);
      expect(f32(tok2).every(Number.isNaN)).toBe(true);
      expect(f32(pos2).every(Number.isNaN)).toBe(true);
    }
    expect(() => embed(tIds, B, T, tWte, tWpe, nPositions - T + 1, tok, pos)).toThrow(RangeError);
    expect(() => embed(tIds, B, T, tWte, tWpe, nPositions - T + 1, tok, pos)).toThrow(/posOffset 7 \+ T 7 exceeds the 13 positions of wpe \[13, 76\]/);
  });

  for (const offset of [0, 3]) {
    it(`splitQkv writes q and cache rows ${offset} .. ${offset + T - 1}, leaving the other cache rows`, async () => {
      const rng = new Rng(8 + offset);
      const qkv = normalArray(rng, B * T * 3 * C);
      const k0 = normalArray(rng, B * TMAX * C);
      const v0 = normalArray(rng, B * TMAX * C);
      using tQkv = Tensor.from(qkv, [B * T, 3 * C], { backend });
      using q = Tensor.full([B * T, C], Number.NaN, { backend });
      using k = Tensor.from(k0, [B, TMAX, C], { backend });
      using v = Tensor.from(v0, [B, TMAX, C], { backend });
      await splitQkv(tQkv, B, T, C, q, k, v, TMAX, offset);
      const ref = splitQkvRef(qkv, B, T, C, k0, v0, TMAX, offset);
      expect(Array.from(f32(q))).toEqual(Array.from(ref.q));
      expect(Array.from(f32(k))).toEqual(Array.from(ref.k));
      expect(Array.from(f32(v))).toEqual(Array.from(ref.v));
    });
  }

  it('linearQkv gives the bits of linear into a temporary then splitQkv, at both precisions, bias or not, bf16 x', async () => {
    const rng = new Rng(44);
    const x = normalArray(rng, B * T * C);
    const W = normalArray(rng, C * 3 * C, 0.2);
    const bias = normalArray(rng, 3 * C);
    const k0 = normalArray(rng, B * TMAX * C);
    const v0 = normalArray(rng, B * TMAX * C);
    using tW = Tensor.from(W, [C, 3 * C], { backend });
    using tb = Tensor.from(bias, [3 * C], { backend });
    for (const precision of ['f32', 'bf16'] as const) {
      for (const xDtype of precision === 'bf16' ? (['f32', 'bf16'] as const) : (['f32'] as const)) {
        using tx = Tensor.from(x, [B * T, C], { backend, dtype: xDtype });
        for (const b of [tb, null]) {
          for (const offset of [0, 3]) {
            const what = `${precision} x ${xDtype} bias ${b !== null} offset ${offset}`;
            using q = Tensor.full([B * T, C], Number.NaN, { backend });
            using k = Tensor.from(k0, [B, TMAX, C], { backend });
            using v = Tensor.from(v0, [B, TMAX, C], { backend });
            await linearQkv(tx, tW, b, B, T, C, q, k, v, TMAX, offset, precision);
            using qkv = Tensor.full([B * T, 3 * C], Number.NaN, { backend });
            await linear(tx, tW, b, qkv, precision);
            using q2 = Tensor.full([B * T, C], Number.NaN, { backend });
            using k2 = Tensor.from(k0, [B, TMAX, C], { backend });
            using v2 = Tensor.from(v0, [B, TMAX, C], { backend });
            await splitQkv(qkv, B, T, C, q2, k2, v2, TMAX, offset);
            expect(Array.from(f32(q)), `${what}: q`).toEqual(Array.from(f32(q2)));
            expect(Array.from(f32(k)), `${what}: k`).toEqual(Array.from(f32(k2)));
            expect(Array.from(f32(v)), `${what}: v`).toEqual(Array.from(f32(v2)));
          }
        }
      }
    }
    using tx = Tensor.from(x, [B * T, C], { backend });
    using q = Tensor.zeros([B * T, C], { backend });
    using k = Tensor.zeros([B, TMAX, C], { backend });
    using v = Tensor.zeros([B, TMAX, C], { backend });
    using Wbad = Tensor.zeros([3 * C, C], { backend });
    using small = Tensor.zeros([B, T, C], { backend });
    expect(() => linearQkv(tx, Wbad, tb, B, T, C, q, k, v, TMAX, 0, 'f32')).toThrow(/weight must have shape \[76, 228\] \(C 76 inputs, q \| k \| v outputs\) \(got \[228, 76\]\)/);
    expect(() => linearQkv(tx, tW, tb, B, T, C, q, small, v, TMAX, 0, 'f32')).toThrow(/kCache must have shape \[33, 76\]/);
    expect(() => linearQkv(tx, tW, tb, B, T, C, q, k, v, TMAX, TMAX - T + 1, 'f32')).toThrow(/offset 5 \+ T 7 exceeds Tmax 11/);
    expect(() => linearQkv(tx, tW, tb, B, T, C, q, k, k, TMAX, 0, 'f32')).toThrow(/must not be the same tensor/);
    expect(() => linearQkv(tx, tW, tb, B, T, C, tx, k, v, TMAX, 0, 'f32')).toThrow(/must not be the same tensor/);
  });

  // 100 queries at offset 37: two blocks of query rows (the CPU kernels work in blocks of 64).
  for (const [offset, steps, tmax] of [[0, T, TMAX], [3, T, TMAX], [10, 1, TMAX], [37, 100, 160]] as const) {
    it(`attention of ${steps} queries at offset ${offset} over a cache of ${tmax} matches softmax(q kᵀ/√hd) v`, async () => {
      const rng = new Rng(20 + offset);
      const end = offset + steps;
      const q = normalArray(rng, B * steps * C);
      // Keys past the last query position hold NaN: reading them would poison the output.
      const k = normalArray(rng, B * tmax * C, 1.5).map((val, i) => (Math.floor(i / C) % tmax < end ? val : Number.NaN));
      const v = normalArray(rng, B * tmax * C).map((val, i) => (Math.floor(i / C) % tmax < end ? val : Number.NaN));
      using tq = Tensor.from(q, [B * steps, C], { backend });
      using tk = Tensor.from(k, [B, tmax, C], { backend });
      using tv = Tensor.from(v, [B, tmax, C], { backend });
      using out = Tensor.full([B * steps, C], Number.NaN, { backend });
      await attention(tq, tk, tv, B, steps, tmax, offset, N_HEAD, out);
      const ref = attentionRef(q, k, v, B, steps, tmax, offset, C, N_HEAD);
      const maxV = v.reduce((m, x) => (Number.isNaN(x) ? m : Math.max(m, Math.abs(x))), 0);
      expect(worst(f32(out), ref, () => maxV)).toBeLessThan(1e-5);
    });
  }

  it('attention into a bf16 out at bf16 precision gives the f32 out rounded; a bf16 out at f32 is refused', async () => {
    const rng = new Rng(45);
    const q = normalArray(rng, B * T * C);
    const k = normalArray(rng, B * TMAX * C, 1.5);
    const v = normalArray(rng, B * TMAX * C);
    using tq = Tensor.from(q, [B * T, C], { backend });
    using tk = Tensor.from(k, [B, TMAX, C], { backend });
    using tv = Tensor.from(v, [B, TMAX, C], { backend });
    using out = Tensor.full([B * T, C], Number.NaN, { backend });
    using outBf = Tensor.zeros([B * T, C], { backend, dtype: 'bf16' });
    await attention(tq, tk, tv, B, T, TMAX, 3, N_HEAD, out, 'bf16');
    await attention(tq, tk, tv, B, T, TMAX, 3, N_HEAD, outBf, 'bf16');
    expect(Array.from(outBf.toFloat32())).toEqual(Array.from(roundArrayBf16(f32(out))));
    expect(() => attention(tq, tk, tv, B, T, TMAX, 3, N_HEAD, outBf, 'f32')).toThrow(/out must have dtype f32 \(got bf16\)/);
  });

  it('prefill in chunks through splitQkv + attention equals one whole prefill', async () => {
    const rng = new Rng(30);
    const qkv = normalArray(rng, B * T * 3 * C);
    const run = async (chunks: number[]) => {
      using k = Tensor.zeros([B, TMAX, C], { backend });
      using v = Tensor.zeros([B, TMAX, C], { backend });
      const out = new Float32Array(B * T * C);
      let offset = 0;
      for (const n of chunks) {
        // The chunk's rows of qkv for every sequence: [B, n, 3C].
        const part = new Float32Array(B * n * 3 * C);
        for (let b = 0; b < B; b++) part.set(qkv.subarray((b * T + offset) * 3 * C, (b * T + offset + n) * 3 * C), b * n * 3 * C);
        using tQkv = Tensor.from(part, [B * n, 3 * C], { backend });
        using q = Tensor.empty([B * n, C], { backend });
        using o = Tensor.empty([B * n, C], { backend });
        await splitQkv(tQkv, B, n, C, q, k, v, TMAX, offset);
        await attention(q, k, v, B, n, TMAX, offset, N_HEAD, o);
        const od = f32(o);
        for (let b = 0; b < B; b++) out.set(od.subarray(b * n * C, (b + 1) * n * C), (b * T + offset) * C);
        offset += n;
      }
      return out;
    };
    const whole = await run([T]);
    const chunked = await run([3, 1, 3]);
    expect(Array.from(chunked)).toEqual(Array.from(whole)); // same per-query arithmetic
  });

  it('linear and linearT into a bf16 out at bf16 precision give the f32 result (bias and activation included) rounded', async () => {
    const rng = new Rng(43);
    const nOut = 53;
    const x = normalArray(rng, ROWS * C);
    const W = normalArray(rng, C * nOut, 0.2);
    const bias = normalArray(rng, nOut);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tw = Tensor.from(W, [C, nOut], { backend });
    using twT = Tensor.from(W, [nOut, C], { backend });
    using tb = Tensor.from(bias, [nOut], { backend });
    for (const kind of [undefined, 'relu', 'gelu_new'] as const) {
      for (const transW of [false, true]) {
        for (const b of [tb, null]) {
          using f = Tensor.full([ROWS, nOut], Number.NaN, { backend });
          using h = Tensor.full([ROWS, nOut], Number.NaN, { backend, dtype: 'bf16' });
          const options = kind ? { activation: kind } : undefined;
          await (transW ? linearT : linear)(tx, transW ? twT : tw, b, f, 'bf16', options);
          await (transW ? linearT : linear)(tx, transW ? twT : tw, b, h, 'bf16', options);
          expect(Array.from(h.toFloat32()), `${kind} transW ${transW} bias ${b !== null}`).toEqual(Array.from(roundArrayBf16(f32(f))));
        }
      }
    }
    using h = Tensor.empty([ROWS, nOut], { backend, dtype: 'bf16' });
    expect(() => linear(tx, tw, tb, h, 'f32')).toThrow(/out must have dtype f32 \(got bf16\)/);
  });

  it('linear at bf16 precision takes a bf16 x as the f32 x of the same values (its operand as it is)', async () => {
    const rng = new Rng(45);
    const nOut = 53;
    const x = roundArrayBf16(normalArray(rng, ROWS * C));
    const W = normalArray(rng, C * nOut, 0.2);
    const bias = normalArray(rng, nOut);
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using txh = Tensor.from(x, [ROWS, C], { backend, dtype: 'bf16' });
    using tw = Tensor.from(W, [C, nOut], { backend });
    using twT = Tensor.from(W, [nOut, C], { backend });
    using tb = Tensor.from(bias, [nOut], { backend });
    for (const transW of [false, true]) {
      for (const outDtype of ['f32', 'bf16'] as const) {
        using a = Tensor.full([ROWS, nOut], Number.NaN, { backend, dtype: outDtype });
        using b = Tensor.full([ROWS, nOut], Number.NaN, { backend, dtype: outDtype });
        await (transW ? linearT : linear)(tx, transW ? twT : tw, tb, a, 'bf16', { activation: 'gelu_new' });
        await (transW ? linearT : linear)(txh, transW ? twT : tw, tb, b, 'bf16', { activation: 'gelu_new' });
        expect(Array.from(b.toFloat32()), `transW ${transW}, out ${outDtype}`).toEqual(Array.from(a.toFloat32()));
      }
    }
    using out = Tensor.empty([ROWS, nOut], { backend });
    expect(() => linear(txh, tw, tb, out, 'f32')).toThrow(/x must have dtype f32 \(got bf16\)/);
  });

  it('crossEntropy of bf16 logits equals that of the same values in f32', async () => {
    const rng = new Rng(44);
    const logits = roundArrayBf16(normalArray(rng, ROWS * V, 3));
    const targets = Int32Array.from({ length: ROWS }, (_, r) => (r % 9 === 4 ? -1 : rng.int(V)));
    using tf = Tensor.from(logits, [ROWS, V], { backend });
    using th = Tensor.from(logits, [ROWS, V], { backend, dtype: 'bf16' });
    using tt = Tensor.from(targets, [ROWS], { backend, dtype: 'i32' });
    using a = Tensor.full([ROWS], Number.NaN, { backend });
    using b = Tensor.full([ROWS], Number.NaN, { backend });
    await crossEntropy(tf, tt, a);
    await crossEntropy(th, tt, b);
    expect(Array.from(f32(b))).toEqual(Array.from(f32(a)));
    using ti = Tensor.zeros([ROWS, V], { backend, dtype: 'i32' });
    expect(() => crossEntropy(ti, tt, a)).toThrow(/logits must have dtype f32 \(got i32\)/);
  });

  it('crossEntropy gives logsumexp − the target logit, 0 for ignored rows', async () => {
    const rng = new Rng(40);
    const logits = normalArray(rng, ROWS * V, 3);
    const targets = Int32Array.from({ length: ROWS }, (_, r) => (r % 9 === 4 ? -100 : r === 7 ? -1 : rng.int(V)));
    targets[0] = V - 1;
    targets[1] = 0;
    using tl = Tensor.from(logits, [ROWS, V], { backend });
    using tt = Tensor.from(targets, [ROWS], { backend, dtype: 'i32' });
    using out = Tensor.full([ROWS], Number.NaN, { backend });
    await crossEntropy(tl, tt, out);
    const ref = crossEntropyRef(logits, targets, ROWS, V);
    expect(worst(f32(out), ref, relFloor1(ref))).toBeLessThan(1e-5);
    expect(f32(out)[4]).toBe(0);

    const bad = Int32Array.from(targets);
    bad[12] = V;
    using tBad = Tensor.from(bad, [ROWS], { backend, dtype: 'i32' });
    using out2 = Tensor.full([ROWS], Number.NaN, { backend });
    const failure = await crossEntropy(tl, tBad, out2).then(
      () => null,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(MonosemanticError);
    expect((failure as MonosemanticError).code).toBe('E_INVALID');
    expect((failure as MonosemanticError).message).toContain(`targets[12] = ${V} is outside the vocabulary`);
    expect(f32(out2).every(Number.isNaN)).toBe(true);
  });

  it('klRows gives KL(softmax(p) ‖ softmax(q)) per row: 0 for equal or shifted rows, large for far ones', async () => {
    const rng = new Rng(45);
    const p = normalArray(rng, ROWS * V, 3);
    const q = Float32Array.from(p, (v) => v + 0.4 * rng.normal()); // a perturbed copy: small KL
    q.set(p.subarray(2 * V, 3 * V), 2 * V); // row 2: equal, KL 0
    for (let i = 0; i < V; i++) q[5 * V + i] = p[5 * V + i]! + 7; // row 5: shifted logits, the same distribution
    for (let i = 0; i < V; i++) q[6 * V + i] = -p[6 * V + i]!; // row 6: far apart
    using tp = Tensor.from(p, [ROWS, V], { backend });
    using tq = Tensor.from(q, [ROWS, V], { backend });
    using out = Tensor.full([ROWS], Number.NaN, { backend });
    await klRows(tp, tq, out);
    const ref = klRowsRef(p, q, ROWS, V);
    const got = f32(out);
    expect(worst(got, ref, relFloor1(ref))).toBeLessThan(1e-5);
    expect(Math.abs(got[2]!)).toBeLessThan(1e-6);
    expect(Math.abs(got[5]!)).toBeLessThan(1e-5);
    expect(ref[6]!).toBeGreaterThan(5);
    expect(Math.min(...got)).toBeGreaterThan(-1e-6);
    using short = Tensor.zeros([ROWS - 1, V], { backend });
    expect(() => klRows(tp, short, out)).toThrow(/q/);
  });

  it('argmaxRows picks the first maximum of each row (NaN largest)', async () => {
    const rng = new Rng(50);
    const logits = normalArray(rng, ROWS * V);
    logits[3 * V + 5] = 9;
    logits[3 * V + 900] = 9; // tie: 5 wins
    logits.fill(0.25, 4 * V, 5 * V); // all equal: 0
    logits[5 * V + 1012] = 100; // the last column
    logits[6 * V + 17] = Number.NaN; // NaN counts as largest
    logits[6 * V + 40] = Number.NaN;
    logits[7 * V + 0] = 50; // the first column
    using tl = Tensor.from(logits, [ROWS, V], { backend });
    using out = Tensor.full([ROWS], -7, { backend, dtype: 'i32' });
    await argmaxRows(tl, out);
    const got = out.toArray() as Int32Array;
    expect(Array.from(got)).toEqual(Array.from(argmaxRowsRef(logits, ROWS, V)));
    expect([got[3], got[4], got[5], got[6], got[7]]).toEqual([5, 0, 1012, 17, 0]);
  });
});

describe('transformer ops: argument errors', () => {
  it('names the argument and the shapes', () => {
    using x = Tensor.zeros([ROWS, C], { backend });
    using w = Tensor.zeros([C], { backend });
    using wBad = Tensor.zeros([C + 1], { backend });
    using out = Tensor.zeros([ROWS, C], { backend });
    using outBad = Tensor.zeros([ROWS, C - 1], { backend });
    using xi = Tensor.zeros([ROWS, C], { backend, dtype: 'i32' });
    expect(() => layerNorm(x, wBad, w, 1e-5, out)).toThrow(/weight must have shape \[76\] to match x \[37, 76\] \(got \[77\]\)/);
    expect(() => layerNorm(x, w, w, 1e-5, outBad)).toThrow(RangeError);
    expect(() => layerNorm(x, w, w, -1, out)).toThrow(RangeError);
    expect(() => layerNorm(xi, w, w, 1e-5, out)).toThrow(/x must have dtype f32 \(got i32\)/);
    expect(() => layerNorm(x, w, w, 1e-5, out, { mean: w, rstd: w })).toThrow(/saved.mean must hold 37 elements/);

    using W = Tensor.zeros([C, 5], { backend });
    using lo = Tensor.zeros([ROWS, 5], { backend });
    using sq = Tensor.zeros([C, C], { backend });
    expect(() => linear(x, W, null, lo, 'f32')).not.toThrow();
    expect(() => linearT(x, W, null, lo, 'f32')).toThrow(/weight \[76, 5\] \(\[out, in\]\) has 5 inputs but x \[37, 76\] has 76 columns/);
    expect(() => linear(x, W, w, lo, 'f32')).toThrow(/bias must have shape \[5\]/);
    expect(() => linear(x, W, null, out, 'f32')).toThrow(/out must have shape \[37, 5\]/);
    expect(() => linear(x, W, null, lo, 'fp16' as never)).toThrow(TypeError);
    expect(() => linear(x, sq, null, x, 'f32')).toThrow(/out must not be the same tensor as x/);

    expect(() => activation('swish' as never, x, out)).toThrow(TypeError);
    expect(() => activation('relu', x, outBad)).toThrow(/out must hold 2812 elements like x \[37, 76\]/);
    expect(() => add(x, outBad, out)).toThrow(/b must hold 2812 elements/);

    using q = Tensor.zeros([B * T, C], { backend });
    using kc = Tensor.zeros([B, TMAX, C], { backend });
    using vc = Tensor.zeros([B, TMAX, C], { backend });
    using qkv = Tensor.zeros([B * T, 3 * C], { backend });
    using ao = Tensor.zeros([B * T, C], { backend });
    expect(() => splitQkv(qkv, B, T, C, q, kc, vc, TMAX, TMAX - T + 1)).toThrow(/offset 5 \+ T 7 exceeds Tmax 11/);
    expect(() => splitQkv(qkv, B, T, C, q, kc, vc, TMAX, -1)).toThrow(RangeError);
    expect(() => splitQkv(qkv, B, T, C - 1, q, kc, vc, TMAX, 0)).toThrow(/qkv must have shape \[21, 225\]/);
    expect(() => attention(q, kc, vc, B, T, TMAX, TMAX - T + 1, N_HEAD, ao)).toThrow(RangeError);
    expect(() => attention(q, kc, vc, B, T, TMAX, 0, 5, ao)).toThrow(/nHead 5 must divide C 76/);
    expect(() => attention(q, kc, vc, B, T, TMAX + 1, 0, N_HEAD, ao)).toThrow(/kCache must have shape \[36, 76\]/);
    expect(() => attention(q, kc, vc, B, T, TMAX, 0, N_HEAD, q)).toThrow(/out must not be the same tensor as q/);
    expect(() => attention(q, kc, vc, 2.5, T, TMAX, 0, N_HEAD, ao)).toThrow(/batch must be an integer/);

    using ids = Tensor.zeros([B * T], { backend, dtype: 'i32' });
    using idsF = Tensor.zeros([B * T], { backend });
    using wte = Tensor.zeros([V, C], { backend });
    using wpe = Tensor.zeros([TMAX, C + 1], { backend });
    expect(() => embed(idsF, B, T, wte, wte, 0, q, ao)).toThrow(/ids must have dtype i32 \(got f32\)/);
    expect(() => embed(ids, B, T, wte, wpe, 0, q, ao)).toThrow(/wpe must have shape \[nPositions, 76\]/);

    using logits = Tensor.zeros([ROWS, V], { backend });
    using targets = Tensor.zeros([ROWS - 1], { backend, dtype: 'i32' });
    using ceOut = Tensor.zeros([ROWS], { backend });
    using amOut = Tensor.zeros([ROWS], { backend });
    expect(() => crossEntropy(logits, targets, ceOut)).toThrow(/targets must hold 37 elements/);
    expect(() => argmaxRows(logits, amOut)).toThrow(/out must have dtype i32 \(got f32\)/);
  });

  it('the native linear takes x and out as fp32 or bf16 by dtype, refusing bf16 at fp32 precision by name', async () => {
    const addon = nativeAddon();
    const [rows, nIn, nOut] = [5, 8, 6];
    const rng = new Rng(77);
    using x = Tensor.from(normalArray(rng, rows * nIn), [rows, nIn], { backend });
    using xBf = Tensor.from(x.toFloat32(), [rows, nIn], { backend, dtype: 'bf16' });
    using w = Tensor.from(normalArray(rng, nIn * nOut), [nIn, nOut], { backend });
    using out = Tensor.zeros([rows, nOut], { backend });
    using outBf = Tensor.zeros([rows, nOut], { backend, dtype: 'bf16' });
    using xI = Tensor.zeros([rows, nIn], { backend, dtype: 'i32' });
    const dims = { rows, nIn, nOut, transW: false, weight: w.native };
    expect(() => addon.linear({ ...dims, precision: 0, x: xBf.native, out: out.native })).toThrow(/a bf16 x needs bf16 precision/);
    expect(() => addon.linear({ ...dims, precision: 0, x: x.native, out: outBf.native })).toThrow(/a bf16 out needs bf16 precision/);
    expect(() => addon.linear({ ...dims, precision: 1, x: xI.native, out: out.native })).toThrow(/x must have dtype f32 \(got i32\)/);
    // At bf16 precision x is rounded to bf16 either way: the bf16 copy gives the same bits, into either out.
    await addon.linear({ ...dims, precision: 1, x: x.native, out: out.native });
    await addon.linear({ ...dims, precision: 1, x: xBf.native, out: outBf.native });
    expect(Array.from(outBf.toFloat32())).toEqual(Array.from(roundArrayBf16(out.toFloat32())));
  });
});
