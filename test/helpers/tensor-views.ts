/**
 * Views and packed tensors on one backend (test/cpu/tensor.test.ts, test/gpu/cuda.test.ts): shared
 * memory in both directions, alignment and range errors, lifetime, copies between views of one
 * buffer, and native operations reading and writing through views.
 */
import { expect, it } from 'vitest';

import type { BackendName } from '../../lib/backend.js';
import { adamW } from '../../lib/lm/grad-ops.js';
import { reduceSumInto } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor, VIEW_ALIGN_BYTES, packedTensors } from '../../lib/tensor.js';
import { uniformArray } from './data.js';

export function defineTensorViewTests(backend: BackendName): void {
  const rng = new Rng(17);
  const f32Align = VIEW_ALIGN_BYTES / 4;

  it('a view shares its base memory both ways, for every dtype, and a view of a view too', () => {
    const data = uniformArray(rng, 5 * f32Align + 13, -4, 4);
    using base = Tensor.from(data, [data.length], { backend });
    using v = base.view(2 * f32Align, [3, 7]);
    expect(v.shape).toEqual([3, 7]);
    expect(v.native.byteLength).toBe(84);
    expect(v.toArray()).toEqual(data.subarray(2 * f32Align, 2 * f32Align + 21));
    v.fill(-0.5);
    const expected = data.slice();
    expected.fill(-0.5, 2 * f32Align, 2 * f32Align + 21);
    expect(base.toArray()).toEqual(expected);
    const fresh = uniformArray(rng, data.length);
    base.upload(fresh);
    expect(v.toArray()).toEqual(fresh.subarray(2 * f32Align, 2 * f32Align + 21));
    using inner = base.view(f32Align, [3 * f32Align]).view(2 * f32Align, [5]);
    expect(inner.toArray()).toEqual(fresh.subarray(3 * f32Align, 3 * f32Align + 5));
    v.writeRange(Float32Array.from([1, 2]), 19);
    expect(Array.from(base.readRange(2 * f32Align + 18, 4))).toEqual([fresh[2 * f32Align + 18], 1, 2, fresh[2 * f32Align + 21]]);

    const bf = Tensor.from(uniformArray(rng, 300), [300], { dtype: 'bf16', backend });
    using bv = bf.view(128, [100]);
    expect(bv.toArray()).toEqual((bf.toArray() as Uint16Array).subarray(128, 228));
    bf.dispose();
    const ints = Int32Array.from({ length: 150 }, (_, i) => i * 3 - 7);
    using iv = Tensor.from(ints, [150], { dtype: 'i32', backend }).view(64, [86]);
    expect(iv.toArray()).toEqual(ints.subarray(64));
  });

  it('a view keeps the memory alive after its base is disposed; disposing it frees nothing of the base', () => {
    const data = uniformArray(rng, 3 * f32Align, -1, 1);
    const base = Tensor.from(data, [data.length], { backend });
    const v = base.view(f32Align, [f32Align]);
    base.dispose();
    expect(() => base.view(0, [1])).toThrow(/disposed/);
    expect(v.toArray()).toEqual(data.subarray(f32Align, 2 * f32Align));
    v.dispose();
    expect(() => v.toArray()).toThrow(/disposed/);
    using again = Tensor.from(data, [data.length], { backend });
    again.view(0, [4]).dispose();
    expect(again.toArray()).toEqual(data);
  });

  it('refuses views out of range or off the alignment, and copies between overlapping views', () => {
    using base = Tensor.zeros([4 * f32Align], { backend });
    expect(() => base.view(3, [4])).toThrow(new RegExp(`${VIEW_ALIGN_BYTES}-byte aligned`));
    expect(() => base.view(3 * f32Align, [f32Align + 1])).toThrow(/outside the tensor/);
    expect(() => base.view(-f32Align, [1])).toThrow(RangeError);
    expect(() => base.view(0, [2, -1])).toThrow(RangeError);
    expect(() => base.native.upload(new Float32Array(2), 4 * f32Align - 1)).toThrow(/exceed/);
    using a = base.view(0, [2 * f32Align]);
    using b = base.view(f32Align, [2 * f32Align]);
    using c = base.view(2 * f32Align, [2 * f32Align]);
    expect(() => b.copyFrom(a)).toThrow(/overlap/);
    a.fill(3);
    c.copyFrom(a); // disjoint views of one buffer
    expect(Array.from(base.toArray()).every((x) => x === 3)).toBe(true);
    a.copyFrom(a); // itself: nothing to do
    expect(a.toArray()[0]).toBe(3);
  });

  it('native operations read and write through views (a reduction, AdamW over a packed whole)', async () => {
    const shapes = [[3, 5], [f32Align + 1], [7]];
    const make = () => packedTensors(shapes, { backend });
    const [param, grad, m, v] = [make(), make(), make(), make()];
    const separate = shapes.map((s) => ({
      param: Tensor.empty(s, { backend }), grad: Tensor.empty(s, { backend }), m: Tensor.zeros(s, { backend }), v: Tensor.zeros(s, { backend }),
    }));
    try {
      for (const [i, s] of separate.entries()) {
        const size = s.param.size;
        const p = uniformArray(rng, size, -1, 1);
        const g = uniformArray(rng, size, -2, 2);
        s.param.upload(p);
        s.grad.upload(g);
        param.parts[i]!.upload(p);
        grad.parts[i]!.upload(g);
      }
      // The parts sit on aligned offsets with zero gaps between them.
      const whole = param.whole.toArray() as Float32Array;
      expect(param.whole.size).toBe(f32Align + 2 * f32Align + f32Align);
      expect(whole.subarray(0, 15)).toEqual(separate[0]!.param.toArray());
      expect(whole.subarray(15, f32Align).every((x) => x === 0)).toBe(true);
      expect(whole.subarray(f32Align, 2 * f32Align + 1)).toEqual(separate[1]!.param.toArray());
      expect(whole.subarray(3 * f32Align, 3 * f32Align + 7)).toEqual(separate[2]!.param.toArray());

      using sum = Tensor.zeros([2], { backend });
      await reduceSumInto(grad.parts[1]!, sum, { square: true, index: 1 });
      const g1 = separate[1]!.grad.toArray() as Float32Array;
      const ref = g1.reduce((acc, x) => acc + x * x, 0);
      const got = (sum.toArray() as Float32Array)[1]!;
      expect(Math.abs(got - ref) / ref).toBeLessThan(1e-6); // a float sum of f32 squares

      const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
      for (let step = 1; step <= 3; step++) {
        await adamW(param.whole, grad.whole, m.whole, v.whole, { ...hp, step });
        for (const s of separate) await adamW(s.param, s.grad, s.m, s.v, { ...hp, step });
      }
      // Elementwise: the same bits whether each tensor is updated alone or all in one call.
      for (const [i, s] of separate.entries()) {
        expect(param.parts[i]!.toArray()).toEqual(s.param.toArray());
        expect(v.parts[i]!.toArray()).toEqual(s.v.toArray());
      }
      const gaps = param.whole.toArray() as Float32Array;
      expect(gaps.subarray(15, f32Align).every((x) => x === 0)).toBe(true); // zero stays zero
    } finally {
      for (const t of [param, grad, m, v].flatMap((p) => [p.whole, ...p.parts])) t.dispose();
      for (const s of separate) for (const t of Object.values(s)) t.dispose();
    }
  });

  it('packs bf16 parts on their own alignment', () => {
    const { whole, parts } = packedTensors([[3], [200], [0], [1]], { dtype: 'bf16', backend });
    try {
      const align = VIEW_ALIGN_BYTES / 2;
      expect(whole.size).toBe(align + 2 * align + 0 + align);
      expect(parts.map((p) => p.size)).toEqual([3, 200, 0, 1]);
      parts[3]!.upload(Uint16Array.from([0x3f80]));
      expect((whole.toArray() as Uint16Array)[3 * align]).toBe(0x3f80);
    } finally {
      for (const t of [whole, ...parts]) t.dispose();
    }
  });
}
