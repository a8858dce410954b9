/**
 * What one call into the native layer costs the host, apart from the device work it queues: the
 * wall time per call of many calls on tiny tensors (so the kernels take next to nothing), queued
 * back to back and then waited for once. On CUDA, where operations settle once queued, this is the
 * price each operation of a forward or training step pays on the JavaScript thread; when it
 * exceeds the kernel's own time, the GPU waits for the host.
 *
 *   node dist/bench/op-overhead.js [--backend cpu|cuda] [--calls 2000] [--json FILE]
 *
 * Rows: an elementwise add (one kernel), a bf16 linear layer of 64 x 128 x 128 (casts, product and
 * scratch memory), a tensor allocated and freed, an upload of 64 KiB, and a fill.
 */
import { writeFileSync } from 'node:fs';

import { Command } from 'commander';

import { resolveBackend, synchronize } from '../lib/backend.js';
import { add, linear } from '../lib/lm/ops.js';
import { Rng } from '../lib/random.js';
import { Tensor } from '../lib/tensor.js';

const program = new Command('op-overhead')
  .option('--backend <name>', 'cpu or cuda (default: the active backend)')
  .option('--calls <n>', 'calls timed per row', '2000')
  .option('--json <file>', 'also write the rows as JSON')
  .parse();
const o = program.opts<{ backend?: 'cpu' | 'cuda'; calls: string; json?: string }>();
const backend = resolveBackend(o.backend);
const calls = Number(o.calls);
if (!Number.isSafeInteger(calls) || calls < 1) throw new RangeError(`--calls must be a positive integer (got ${o.calls})`);

const rng = new Rng(11);
const random = (shape: number[]) => Tensor.from(rng.fillUniform(new Float32Array(shape.reduce((a, b) => a * b, 1)), -1, 1), shape, { backend });
using a = random([1024]);
using b = random([1024]);
using out = Tensor.empty([1024], { backend });
using x = random([64, 128]);
using w = random([128, 128]);
using bias = random([128]);
using y = Tensor.empty([64, 128], { backend });
const host = rng.fillUniform(new Float32Array(16384), -1, 1);
using target = Tensor.empty([16384], { backend });

interface Row {
  name: string;
  calls: number;
  /** Wall time per call until the last was queued (what the host spends). */
  queueUs: number;
  /** Wall time per call including the final wait for the device. */
  totalUs: number;
}

async function time(name: string, call: () => Promise<void> | void): Promise<Row> {
  for (let i = 0; i < Math.min(50, calls); i++) await call(); // warm-up: kernels loaded, memory pooled
  synchronize(backend);
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) await call();
  const queued = performance.now();
  synchronize(backend);
  const t1 = performance.now();
  return { name, calls, queueUs: ((queued - t0) * 1e3) / calls, totalUs: ((t1 - t0) * 1e3) / calls };
}

const rows: Row[] = [
  await time('add [1024] (one kernel)', () => add(a, b, out)),
  await time('linear bf16 [64, 128] x [128, 128] + bias', () => linear(x, w, bias, y, 'bf16')),
  await time('Tensor.empty [1024] + dispose', () => Tensor.empty([1024], { backend }).dispose()),
  await time('upload 64 KiB', () => target.upload(host)),
  await time('fill [16384]', () => target.fill(0.5)),
];

console.log(`backend ${backend}, ${calls} calls per row`);
console.log('| call | µs per call, queued | µs per call, completed |');
console.log('| --- | ---: | ---: |');
for (const r of rows) console.log(`| ${r.name} | ${r.queueUs.toFixed(1)} | ${r.totalUs.toFixed(1)} |`);
if (o.json) writeFileSync(o.json, `${JSON.stringify({ backend, rows }, null, 2)}\n`);
