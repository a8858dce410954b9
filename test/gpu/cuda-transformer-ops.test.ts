/**
 * The CUDA backend's GPT-2 forward ops (lib/lm/ops.ts) against the CPU backend, op by op, on the
 * CPU suite's awkward sizes and on GPT-2-small sizes (C 768, 12 heads of 64, V 50257). Outputs start
 * as NaN (or a sentinel for i32) so that an unwritten element fails; cache rows past the last
 * query position hold NaN so that reading them fails. Tolerances (CUDA accumulates in fp32, the
 * CPU in double or with another summation order):
 *   - matrix products (f32 and bf16): |cuda − cpu| <= 1e-5 · (Σ_k |x_k w_k| + |b|) per element;
 *   - layer norm, cross-entropy: 1e-5 · max(1, |cpu|); activations 2e-6 · max(1, |cpu|);
 *   - attention: 1e-5 · max |v|;
 *   - add, embed, the q/k/v split, argmax, and the error reports: exact.
 * Skipped, with the reason printed, where the CUDA backend is not available.
 */
import { describe, expect, it } from 'vitest';

import { type BackendName, backendStatus } from '../../lib/backend.js';
import { MonosemanticError } from '../../lib/errors.js';
import { type Activation, activation, add, argmaxRows, attention, crossEntropy, embed, klRows, layerNorm, linear, linearQkv, linearT, splitQkv } from '../../lib/lm/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, relFloor1, roundArrayBf16, uniformArray, worst } from '../helpers/data.js';
import { withEnv } from '../helpers/env.js';
import { rejection } from '../helpers/rejection.js';
import { expectSameRecords, expectSameValues } from '../helpers/same-values.js';
import { linearRef } from '../reference/transformer-reference.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

const BACKENDS = ['cpu', 'cuda'] as const;

/** Runs fn on each backend; returns the results by backend. */
async function onBoth<R>(fn: (backend: BackendName) => Promise<R>): Promise<{ cpu: R; cuda: R }> {
  return { cpu: await fn('cpu'), cuda: await fn('cuda') };
}

function f32(t: Tensor): Float32Array {
  return t.toArray() as Float32Array;
}

describe.skipIf(!hasCuda)('cuda transformer ops', () => {
  // Rows up to 1,024 wide take a warp each (4 to 32 values per lane); wider ones a block each.
  for (const [rows, C] of [[37, 76], [21, 200], [13, 400], [130, 768], [9, 1100]] as const) {
    it(`layerNorm [${rows}, ${C}] with saved mean/rstd, and in place, matches the CPU`, async () => {
      const rng = new Rng(1);
      const x = normalArray(rng, rows * C, 2).map((v, i) => v + 3 + (i % 5));
      const w = uniformArray(rng, C, 0.5, 1.5);
      const b = normalArray(rng, C, 0.3);
      const r = await onBoth(async (backend) => {
        using tx = Tensor.from(x, [rows, C], { backend });
        using tw = Tensor.from(w, [C], { backend });
        using tb = Tensor.from(b, [C], { backend });
        using out = Tensor.full([rows, C], Number.NaN, { backend });
        using mean = Tensor.full([rows], Number.NaN, { backend });
        using rstd = Tensor.full([rows], Number.NaN, { backend });
        await layerNorm(tx, tw, tb, 1e-5, out, { mean, rstd });
        using outBf = Tensor.full([rows, C], Number.NaN, { backend, dtype: 'bf16' });
        await layerNorm(tx, tw, tb, 1e-5, outBf);
        await layerNorm(tx, tw, tb, 1e-5, tx);
        return { out: f32(out), mean: f32(mean), rstd: f32(rstd), inPlace: f32(tx), bf: outBf.toFloat32() };
      });
      for (const backend of BACKENDS) expect(r[backend].bf, backend).toEqual(roundArrayBf16(r[backend].out)); // bf16 out: the f32 one rounded
      expect(worst(r.cuda.out, r.cpu.out, relFloor1(r.cpu.out))).toBeLessThan(1e-5);
      expect(worst(r.cuda.mean, r.cpu.mean, relFloor1(r.cpu.mean))).toBeLessThan(1e-5);
      expect(worst(r.cuda.rstd, r.cpu.rstd, relFloor1(r.cpu.rstd))).toBeLessThan(1e-5);
      expect(Array.from(r.cuda.inPlace)).toEqual(Array.from(r.cuda.out));
    });
  }

  for (const precision of ['f32', 'bf16'] as const) {
    for (const [rows, nIn, nOut] of [[37, 76, 53], [67, 768, 2304], [5, 768, 5003]] as const) {
      it(`linear and linearT (${precision}) [${rows}, ${nIn}] -> ${nOut} match the CPU`, async () => {
        const rng = new Rng(2);
        const x = normalArray(rng, rows * nIn);
        const W = normalArray(rng, nIn * nOut, 0.05);
        const bias = normalArray(rng, nOut);
        for (const transW of [false, true]) {
          for (const withBias of [true, false]) {
            const r = await onBoth(async (backend) => {
              using tx = Tensor.from(x, [rows, nIn], { backend });
              using tw = Tensor.from(W, transW ? [nOut, nIn] : [nIn, nOut], { backend });
              using tb = Tensor.from(bias, [nOut], { backend });
              using out = Tensor.full([rows, nOut], Number.NaN, { backend });
              await (transW ? linearT : linear)(tx, tw, withBias ? tb : null, out, precision);
              return f32(out);
            });
            const scale = linearRef(Float64Array.from(x, Math.abs), Float64Array.from(W, Math.abs), withBias ? Float64Array.from(bias, Math.abs) : null, rows, nIn, nOut, transW);
            expect(worst(r.cuda, r.cpu, (i) => scale[i]!), `transW ${transW}, bias ${withBias}`).toBeLessThan(1e-5);
          }
        }
      });
    }
  }

  // linear with an activation (the bias and the activation in the tensor GEMM's epilogue at bf16:
  // activation.cuh's function, as the activation pass) gives the bits of linear then activation on
  // each backend, where the product is not split along K (K = 128 here). A plain product with few
  // output tiles splits K and the fused one does not, so there the sums may differ in their last bits.
  for (const precision of ['f32', 'bf16'] as const) {
    it(`linear with an activation (${precision}) equals linear then activation, and matches the CPU`, async () => {
      const rng = new Rng(21);
      const [rows, nIn, nOut] = [67, 128, 515];
      const x = normalArray(rng, rows * nIn);
      const W = normalArray(rng, nIn * nOut, 0.1);
      const bias = normalArray(rng, nOut);
      for (const kind of ['relu', 'gelu_new'] as Activation[]) {
        for (const withBias of [true, false]) {
          const r = await onBoth(async (backend) => {
            using tx = Tensor.from(x, [rows, nIn], { backend });
            using tw = Tensor.from(W, [nIn, nOut], { backend });
            using tb = Tensor.from(bias, [nOut], { backend });
            using fused = Tensor.full([rows, nOut], Number.NaN, { backend });
            await linear(tx, tw, withBias ? tb : null, fused, precision, { activation: kind });
            using pre = Tensor.full([rows, nOut], Number.NaN, { backend });
            await linear(tx, tw, withBias ? tb : null, pre, precision);
            await activation(kind, pre, pre);
            return { fused: f32(fused), separate: f32(pre) };
          });
          for (const b of BACKENDS) expect(r[b].fused, `${b} ${kind} bias ${withBias}`).toEqual(r[b].separate);
          const scale = linearRef(Float64Array.from(x, Math.abs), Float64Array.from(W, Math.abs), withBias ? Float64Array.from(bias, Math.abs) : null, rows, nIn, nOut, false);
          expect(worst(r.cuda.fused, r.cpu.fused, (i) => scale[i]!), `${kind} bias ${withBias}`).toBeLessThan(1e-5);
        }
      }
    });
  }

  // linear with accumulate (a residual stream taking a branch) adds x W + b to out's values: in the
  // tensor GEMM's epilogue at bf16 (bias, then out's value: fmaf(1, out, v)), else through a
  // temporary and add()'s kernel. The same bits as linear into a temporary then add(), for the
  // tensor kernels (split K at [5, 768, 5003]; the mma.sync kernel's staged store reading out 16
  // bytes at a time at [300, 768, 1024], and its direct store with MONOSEMANTIC_CUDA_EPILOGUE=direct;
  // wgmma at [1024, 4096, 2048]), the simple ones (MONOSEMANTIC_CUDA_KERNELS=simple) and fp32. Both
  // variables are read at each call.
  it('linear and linearT with accumulate equal linear then add, bit for bit, on every kernel', async () => {
    const kernelEnv: Record<string, Record<string, string | undefined>> = {
      tensor: { MONOSEMANTIC_CUDA_KERNELS: undefined, MONOSEMANTIC_CUDA_EPILOGUE: undefined },
      'tensor, direct store': { MONOSEMANTIC_CUDA_KERNELS: undefined, MONOSEMANTIC_CUDA_EPILOGUE: 'direct' },
      simple: { MONOSEMANTIC_CUDA_KERNELS: 'simple', MONOSEMANTIC_CUDA_EPILOGUE: undefined },
    };
    for (const [rows, nIn, nOut] of [[67, 128, 515], [5, 768, 5003], [300, 768, 1024], [1024, 4096, 2048]] as const) {
      const rng = new Rng(23);
      const x = normalArray(rng, rows * nIn);
      const W = normalArray(rng, nIn * nOut, 0.05);
      const bias = normalArray(rng, nOut);
      const resid = normalArray(rng, rows * nOut, 3);
      using tx = Tensor.from(x, [rows, nIn], { backend: 'cuda' });
      using tw = Tensor.from(W, [nIn, nOut], { backend: 'cuda' });
      using twT = Tensor.from(W, [nOut, nIn], { backend: 'cuda' });
      using tb = Tensor.from(bias, [nOut], { backend: 'cuda' });
      for (const [kernels, env] of Object.entries(kernelEnv)) {
        await withEnv(env, async () => {
          for (const precision of ['f32', 'bf16'] as const) {
            if (kernels !== 'tensor' && precision === 'f32') continue; // fp32 takes the simple kernels either way
            for (const transW of [false, true]) {
              for (const b of [tb, null]) {
                const what = `[${rows}, ${nIn}] -> ${nOut} ${kernels} ${precision} transW ${transW} bias ${b !== null}`;
                const product = transW ? linearT : linear;
                using fused = Tensor.from(resid, [rows, nOut], { backend: 'cuda' });
                await product(tx, transW ? twT : tw, b, fused, precision, { accumulate: true });
                using branch = Tensor.full([rows, nOut], Number.NaN, { backend: 'cuda' });
                await product(tx, transW ? twT : tw, b, branch, precision);
                using separate = Tensor.from(resid, [rows, nOut], { backend: 'cuda' });
                await add(separate, branch, separate);
                expectSameValues(f32(fused), f32(separate), what);
              }
            }
          }
        });
      }
    }
  });

  // linearQkv: at bf16 on the tensor kernels, where linear's store would run the mma.sync kernel in
  // one pass, that kernel's epilogue writes each column of the product into q or a cache; elsewhere
  // linear into a temporary then the split: 6 rows of C 768 (a decoding step's shape: few tiles, K
  // split three ways), MONOSEMANTIC_CUDA_GEMM=wgmma at C 128 (C 75 and 76 rows are not 16-byte
  // aligned for TMA: the fused path), MONOSEMANTIC_CUDA_KERNELS=simple, fp32. Either way the bits of
  // linear then splitQkv on CUDA, cache rows outside the window untouched; C 75 makes pairs of
  // columns straddle q | k and k | v.
  it('linearQkv equals linear then splitQkv, bit for bit, on every path', async () => {
    const kernelEnv: Record<string, Record<string, string | undefined>> = {
      tensor: { MONOSEMANTIC_CUDA_KERNELS: undefined, MONOSEMANTIC_CUDA_GEMM: undefined },
      'wgmma for every product': { MONOSEMANTIC_CUDA_KERNELS: undefined, MONOSEMANTIC_CUDA_GEMM: 'wgmma' },
      simple: { MONOSEMANTIC_CUDA_KERNELS: 'simple', MONOSEMANTIC_CUDA_GEMM: undefined },
    };
    for (const [batch, T, Tmax, offset, C] of [[9, 1000, 1024, 17, 75], [8, 1024, 1024, 0, 128], [3, 5, 9, 4, 76], [2, 3, 8, 2, 768]] as const) {
      const rng = new Rng(29);
      const rows = batch * T;
      const x = normalArray(rng, rows * C);
      const W = normalArray(rng, C * 3 * C, 0.1);
      const bias = normalArray(rng, 3 * C);
      const k0 = normalArray(rng, batch * Tmax * C);
      const v0 = normalArray(rng, batch * Tmax * C);
      using tW = Tensor.from(W, [C, 3 * C], { backend: 'cuda' });
      using tb = Tensor.from(bias, [3 * C], { backend: 'cuda' });
      for (const [kernels, env] of Object.entries(kernelEnv)) {
        await withEnv(env, async () => {
          for (const precision of ['f32', 'bf16'] as const) {
            if (kernels !== 'tensor' && precision === 'f32') continue; // fp32 takes the simple kernels either way
            for (const xDtype of precision === 'bf16' ? (['f32', 'bf16'] as const) : (['f32'] as const)) {
              using tx = Tensor.from(x, [rows, C], { backend: 'cuda', dtype: xDtype });
              for (const b of [tb, null]) {
                const what = `B ${batch} T ${T} Tmax ${Tmax} offset ${offset} C ${C} ${kernels} ${precision} x ${xDtype} bias ${b !== null}`;
                using q = Tensor.full([rows, C], Number.NaN, { backend: 'cuda' });
                using k = Tensor.from(k0, [batch, Tmax, C], { backend: 'cuda' });
                using v = Tensor.from(v0, [batch, Tmax, C], { backend: 'cuda' });
                await linearQkv(tx, tW, b, batch, T, C, q, k, v, Tmax, offset, precision);
                using qkv = Tensor.full([rows, 3 * C], Number.NaN, { backend: 'cuda' });
                await linear(tx, tW, b, qkv, precision);
                using q2 = Tensor.full([rows, C], Number.NaN, { backend: 'cuda' });
                using k2 = Tensor.from(k0, [batch, Tmax, C], { backend: 'cuda' });
                using v2 = Tensor.from(v0, [batch, Tmax, C], { backend: 'cuda' });
                await splitQkv(qkv, batch, T, C, q2, k2, v2, Tmax, offset);
                expectSameRecords({ q: f32(q), k: f32(k), v: f32(v) }, { q: f32(q2), k: f32(k2), v: f32(v2) }, what);
              }
            }
          }
        });
      }
    }
  });

  // A bf16 out (the LM trainer's logits): the GEMM's epilogue writes it directly where it can (no
  // activation, or ReLU with a bias; split K included), else the f32 result is rounded after.
  for (const [rows, nIn, nOut] of [[67, 128, 8192], [5, 768, 5003], [37, 76, 53]] as const) {
    it(`linear and linearT into a bf16 out [${rows}, ${nIn}] -> ${nOut} are the f32 result rounded, on both backends`, async () => {
      const rng = new Rng(22);
      const x = normalArray(rng, rows * nIn);
      const W = normalArray(rng, nIn * nOut, 0.1);
      const bias = normalArray(rng, nOut);
      for (const kind of [undefined, 'relu', 'gelu_new'] as (Activation | undefined)[]) {
        for (const transW of [false, true]) {
          for (const withBias of [true, false]) {
            const r = await onBoth(async (backend) => {
              using tx = Tensor.from(x, [rows, nIn], { backend });
              using tw = Tensor.from(W, transW ? [nOut, nIn] : [nIn, nOut], { backend });
              using tb = Tensor.from(bias, [nOut], { backend });
              using f = Tensor.full([rows, nOut], Number.NaN, { backend });
              using h = Tensor.full([rows, nOut], Number.NaN, { backend, dtype: 'bf16' });
              const options = kind ? { activation: kind } : undefined;
              await (transW ? linearT : linear)(tx, tw, withBias ? tb : null, f, 'bf16', options);
              await (transW ? linearT : linear)(tx, tw, withBias ? tb : null, h, 'bf16', options);
              return { rounded: roundArrayBf16(f32(f)), h: h.toFloat32() };
            });
            const what = `${kind} transW ${transW} bias ${withBias}`;
            for (const b of BACKENDS) expectSameValues(r[b].h, r[b].rounded, `${b} ${what}`);
            expect(worst(r.cuda.h, r.cpu.h, relFloor1(r.cpu.h)), what).toBeLessThan(1e-2); // bf16 of values within 1e-5
          }
        }
      }
    });
  }

  it('linear and linearT at bf16 take a bf16 x as the f32 x of the same values, on both backends', async () => {
    const rng = new Rng(23);
    const [rows, nIn, nOut] = [67, 512, 768];
    const x = roundArrayBf16(normalArray(rng, rows * nIn));
    const W = normalArray(rng, nIn * nOut, 0.05);
    const bias = normalArray(rng, nOut);
    for (const kind of [undefined, 'gelu_new'] as (Activation | undefined)[]) {
      for (const transW of [false, true]) {
        const r = await onBoth(async (backend) => {
          using tx = Tensor.from(x, [rows, nIn], { backend });
          using txh = Tensor.from(x, [rows, nIn], { backend, dtype: 'bf16' });
          using tw = Tensor.from(W, transW ? [nOut, nIn] : [nIn, nOut], { backend });
          using tb = Tensor.from(bias, [nOut], { backend });
          using a = Tensor.full([rows, nOut], Number.NaN, { backend });
          using b = Tensor.full([rows, nOut], Number.NaN, { backend });
          const options = kind ? { activation: kind } : undefined;
          await (transW ? linearT : linear)(tx, tw, tb, a, 'bf16', options);
          await (transW ? linearT : linear)(txh, tw, tb, b, 'bf16', options);
          return { f32x: f32(a), bf16x: f32(b) };
        });
        const what = `${kind} transW ${transW}`;
        for (const b of BACKENDS) expect(r[b].bf16x, `${b} ${what}`).toEqual(r[b].f32x);
        const scale = linearRef(Float64Array.from(x, Math.abs), Float64Array.from(W, Math.abs), Float64Array.from(bias, Math.abs), rows, nIn, nOut, transW);
        expect(worst(r.cuda.bf16x, r.cpu.bf16x, (i) => scale[i]!), what).toBeLessThan(1e-5);
      }
    }
  });

  it('activation (gelu_new, gelu, relu), also in place, matches the CPU', async () => {
    const rng = new Rng(3);
    const x = uniformArray(rng, 1031 * 77, -8, 8);
    x.set([0, -0, 1e-30, -1e-30, 10, -10, 30, -30], 0);
    for (const kind of ['gelu_new', 'gelu', 'relu'] as Activation[]) {
      const r = await onBoth(async (backend) => {
        using tx = Tensor.from(x, [1031, 77], { backend });
        using out = Tensor.full([1031, 77], Number.NaN, { backend });
        await activation(kind, tx, out);
        await activation(kind, tx, tx);
        return { out: f32(out), inPlace: f32(tx) };
      });
      expect(worst(r.cuda.out, r.cpu.out, relFloor1(r.cpu.out)), kind).toBeLessThan(2e-6);
      expect(Array.from(r.cuda.inPlace), `${kind} in place`).toEqual(Array.from(r.cuda.out));
    }
  });

  it('the GELUs at ±inf give their limits (inf, 0), as the CPU', async () => {
    for (const kind of ['gelu_new', 'gelu'] as Activation[]) {
      using x = Tensor.from([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1], [3], { backend: 'cuda' });
      using out = Tensor.empty([3], { backend: 'cuda' });
      await activation(kind, x, out);
      expect(Array.from(f32(out)).slice(0, 2), kind).toEqual([Number.POSITIVE_INFINITY, 0]);
    }
  });

  // The fused bias + gelu_new epilogue of the bf16 product (gemm_epilogue_ops.cuh BiasActOp, through
  // activate()) at pre-activations that overflow to ±inf: the limits, as the separate pass and the CPU.
  it('linear at bf16 with gelu_new gives the limits where the product overflows to ±inf (fused epilogue)', async () => {
    const rng = new Rng(40);
    const [rows, nIn, nOut] = [3, 64, 300];
    const x = normalArray(rng, rows * nIn);
    x.fill(1e38, 0, nIn); // row 0: sum of 64 positive terms of ~1e38 -> +inf in fp32
    x.fill(-1e38, nIn, 2 * nIn); // row 1: -inf
    const W = uniformArray(rng, nIn * nOut, 0.5, 1.5);
    const bias = normalArray(rng, nOut);
    const r = await onBoth(async (backend) => {
      using tx = Tensor.from(x, [rows, nIn], { backend });
      using tw = Tensor.from(W, [nIn, nOut], { backend });
      using tb = Tensor.from(bias, [nOut], { backend });
      using f = Tensor.full([rows, nOut], Number.NaN, { backend });
      using h = Tensor.full([rows, nOut], Number.NaN, { backend, dtype: 'bf16' });
      await linear(tx, tw, tb, f, 'bf16', { activation: 'gelu_new' });
      await linear(tx, tw, tb, h, 'bf16', { activation: 'gelu_new' });
      return { f: f32(f), h: h.toFloat32() };
    });
    for (const b of BACKENDS) {
      for (const out of [r[b].f, r[b].h]) {
        expect(Array.from(out.subarray(0, nOut)).every((v) => v === Number.POSITIVE_INFINITY), `${b} row 0`).toBe(true);
        expect(Array.from(out.subarray(nOut, 2 * nOut)).every((v) => Object.is(v, 0)), `${b} row 1`).toBe(true);
        expect(Array.from(out.subarray(2 * nOut)).every(Number.isFinite), `${b} row 2`).toBe(true);
      }
    }
  });

  it('klRows is +inf where q is masked and p is not, NaN for a row of p all -inf, on both backends', async () => {
    const rng = new Rng(41);
    const [rows, V] = [3, 5003];
    const p = normalArray(rng, rows * V, 2);
    const q = normalArray(rng, rows * V, 2);
    q[0 * V + 17] = Number.NEGATIVE_INFINITY; // row 0: P(17) > 0, Q(17) = 0 -> KL = inf
    p.fill(Number.NEGATIVE_INFINITY, 1 * V, 2 * V); // row 1: no distribution P
    for (let v = 0; v < V; v += 2) { // row 2: both masked on the even entries: finite
      p[2 * V + v] = Number.NEGATIVE_INFINITY;
      q[2 * V + v] = Number.NEGATIVE_INFINITY;
    }
    const r = await klRowsOnBoth(p, q, rows, V);
    for (const b of BACKENDS) {
      expect(r[b][0], `${b} row 0`).toBe(Number.POSITIVE_INFINITY);
      expect(r[b][1], `${b} row 1`).toBeNaN();
      expect(Number.isFinite(r[b][2]!), `${b} row 2`).toBe(true);
    }
    expect(Math.abs(r.cuda[2]! - r.cpu[2]!)).toBeLessThan(1e-4 * Math.max(0.1, Math.abs(r.cpu[2]!)));
  });

  it('add matches the CPU exactly, with out aliasing a', async () => {
    const rng = new Rng(4);
    const n = 300_007;
    const a = normalArray(rng, n);
    const b = normalArray(rng, n);
    const r = await onBoth(async (backend) => {
      using ta = Tensor.from(a, [n], { backend });
      using tb = Tensor.from(b, [n], { backend });
      using out = Tensor.full([n], Number.NaN, { backend });
      await add(ta, tb, out);
      await add(ta, tb, ta);
      return { out: f32(out), inPlace: f32(ta) };
    });
    expect(r.cuda.out).toEqual(r.cpu.out);
    expect(r.cuda.inPlace).toEqual(r.cpu.out);
  });

  it('embed matches the CPU exactly and reports the same first bad id, writing nothing', async () => {
    const rng = new Rng(5);
    const [B, T, C, V, nPositions, posOffset] = [3, 7, 76, 1013, 13, 3];
    const wte = normalArray(rng, V * C);
    const wpe = normalArray(rng, nPositions * C);
    const ids = Int32Array.from({ length: B * T }, () => rng.int(V));
    ids[B * T - 1] = V - 1;
    const bad = Int32Array.from(ids);
    bad[9] = -3;
    bad[15] = V;
    const r = await onBoth(async (backend) => {
      using tIds = Tensor.from(ids, [B, T], { backend, dtype: 'i32' });
      using tBad = Tensor.from(bad, [B, T], { backend, dtype: 'i32' });
      using tWte = Tensor.from(wte, [V, C], { backend });
      using tWpe = Tensor.from(wpe, [nPositions, C], { backend });
      using tok = Tensor.full([B * T, C], Number.NaN, { backend });
      using pos = Tensor.full([B * T, C], Number.NaN, { backend });
      using tok2 = Tensor.full([B * T, C], Number.NaN, { backend });
      using pos2 = Tensor.full([B * T, C], Number.NaN, { backend });
      await embed(tIds, B, T, tWte, tWpe, posOffset, tok, pos);
      const failure = await rejection(embed(tBad, B, T, tWte, tWpe, posOffset, tok2, pos2));
      const untouched = f32(tok2).every(Number.isNaN) && f32(pos2).every(Number.isNaN);
      // Ids vouched for by the caller (no device check): the same rows.
      await embed(tIds, B, T, tWte, tWpe, posOffset, tok2, pos2, { indicesChecked: true });
      const checkedSame = f32(tok2).every((x, i) => x === f32(tok)[i]) && f32(pos2).every((x, i) => x === f32(pos)[i]);
      // Without posOut: their sum, the bits of add(tok, pos).
      await embed(tIds, B, T, tWte, tWpe, posOffset, tok2, null, { indicesChecked: true });
      await add(tok, pos, pos2);
      const sumSame = f32(tok2).every((x, i) => x === f32(pos2)[i]);
      return { tok: f32(tok), pos: f32(pos), failure, untouched, checkedSame, sumSame };
    });
    for (const b of BACKENDS) expect(r[b].checkedSame, b).toBe(true);
    for (const b of BACKENDS) expect(r[b].sumSame, b).toBe(true);
    expect(r.cuda.tok).toEqual(r.cpu.tok);
    expect(r.cuda.pos).toEqual(r.cpu.pos);
    for (const b of BACKENDS) {
      expect(r[b].failure, b).toBeInstanceOf(MonosemanticError);
      expect((r[b].failure as MonosemanticError).code).toBe('E_INVALID');
      expect((r[b].failure as MonosemanticError).message).toContain(`ids[9] = -3 is outside the vocabulary [0, ${V})`);
      expect(r[b].untouched, b).toBe(true);
    }
  });

  for (const offset of [0, 3]) {
    it(`splitQkv at offset ${offset} matches the CPU exactly`, async () => {
      const rng = new Rng(6 + offset);
      const [B, T, C, Tmax] = [3, 7, 76, 11];
      const qkv = normalArray(rng, B * T * 3 * C);
      const k0 = normalArray(rng, B * Tmax * C);
      const v0 = normalArray(rng, B * Tmax * C);
      const r = await onBoth(async (backend) => {
        using tQkv = Tensor.from(qkv, [B * T, 3 * C], { backend });
        using q = Tensor.full([B * T, C], Number.NaN, { backend });
        using k = Tensor.from(k0, [B, Tmax, C], { backend });
        using v = Tensor.from(v0, [B, Tmax, C], { backend });
        await splitQkv(tQkv, B, T, C, q, k, v, Tmax, offset);
        return { q: f32(q), k: f32(k), v: f32(v) };
      });
      expect(r.cuda.q).toEqual(r.cpu.q);
      expect(r.cuda.k).toEqual(r.cpu.k);
      expect(r.cuda.v).toEqual(r.cpu.v);
    });
  }

  // [B, T, Tmax, offset, C, nHead]: head sizes 19, 64 (GPT-2), 200 (several dims per lane), and a
  // one-token decoding step at the end of the cache; whole sequences without a cache beyond them
  // (offset 0, T = Tmax) at head sizes 32 and 64 take the tiled kernel.
  const attentionCases = [
    [3, 7, 11, 0, 76, 4],
    [3, 7, 11, 3, 76, 4],
    [2, 33, 80, 40, 768, 12],
    [2, 1, 80, 79, 768, 12],
    [1, 9, 20, 5, 400, 2],
    [2, 150, 150, 0, 128, 4],
    [1, 70, 70, 0, 768, 12],
  ] as const;
  for (const [B, T, Tmax, offset, C, nHead] of attentionCases) {
    it(`attention B ${B}, T ${T}, Tmax ${Tmax}, offset ${offset}, C ${C}, ${nHead} heads matches the CPU`, async () => {
      const rng = new Rng(10 + offset);
      const end = offset + T;
      const q = normalArray(rng, B * T * C);
      const k = normalArray(rng, B * Tmax * C, 1.5).map((val, i) => (Math.floor(i / C) % Tmax < end ? val : Number.NaN));
      const v = normalArray(rng, B * Tmax * C).map((val, i) => (Math.floor(i / C) % Tmax < end ? val : Number.NaN));
      const r = await onBoth(async (backend) => {
        using tq = Tensor.from(q, [B * T, C], { backend });
        using tk = Tensor.from(k, [B, Tmax, C], { backend });
        using tv = Tensor.from(v, [B, Tmax, C], { backend });
        using out = Tensor.full([B * T, C], Number.NaN, { backend });
        await attention(tq, tk, tv, B, T, Tmax, offset, nHead, out);
        return f32(out);
      });
      const maxV = v.reduce((m, x) => (Number.isNaN(x) ? m : Math.max(m, Math.abs(x))), 0);
      expect(worst(r.cuda, r.cpu, () => maxV)).toBeLessThan(1e-5);
    });
  }

  // At bf16 the attention may write a bf16 out: the tensor-core kernel stores its rows rounded (heads
  // of 32 and 64 over whole sequences); the other kernels (a cache window, heads of 48,
  // MONOSEMANTIC_CUDA_KERNELS=simple) write fp32 into a temporary, rounded after. Either way the
  // fp32 out's bits rounded to nearest even.
  it('attention into a bf16 out equals the fp32 out rounded, on every kernel', async () => {
    for (const [batch, T, Tmax, offset, C, nHead, simple] of [
      [2, 200, 200, 0, 96, 3, false], [1, 300, 300, 0, 768, 12, false], [2, 150, 150, 0, 96, 2, false],
      [2, 40, 64, 17, 128, 4, false], [2, 100, 100, 0, 128, 4, true],
    ] as const) {
      await withEnv({ MONOSEMANTIC_CUDA_KERNELS: simple ? 'simple' : undefined }, async () => {
        const rng = new Rng(31);
        const q = normalArray(rng, batch * T * C);
        const k = normalArray(rng, batch * Tmax * C, 1.5);
        const v = normalArray(rng, batch * Tmax * C);
        using tq = Tensor.from(q, [batch * T, C], { backend: 'cuda' });
        using tk = Tensor.from(k, [batch, Tmax, C], { backend: 'cuda' });
        using tv = Tensor.from(v, [batch, Tmax, C], { backend: 'cuda' });
        using out = Tensor.full([batch * T, C], Number.NaN, { backend: 'cuda' });
        using outBf = Tensor.zeros([batch * T, C], { backend: 'cuda', dtype: 'bf16' });
        await attention(tq, tk, tv, batch, T, Tmax, offset, nHead, out, 'bf16');
        await attention(tq, tk, tv, batch, T, Tmax, offset, nHead, outBf, 'bf16');
        expectSameValues(outBf.toFloat32(), roundArrayBf16(f32(out)), `B ${batch} T ${T} Tmax ${Tmax} offset ${offset} C ${C} ${nHead} heads${simple ? ', simple kernels' : ''}`);
      });
    }
  });

  it('attention reports head sizes over 256 as unsupported on CUDA', async () => {
    using q = Tensor.zeros([1, 257], { backend: 'cuda' });
    using k = Tensor.zeros([1, 2, 257], { backend: 'cuda' });
    using out = Tensor.zeros([1, 257], { backend: 'cuda' });
    const failure = await rejection(attention(q, k, k, 1, 1, 2, 0, 1, out));
    expect(failure).toBeInstanceOf(MonosemanticError);
    expect((failure as MonosemanticError).code).toBe('E_UNSUPPORTED');
  });

  // Rows read value by value (1,013; 50,257) and in 16-byte chunks (a multiple of 8: 2,056; 8,192).
  for (const [rows, V] of [[37, 1013], [9, 50257], [13, 2056], [11, 8192]] as const) {
    it(`crossEntropy [${rows}, ${V}] matches the CPU; a target >= V is reported like it`, async () => {
      const rng = new Rng(20);
      const logits = normalArray(rng, rows * V, 3);
      const targets = Int32Array.from({ length: rows }, (_, r) => (r % 4 === 2 ? -100 : rng.int(V)));
      const bad = Int32Array.from(targets);
      bad[3] = V + 1;
      const r = await onBoth(async (backend) => {
        using tl = Tensor.from(logits, [rows, V], { backend });
        using tt = Tensor.from(targets, [rows], { backend, dtype: 'i32' });
        using tBad = Tensor.from(bad, [rows], { backend, dtype: 'i32' });
        using out = Tensor.full([rows], Number.NaN, { backend });
        using out2 = Tensor.full([rows], Number.NaN, { backend });
        await crossEntropy(tl, tt, out);
        const failure = await rejection(crossEntropy(tl, tBad, out2));
        const untouched = f32(out2).every(Number.isNaN);
        await crossEntropy(tl, tt, out2, { indicesChecked: true }); // no device check: the same losses
        return { out: f32(out), failure, untouched, checked: f32(out2) };
      });
      for (const b of BACKENDS) expect(r[b].checked, b).toEqual(r[b].out);
      expect(worst(r.cuda.out, r.cpu.out, relFloor1(r.cpu.out))).toBeLessThan(1e-5);
      for (const b of BACKENDS) {
        expect((r[b].failure as MonosemanticError).code, b).toBe('E_INVALID');
        expect((r[b].failure as MonosemanticError).message).toContain(`targets[3] = ${V + 1} is outside the vocabulary`);
        expect(r[b].untouched, b).toBe(true);
      }
    });
  }

  // The chunked kernel's online softmax: fp32 and bf16 logits of the same values give the same
  // losses; masked (-inf) logits, the first 2,048 of a row all masked (every thread's first chunk),
  // a row masked but for its target (loss 0), and a NaN in a first chunk otherwise masked, which
  // makes its row's loss NaN.
  for (const V of [1000, 8192]) {
    it(`crossEntropy over rows of ${V} logits with masked entries, fp32 and bf16: the CPU's losses`, async () => {
      const rng = new Rng(23);
      const rows = 19;
      const logits = roundArrayBf16(normalArray(rng, rows * V, 4));
      const targets = Int32Array.from({ length: rows }, (_, r) => (r === 5 ? -1 : (r * 7919) % V));
      for (let r = 0; r < rows; r++) {
        for (let v = 0; v < V; v++) if ((v * 31 + r) % 7 === 0 && v !== targets[r]) logits[r * V + v] = -Infinity;
      }
      for (let v = 0; v < 2048 && v < V - 8; v++) if (v !== targets[1]) logits[1 * V + v] = -Infinity; // the first chunks of every thread
      for (let v = 0; v < V; v++) if (v !== targets[2]) logits[2 * V + v] = -Infinity; // the target alone: loss 0
      for (let v = 0; v < 8; v++) logits[3 * V + v] = v === 3 ? Number.NaN : -Infinity; // a NaN in an otherwise masked first chunk
      const r = await onBoth(async (backend) => {
        using tt = Tensor.from(targets, [rows], { backend, dtype: 'i32' });
        const losses: Float32Array[] = [];
        for (const dtype of ['f32', 'bf16'] as const) {
          using tl = Tensor.from(logits, [rows, V], { backend, dtype });
          using out = Tensor.full([rows], Number.NaN, { backend });
          await crossEntropy(tl, tt, out, { indicesChecked: true });
          losses.push(f32(out));
        }
        return losses;
      });
      for (const b of BACKENDS) {
        expect(Array.from(r[b][1]!), `${b}: bf16 logits are read as the same values`).toEqual(Array.from(r[b][0]!));
        expect(r[b][0]![2], b).toBe(0);
        expect(r[b][0]![5], b).toBe(0);
        expect(r[b][0]![3], b).toBeNaN();
        expect(r[b][0]!.filter((_, i) => i !== 3).every(Number.isFinite), b).toBe(true);
      }
      const finite = (a: Float32Array) => a.filter((_, i) => i !== 3);
      expect(worst(finite(r.cuda[0]!), finite(r.cpu[0]!), relFloor1(finite(r.cpu[0]!)))).toBeLessThan(1e-5);
    });
  }

  /** klRows of p, q [rows, V] on the CUDA backend and on the CPU. */
  const klRowsOnBoth = (p: Float32Array, q: Float32Array, rows: number, V: number) =>
    onBoth(async (backend) => {
      using tp = Tensor.from(p, [rows, V], { backend });
      using tq = Tensor.from(q, [rows, V], { backend });
      using out = Tensor.full([rows], Number.NaN, { backend });
      await klRows(tp, tq, out);
      return f32(out);
    });

  it('klRows [70, 50257] matches the CPU (1e-4 relative, floor 0.1: fp32 sums of 50,257 terms)', async () => {
    const rng = new Rng(35);
    const [rows, V] = [70, 50257];
    const p = normalArray(rng, rows * V, 4);
    const q = Float32Array.from(p, (v, i) => (Math.floor(i / V) % 3 === 0 ? v : v + 0.5 * rng.normal()));
    const r = await klRowsOnBoth(p, q, rows, V);
    expect(r.cpu.some((v) => v > 0.05)).toBe(true);
    expect(worst(r.cuda, r.cpu, (i) => Math.max(0.1, Math.abs(r.cpu[i]!)))).toBeLessThan(1e-4);
    for (let i = 0; i < rows; i += 3) expect(r.cuda[i], `row ${i}: p = q`).toBe(0);
  });

  it('klRows with masked (-inf, -1e32) entries of p, also where q is masked too: finite, as the CPU', async () => {
    const rng = new Rng(36);
    const [rows, V] = [6, 50257];
    const p = normalArray(rng, rows * V, 4);
    const q = normalArray(rng, rows * V, 4);
    for (let r = 0; r < rows; r++) {
      const mask = r % 2 === 0 ? Number.NEGATIVE_INFINITY : -1e32;
      for (let v = 100; v < V; v++) p[r * V + v] = mask;
      for (let v = 100; v < V; v += 97) q[r * V + v] = mask;
    }
    const r = await klRowsOnBoth(p, q, rows, V);
    expect(r.cpu.every(Number.isFinite)).toBe(true);
    expect(worst(r.cuda, r.cpu, (i) => Math.max(0.1, Math.abs(r.cpu[i]!)))).toBeLessThan(1e-4);
  });

  it('argmaxRows matches the CPU exactly, ties and NaN included', async () => {
    const rng = new Rng(30);
    const [rows, V] = [41, 50257];
    const logits = normalArray(rng, rows * V);
    logits[3 * V + 5] = 9;
    logits[3 * V + 40000] = 9;
    logits.fill(0.25, 4 * V, 5 * V);
    logits[5 * V + V - 1] = 100;
    logits[6 * V + 17] = Number.NaN;
    logits[6 * V + 30000] = Number.NaN;
    logits[7 * V + 300] = 7;
    logits[7 * V + 44] = 7;
    const r = await onBoth(async (backend) => {
      using tl = Tensor.from(logits, [rows, V], { backend });
      using out = Tensor.full([rows], -7, { backend, dtype: 'i32' });
      await argmaxRows(tl, out);
      return out.toArray() as Int32Array;
    });
    expect(Array.from(r.cuda)).toEqual(Array.from(r.cpu));
    expect([r.cuda[3], r.cuda[4], r.cuda[5], r.cuda[6], r.cuda[7]]).toEqual([5, 0, V - 1, 17, 44]);
  });

  it('chunked prefill through splitQkv + attention equals one whole prefill on CUDA', async () => {
    const rng = new Rng(40);
    const [B, T, C, nHead, Tmax] = [2, 9, 128, 2, 12];
    const qkv = normalArray(rng, B * T * 3 * C);
    const run = async (chunks: number[]) => {
      using k = Tensor.zeros([B, Tmax, C], { backend: 'cuda' });
      using v = Tensor.zeros([B, Tmax, C], { backend: 'cuda' });
      const out = new Float32Array(B * T * C);
      let offset = 0;
      for (const n of chunks) {
        const part = new Float32Array(B * n * 3 * C); // the chunk's rows of every sequence, [B, n, 3C]
        for (let b = 0; b < B; b++) part.set(qkv.subarray((b * T + offset) * 3 * C, (b * T + offset + n) * 3 * C), b * n * 3 * C);
        using tQkv = Tensor.from(part, [B * n, 3 * C], { backend: 'cuda' });
        using q = Tensor.empty([B * n, C], { backend: 'cuda' });
        using o = Tensor.empty([B * n, C], { backend: 'cuda' });
        await splitQkv(tQkv, B, n, C, q, k, v, Tmax, offset);
        await attention(q, k, v, B, n, Tmax, offset, nHead, o);
        const od = f32(o);
        for (let b = 0; b < B; b++) out.set(od.subarray(b * n * C, (b + 1) * n * C), (b * T + offset) * C);
        offset += n;
      }
      return out;
    };
    expect(Array.from(await run([4, 1, 4]))).toEqual(Array.from(await run([T])));
  });
});
