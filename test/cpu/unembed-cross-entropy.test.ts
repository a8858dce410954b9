/**
 * The unembedding product fused with the softmax cross-entropy (lib/lm/grad-ops.ts
 * unembedCrossEntropy and its backward) on the CPU backend:
 *   - against a float64 reference of logits = x Wᵀ on the operands the product reads (bf16: x and
 *     W rounded to bf16), on awkward sizes (rows 37, V 301, C 24 and 64; ignored rows), at both
 *     precisions, with x f32 and bf16: lse and losses within 1e-6 of max(1, |ref|), the bf16
 *     gradient within its rounding (2⁻⁸ relative: half a bf16 ulp) plus 1e-6 · scale;
 *   - against cross-entropy applied to linearT's fp32 logits (crossEntropy,
 *     crossEntropyForwardBackward with a bf16 gradient): losses within 1e-6, the gradients' bf16 bits
 *     equal but for a last-bit rounding flip in a few entries; also over several blocks of rows
 *     (150 rows: 64, 64 and 22; at V 140,001 blocks of 29 rows) and bit for bit whatever the
 *     thread count;
 *   - an out-of-range target (a typed error naming the row, nothing written) and argument errors.
 */
import { describe, expect, it } from 'vitest';

import { MonosemanticError } from '../../lib/errors.js';
import { nativeAddon } from '../../lib/backend.js';
import { crossEntropyForwardBackward, unembedCrossEntropy, unembedCrossEntropyBackward } from '../../lib/lm/grad-ops.js';
import { type MatmulPrecision, crossEntropy, linearT } from '../../lib/lm/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, relFloor1, roundArrayBf16, worst } from '../helpers/data.js';

const backend = 'cpu' as const;
const [ROWS, V] = [37, 301];
const SCALE = 1 / 29;

/** x [rows, C], W [V, C] and targets [rows] (every 7th row from 3 ignored; rows 0 and 1 at the vocabulary's ends). */
function operands(seed: number, C: number, rows = ROWS, vocab = V): { x: Float32Array; W: Float32Array; targets: Int32Array } {
  const rng = new Rng(seed);
  const x = normalArray(rng, rows * C);
  const W = normalArray(rng, vocab * C, 2 / Math.sqrt(C)); // logits of standard deviation about 2
  const targets = Int32Array.from({ length: rows }, (_, r) => (r % 7 === 3 ? -1 : rng.int(vocab)));
  targets[0] = 0;
  targets[1] = vocab - 1;
  return { x, W, targets };
}

/** lse, losses and the gradient (softmax − onehot) · scale of logits = x Wᵀ in float64, for x [ROWS, C], W [V, C]. */
function reference(x: Float32Array, W: Float32Array, targets: Int32Array, C: number, scale: number) {
  const lse = new Float64Array(ROWS);
  const losses = new Float64Array(ROWS);
  const dlogits = new Float64Array(ROWS * V);
  const row = new Float64Array(V);
  for (let r = 0; r < ROWS; r++) {
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += x[r * C + c]! * W[v * C + c]!; // x[r, c] · W[v, c]
      row[v] = s;
    }
    const m = Math.max(...row);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(row[v]! - m);
    lse[r] = m + Math.log(sum);
    const t = targets[r]!;
    if (t < 0) continue; // loss and gradient 0
    losses[r] = lse[r]! - row[t]!;
    for (let v = 0; v < V; v++) dlogits[r * V + v] = (Math.exp(row[v]! - lse[r]!) - (v === t ? 1 : 0)) * scale; // dlogits[r, v]
  }
  return { lse, losses, dlogits };
}

/** The largest |got − ref| over the bound of a bf16-rounded gradient: 2⁻⁸ |ref| for the rounding plus 1e-6 · SCALE. */
function bf16GradientError(got: Float32Array, ref: Float64Array): number {
  return worst(got, ref, (i) => 2 ** -8 * Math.abs(ref[i]!) + 1e-6 * SCALE);
}

function i32(values: Int32Array): Tensor {
  return Tensor.from(values, [values.length], { backend, dtype: 'i32' });
}

/** The fused ops' losses and bf16 gradient bits for x [rows, C], W [vocab, C]. */
async function fused(x: Float32Array, W: Float32Array, targets: Int32Array, C: number, precision: MatmulPrecision) {
  const [rows, vocab] = [targets.length, W.length / C];
  using tx = Tensor.from(x, [rows, C], { backend });
  using tW = Tensor.from(W, [vocab, C], { backend });
  using tt = i32(targets);
  using lse = Tensor.empty([rows], { backend });
  using losses = Tensor.empty([rows], { backend });
  await unembedCrossEntropy(tx, tW, tt, lse, losses, precision);
  using dlogits = Tensor.empty([rows, vocab], { backend, dtype: 'bf16' });
  await unembedCrossEntropyBackward(tx, tW, tt, lse, SCALE, dlogits, precision);
  return { losses: losses.toFloat32(), dlogits: dlogits.toArray() as Uint16Array };
}

/** The same from linearT's fp32 logits (bf16 operands at bf16): crossEntropy's losses, and the gradient rounded to bf16. */
async function unfused(x: Float32Array, W: Float32Array, targets: Int32Array, C: number, precision: MatmulPrecision) {
  const [rows, vocab] = [targets.length, W.length / C];
  using tx = Tensor.from(x, [rows, C], { backend });
  using tW = Tensor.from(W, [vocab, C], { backend });
  using tt = i32(targets);
  using logits = Tensor.empty([rows, vocab], { backend });
  await linearT(tx, tW, null, logits, precision);
  using losses = Tensor.empty([rows], { backend });
  await crossEntropy(logits, tt, losses);
  using gradient = Tensor.empty([rows, vocab], { backend, dtype: 'bf16' });
  using scratch = Tensor.empty([rows], { backend });
  await crossEntropyForwardBackward(logits, tt, scratch, SCALE, { gradient });
  return { losses: losses.toFloat32(), dlogits: gradient.toArray() as Uint16Array };
}

/** Fused against unfused: losses within 1e-6, and at most 1% of the gradient's entries a bf16 neighbour apart. */
function expectUnfused(a: Awaited<ReturnType<typeof fused>>, b: Awaited<ReturnType<typeof unfused>>): void {
  expect(worst(a.losses, b.losses, relFloor1(b.losses)), 'losses').toBeLessThan(1e-6);
  // The softmax is exp(l − lse) · scale here, exp(l − max) · (scale / Σ) there: the fp32 values
  // differ in their last bits, which a few entries' bf16 rounding shows.
  let differing = 0;
  for (let i = 0; i < a.dlogits.length; i++) {
    if (a.dlogits[i] === b.dlogits[i]) continue;
    differing++;
    expect(Math.abs(a.dlogits[i]! - b.dlogits[i]!), `dlogits bits at ${i}`).toBe(1); // the neighbouring bf16 value
  }
  expect(differing).toBeLessThan(a.dlogits.length / 100);
}

describe.each([24, 64])('C %i', (C) => {
  for (const precision of ['f32', 'bf16'] as const) {
    for (const xDtype of ['f32', 'bf16'] as const) {
      it(`matches float64 at ${precision} precision with an ${xDtype} x`, async () => {
        const { x, W, targets } = operands(C + (precision === 'bf16' ? 1 : 0) + (xDtype === 'bf16' ? 2 : 0), C);
        // The operands the product reads: a bf16 x as it is, and at bf16 precision both rounded.
        const xOp = xDtype === 'bf16' || precision === 'bf16' ? roundArrayBf16(x) : x;
        const WOp = precision === 'bf16' ? roundArrayBf16(W) : W;
        const ref = reference(xOp, WOp, targets, C, SCALE);
        using tx = Tensor.from(x, [ROWS, C], { backend, dtype: xDtype });
        using tW = Tensor.from(W, [V, C], { backend });
        using tt = i32(targets);
        using lse = Tensor.full([ROWS], Number.NaN, { backend });
        using losses = Tensor.full([ROWS], Number.NaN, { backend });
        await unembedCrossEntropy(tx, tW, tt, lse, losses, precision);
        expect(worst(lse.toFloat32(), ref.lse, relFloor1(ref.lse)), 'lse').toBeLessThan(1e-6);
        expect(worst(losses.toFloat32(), ref.losses, relFloor1(ref.losses)), 'losses').toBeLessThan(1e-6);
        for (let r = 3; r < ROWS; r += 7) expect(losses.toFloat32()[r], `losses[${r}] (ignored)`).toBe(0);

        using dlogits = Tensor.full([ROWS, V], Number.NaN, { backend, dtype: 'bf16' });
        await unembedCrossEntropyBackward(tx, tW, tt, lse, SCALE, dlogits, precision);
        const g = dlogits.toFloat32();
        expect(bf16GradientError(g, ref.dlogits), 'dlogits').toBeLessThan(1);
        for (let r = 3; r < ROWS; r += 7) expect(g.subarray(r * V, (r + 1) * V).every((v) => v === 0), `dlogits[${r}] (ignored)`).toBe(true);
      });
    }
  }

  for (const precision of ['f32', 'bf16'] as const) {
    it(`equals cross-entropy over linearT's fp32 logits at ${precision} precision`, async () => {
      const { x, W, targets } = operands(100 + C, C);
      expectUnfused(await fused(x, W, targets, C, precision), await unfused(x, W, targets, C, precision));
    });
  }
});

describe('blocks of rows', () => {
  const C = 8;

  it('150 rows (blocks of 64, 64 and 22) and, at V 140,001, 70 rows (blocks of 29, 29 and 12) equal the unfused path', async () => {
    for (const [rows, vocab] of [[150, V], [70, 140_001]] as const) {
      const { x, W, targets } = operands(rows, C, rows, vocab);
      expectUnfused(await fused(x, W, targets, C, 'bf16'), await unfused(x, W, targets, C, 'bf16'));
    }
  });

  it('give the same bits on 1 thread and on 3', async () => {
    const { x, W, targets } = operands(9, C, 150);
    const addon = nativeAddon();
    const threads = addon.cpuInfo().threads;
    try {
      addon.setThreads(1);
      const one = await fused(x, W, targets, C, 'f32');
      addon.setThreads(3);
      const three = await fused(x, W, targets, C, 'f32');
      expect(Array.from(three.losses)).toEqual(Array.from(one.losses));
      expect(Array.from(three.dlogits)).toEqual(Array.from(one.dlogits));
    } finally {
      addon.setThreads(threads);
    }
  });
});

describe('errors', () => {
  const C = 24;
  const { x, W, targets } = operands(7, C);

  it('an out-of-range target rejects naming the row, nothing written', async () => {
    const bad = targets.slice();
    bad[12] = V;
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tW = Tensor.from(W, [V, C], { backend });
    using tt = i32(bad);
    using lse = Tensor.full([ROWS], Number.NaN, { backend });
    using losses = Tensor.full([ROWS], Number.NaN, { backend });
    using dlogits = Tensor.full([ROWS, V], Number.NaN, { backend, dtype: 'bf16' });
    for (const run of [
      () => unembedCrossEntropy(tx, tW, tt, lse, losses, 'f32'),
      () => unembedCrossEntropyBackward(tx, tW, tt, lse, SCALE, dlogits, 'bf16'),
    ]) {
      const failure = await run().then(
        () => null,
        (e: unknown) => e,
      );
      expect(failure).toBeInstanceOf(MonosemanticError);
      expect((failure as MonosemanticError).code).toBe('E_INVALID');
      expect((failure as MonosemanticError).message).toContain(`targets[12] = ${V} is outside the vocabulary [0, ${V})`);
    }
    expect(lse.toFloat32().every(Number.isNaN)).toBe(true);
    expect(losses.toFloat32().every(Number.isNaN)).toBe(true);
    expect(dlogits.toFloat32().every(Number.isNaN)).toBe(true);
  });

  it('refuses shapes, dtypes, precisions, scales and outputs that alias an input, naming them', () => {
    using tx = Tensor.from(x, [ROWS, C], { backend });
    using tW = Tensor.from(W, [V, C], { backend });
    using tt = i32(targets);
    using lse = Tensor.empty([ROWS], { backend });
    using losses = Tensor.empty([ROWS], { backend });
    using dlogits = Tensor.empty([ROWS, V], { backend, dtype: 'bf16' });
    const forward = (o: Partial<Record<'x' | 'W' | 'targets' | 'lse' | 'losses', Tensor>>, precision: MatmulPrecision = 'f32') =>
      unembedCrossEntropy(o.x ?? tx, o.W ?? tW, o.targets ?? tt, o.lse ?? lse, o.losses ?? losses, precision);
    const backward = (o: Partial<Record<'x' | 'lse' | 'dlogits', Tensor>>, scale = SCALE) =>
      unembedCrossEntropyBackward(o.x ?? tx, tW, tt, o.lse ?? lse, scale, o.dlogits ?? dlogits, 'f32');

    using wrongWidth = Tensor.empty([V, C + 1], { backend });
    expect(() => forward({ W: wrongWidth })).toThrow(`W must have shape [V, ${C}] to match x [${ROWS}, ${C}] (got [${V}, ${C + 1}])`);
    using flatW = Tensor.empty([V * C], { backend });
    expect(() => forward({ W: flatW })).toThrow(RangeError);
    using shortTargets = i32(targets.subarray(1));
    expect(() => forward({ targets: shortTargets })).toThrow(`targets must hold ${ROWS} elements (one per row of x [${ROWS}, ${C}]) (got [${ROWS - 1}])`);
    using shortLse = Tensor.empty([ROWS + 1], { backend });
    expect(() => forward({ lse: shortLse })).toThrow(/^lse must hold 37 elements/);
    expect(() => forward({ losses: shortLse })).toThrow(/^losses must hold 37 elements/);
    using wideDlogits = Tensor.empty([ROWS, V + 1], { backend, dtype: 'bf16' });
    expect(() => backward({ dlogits: wideDlogits })).toThrow(`dlogits must have shape [${ROWS}, ${V}] (or [..., ${V}] holding ${ROWS} rows) for x [${ROWS}, ${C}] and W [${V}, ${C}] (got [${ROWS}, ${V + 1}])`);

    using bf16W = Tensor.empty([V, C], { backend, dtype: 'bf16' });
    expect(() => forward({ W: bf16W })).toThrow('W must have dtype f32 (got bf16)');
    using f32Targets = Tensor.empty([ROWS], { backend });
    expect(() => forward({ targets: f32Targets })).toThrow('targets must have dtype i32 (got f32)');
    using i32x = Tensor.empty([ROWS, C], { backend, dtype: 'i32' });
    expect(() => forward({ x: i32x })).toThrow('x must have dtype f32 (got i32)');
    using f32Dlogits = Tensor.empty([ROWS, V], { backend });
    expect(() => backward({ dlogits: f32Dlogits })).toThrow('dlogits must have dtype bf16 (got f32)');
    expect(() => forward({}, 'fp16' as MatmulPrecision)).toThrow(TypeError);
    expect(() => backward({}, Number.NaN)).toThrow('scale must be finite (got NaN)');

    expect(() => forward({ losses: lse })).toThrow('lse must not be the same tensor as losses');
    using xAndLse = Tensor.empty([ROWS * C + ROWS], { backend });
    using xView = xAndLse.view(0, [ROWS, C]);
    using lseInX = xAndLse.view(13 * 64, [ROWS]); // elements 832 .. 868 of x's 888 (views start at multiples of 64)
    expect(() => forward({ x: xView, lse: lseInX })).toThrow('lse must not overlap x (views of one allocation)');
    using gradient = Tensor.empty([ROWS * V + ROWS * C], { backend, dtype: 'bf16' });
    using gradientView = gradient.view(0, [ROWS, V]);
    using xInGradient = gradient.view(0, [ROWS, C]);
    expect(() => backward({ x: xInGradient, dlogits: gradientView })).toThrow('dlogits must not overlap x (views of one allocation)');
  });
});
