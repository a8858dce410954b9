/**
 * A linear layer's backward through the ReLU before it (lib/lm/grad-ops.ts reluLinearBackward) on
 * the CPU backend:
 *   - against float64 on awkward sizes (rows 37, in 45, out 23; -0 and tiny positive inputs): dpre
 *     within its bf16 rounding (2⁻⁸ relative) plus 1e-5, exactly 0 where x is not positive; dW,
 *     dbias and dpreBias added to what the buffers held, within 1e-5 of max(1, |ref|);
 *   - against the ops it stands for (linearBackward into an f32 dx, activationBackward, rounding):
 *     dpre's bits, dW, dbias and the bias gradient the f32 dx's column sums give, equal;
 *   - a bf16 dout gives dpre's bits of its f32 values; W stored [out, in] (the native op's transW);
 *   - argument errors name the operand.
 */
import { describe, expect, it } from 'vitest';

import { nativeAddon } from '../../lib/backend.js';
import { activationBackward, linearBackward, reluLinearBackward } from '../../lib/lm/grad-ops.js';
import { Tensor } from '../../lib/tensor.js';
import { relFloor1, worst } from '../helpers/data.js';
import { type ReluLinearOperands, reluLinearOperands, reluLinearReference } from '../helpers/relu-linear.js';

const backend = 'cpu' as const;
const [ROWS, N_IN, N_OUT] = [37, 45, 23];

/** What the buffers hold before the op adds to them. */
const START = { dW: 0.25, dbias: -0.5, dpreBias: 0.75 };

async function run(o: ReluLinearOperands, doutDtype: 'f32' | 'bf16' = 'f32') {
  using dout = Tensor.from(o.dout, [o.rows, o.nOut], { backend, dtype: doutDtype });
  using x = Tensor.from(o.x, [o.rows, o.nIn], { backend, dtype: 'bf16' });
  using W = Tensor.from(o.W, [o.nIn, o.nOut], { backend });
  using dpre = Tensor.full([o.rows, o.nIn], Number.NaN, { backend, dtype: 'bf16' });
  using dW = Tensor.full([o.nIn, o.nOut], START.dW, { backend });
  using dbias = Tensor.full([o.nOut], START.dbias, { backend });
  using dpreBias = Tensor.full([o.nIn], START.dpreBias, { backend });
  await reluLinearBackward(dout, x, W, dpre, dW, doutDtype === 'f32' ? dbias : null, dpreBias);
  return { dpre: dpre.toFloat32(), dpreBits: dpre.toArray() as Uint16Array, dW: dW.toFloat32(), dbias: dbias.toFloat32(), dpreBias: dpreBias.toFloat32() };
}

const minus = (a: Float32Array, start: number) => a.map((v) => v - start);

describe('reluLinearBackward', () => {
  it('matches float64 on awkward sizes', async () => {
    const o = reluLinearOperands(1, ROWS, N_IN, N_OUT);
    const ref = reluLinearReference(o);
    const got = await run(o);
    expect(worst(got.dpre, ref.dpre, (i) => 2 ** -8 * Math.abs(ref.dpre[i]!) + 1e-5), 'dpre').toBeLessThanOrEqual(1);
    let masked = 0;
    for (let i = 0; i < o.x.length; i++) {
      if (o.x[i]! > 0) continue;
      masked++;
      expect(got.dpre[i], `dpre[${i}] where x is ${o.x[i]}`).toBe(0);
    }
    expect(masked).toBeGreaterThan(o.x.length / 3); // the mask is exercised
    expect(worst(minus(got.dW, START.dW), ref.dW, relFloor1(ref.dW)), 'dW').toBeLessThan(1e-5);
    expect(worst(minus(got.dbias, START.dbias), ref.dbias, relFloor1(ref.dbias)), 'dbias').toBeLessThan(1e-5);
    expect(worst(minus(got.dpreBias, START.dpreBias), ref.dpreBias, relFloor1(ref.dpreBias)), 'dpreBias').toBeLessThan(1e-5);
  });

  it('gives the values of linearBackward, activationBackward and the rounding', async () => {
    const o = reluLinearOperands(2, ROWS, N_IN, N_OUT);
    const got = await run(o);
    using dout = Tensor.from(o.dout, [ROWS, N_OUT], { backend });
    using x = Tensor.from(o.x, [ROWS, N_IN], { backend, dtype: 'bf16' });
    using W = Tensor.from(o.W, [N_IN, N_OUT], { backend });
    using dx = Tensor.empty([ROWS, N_IN], { backend });
    using dW = Tensor.full([N_IN, N_OUT], START.dW, { backend });
    using dbias = Tensor.full([N_OUT], START.dbias, { backend });
    await linearBackward(dout, x, W, dx, dW, dbias, 'bf16');
    await activationBackward('relu', dx, x, dx);
    // The pre-activations' bias gradient: linearBackward's dbias of the masked f32 gradient.
    using xs = Tensor.zeros([ROWS, 1], { backend });
    using dxs = Tensor.zeros([1, N_IN], { backend });
    using unused = Tensor.zeros([1, N_IN], { backend });
    using dpreBias = Tensor.full([N_IN], START.dpreBias, { backend });
    await linearBackward(dx, xs, dxs, null, unused, dpreBias, 'f32');
    using rounded = Tensor.from(dx.toFloat32(), [ROWS, N_IN], { backend, dtype: 'bf16' });
    expect(got.dpreBits).toEqual(rounded.toArray());
    expect(got.dW).toEqual(dW.toFloat32());
    expect(got.dbias).toEqual(dbias.toFloat32());
    expect(got.dpreBias).toEqual(dpreBias.toFloat32());
  });

  it('takes a bf16 dout as its values', async () => {
    const o = reluLinearOperands(3, ROWS, N_IN, N_OUT);
    const f32 = await run(o);
    const bf16 = await run(o, 'bf16');
    expect(bf16.dpreBits).toEqual(f32.dpreBits);
    expect(bf16.dW).toEqual(f32.dW);
    expect(bf16.dpreBias).toEqual(f32.dpreBias);
  });

  it('takes W stored [out, in] in the native op', async () => {
    const o = reluLinearOperands(4, ROWS, N_IN, N_OUT);
    const ref = reluLinearReference(o, true);
    using dout = Tensor.from(o.dout, [ROWS, N_OUT], { backend });
    using x = Tensor.from(o.x, [ROWS, N_IN], { backend, dtype: 'bf16' });
    using W = Tensor.from(o.W, [N_OUT, N_IN], { backend });
    using dpre = Tensor.empty([ROWS, N_IN], { backend, dtype: 'bf16' });
    using dW = Tensor.zeros([N_OUT, N_IN], { backend });
    using dpreBias = Tensor.zeros([N_IN], { backend });
    await nativeAddon().reluLinearBackward({
      rows: ROWS, nIn: N_IN, nOut: N_OUT, transW: true, dout: dout.native, x: x.native, weight: W.native,
      dpre: dpre.native, dweight: dW.native, dpreBias: dpreBias.native,
    });
    expect(worst(dpre.toFloat32(), ref.dpre, (i) => 2 ** -8 * Math.abs(ref.dpre[i]!) + 1e-5), 'dpre').toBeLessThanOrEqual(1);
    expect(worst(dW.toFloat32(), ref.dW, relFloor1(ref.dW)), 'dW').toBeLessThan(1e-5);
    expect(worst(dpreBias.toFloat32(), ref.dpreBias, relFloor1(ref.dpreBias)), 'dpreBias').toBeLessThan(1e-5);
  });

  it('names the operand it refuses', () => {
    using dout = Tensor.zeros([4, 3], { backend });
    using doutBf = Tensor.zeros([4, 3], { backend, dtype: 'bf16' });
    using x = Tensor.zeros([4, 5], { backend, dtype: 'bf16' });
    using xF32 = Tensor.zeros([4, 5], { backend });
    using W = Tensor.zeros([5, 3], { backend });
    using Wbad = Tensor.zeros([3, 5], { backend });
    using dpre = Tensor.zeros([4, 5], { backend, dtype: 'bf16' });
    using dpreF32 = Tensor.zeros([4, 5], { backend });
    using dW = Tensor.zeros([5, 3], { backend });
    using db = Tensor.zeros([3], { backend });
    using dpb = Tensor.zeros([4], { backend });
    expect(() => reluLinearBackward(dout, xF32, W, dpre, dW, db, null)).toThrow('x must have dtype bf16 (got f32)');
    expect(() => reluLinearBackward(dout, x, W, dpreF32, dW, db, null)).toThrow('dpre must have dtype bf16 (got f32)');
    expect(() => reluLinearBackward(doutBf, x, W, dpre, dW, db, null)).toThrow('dbias needs an f32 dout');
    expect(() => reluLinearBackward(dout, x, Wbad, dpre, dW, db, null)).toThrow(/weight must have shape \[5, out\]/);
    expect(() => reluLinearBackward(dout, x, W, dpre, dW, db, dpb)).toThrow(/dpreBias must have shape \[5\]/);
    expect(() => reluLinearBackward(dout, x, W, x, dW, db, null)).toThrow(/dpre/);
  });
});
