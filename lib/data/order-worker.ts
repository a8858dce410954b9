/**
 * The serving-order worker thread (lib/data/orders.ts): draws Fisher–Yates orders with
 * stream-common's permutation, the code the calling thread would run, so an order is the same
 * whichever thread drew it, and replies with it (moved, not copied).
 *
 *   in:  { id, n, seed, base }   the order of [0, n) from Rng(seed), base added to every entry
 *   out: { id, order: Uint32Array } | { id, error: string }
 */
import { parentPort } from 'node:worker_threads';

import { Rng } from '../random.js';
import { permutation } from './stream-common.js';

const port = parentPort!;

port.on('message', ({ id, n, seed, base }: { id: number; n: number; seed: number; base: number }) => {
  try {
    const order = permutation(n, new Rng(seed));
    if (base !== 0) for (let i = 0; i < n; i++) order[i] = order[i]! + base;
    port.postMessage({ id, order }, [order.buffer as ArrayBuffer]);
  } catch (error) {
    port.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
