/**
 * The native core from several JS threads (worker_threads) at once: one CPU backend serves them
 * all, its operations queued on the process-wide libuv pool. Each case runs in a child process
 * with a deadline, as a hang or an abort is what the failures look like.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { expect, it } from 'vitest';

const index = path.resolve('dist/lib/index.js');

/** Runs an ES module script in a fresh node with the CPU backend; its exit status and output. */
function runScript(source: string, env: Record<string, string> = {}) {
  if (!existsSync(index)) throw new Error(`${index} is missing: run \`npm run build:ts\` first (npm test does)`);
  return spawnSync(process.execPath, ['--input-type=module', '-e', source], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, MONOSEMANTIC_BACKEND: 'cpu', MONOSEMANTIC_THREADS: '1', ...env },
  });
}

it('operations called from three worker threads at once all settle, each with its own results', () => {
  // Each worker interleaves reads (sumSquares) and in-place writes (scale by 1) on its own tensor
  // of distinct values; with one pool thread, a ticket queued behind a waiting one would hang.
  const source = `
    import { Worker } from 'node:worker_threads';
    const worker = \`
      const { parentPort, workerData } = await import('node:worker_threads');
      const { Tensor, sumSquares, scaleInPlace } = await import(${JSON.stringify(index)});
      const t = Tensor.from(Float32Array.from({ length: 8 }, (_, i) => i + workerData), [8]); // i + id
      let sums = new Set();
      for (let i = 0; i < 300; i++) {
        const ps = [];
        for (let k = 0; k < 8; k++) ps.push(k % 2 ? sumSquares(t) : scaleInPlace(t, 1));
        for (const v of await Promise.all(ps)) if (typeof v === 'number') sums.add(v);
      }
      parentPort.postMessage([...sums]);
    \`;
    const results = await Promise.all([0, 1, 2].map((id) => new Promise((resolve, reject) => {
      const w = new Worker(worker, { eval: true, workerData: id });
      w.once('message', resolve);
      w.once('error', reject);
    })));
    console.log(JSON.stringify(results));
  `;
  for (const pool of ['1', '4']) {
    const r = runScript(source, { UV_THREADPOOL_SIZE: pool });
    expect(r.signal, `UV_THREADPOOL_SIZE=${pool}: ${r.stderr}`).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    // Σ_{i<8} (i + id)² for id = 0, 1, 2: every read saw its own worker's tensor.
    const expected = [0, 1, 2].map((id) => [Array.from({ length: 8 }, (_, i) => (i + id) ** 2).reduce((a, b) => a + b, 0)]);
    expect(JSON.parse(r.stdout.trim())).toEqual(expected);
  }
});

it('terminating a worker thread with operations queued neither aborts the process nor stalls the backend', () => {
  const source = `
    import { Worker } from 'node:worker_threads';
    const w = new Worker(\`
      const { parentPort } = await import('node:worker_threads');
      const { Tensor, sumSquares } = await import(${JSON.stringify(index)});
      const big = Tensor.full([1 << 22], 1);
      for (let i = 0; i < 40; i++) sumSquares(big);
      parentPort.postMessage('queued');
    \`, { eval: true });
    await new Promise((resolve) => w.once('message', resolve));
    await w.terminate();
    const { Tensor, sumSquares } = await import(${JSON.stringify(index)});
    console.log(await sumSquares(Tensor.from(Float32Array.of(1, 2, 3), [3])));
  `;
  const r = runScript(source);
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout.trim()).toBe('14');
});

it('tensors dropped without dispose() are collected: host memory stays bounded', () => {
  // 400 tensors of 4 MiB, each used once and dropped: 1.6 GiB if the collector never learns what
  // the handles hold.
  const source = `
    const { Tensor, sumSquares } = await import(${JSON.stringify(index)});
    let peak = 0;
    for (let i = 0; i < 400; i++) {
      const t = Tensor.full([1 << 20], 1);
      await sumSquares(t);
      await new Promise((resolve) => setImmediate(resolve));
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    console.log(peak / 2 ** 20);
  `;
  const r = runScript(source);
  expect(r.status, r.stderr).toBe(0);
  expect(Number(r.stdout.trim())).toBeLessThan(800); // MiB; about 160 when collected
});
