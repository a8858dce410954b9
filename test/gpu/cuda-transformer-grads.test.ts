/**
 * The CUDA backend's GPT-2 backward ops and AdamW (lib/lm/grad-ops.ts) against the CPU backend, op
 * by op, on the CPU suite's awkward sizes and on GPT-2-small sizes (C 768, 12 heads of 64,
 * V 50257), and the whole-model gradients of the tiny GPT-2 fixtures on CUDA against PyTorch.
 * Overwritten outputs start as NaN so that an unwritten element fails; accumulated outputs start
 * from random values. Errors are max |cuda − cpu| / max |cpu| per tensor (CUDA accumulates in fp32
 * in another order, and adds parameter gradients with atomics):
 *   - attention, layer norm, linear (f32 and bf16), cross-entropy: 1e-5; activations 2e-6;
 *     embeddings 1e-6;
 *   - the q/k/v split, AdamW (the same IEEE operations in the same order) and the error reports:
 *     exact;
 *   - attention at bf16 on tensor cores (the default; bf16 operands): 1.5e-2; with
 *     MONOSEMANTIC_CUDA_ATTENTION=tiled (fp32 kernels): 1e-5; with and without the next tile read
 *     ahead (MONOSEMANTIC_CUDA_ATTENTION_PREFETCH=on, off): exact;
 *   - the attention backward into one [B·T, 3C] gradient (attentionBackwardQkv) against
 *     attentionBackward's dq, dk, dv side by side, on each backend and kernel: exact.
 * Skipped, with the reason printed, where the CUDA backend is not available.
 */
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { type BackendName, backendStatus } from '../../lib/backend.js';
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
import { type Activation, attention, layerNorm } from '../../lib/lm/ops.js';
import { loadGpt2Weights } from '../../lib/lm/weights.js';
import { packageRoot } from '../../lib/native/load.js';
import { reduceSumInto } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { maxErr, normalArray, relError, roundArrayBf16, uniformArray } from '../helpers/data.js';
import { withEnv } from '../helpers/env.js';
import { gpt2LossAndGrads } from '../helpers/gpt2-grads.js';
import { rejection } from '../helpers/rejection.js';
import { expectSameRecords, expectSameValues } from '../helpers/same-values.js';
import { mergeQkvRef } from '../reference/transformer-grad-reference.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

/** Runs fn on each backend; returns the results by backend. */
async function onBoth<R>(fn: (backend: BackendName) => Promise<R>): Promise<{ cpu: R; cuda: R }> {
  return { cpu: await fn('cpu'), cuda: await fn('cuda') };
}

function f32(t: Tensor): Float32Array {
  return t.toArray() as Float32Array;
}

describe.skipIf(!hasCuda)('cuda transformer backward ops', () => {
  /**
   * Seeded q, k, v and dout [B·T, C] through the attention's training forward and its backward on
   * both backends, at `precision` (default: the ops' own, fp32); with a precision, the forward alone
   * too (`plain`).
   */
  async function attentionOnBoth(batch: number, T: number, C: number, nHead: number, seed: number, precision?: 'bf16') {
    return onBoth((backend) => attentionOn(backend, batch, T, C, nHead, seed, precision));
  }

  /** attentionOnBoth's run on one backend. */
  async function attentionOn(backend: BackendName, batch: number, T: number, C: number, nHead: number, seed: number, precision?: 'bf16') {
    const rng = new Rng(seed);
    const rows = batch * T;
    const q = normalArray(rng, rows * C);
    const k = normalArray(rng, rows * C, 1.5);
    const v = normalArray(rng, rows * C);
    const dout = normalArray(rng, rows * C);
    using tq = Tensor.from(q, [rows, C], { backend });
    using tk = Tensor.from(k, [rows, C], { backend });
    using tv = Tensor.from(v, [rows, C], { backend });
    using tdout = Tensor.from(dout, [rows, C], { backend });
    using plain = Tensor.full([rows, C], Number.NaN, { backend });
    if (precision) await attention(tq, tk, tv, batch, T, T, 0, nHead, plain, precision);
    using out = Tensor.full([rows, C], Number.NaN, { backend });
    using lse = Tensor.full([batch, nHead, T], Number.NaN, { backend });
    await attentionForwardTrain(tq, tk, tv, batch, T, nHead, out, lse, precision);
    using dq = Tensor.full([rows, C], Number.NaN, { backend });
    using dk = Tensor.full([rows, C], Number.NaN, { backend });
    using dv = Tensor.full([rows, C], Number.NaN, { backend });
    await attentionBackward(tdout, tq, tk, tv, out, lse, batch, T, nHead, dq, dk, dv, precision);
    // Into one [rows, 3C] gradient (the kernels' stores at a row stride of 3C): dq | dk | dv side
    // by side in each row, the same bits.
    using dqkv = Tensor.full([rows, 3 * C], Number.NaN, { backend });
    await attentionBackwardQkv(tdout, tq, tk, tv, out, lse, batch, T, nHead, dqkv, precision);
    expectSameValues(f32(dqkv), mergeQkvRef(f32(dq), f32(dk), f32(dv), rows, C), `${backend} dqkv`);
    return { plain: f32(plain), out: f32(out), lse: f32(lse), dq: f32(dq), dk: f32(dk), dv: f32(dv) };
  }

  for (const [batch, T, C, nHead] of [[3, 7, 76, 4], [2, 64, 768, 12], [1, 300, 96, 3]] as const) {
    it(`attentionForwardTrain and attentionBackward (B ${batch}, T ${T}, C ${C}, ${nHead} heads) match the CPU`, async () => {
      const r = await attentionOnBoth(batch, T, C, nHead, 1);
      for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) expect(maxErr(r.cuda[key], r.cpu[key]), key).toBeLessThan(1e-5);
    });
  }

  // At bf16 precision, unless MONOSEMANTIC_CUDA_ATTENTION=tiled, heads of 32 and 64 run on tensor
  // cores (bf16 q, k, v, P and dS): within 1.5e-2 of the CPU's fp32, and visibly not fp32 (> 1e-5),
  // which shows the tensor-core kernels ran. With =tiled the fp32 kernels run: within 1e-5.
  const mma = process.env.MONOSEMANTIC_CUDA_ATTENTION !== 'tiled';
  for (const [batch, T, C, nHead] of [[1, 65, 32, 1], [2, 200, 96, 3], [3, 129, 128, 2], [1, 1024, 128, 4]] as const) {
    it(`attention at bf16 (B ${batch}, T ${T}, C ${C}, ${nHead} heads): forward, training forward and backward match the CPU (${mma ? 'tensor cores' : 'fp32 kernels'})`, async () => {
      const r = await attentionOnBoth(batch, T, C, nHead, 11, 'bf16');
      for (const key of ['plain', 'out', 'lse', 'dq', 'dk', 'dv'] as const) {
        const err = maxErr(r.cuda[key], r.cpu[key]);
        expect(err, key).toBeLessThan(mma ? 1.5e-2 : 1e-5);
        if (mma && key !== 'lse') expect(err, `${key} differs from fp32 as bf16 operands do`).toBeGreaterThan(1e-5);
      }
    });
  }

  // The tensor-core kernels read each tile's rows during the previous tile's products with
  // MONOSEMANTIC_CUDA_ATTENTION_PREFETCH=on (read at each call): the same sums in the same order as
  // with =off, so the same bits, for heads of 32 and 64, T across and inside the 64-row tiles.
  it.skipIf(!mma)('attention at bf16 with and without the next tile read ahead: the same bits', async () => {
    const KEY = 'MONOSEMANTIC_CUDA_ATTENTION_PREFETCH';
    for (const [batch, T, C, nHead] of [[2, 200, 96, 3], [1, 1024, 128, 4], [2, 129, 128, 2], [1, 300, 768, 12]] as const) {
      const ahead = await withEnv({ [KEY]: 'on' }, () => attentionOn('cuda', batch, T, C, nHead, 5, 'bf16'));
      const staged = await withEnv({ [KEY]: 'off' }, () => attentionOn('cuda', batch, T, C, nHead, 5, 'bf16'));
      expectSameRecords(ahead, staged, `B ${batch}, T ${T}, C ${C}, ${nHead} heads`);
    }
  });

  it('splitQkvTrain matches the CPU exactly', async () => {
    const rng = new Rng(2);
    const [rows, C] = [131, 768];
    const qkv = normalArray(rng, rows * 3 * C);
    const r = await onBoth(async (backend) => {
      using t = Tensor.from(qkv, [rows, 3 * C], { backend });
      using q = Tensor.full([rows, C], Number.NaN, { backend });
      using k = Tensor.full([rows, C], Number.NaN, { backend });
      using v = Tensor.full([rows, C], Number.NaN, { backend });
      await splitQkvTrain(t, q, k, v);
      return { q: f32(q), k: f32(k), v: f32(v) };
    });
    expectSameRecords(r.cuda, r.cpu, 'cuda against cpu');
    expectSameValues(mergeQkvRef(r.cuda.q, r.cuda.k, r.cuda.v, rows, C), qkv, 'q | k | v');
  });

  // Rows up to 1,024 wide take a warp each (4 to 32 values per lane); wider ones a block each.
  for (const [rows, C] of [[37, 76], [21, 200], [13, 400], [1030, 768], [9, 1100]] as const) {
    it(`layerNormBackward [${rows}, ${C}] (dx = and +=, dweight and dbias accumulate) matches the CPU`, async () => {
      const rng = new Rng(3);
      const x = normalArray(rng, rows * C, 2).map((val, i) => val + 3 + (i % 5));
      const w = uniformArray(rng, C, 0.5, 1.5);
      const b = normalArray(rng, C, 0.3);
      const dout = normalArray(rng, rows * C);
      const dx0 = normalArray(rng, rows * C);
      const dw0 = normalArray(rng, C);
      const db0 = normalArray(rng, C);
      // The CPU forward's saved statistics on both backends, so that only the backward differs.
      const stats = await cpuStats(x, w, b, rows, C);
      for (const accumulate of [false, true]) {
        const r = await onBoth(async (backend) => {
          using tx = Tensor.from(x, [rows, C], { backend });
          using tw = Tensor.from(w, [C], { backend });
          using mean = Tensor.from(stats.mean, [rows], { backend });
          using rstd = Tensor.from(stats.rstd, [rows], { backend });
          using tdout = Tensor.from(dout, [rows, C], { backend });
          using dx = accumulate ? Tensor.from(dx0, [rows, C], { backend }) : Tensor.full([rows, C], Number.NaN, { backend });
          using dw = Tensor.from(dw0, [C], { backend });
          using db = Tensor.from(db0, [C], { backend });
          await layerNormBackward(tdout, tx, tw, mean, rstd, dx, dw, db, accumulate);
          return { dx: f32(dx), dw: f32(dw), db: f32(db) };
        });
        for (const key of ['dx', 'dw', 'db'] as const) expect(maxErr(r.cuda[key], r.cpu[key]), `${key}, accumulate ${accumulate}`).toBeLessThan(1e-5);
      }
    });
  }

  for (const precision of ['f32', 'bf16'] as const) {
    // [4104, 768, 3072]: GPT-2's MLP weight gradient over a batch of rows, the long-K product that
    // Hopper takes on wgmma with K split (dW = xᵀ dout, K = rows), accumulating into dW.
    for (const [rows, nIn, nOut] of [[37, 76, 53], [67, 768, 2304], [5, 768, 5003], [4104, 768, 3072]] as const) {
      it(`linearBackward and linearTBackward (${precision}) [${rows}, ${nIn}] -> ${nOut} match the CPU`, async () => {
        const rng = new Rng(4);
        const x = normalArray(rng, rows * nIn);
        const W = normalArray(rng, nIn * nOut, 0.05);
        const dout = normalArray(rng, rows * nOut);
        const dx0 = normalArray(rng, rows * nIn);
        const dW0 = normalArray(rng, nIn * nOut, 0.01);
        const db0 = normalArray(rng, nOut);
        for (const transW of [false, true]) {
          for (const accumulate of [false, true]) {
            const wShape = transW ? [nOut, nIn] : [nIn, nOut];
            const r = await onBoth(async (backend) => {
              using tx = Tensor.from(x, [rows, nIn], { backend });
              using tw = Tensor.from(W, wShape, { backend });
              using tdout = Tensor.from(dout, [rows, nOut], { backend });
              using dx = accumulate ? Tensor.from(dx0, [rows, nIn], { backend }) : Tensor.full([rows, nIn], Number.NaN, { backend });
              using dW = Tensor.from(dW0, wShape, { backend });
              using db = Tensor.from(db0, [nOut], { backend });
              if (transW) await linearTBackward(tdout, tx, tw, dx, dW, precision, accumulate);
              else await linearBackward(tdout, tx, tw, dx, dW, db, precision, accumulate);
              return { dx: f32(dx), dW: f32(dW), db: f32(db) };
            });
            for (const key of ['dx', 'dW', 'db'] as const) {
              expect(maxErr(r.cuda[key], r.cpu[key]), `${key}, transW ${transW}, accumulate ${accumulate}`).toBeLessThan(1e-5);
            }
          }
        }
      });
    }
  }

  it('linearBackward at bf16 takes a bf16 x (a bf16 layer-norm output) as the f32 x of the same values, on both backends', async () => {
    const rng = new Rng(47);
    const [rows, nIn, nOut] = [300, 128, 384];
    const x = roundArrayBf16(normalArray(rng, rows * nIn));
    const dout = normalArray(rng, rows * nOut);
    const W = normalArray(rng, nIn * nOut, 0.1);
    const r = await onBoth(async (backend) => {
      using tg = Tensor.from(dout, [rows, nOut], { backend });
      using tW = Tensor.from(W, [nIn, nOut], { backend });
      const out: Float32Array[] = [];
      for (const dtype of ['f32', 'bf16'] as const) {
        using tx = Tensor.from(x, [rows, nIn], { backend, dtype });
        using dx = Tensor.full([rows, nIn], Number.NaN, { backend });
        using dW = Tensor.zeros([nIn, nOut], { backend });
        await linearBackward(tg, tx, tW, dx, dW, null, 'bf16');
        out.push(f32(dx), f32(dW));
      }
      return out;
    });
    for (const b of ['cpu', 'cuda'] as const) {
      expect(r[b][2], `${b} dx`).toEqual(r[b][0]);
      expect(r[b][3], `${b} dW`).toEqual(r[b][1]);
    }
    expect(maxErr(r.cuda[3]!, r.cpu[3]!)).toBeLessThan(1e-5);
  });

  it('activationBackward takes a bf16 pre (a ReLU\'s bf16 output) as the f32 pre of the same values, on both backends', async () => {
    const rng = new Rng(48);
    const pre = roundArrayBf16(uniformArray(rng, 70001, -6, 6));
    const dpost = normalArray(rng, pre.length);
    for (const kind of ['relu', 'gelu_new'] as const) {
      const r = await onBoth(async (backend) => {
        using tdpost = Tensor.from(dpost, [pre.length], { backend });
        const out: Float32Array[] = [];
        for (const dtype of ['f32', 'bf16'] as const) {
          using tpre = Tensor.from(pre, [pre.length], { backend, dtype });
          using dpre = Tensor.full([pre.length], Number.NaN, { backend });
          await activationBackward(kind, tdpost, tpre, dpre);
          out.push(f32(dpre));
        }
        return out;
      });
      for (const b of ['cpu', 'cuda'] as const) expect(r[b][1], `${b} ${kind}`).toEqual(r[b][0]);
      expect(maxErr(r.cuda[1]!, r.cpu[1]!), kind).toBeLessThan(2e-6);
    }
  });

  it('activationBackward (gelu_new, gelu, relu), also in place, matches the CPU', async () => {
    const rng = new Rng(5);
    const n = 1031 * 77;
    const pre = uniformArray(rng, n, -8, 8);
    pre.set([0, -0, 1e-30, -1e-30, 10, -10, 30, -30, 1e20, -1e20], 0);
    const dpost = normalArray(rng, n);
    for (const kind of ['gelu_new', 'gelu', 'relu'] as Activation[]) {
      const r = await onBoth(async (backend) => {
        using tpre = Tensor.from(pre, [n], { backend });
        using tdpost = Tensor.from(dpost, [n], { backend });
        using dpre = Tensor.full([n], Number.NaN, { backend });
        await activationBackward(kind, tdpost, tpre, dpre);
        await activationBackward(kind, tdpost, tpre, tdpost);
        return { dpre: f32(dpre), inPlace: f32(tdpost) };
      });
      expect(maxErr(r.cuda.dpre, r.cpu.dpre), kind).toBeLessThan(2e-6);
      expect(r.cuda.inPlace, `${kind} in place`).toEqual(r.cuda.dpre);
    }
  });

  it('activationBackward of the GELUs at ±inf gives the limits 1 and 0 (f32 and bf16 pre), as the CPU', async () => {
    const pre = Float32Array.of(Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 3e38, -3e38, 1);
    const dpost = Float32Array.of(2, 2, 2, 2, 2);
    for (const kind of ['gelu_new', 'gelu'] as Activation[]) {
      for (const dtype of ['f32', 'bf16'] as const) {
        const r = await onBoth(async (backend) => {
          using tpre = Tensor.from(pre, [pre.length], { backend, dtype });
          using tdpost = Tensor.from(dpost, [pre.length], { backend });
          using dpre = Tensor.full([pre.length], Number.NaN, { backend });
          await activationBackward(kind, tdpost, tpre, dpre);
          return f32(dpre);
        });
        for (const b of ['cpu', 'cuda'] as const) {
          expect(Array.from(r[b].subarray(0, 4)), `${b} ${kind} ${dtype}`).toEqual([2, 0, 2, 0]);
          expect(Number.isFinite(r[b][4]!), `${b} ${kind} ${dtype}`).toBe(true);
        }
      }
    }
  });

  // Vocabularies held in registers (1,013; 4,097; and in 16-byte chunks, a multiple of 8: 1,000;
  // 2,056; 8,192, the shipped models') and read three times (50,257).
  for (const [rows, V] of [[37, 1013], [9, 4097], [13, 1000], [7, 2056], [11, 8192], [5, 50257]] as const) {
    it(`crossEntropyForwardBackward [${rows}, ${V}] matches the CPU; bad targets write nothing`, async () => {
      const rng = new Rng(6);
      const logits = normalArray(rng, rows * V, 3);
      const targets = Int32Array.from({ length: rows }, (_, r) => (r % 4 === 3 ? -1 : rng.int(V)));
      const r = await onBoth(async (backend) => {
        using tl = Tensor.from(logits, [rows, V], { backend });
        using tt = Tensor.from(targets, [rows], { backend, dtype: 'i32' });
        using losses = Tensor.full([rows], Number.NaN, { backend });
        await crossEntropyForwardBackward(tl, tt, losses, 1 / rows);
        const bad = Int32Array.from(targets);
        bad[rows - 1] = V;
        using tbad = Tensor.from(bad, [rows], { backend, dtype: 'i32' });
        using tl2 = Tensor.from(logits, [rows, V], { backend });
        const error = await rejection(crossEntropyForwardBackward(tl2, tbad, losses, 1));
        const untouched = f32(tl2);
        using losses2 = Tensor.full([rows], Number.NaN, { backend });
        await crossEntropyForwardBackward(tl2, tt, losses2, 1 / rows, { indicesChecked: true }); // no device check
        return { losses: f32(losses), dlogits: f32(tl), error, untouched, checked: { losses: f32(losses2), dlogits: f32(tl2) } };
      });
      for (const b of ['cpu', 'cuda'] as const) expectSameRecords(r[b].checked, { losses: r[b].losses, dlogits: r[b].dlogits }, b);
      expect(maxErr(r.cuda.losses, r.cpu.losses)).toBeLessThan(1e-5);
      expect(maxErr(r.cuda.dlogits, r.cpu.dlogits)).toBeLessThan(1e-5);
      expect(r.cuda.error).toBeInstanceOf(MonosemanticError);
      expect((r.cuda.error as MonosemanticError).message).toBe((r.cpu.error as MonosemanticError).message);
      expectSameValues(r.cuda.untouched, logits, 'logits after a refused call');
    });
  }

  it('crossEntropyForwardBackward into a bf16 gradient matches the CPU, and linearTBackward reads it as the rounded f32 one', async () => {
    const rng = new Rng(61);
    const [rows, V, C] = [37, 8192, 96];
    const logits = normalArray(rng, rows * V, 3);
    const targets = Int32Array.from({ length: rows }, (_, r) => (r % 5 === 2 ? -1 : rng.int(V)));
    const x = normalArray(rng, rows * C);
    const W = normalArray(rng, V * C, 0.2);
    const r = await onBoth(async (backend) => {
      using inPlace = Tensor.from(logits, [rows, V], { backend });
      using tt = Tensor.from(targets, [rows], { backend, dtype: 'i32' });
      using losses = Tensor.full([rows], Number.NaN, { backend });
      await crossEntropyForwardBackward(inPlace, tt, losses, 1 / rows);
      using tl = Tensor.from(logits, [rows, V], { backend });
      using grad = Tensor.empty([rows, V], { backend, dtype: 'bf16' });
      await crossEntropyForwardBackward(tl, tt, losses, 1 / rows, { gradient: grad, indicesChecked: true });
      using tx = Tensor.from(x, [rows, C], { backend });
      using tW = Tensor.from(W, [V, C], { backend });
      const out: Float32Array[] = [];
      for (const dout of [inPlace, grad]) {
        using dx = Tensor.full([rows, C], Number.NaN, { backend });
        using dW = Tensor.zeros([V, C], { backend });
        await linearTBackward(dout, tx, tW, dx, dW, 'bf16');
        out.push(f32(dx), f32(dW));
      }
      return { grad: bf16ToFloat32(grad.toArray() as Uint16Array), rounded: roundArrayBf16(f32(inPlace)), logitsKept: f32(tl), out };
    });
    for (const b of ['cpu', 'cuda'] as const) {
      expectSameValues(r[b].grad, r[b].rounded, `${b} grad`); // the bf16 gradient is the f32 one, rounded
      expectSameValues(r[b].logitsKept, logits, `${b} logits`);
      expectSameValues(r[b].out[2]!, r[b].out[0]!, `${b} dx`); // the same products from either dout
      expectSameValues(r[b].out[3]!, r[b].out[1]!, `${b} dW`);
    }
    expect(maxErr(r.cuda.grad, r.cpu.grad)).toBeLessThan(1e-2); // bf16 of values within 1e-5
  });

  // Masked (-inf) logits in rows held in 16-byte chunks (one, two and four per thread): a row's
  // first 2,048 masked, a row masked but for its target (loss 0, gradient 0), fp32 and bf16 logits.
  for (const V of [1000, 2056, 8192]) {
    it(`crossEntropyForwardBackward over masked logits [9, ${V}], fp32 and bf16, matches the CPU`, async () => {
      const rng = new Rng(64);
      const rows = 9;
      const logits = roundArrayBf16(normalArray(rng, rows * V, 3));
      const targets = Int32Array.from({ length: rows }, (_, r) => (r === 4 ? -1 : (r * 7919) % V));
      for (let r = 0; r < rows; r++) for (let v = 0; v < V; v++) if ((v * 13 + r) % 5 === 0 && v !== targets[r]) logits[r * V + v] = -Infinity;
      for (let v = 0; v < Math.min(2048, V - 8); v++) if (v !== targets[1]) logits[V + v] = -Infinity;
      for (let v = 0; v < V; v++) if (v !== targets[2]) logits[2 * V + v] = -Infinity;
      const r = await onBoth(async (backend) => {
        using tt = Tensor.from(targets, [rows], { backend, dtype: 'i32' });
        using tf = Tensor.from(logits, [rows, V], { backend });
        using lossesF = Tensor.full([rows], Number.NaN, { backend });
        await crossEntropyForwardBackward(tf, tt, lossesF, 1 / rows, { indicesChecked: true });
        using th = Tensor.from(logits, [rows, V], { backend, dtype: 'bf16' });
        using lossesH = Tensor.full([rows], Number.NaN, { backend });
        await crossEntropyForwardBackward(th, tt, lossesH, 1 / rows, { indicesChecked: true });
        return { lossesF: f32(lossesF), gradF: f32(tf), lossesH: f32(lossesH), gradH: th.toFloat32() };
      });
      for (const b of ['cpu', 'cuda'] as const) {
        expectSameValues(r[b].lossesH, r[b].lossesF, `${b} losses`);
        expect(r[b].lossesF[2], b).toBe(0);
        expect(r[b].gradF.subarray(2 * V, 3 * V).every((g) => g === 0), `${b}: the lone target's row`).toBe(true);
        expect(r[b].gradF.every(Number.isFinite), `${b}: masked logits get gradient 0`).toBe(true);
      }
      expect(maxErr(r.cuda.lossesF, r.cpu.lossesF)).toBeLessThan(1e-5);
      expect(maxErr(r.cuda.gradF, r.cpu.gradF)).toBeLessThan(1e-5);
      expect(maxErr(r.cuda.gradH, r.cpu.gradH)).toBeLessThan(1e-2); // bf16 of values within 1e-5
    });
  }

  // The LM trainer's bf16 logits: the gradient replaces them in place, rounded, as the f32 one would be.
  for (const V of [8192, 50257]) {
    it(`crossEntropyForwardBackward over bf16 logits [37, ${V}]: the f32 values' losses and rounded gradient, in place, matching the CPU`, async () => {
      const rng = new Rng(62);
      const rows = 37;
      const logits = roundArrayBf16(normalArray(rng, rows * V, 3));
      const targets = Int32Array.from({ length: rows }, (_, r) => (r % 5 === 2 ? -1 : rng.int(V)));
      const r = await onBoth(async (backend) => {
        using tf = Tensor.from(logits, [rows, V], { backend });
        using tt = Tensor.from(targets, [rows], { backend, dtype: 'i32' });
        using lossesF = Tensor.full([rows], Number.NaN, { backend });
        await crossEntropyForwardBackward(tf, tt, lossesF, 1 / rows, { indicesChecked: true });
        using th = Tensor.from(logits, [rows, V], { backend, dtype: 'bf16' });
        using lossesH = Tensor.full([rows], Number.NaN, { backend });
        await crossEntropyForwardBackward(th, tt, lossesH, 1 / rows, { indicesChecked: true });
        return { lossesF: f32(lossesF), lossesH: f32(lossesH), rounded: roundArrayBf16(f32(tf)), grad: th.toFloat32() };
      });
      for (const b of ['cpu', 'cuda'] as const) {
        expectSameValues(r[b].lossesH, r[b].lossesF, `${b} losses`); // bf16 logits are read as the same f32 values
        expectSameValues(r[b].grad, r[b].rounded, `${b} grad`);
      }
      expect(maxErr(r.cuda.lossesH, r.cpu.lossesH)).toBeLessThan(1e-5);
      expect(maxErr(r.cuda.grad, r.cpu.grad)).toBeLessThan(1e-2); // bf16 of values within 1e-5
    });
  }

  it('embedBackward matches the CPU (also with dtok = dpos); bad ids write nothing', async () => {
    const rng = new Rng(7);
    const [batch, T, C, V, nPositions] = [4, 64, 768, 5003, 128];
    const rows = batch * T;
    const ids = Int32Array.from({ length: rows }, () => rng.int(50)); // many repeats: contended atomics
    const dtok = normalArray(rng, rows * C);
    const dpos = normalArray(rng, rows * C);
    const wte0 = normalArray(rng, V * C, 0.01);
    const wpe0 = normalArray(rng, nPositions * C, 0.01);
    const r = await onBoth(async (backend) => {
      using tids = Tensor.from(ids, [batch, T], { backend, dtype: 'i32' });
      using ttok = Tensor.from(dtok, [rows, C], { backend });
      using tpos = Tensor.from(dpos, [rows, C], { backend });
      using dwte = Tensor.from(wte0, [V, C], { backend });
      using dwpe = Tensor.from(wpe0, [nPositions, C], { backend });
      await embedBackward(tids, batch, T, ttok, tpos, dwte, dwpe);
      await embedBackward(tids, batch, T, ttok, ttok, dwte, dwpe);
      const bad = Int32Array.from(ids);
      bad[77] = -1;
      using tbad = Tensor.from(bad, [rows], { backend, dtype: 'i32' });
      const before = f32(dwte);
      const error = await rejection(embedBackward(tbad, batch, T, ttok, tpos, dwte, dwpe));
      const unchanged = f32(dwte).every((x, i) => x === before[i]);
      // The same two calls with the ids vouched for (no device check), into fresh gradients.
      using dwte2 = Tensor.from(wte0, [V, C], { backend });
      using dwpe2 = Tensor.from(wpe0, [nPositions, C], { backend });
      await embedBackward(tids, batch, T, ttok, tpos, dwte2, dwpe2, { indicesChecked: true });
      await embedBackward(tids, batch, T, ttok, ttok, dwte2, dwpe2, { indicesChecked: true });
      return { dwte: f32(dwte), dwpe: f32(dwpe), error, unchanged, dwte2: f32(dwte2), dwpe2: f32(dwpe2) };
    });
    expect(maxErr(r.cuda.dwte2, r.cpu.dwte)).toBeLessThan(1e-6);
    expect(maxErr(r.cuda.dwpe2, r.cpu.dwpe)).toBeLessThan(1e-6);
    expect(maxErr(r.cuda.dwte, r.cpu.dwte)).toBeLessThan(1e-6);
    expect(maxErr(r.cuda.dwpe, r.cpu.dwpe)).toBeLessThan(1e-6);
    expect((r.cuda.error as MonosemanticError).message).toBe((r.cpu.error as MonosemanticError).message);
    expect(r.cuda.unchanged).toBe(true);
  });

  it('adamW matches the CPU exactly over steps with weight decay and gradient scaling', async () => {
    const rng = new Rng(8);
    const n = 300_007;
    const p0 = normalArray(rng, n);
    const grads = [1, 2, 3].map(() => normalArray(rng, n, 0.5));
    const r = await onBoth(async (backend) => {
      using p = Tensor.from(p0, [n], { backend });
      using m = Tensor.zeros([n], { backend });
      using v = Tensor.zeros([n], { backend });
      for (const [i, g] of grads.entries()) {
        using tg = Tensor.from(g, [n], { backend });
        await adamW(p, tg, m, v, { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: i + 1, gradScale: i === 1 ? 0.3 : 1 });
      }
      return { p: f32(p), m: f32(m), v: f32(v) };
    });
    expectSameRecords(r.cuda, r.cpu, 'cuda against cpu');
  });

  it('reduceSumInto and adamW clipping from the norm held on the backend match the CPU', async () => {
    const rng = new Rng(9);
    const n = 300_007;
    const p0 = normalArray(rng, n);
    const grads = [normalArray(rng, n, 0.5), normalArray(rng, 1001, 2)];
    const r = await onBoth(async (backend) => {
      using p = Tensor.from(p0, [n], { backend });
      using m = Tensor.zeros([n], { backend });
      using v = Tensor.zeros([n], { backend });
      using g0 = Tensor.from(grads[0]!, [n], { backend });
      using g1 = Tensor.from(grads[1]!, [1001], { backend });
      using ss = Tensor.zeros([2], { backend });
      await reduceSumInto(g0, ss, { square: true });
      await reduceSumInto(g1, ss, { square: true, accumulate: true });
      await reduceSumInto(g0, ss, { scale: 0.5, index: 1 });
      const norm = Math.sqrt(f32(ss)[0]!);
      using total = ss.view(0, [1]); // the squared norm: the first of the two sums
      await adamW(p, g0, m, v, { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, clip: { sumSquares: total, maxNorm: norm / 3 } });
      return { ss: f32(ss), p: f32(p) };
    });
    // The sums run in another order on each backend: equal to f32 rounding.
    for (const i of [0, 1]) expect(Math.abs(r.cuda.ss[i]! - r.cpu.ss[i]!) / Math.abs(r.cpu.ss[i]!)).toBeLessThan(1e-6);
    expect(relError(r.cuda.p, r.cpu.p)).toBeLessThan(1e-6);
  });
});

/** The CPU layer norm's saved mean and rstd of x [rows, C]. */
async function cpuStats(x: Float32Array, w: Float32Array, b: Float32Array, rows: number, C: number): Promise<{ mean: Float32Array; rstd: Float32Array }> {
  using tx = Tensor.from(x, [rows, C], { backend: 'cpu' });
  using tw = Tensor.from(w, [C], { backend: 'cpu' });
  using tb = Tensor.from(b, [C], { backend: 'cpu' });
  using y = Tensor.empty([rows, C], { backend: 'cpu' });
  using mean = Tensor.empty([rows], { backend: 'cpu' });
  using rstd = Tensor.empty([rows], { backend: 'cpu' });
  await layerNorm(tx, tw, tb, 1e-5, y, { mean, rstd });
  return { mean: f32(mean), rstd: f32(rstd) };
}

const fixtures = path.join(packageRoot(), 'test/fixtures/gpt2');

describe.skipIf(!hasCuda).each(['tiny-relu-untied', 'tiny-gelu-new-tied'])('cuda whole-model gradients of %s', (name) => {
  it('match PyTorch float64 autograd for every parameter (1e-4 relative per tensor)', async () => {
    const dir = path.join(fixtures, name);
    const config = await loadGpt2Config(dir);
    const weights = await loadGpt2Weights(dir, config);
    const { tensors: ref } = await readSafetensors(path.join(dir, 'reference.safetensors'));
    const { tensors: want } = await readSafetensors(path.join(dir, 'grads.safetensors'));
    const ids = new Int32Array(ref.input_ids!.bytes.slice().buffer);
    const [batch] = ref.input_ids!.shape as [number, number];
    const { loss, grads } = await gpt2LossAndGrads(config, weights, ids, batch, 'cuda', 'f32');
    const wantLoss = tensorToFloat32(want.loss!, 'loss')[0]!;
    expect(Math.abs(loss - wantLoss) / wantLoss).toBeLessThan(1e-5);
    let worst = 0;
    for (const key of Object.keys(want).filter((k) => k !== 'loss')) {
      const e = relError(grads[key]!, tensorToFloat32(want[key]!, key));
      worst = Math.max(worst, e);
      expect(e, key).toBeLessThan(1e-4);
    }
    console.log(`${name}: cuda loss relative error ${(Math.abs(loss - wantLoss) / wantLoss).toExponential(2)}, worst gradient ${worst.toExponential(2)}`);
  });
});
