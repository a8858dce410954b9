/**
 * Serving orders drawn on the order worker are permutation(n, new Rng(seed))'s, bit for bit,
 * with the base added; many requests in flight each get their own; a large draw leaves the
 * calling thread free (timers keep firing while it runs).
 */
import { describe, expect, it } from 'vitest';

import { drawOrder, ordersOffThread } from '../../lib/data/orders.js';
import { permutation } from '../../lib/data/stream-common.js';
import { Rng } from '../../lib/random.js';

describe('drawOrder', () => {
  it('draws the same order as permutation, with the base added', async () => {
    for (const [n, seed, base] of [[0, 1, 0], [1, 2, 5], [2, 3, 0], [1_001, -7, 0], [70_001, 123_456_789, 3_000_000]] as const) {
      const expected = permutation(n, new Rng(seed)).map((v) => v + base);
      const order = await drawOrder(n, seed, base);
      expect(order).toBeInstanceOf(Uint32Array);
      expect(order.length).toBe(n);
      expect(Buffer.from(order.buffer, order.byteOffset, order.byteLength).equals(Buffer.from(expected.buffer))).toBe(true);
    }
    // The package is built before the tests (npm test): the worker ran.
    expect(ordersOffThread()).toBe(true);
  });

  it('answers concurrent requests each with its own order', async () => {
    const sizes = [5_000, 17, 40_000, 1, 999];
    const orders = await Promise.all(sizes.map((n, k) => drawOrder(n, 100 + k)));
    orders.forEach((order, k) => expect(Array.from(order)).toEqual(Array.from(permutation(sizes[k]!, new Rng(100 + k)))));
  });

  it('leaves the calling thread free while it draws', async () => {
    await drawOrder(10, 1); // the worker started
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    const order = await drawOrder(4_000_000, 9);
    const ms = performance.now() - t0;
    clearInterval(timer);
    expect(order.length).toBe(4_000_000);
    expect(order[123_456]).toBe(permutation(4_000_000, new Rng(9))[123_456]);
    // A draw of this size takes tens of ms; the 1 ms timer ran through most of it.
    expect(ticks).toBeGreaterThan(ms / 4);
  });

  it('refuses sizes and bases out of range', async () => {
    await expect(drawOrder(-1, 1)).rejects.toThrow(RangeError);
    await expect(drawOrder(1.5, 1)).rejects.toThrow(/n must be an integer/);
    await expect(drawOrder(10, 1, 2 ** 32 - 5)).rejects.toThrow(/base must be/);
  });
});
