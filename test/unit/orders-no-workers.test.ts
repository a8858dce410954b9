/**
 * Where worker threads cannot be started, orders are drawn on the calling thread: the same orders.
 */
import { describe, expect, it, vi } from 'vitest';

vi.mock('node:worker_threads', async (original) => ({
  ...(await original<typeof import('node:worker_threads')>()),
  Worker: class {
    constructor() {
      throw new Error('threads are not allowed here');
    }
  },
}));

import { drawOrder, ordersOffThread } from '../../lib/data/orders.js';
import { permutation } from '../../lib/data/stream-common.js';
import { Rng } from '../../lib/random.js';

describe('drawOrder without worker threads', () => {
  it('draws the same order on the calling thread', async () => {
    for (const [n, base] of [[0, 0], [3, 0], [70_001, 11]] as const) {
      expect(Array.from(await drawOrder(n, 42, base))).toEqual(Array.from(permutation(n, new Rng(42)).map((v) => v + base)));
    }
    expect(ordersOffThread()).toBe(false);
  });
});
