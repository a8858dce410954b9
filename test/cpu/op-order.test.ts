/**
 * Operations queued on the CPU backend without awaiting each run in the order they were called
 * (they run on libuv's worker threads, several at once): x += 1 then out[i] = x, 2,000 times over.
 */
import { expect, it } from 'vitest';

import { add } from '../../lib/lm/ops.js';
import { reduceSumInto } from '../../lib/ops.js';
import { Tensor } from '../../lib/tensor.js';

it('runs queued operations in call order', async () => {
  const N = 2000;
  for (let trial = 0; trial < 5; trial++) {
    using x = Tensor.zeros([1], { backend: 'cpu' });
    using one = Tensor.full([1], 1, { backend: 'cpu' });
    using out = Tensor.zeros([N], { backend: 'cpu' });
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < N; i++) {
      pending.push(add(x, one, x)); // x += 1
      pending.push(reduceSumInto(x, out, { index: i })); // out[i] = x: i + 1 in call order
    }
    await Promise.all(pending);
    expect(Array.from(out.toArray() as Float32Array)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
  }
});
