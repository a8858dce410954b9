/** Tensor handles on the CPU backend: round trips, casts, disposal, views and argument errors. */
import { describe, expect, it } from 'vitest';

import { nativeAddon, synchronize } from '../../lib/backend.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { roundBf16, uniformArray } from '../helpers/data.js';
import { defineTensorViewTests } from '../helpers/tensor-views.js';

describe('Tensor (cpu)', () => {
  const rng = new Rng(5);

  it('round-trips f32, i32 and bf16 data of awkward sizes', () => {
    for (const size of [1, 7, 33, 1031]) {
      const data = uniformArray(rng, size, -3, 3);
      using f = Tensor.from(data, [size], { backend: 'cpu' });
      expect(f.toArray()).toEqual(data);
      const ints = Int32Array.from(data, (v) => Math.round(v * 1000));
      using i = Tensor.from(ints, [size], { dtype: 'i32', backend: 'cpu' });
      expect(i.toArray()).toEqual(ints);
      using b = Tensor.from(data, [size], { dtype: 'bf16', backend: 'cpu' });
      expect(b.toFloat32()).toEqual(data.map(roundBf16));
    }
  });

  it('keeps shape, dtype, backend and size', () => {
    using t = Tensor.empty([3, 4, 5], { dtype: 'bf16', backend: 'cpu' });
    expect(t.shape).toEqual([3, 4, 5]);
    expect(t.size).toBe(60);
    expect(t.dtype).toBe('bf16');
    expect(t.backend).toBe('cpu');
    expect(t.native.byteLength).toBe(120);
  });

  it('casts between dtypes on the device, rounding to nearest even', () => {
    const data = Float32Array.from([1.00390625, 1.01171875, -2.5e-3, 3.3, 1e30, -7]);
    using f = Tensor.from(data, [2, 3], { backend: 'cpu' });
    using b = f.cast('bf16');
    expect(b.toFloat32()).toEqual(data.map(roundBf16));
    expect(roundBf16(1.00390625)).toBe(1); // a tie rounds to even
    using i = f.cast('i32');
    expect(Array.from(i.toArray())).toEqual([1, 1, 0, 3, 2147483647, -7]); // truncates, saturates
    using back = b.cast('f32');
    expect(back.toArray()).toEqual(b.toFloat32());
  });

  it('fills and copies', () => {
    using t = Tensor.full([5], 2.5, { backend: 'cpu' });
    expect(Array.from(t.toArray())).toEqual([2.5, 2.5, 2.5, 2.5, 2.5]);
    using u = Tensor.from([1, 2, 3, 4, 5], [5], { backend: 'cpu' });
    t.copyFrom(u);
    expect(Array.from(t.toArray())).toEqual([1, 2, 3, 4, 5]);
    // An i32 fill holds every int32 exactly (not rounded through a float), saturating beyond.
    for (const value of [16_777_217, 123_456_789, -2_147_483_647]) {
      using ids = Tensor.full([3], value, { backend: 'cpu', dtype: 'i32' });
      expect(Array.from(ids.toArray())).toEqual([value, value, value]);
    }
  });

  it('frees on dispose and with `using`, and refuses use afterwards', () => {
    const t = Tensor.zeros([4], { backend: 'cpu' });
    t.dispose();
    t.dispose(); // idempotent
    expect(t.disposed).toBe(true);
    expect(() => t.toArray()).toThrow(/disposed/);
    let escaped: Tensor;
    {
      using scoped = Tensor.zeros([4], { backend: 'cpu' });
      escaped = scoped;
    }
    expect(escaped.disposed).toBe(true);
  });

  it('rejects bad shapes, dtypes and data with errors naming them', () => {
    expect(() => Tensor.empty([2, -1], { backend: 'cpu' })).toThrow(RangeError);
    // A shape too large to count, or to allocate, says so.
    expect(() => Tensor.empty([9.1e15], { backend: 'cpu' })).toThrow('shape [9100000000000000] is too large');
    expect(() => Tensor.empty([2 ** 53 - 1], { backend: 'cpu' })).toThrow('the element count is too large (above 9e15)');
    expect(() => Tensor.empty([2.5], { backend: 'cpu' })).toThrow(/shape \[2.5\]/);
    expect(() => Tensor.empty([2], { dtype: 'f16' as never, backend: 'cpu' })).toThrow(/dtype must be one of f32, bf16, i32/);
    expect(() => Tensor.from([1, 2, 3], [2, 2], { backend: 'cpu' })).toThrow(/3 elements .* \[2, 2\] needs 4/);
    using a = Tensor.zeros([2, 2], { backend: 'cpu' });
    using b = Tensor.zeros([4], { backend: 'cpu' });
    expect(() => a.copyFrom(b)).toThrow(/source shape \[4\] differs from \[2, 2\]/);
    expect(() => a.native.upload(new Int32Array(4))).toThrow(/Float32Array for dtype f32/);
    expect(() => a.native.download(new Float32Array(5))).toThrow(/exceed/);
    expect(() => a.native.upload(new Float32Array(2), 3)).toThrow(/2 elements at offset 3 exceed the tensor's 4/);
    expect(() => a.native.upload(new Float32Array(2), -1)).toThrow(/offset must be a non-negative integer/);
    expect(() => a.native.upload(new Float32Array(2), 2 ** 64 - 1)).toThrow(RangeError);
    a.native.upload(Float32Array.from([7, 8]), 2);
    expect(Array.from(a.toArray())).toEqual([0, 0, 7, 8]);
  });

  it('reports allocation failure as a typed out-of-memory error', () => {
    let error: unknown;
    try {
      Tensor.empty([2 ** 52], { backend: 'cpu' });
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ name: 'MonosemanticError', code: 'E_OOM', op: 'alloc' });
  });
});

describe('Tensor views (cpu)', () => {
  defineTensorViewTests('cpu');
});

describe('synchronize', () => {
  it('returns once the backend is idle; an unloaded or unknown backend is an error naming it', () => {
    expect(() => synchronize('cpu')).not.toThrow();
    expect(() => nativeAddon().synchronize('tpu')).toThrow(/backend 'tpu' is not loaded/);
    expect(nativeAddon().backendInfo('cpu').asyncOps).toBe(false); // CPU operations always complete before they settle
  });
});
