/**
 * Causal attention on its own, on the active backend: the inference forward (no log-sum-exp; at
 * bf16 also into a bf16 out), the training forward (with it) and the backward, at the shapes of the
 * paper's model in training and of GPT-2 small, on random inputs. Which CUDA kernels run follows the precision and
 * MONOSEMANTIC_CUDA_ATTENTION (at bf16 the tensor-core kernels, unless it is tiled: the fp32 tiled
 * ones), so running this twice, with and without =tiled, compares them.
 *
 *   node dist/bench/attention.js [--backend cpu|cuda] [--precision bf16|f32] [--shapes 64x1024x128x4,16x1024x768x12]
 *                                [--iters 20] [--peak-tflops 779] [--json FILE]
 *
 * The peak is --peak-tflops on CUDA; on the CPU it is measured in the same run, as the rate of an
 * fp32 linear layer of 2048 x 1024 x 1024 (sgemm).
 *
 * Shapes are B x T x C x heads. FLOPs count the useful products of causal attention (T²/2 scores
 * per head): forward 2 products, backward 5 (scores and dP recomputed, dQ, dK, dV), each
 * 2 · (T²/2) · head size per head. Medians of --iters, each synchronised.
 */
import { writeFileSync } from 'node:fs';

import { Command } from 'commander';

import { type BackendName, resolveBackend, synchronize } from '../lib/backend.js';
import { attentionBackward, attentionBackwardQkv, attentionForwardTrain } from '../lib/lm/grad-ops.js';
import { type MatmulPrecision, attention, linear } from '../lib/lm/ops.js';
import { Rng } from '../lib/random.js';
import { Tensor } from '../lib/tensor.js';
import { median } from './median.js';

const program = new Command('attention')
  .option('--backend <name>', 'cpu or cuda (default: the active backend)')
  .option('--precision <p>', 'bf16 or f32', 'bf16')
  .option('--shapes <list>', 'B x T x C x heads, comma-separated', '64x1024x128x4,16x1024x768x12')
  .option('--iters <n>', 'timed runs per case', '20')
  .option('--peak-tflops <t>', 'the bf16 matrix peak to report against (default: the H200 measured with cuBLAS)', '779')
  .option('--json <file>', 'also write the rows as JSON')
  .parse();
const o = program.opts<{ backend?: BackendName; precision: MatmulPrecision; shapes: string; iters: string; peakTflops: string; json?: string }>();
const backend = resolveBackend(o.backend);
const iters = Number(o.iters);
if (o.precision !== 'bf16' && o.precision !== 'f32') throw new RangeError(`--precision: bf16 or f32, got '${o.precision}'`);
const shapes = o.shapes.split(',').map((s) => {
  const dims = s.split('x').map(Number);
  if (dims.length !== 4 || !dims.every((d) => Number.isSafeInteger(d) && d > 0)) throw new RangeError(`--shapes: B x T x C x heads, got '${s}'`);
  return dims as [number, number, number, number];
});

async function medianMs(run: () => Promise<void>): Promise<number> {
  await run(); // warm-up
  synchronize(backend);
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await run();
    synchronize(backend); // CUDA operations settle once queued
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** The bf16 matrix peak on CUDA (--peak-tflops); on the CPU, the measured rate of an fp32 sgemm. */
async function measuredPeak(): Promise<{ tflops: number; source: string }> {
  if (backend === 'cuda') return { tflops: Number(o.peakTflops), source: '--peak-tflops' };
  const [M, K, N] = [2048, 1024, 1024];
  const rng = new Rng(3);
  using x = Tensor.from(rng.fillNormal(new Float32Array(M * K), 1), [M, K], { backend });
  using w = Tensor.from(rng.fillNormal(new Float32Array(K * N), 1), [K, N], { backend });
  using y = Tensor.empty([M, N], { backend });
  const ms = await medianMs(() => linear(x, w, null, y, 'f32'));
  return { tflops: (2 * M * K * N) / (ms * 1e-3) / 1e12, source: `fp32 sgemm ${M} x ${K} x ${N}, measured` };
}
const peak = await measuredPeak();

interface Row {
  shape: string;
  pass: string;
  ms: number;
  tflops: number;
  ofPeak: number;
}
const rows: Row[] = [];
for (const [B, T, C, heads] of shapes) {
  const rng = new Rng(B * 31 + T);
  const n = B * T * C;
  const make = (std: number) => Tensor.from(rng.fillNormal(new Float32Array(n), std), [B * T, C], { backend });
  using q = make(1);
  using k = make(1);
  using v = make(1);
  using dout = make(1);
  using out = Tensor.empty([B * T, C], { backend });
  using outBf = Tensor.empty([B * T, C], { backend, dtype: 'bf16' });
  using lse = Tensor.empty([B, heads, T], { backend });
  using dq = Tensor.empty([B * T, C], { backend });
  using dk = Tensor.empty([B * T, C], { backend });
  using dv = Tensor.empty([B * T, C], { backend });
  using dqkv = Tensor.empty([B * T, 3 * C], { backend });
  const perProduct = 2 * B * heads * (T * T / 2) * (C / heads); // one causal T x T x head-size product, all heads
  const cases: [string, number, () => Promise<void>][] = [
    ['forward', 2, () => attention(q, k, v, B, T, T, 0, heads, out, o.precision)],
    // At bf16, the forward writing bf16 (what a language model's forward does where no one looks at z).
    ...(o.precision === 'bf16' ? [['forward, bf16 out', 2, () => attention(q, k, v, B, T, T, 0, heads, outBf, 'bf16')] as [string, number, () => Promise<void>]] : []),
    ['training forward', 2, () => attentionForwardTrain(q, k, v, B, T, heads, out, lse, o.precision)],
    ['backward', 5, () => attentionBackward(dout, q, k, v, out, lse, B, T, heads, dq, dk, dv, o.precision)],
    // Into one [B·T, 3C] gradient, rows 3C apart: what the training step runs.
    ['backward into dqkv', 5, () => attentionBackwardQkv(dout, q, k, v, out, lse, B, T, heads, dqkv, o.precision)],
  ];
  await attentionForwardTrain(q, k, v, B, T, heads, out, lse, o.precision); // out and lse for the backward
  for (const [pass, products, run] of cases) {
    const ms = await medianMs(run);
    const tflops = (products * perProduct) / (ms * 1e-3) / 1e12;
    rows.push({ shape: `${B}x${T}x${C}x${heads}`, pass, ms, tflops, ofPeak: tflops / peak.tflops });
  }
}

const kernels = backend === 'cuda' ? (o.precision === 'bf16' && process.env.MONOSEMANTIC_CUDA_ATTENTION !== 'tiled' ? 'tensor-core' : 'fp32 tiled') : 'cpu';
console.log(`backend ${backend}, precision ${o.precision}, ${kernels} kernels; peak ${peak.tflops.toPrecision(3)} TFLOP/s (${peak.source})`);
console.log('| B x T x C x heads | pass | median ms | TFLOP/s | of peak |');
console.log('| --- | --- | ---: | ---: | ---: |');
for (const r of rows) console.log(`| ${r.shape} | ${r.pass} | ${r.ms.toFixed(3)} | ${r.tflops < 10 ? r.tflops.toFixed(3) : r.tflops.toFixed(1)} | ${(100 * r.ofPeak).toFixed(1)}% |`);
if (o.json) writeFileSync(o.json, `${JSON.stringify({ backend, precision: o.precision, kernels, peak, rows }, null, 2)}\n`);
