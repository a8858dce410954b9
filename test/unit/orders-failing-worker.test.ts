/**
 * A worker thread that fails before answering (its module cannot load, say): the requests it held
 * are drawn on the calling thread, the same orders, and it is not started again.
 */
import { EventEmitter } from 'node:events';

import { describe, expect, it, vi } from 'vitest';

const started = vi.hoisted(() => ({ count: 0 }));

vi.mock('node:worker_threads', async (original) => ({
  ...(await original<typeof import('node:worker_threads')>()),
  Worker: class extends EventEmitter {
    constructor() {
      super();
      started.count++;
      setImmediate(() => {
        this.emit('error', new Error('cannot load'));
        this.emit('exit', 1);
      });
    }
    ref(): void {}
    unref(): void {}
    postMessage(): void {}
  },
}));

import { drawOrder, ordersOffThread } from '../../lib/data/orders.js';
import { permutation } from '../../lib/data/stream-common.js';
import { Rng } from '../../lib/random.js';

describe('drawOrder with a worker that fails before answering', () => {
  it('draws the orders on the calling thread and does not start the worker again', async () => {
    const [a, b] = await Promise.all([drawOrder(1_000, 3), drawOrder(17, 4, 100)]);
    expect(Array.from(a)).toEqual(Array.from(permutation(1_000, new Rng(3))));
    expect(Array.from(b)).toEqual(Array.from(permutation(17, new Rng(4)).map((v) => v + 100)));
    expect(Array.from(await drawOrder(50, 5))).toEqual(Array.from(permutation(50, new Rng(5))));
    expect(started.count).toBe(1);
    expect(ordersOffThread()).toBe(false);
  });
});
