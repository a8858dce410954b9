/**
 * Tokenisation off the calling thread: worker threads that each hold their own copy of one
 * tokenizer (lib/data/tokenize-worker.ts) and encode batches of texts in parallel. The ids are
 * Tokenizer.encode's, bit for bit: each worker runs that code on the same tokenizer.json.
 *
 * Why: byte-level BPE in JavaScript encodes a few hundred thousand tokens a second per core,
 * while a GPU harvests activations from tens of millions; on the calling thread it would also
 * stall everything else that thread drives (the model's forwards, the SAE's steps).
 *
 * Pools are shared within the process, one per tokenizer file, and grow to the largest thread
 * count asked of them. A worker holds the process open only while it has work: an idle pool
 * never keeps a finished program alive.
 */
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

import type { Tokenizer } from '../lm/tokenizer.js';
import { workerExecArgv, workerScript } from './worker-script.js';

/** A batch the pool could not encode: its worker failed, or could not load the tokenizer. */
export class TokenizerPoolError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenizerPoolError';
  }
}

/** Worker threads to use by default: one per core but one (for the calling thread), at most 8. */
export function defaultTokenizerThreads(): number {
  return Math.max(1, Math.min(8, availableParallelism() - 1));
}

type Reply = { id: number; ids: Int32Array; ends: Uint32Array } | { id: number; error: string };

interface Request {
  resolve: (tokens: Int32Array[]) => void;
  reject: (error: Error) => void;
}

class PoolWorker {
  readonly thread: Worker;
  readonly requests = new Map<number, Request>();

  constructor(script: URL, dir: string, tokenizerPath: string, onGone: (worker: PoolWorker) => void) {
    this.thread = new Worker(script, { workerData: { dir }, execArgv: workerExecArgv() });
    this.thread.on('message', (reply: Reply) => {
      const request = this.requests.get(reply.id);
      if (!request) return;
      this.#settled(reply.id);
      if ('error' in reply) request.reject(new TokenizerPoolError(`${tokenizerPath}: cannot encode a text (${reply.error})`));
      else request.resolve(Array.from(reply.ends, (end, k) => reply.ids.subarray(k === 0 ? 0 : reply.ends[k - 1]!, end)));
    });
    const fail = (why: string, cause?: unknown) => {
      onGone(this);
      const error = new TokenizerPoolError(`${tokenizerPath}: a tokenizer worker ${why}`, { cause });
      for (const request of this.requests.values()) request.reject(error);
      this.requests.clear();
    };
    this.thread.on('error', (error) => fail(`failed (${error.message})`, error));
    this.thread.on('exit', (code) => fail(`exited (code ${code})`));
    // After the listeners: adding a 'message' listener refs the worker again, and a worker that
    // never gets a batch would then hold the process open.
    this.thread.unref();
  }

  send(id: number, texts: string[], request: Request): void {
    if (this.requests.size === 0) this.thread.ref(); // work in flight: the process waits for it
    this.requests.set(id, request);
    this.thread.postMessage({ id, texts });
  }

  #settled(id: number): void {
    this.requests.delete(id);
    if (this.requests.size === 0) this.thread.unref();
  }
}

export class TokenizerPool {
  readonly #dir: string;
  readonly #path: string;
  readonly #script: URL;
  #workers: PoolWorker[] = [];
  #threads: number;
  #nextId = 0;

  private constructor(tokenizer: Tokenizer, threads: number) {
    this.#path = tokenizer.path;
    this.#dir = path.dirname(tokenizer.path);
    this.#script = tokenizerWorkerScript();
    this.#threads = threads;
  }

  /** The process's pool for `tokenizer`'s file, with at least `threads` workers. */
  static shared(tokenizer: Tokenizer, threads = defaultTokenizerThreads()): TokenizerPool {
    if (!Number.isSafeInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer (got ${threads})`);
    let pool = pools.get(tokenizer.path);
    if (!pool) pools.set(tokenizer.path, (pool = new TokenizerPool(tokenizer, threads)));
    pool.#threads = Math.max(pool.#threads, threads);
    return pool;
  }

  get threads(): number {
    return this.#threads;
  }

  /** The ids of each text, as Tokenizer.encode gives them, in order. */
  encode(texts: string[]): Promise<Int32Array[]> {
    if (texts.length === 0) return Promise.resolve([]);
    // Started on demand (and again after a failure); the least busy worker takes the batch.
    try {
      while (this.#workers.length < this.#threads) {
        this.#workers.push(new PoolWorker(this.#script, this.#dir, this.#path, (gone) => (this.#workers = this.#workers.filter((w) => w !== gone))));
      }
    } catch (error) {
      if (this.#workers.length === 0) {
        return Promise.reject(new TokenizerPoolError(`${this.#path}: cannot start a tokenizer worker (${(error as Error).message})`, { cause: error }));
      }
    }
    const worker = this.#workers.reduce((best, w) => (w.requests.size < best.requests.size ? w : best));
    return new Promise((resolve, reject) => worker.send(this.#nextId++, texts, { resolve, reject }));
  }

  /** Stops the workers (pending batches fail); the next encode starts new ones. */
  async close(): Promise<void> {
    const workers = this.#workers;
    this.#workers = [];
    await Promise.all(workers.map((w) => w.thread.terminate()));
  }
}

const pools = new Map<string, TokenizerPool>();

function tokenizerWorkerScript(): URL {
  const script = workerScript('tokenize-worker.js');
  if (script === null) throw new TokenizerPoolError('the tokenizer worker dist/lib/data/tokenize-worker.js is missing: build the package (npm run build:ts)');
  return script;
}
