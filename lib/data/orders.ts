/**
 * Serving orders drawn off the calling thread. A harvested window's order is a Fisher–Yates
 * shuffle of up to millions of rows (tens of milliseconds of JavaScript per window); drawn on the
 * thread that also queues the model's forwards and the SAE's steps, it would hold both up. One
 * worker thread (lib/data/order-worker.ts) draws them instead, with the same code and generator,
 * so an order is identical, bit for bit, to permutation(n, new Rng(seed)) on the calling thread.
 *
 * Orders wanted well ahead of their use (a whole stored pass's, millions of rows) are drawn on a
 * second worker, the 'ahead' lane, so that they never hold up a window's order queued behind them.
 *
 * A worker is started on first use and holds the process open only while it has work. Where one
 * cannot run (its compiled module missing, the thread failing), the order is drawn on the calling
 * thread between other work (permutationYielding): the same order, only slower.
 */
import { Worker } from 'node:worker_threads';

import { Rng } from '../random.js';
import { permutationYielding } from './stream-common.js';
import { workerExecArgv, workerScript } from './worker-script.js';

type Reply = { id: number; order: Uint32Array } | { id: number; error: string };

interface Pending {
  resolve: (order: Uint32Array) => void;
  reject: (error: Error) => void;
}

class OrderWorker {
  readonly #thread: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;

  /** `onGone(answered)`: the thread ended, after answering at least once or not. */
  constructor(script: URL, onGone: (answered: boolean) => void) {
    let answered = false;
    this.#thread = new Worker(script, { execArgv: workerExecArgv() });
    this.#thread.unref();
    this.#thread.on('message', (reply: Reply) => {
      answered = true;
      const request = this.#pending.get(reply.id);
      if (!request) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) this.#thread.unref();
      if ('error' in reply) request.reject(new Error(reply.error));
      else request.resolve(reply.order);
    });
    let gone = false;
    const fail = (why: string) => {
      if (!gone) onGone(answered); // 'error' is followed by 'exit'
      gone = true;
      for (const request of this.#pending.values()) request.reject(new Error(`the order worker ${why}`));
      this.#pending.clear();
    };
    this.#thread.on('error', (error) => fail(`failed (${error.message})`));
    this.#thread.on('exit', (code) => fail(`exited (code ${code})`));
  }

  draw(n: number, seed: number, base: number): Promise<Uint32Array> {
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) this.#thread.ref(); // work in flight: the process waits for it
      const id = this.#nextId++;
      this.#pending.set(id, { resolve, reject });
      this.#thread.postMessage({ id, n, seed, base });
    });
  }
}

/** Which worker draws an order: 'serving' for the orders about to be served, 'ahead' for those drawn well before their use. */
export type OrderLane = 'serving' | 'ahead';

const workers: Record<OrderLane, OrderWorker | null> = { serving: null, ahead: null };
/** Set once a worker could not be started, or ended before answering: every later order is drawn on the calling thread. */
let unavailable = false;

function orderWorker(lane: OrderLane): OrderWorker | null {
  if (workers[lane] || unavailable) return workers[lane];
  const script = workerScript('order-worker.js');
  try {
    // A thread that ends before answering once (it cannot load, say) is not started again.
    if (script !== null) {
      const started: OrderWorker = new OrderWorker(script, (answered) => {
        if (workers[lane] === started) workers[lane] = null;
        if (!answered) unavailable = true;
      });
      workers[lane] = started;
    }
  } catch {
    workers[lane] = null;
  }
  unavailable = workers[lane] === null;
  return workers[lane];
}

/**
 * The order of [0, n) that permutation(n, new Rng(seed)) draws, with `base` added to every entry
 * (row indices into a buffer at row `base`), drawn on the `lane`'s order worker.
 */
export async function drawOrder(n: number, seed: number, base = 0, lane: OrderLane = 'serving'): Promise<Uint32Array> {
  if (!Number.isSafeInteger(n) || n < 0 || n > 2 ** 32) throw new RangeError(`n must be an integer in [0, 2^32] (got ${n})`);
  if (!Number.isSafeInteger(base) || base < 0 || base + n > 2 ** 32) throw new RangeError(`base must be a non-negative integer with base + n ≤ 2^32 (got ${base})`);
  if (lane !== 'serving' && lane !== 'ahead') throw new RangeError(`lane must be 'serving' or 'ahead' (got ${String(lane)})`);
  const thread = orderWorker(lane);
  if (thread) {
    try {
      return await thread.draw(n, seed, base);
    } catch {
      // The thread failed: the same order from the calling thread.
    }
  }
  const order = await permutationYielding(n, new Rng(seed));
  if (base !== 0) for (let i = 0; i < n; i++) order[i] = order[i]! + base;
  return order;
}

/** Whether serving orders are being drawn on a worker thread (it has started and not failed). */
export function ordersOffThread(): boolean {
  return workers.serving !== null;
}
