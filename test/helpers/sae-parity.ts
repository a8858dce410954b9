/**
 * One parity harness for every backend: the SAE ops on `backend` against the float64 reference
 * (test/reference/sae-reference.ts), on random shapes that are not multiples of any tile or
 * vector width, with outputs poisoned (NaN) beforehand so an unwritten element cannot pass.
 *
 * Tolerances (relative Frobenius error against float64):
 *   f32:  1e-5 for losses, activations and gradients — fp32 accumulation over at most a few
 *         hundred terms;
 *   bf16: 2e-2 — operands of every product are rounded to bf16 (8 bits of mantissa).
 * Inputs are redrawn until every pre-activation is at least MARGIN away from 0, so the ReLU mask
 * is the same in fp32 and float64 and the comparison is exact in structure (l0 and firing counts
 * must match exactly).
 */
import { expect, it } from 'vitest';

import type { BackendName } from '../../lib/backend.js';
import { Rng } from '../../lib/random.js';
import type { Penalty, Precision } from '../../lib/sae/config.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';
import {
  type SaeParams64,
  adamUpdate64,
  decode64,
  decoderRemoveParallelGrad64,
  decoderRenormalize64,
  encode64,
  lossAndGrads64,
} from '../reference/sae-reference.js';
import { normalArray, relDiff, relError, roundArrayBf16, toF64, uniformArray } from './data.js';

export const SHAPES: ReadonlyArray<readonly [batch: number, d: number, n: number]> = [
  [1, 1, 1],
  [3, 5, 7],
  [17, 33, 65],
  [64, 31, 127],
  [130, 72, 301],
];

const MARGIN = 1e-3;
export const TOLERANCE: Record<Precision, number> = { f32: 1e-5, bf16: 2e-2 };

export interface Case {
  B: number;
  d: number;
  n: number;
  penalty: Penalty;
  precision: Precision;
}

export interface Drawn {
  params: { W_enc: Float32Array; b_enc: Float32Array; W_dec: Float32Array; b_dec: Float32Array };
  x: Float32Array;
}

/**
 * Random parameters and a batch whose pre-activations all keep MARGIN from 0 (b_enc uniform in
 * options.bEnc, default [-0.3, 0.3]: about half the features fire). In bf16 mode every
 * product operand is made bf16-representable (and b_dec = 0 so x − b_dec stays so), so that the
 * reference sees the same encoder operands as the kernels.
 */
export function drawCase(c: Case, seed: number, options: { bEnc?: readonly [lo: number, hi: number] } = {}): Drawn {
  const rng = new Rng(seed);
  const { B, d, n } = c;
  const bf16 = c.precision === 'bf16';
  const maybeRound = (a: Float32Array) => (bf16 ? roundArrayBf16(a) : a);
  const W_enc = maybeRound(uniformArray(rng, d * n, -1 / Math.sqrt(d), 1 / Math.sqrt(d)));
  const W_dec = maybeRound(uniformArray(rng, n * d, -1 / Math.sqrt(n), 1 / Math.sqrt(n)));
  const b_enc = uniformArray(rng, n, ...(options.bEnc ?? [-0.3, 0.3]));
  const b_dec = bf16 ? new Float32Array(d) : uniformArray(rng, d, -0.5, 0.5);
  const x = new Float32Array(B * d);
  const p64 = { d, n, W_enc: toF64(W_enc), b_enc: toF64(b_enc), W_dec: toF64(W_dec), b_dec: toF64(b_dec) };
  for (let b = 0; b < B; b++) {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 1000) throw new Error('could not draw a row with every pre-activation away from 0');
      const row = maybeRound(normalArray(rng, d));
      if (minAbsPreActivation(p64, row) >= MARGIN) {
        x.set(row, b * d); // x[b, :]
        break;
      }
    }
  }
  return { params: { W_enc, b_enc, W_dec, b_dec }, x };
}

function minAbsPreActivation(p: SaeParams64, row: Float32Array): number {
  let min = Infinity;
  for (let i = 0; i < p.n; i++) {
    let pre = p.b_enc[i]!;
    for (let j = 0; j < p.d; j++) pre += (row[j]! - p.b_dec[j]!) * p.W_enc[j * p.n + i]!; // W_enc[j, i]
    min = Math.min(min, Math.abs(pre));
  }
  return min;
}

export function params64(drawn: Drawn, d: number, n: number): SaeParams64 {
  const p = drawn.params;
  return { d, n, W_enc: toF64(p.W_enc), b_enc: toF64(p.b_enc), W_dec: toF64(p.W_dec), b_dec: toF64(p.b_dec) };
}

function caseName(c: Case): string {
  return `B=${c.B} d=${c.d} n=${c.n} ${c.penalty} ${c.precision}`;
}

export function allCases(precisions: readonly Precision[]): Case[] {
  const out: Case[] = [];
  for (const [B, d, n] of SHAPES)
    for (const penalty of ['l1', 'l1_decnorm'] as const)
      for (const precision of precisions) out.push({ B, d, n, penalty, precision });
  return out;
}

/** Registers the parity tests for one backend. */
export function defineSaeParityTests(backend: BackendName, precisions: readonly Precision[] = ['f32', 'bf16']): void {
  const l1Coeff = 0.7;

  it.each(allCases(precisions).map((c) => [caseName(c), c] as const))('loss and gradients match the reference: %s', async (_name, c) => {
    const tol = TOLERANCE[c.precision];
    const drawn = drawCase(c, 1000 + c.B * 7 + c.n);
    using sae = SparseAutoencoder.create({ dIn: c.d, dSae: c.n, backend, penalty: c.penalty, precision: c.precision, l1Coeff });
    sae.writeParameters(drawn.params);
    using x = Tensor.from(drawn.x, [c.B, c.d], { backend });
    for (const t of Object.values(sae.gradients)) t.fill(Number.NaN);

    const stats = await sae.computeGradients(x);
    const ref = lossAndGrads64(params64(drawn, c.d, c.n), toF64(drawn.x), c.B, { l1Coeff, penalty: c.penalty });

    expect(relDiff(stats.mse, ref.mse)).toBeLessThan(tol);
    expect(relDiff(stats.sparsity, ref.sparsity)).toBeLessThan(tol);
    expect(relDiff(stats.loss, ref.loss)).toBeLessThan(tol);
    expect(stats.l0).toBe(ref.l0);
    expect(Array.from(sae.fireCounts())).toEqual(Array.from(ref.fireCounts));
    const g = sae.gradients;
    expect(relError(g.W_enc.toFloat32(), ref.dW_enc)).toBeLessThan(tol);
    expect(relError(g.b_enc.toFloat32(), ref.db_enc)).toBeLessThan(tol);
    expect(relError(g.W_dec.toFloat32(), ref.dW_dec)).toBeLessThan(tol);
    expect(relError(g.b_dec.toFloat32(), ref.db_dec)).toBeLessThan(tol);
  });

  it.each(allCases(precisions).filter((c) => c.penalty === 'l1').map((c) => [caseName(c), c] as const))(
    'encode and decode match the reference into poisoned outputs: %s',
    async (_name, c) => {
      const tol = TOLERANCE[c.precision];
      const drawn = drawCase(c, 2000 + c.B + c.d);
      using sae = SparseAutoencoder.create({ dIn: c.d, dSae: c.n, backend, precision: c.precision });
      sae.writeParameters(drawn.params);
      using x = Tensor.from(drawn.x, [c.B, c.d], { backend });
      using f = Tensor.full([c.B, c.n], Number.NaN, { backend });
      using xhat = Tensor.full([c.B, c.d], Number.NaN, { backend });
      await sae.encode(x, f);
      const p = params64(drawn, c.d, c.n);
      const fRef = encode64(p, toF64(drawn.x), c.B);
      const fGot = f.toFloat32();
      expect(relError(fGot, fRef)).toBeLessThan(tol);
      await sae.decode(f, xhat);
      // Decode the kernel's own f so the comparison isolates the decoder.
      expect(relError(xhat.toFloat32(), decode64(p, toF64(fGot), c.B))).toBeLessThan(tol);
    },
  );

  // A step without clipping makes one sae_update call (the backend fuses what it can); with a
  // clipping norm no gradient reaches, it makes the separate calls. Same bits either way.
  it.each([
    [37, 29, 83, true],
    [37, 29, 83, false],
    [5, 4100, 3, true], // rows longer than CUDA's fused row kernel holds
  ] as const)('the one-call update equals the separate ops to the bit (B %i, d %i, n %i, unit-norm decoder %s)', async (B, d, n, constrain) => {
    const penalty = constrain ? 'l1' : 'l1_decnorm';
    const drawn = drawCase({ B, d, n, penalty, precision: 'f32' }, 91);
    const make = () => {
      const sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, penalty, precision: 'f32', l1Coeff, constrainDecoder: constrain, lr: 1e-2 });
      sae.writeParameters(drawn.params);
      return sae;
    };
    using fused = make();
    using separate = make();
    using x = Tensor.from(drawn.x, [B, d], { backend });
    for (let t = 0; t < 3; t++) {
      await fused.step(x);
      await separate.step(x, { clipGradNorm: 1e30 });
    }
    const [a, b] = [fused.readParameters(), separate.readParameters()];
    for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
      expect(a[k], k).toEqual(b[k]);
      expect(fused.gradients[k].toFloat32(), `d${k}`).toEqual(separate.gradients[k].toFloat32());
    }
  });

  // queueStep is the same step without reading its statistics back (no wait for the device).
  it.each(precisions.flatMap((precision) => [false, true].map((clip) => [precision, clip] as const)))(
    'a queued step leaves the same bits as a step that reads its statistics (%s, clipping %s)',
    async (precision, clip) => {
      const [B, d, n] = [37, 29, 83];
      const drawn = drawCase({ B, d, n, penalty: 'l1', precision }, 93);
      const make = () => {
        const sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, penalty: 'l1', precision, l1Coeff, lr: 1e-2 });
        sae.writeParameters(drawn.params);
        return sae;
      };
      using read = make();
      using queued = make();
      using x = Tensor.from(drawn.x, [B, d], { backend });
      const options = clip ? { clipGradNorm: 0.05 } : {};
      for (let t = 0; t < 3; t++) {
        expect(Number.isFinite((await read.step(x, options)).loss)).toBe(true);
        expect(await queued.queueStep(x, options)).toBeUndefined();
      }
      expect(queued.steps).toBe(3);
      const [a, b] = [read.readParameters(), queued.readParameters()];
      for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
        expect(b[k], k).toEqual(a[k]);
        expect(queued.gradients[k].toFloat32(), `d${k}`).toEqual(read.gradients[k].toFloat32());
      }
      expect(Array.from(queued.fireCounts())).toEqual(Array.from(read.fireCounts()));
      expect(await queued.step(x, options)).toEqual(await read.step(x, options));
    },
  );

  it.each([
    ['l1', true],
    ['l1_decnorm', false],
  ] as const)('three Adam steps track the reference (penalty %s, unit-norm decoder %s)', async (penalty, constrain) => {
    const [B, d, n] = [37, 29, 83];
    const c: Case = { B, d, n, penalty, precision: 'f32' };
    const drawn = drawCase(c, 77);
    const hp = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, penalty, precision: 'f32', l1Coeff, constrainDecoder: constrain, ...hp });
    const p = params64(drawn, d, n);
    if (constrain) {
      decoderRenormalize64(p.W_dec, n, d);
      drawn.params.W_dec = Float32Array.from(p.W_dec);
    }
    sae.writeParameters(drawn.params);
    using x = Tensor.from(drawn.x, [B, d], { backend });
    const names = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const;
    const m = Object.fromEntries(names.map((k) => [k, new Float64Array(p[k].length)])) as Record<(typeof names)[number], Float64Array>;
    const v = Object.fromEntries(names.map((k) => [k, new Float64Array(p[k].length)])) as Record<(typeof names)[number], Float64Array>;
    for (let t = 1; t <= 3; t++) {
      const stats = await sae.step(x);
      const ref = lossAndGrads64(p, toF64(drawn.x), B, { l1Coeff, penalty });
      expect(relDiff(stats.loss, ref.loss)).toBeLessThan(1e-4);
      if (constrain) decoderRemoveParallelGrad64(p.W_dec, ref.dW_dec, n, d);
      const grads = { W_enc: ref.dW_enc, b_enc: ref.db_enc, W_dec: ref.dW_dec, b_dec: ref.db_dec };
      for (const k of names) adamUpdate64(p[k], grads[k], m[k], v[k], { ...hp, t });
      if (constrain) decoderRenormalize64(p.W_dec, n, d);
    }
    expect(sae.steps).toBe(3);
    const got = sae.readParameters();
    for (const k of names) expect(relError(got[k], p[k]), k).toBeLessThan(1e-4);
    if (constrain) {
      for (let i = 0; i < n; i++) {
        let ss = 0;
        for (let j = 0; j < d; j++) ss += got.W_dec[i * d + j]! ** 2; // W_dec[i, j]
        expect(Math.abs(Math.sqrt(ss) - 1)).toBeLessThan(1e-5);
      }
    }
  });
}
