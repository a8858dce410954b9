/**
 * The standard SAE training step on the CUDA backend at the shapes PyTorch trainers are compared on
 * (bench/reference/torch_sae_step.py times the same math), in each precision.
 *
 *   node dist/bench/sae-step-cuda.js [--shapes 512x16384x4096,512x131072x4096,768x24576x4096]
 *        [--precision f32,bf16] [--kernels tensor,mma,wgmma,simple] [--iters 30] [--peak-tflops T]
 *        [--backend cuda|cpu] [--json FILE]
 *
 * Shapes are d x n x B. One step is SparseAutoencoder.step (loss and gradients, the decoder
 * constraint, Adam, firing counts), awaited: every op has finished on the device when it returns,
 * so the wall time of each step is what a training loop sees. Median of --iters after 5 warm-up
 * steps on random normal inputs. FLOPs per step are 10·B·d·n; --peak-tflops (a bf16 GEMM rate
 * measured on the same machine) adds the fraction of it. --backend cpu runs the same code on the
 * CPU (for small shapes: a check of the script itself). --kernels picks the CUDA path of the bf16
 * rows: `tensor` (tensor-core GEMMs with fused epilogues as the library chooses them: on Hopper,
 * wgmma for the long-K products, mma.sync for the rest), `mma` (mma.sync for all five:
 * MONOSEMANTIC_CUDA_GEMM=mma), `wgmma` (the Hopper GEMM for all five: MONOSEMANTIC_CUDA_GEMM=wgmma,
 * sm_90a) or `simple` (MONOSEMANTIC_CUDA_KERNELS=simple: SIMT GEMMs and separate passes); each
 * gives one row.
 */
import { writeFileSync } from 'node:fs';

import { Command } from 'commander';

import type { BackendName } from '../lib/backend.js';
import { Rng } from '../lib/random.js';
import { SparseAutoencoder } from '../lib/sae/sae.js';
import { Tensor } from '../lib/tensor.js';
import { median } from './median.js';

interface Result {
  d: number;
  n: number;
  batch: number;
  precision: 'f32' | 'bf16';
  kernels: Kernels;
  msMedian: number;
  msMin: number;
  tflops: number;
  lossFirst: number;
  lossLast: number;
}

type Kernels = 'tensor' | 'mma' | 'wgmma' | 'simple';

function parseShapes(text: string): [number, number, number][] {
  return text.split(',').map((part) => {
    const dims = part.toLowerCase().split('x').map(Number);
    if (dims.length !== 3 || !dims.every((v) => Number.isSafeInteger(v) && v > 0)) throw new RangeError(`--shapes: '${part}' is not d x n x B`);
    return dims as [number, number, number];
  });
}

async function timeStep(backend: BackendName, d: number, n: number, batch: number, precision: 'f32' | 'bf16', kernels: Kernels, iters: number): Promise<Result> {
  if (kernels === 'simple') process.env.MONOSEMANTIC_CUDA_KERNELS = 'simple';
  else delete process.env.MONOSEMANTIC_CUDA_KERNELS;
  if (kernels === 'wgmma' || kernels === 'mma') process.env.MONOSEMANTIC_CUDA_GEMM = kernels;
  else delete process.env.MONOSEMANTIC_CUDA_GEMM;
  const rng = new Rng(1);
  using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend, precision, seed: 1 });
  const inputs = Array.from({ length: 4 }, () => Tensor.from(rng.fillNormal(new Float32Array(batch * d)), [batch, d], { backend }));
  try {
    const warmup = 5;
    const times: number[] = [];
    const losses: number[] = [];
    for (let i = 0; i < warmup + iters; i++) {
      const t0 = performance.now();
      const stats = await sae.step(inputs[i % inputs.length]!);
      if (i >= warmup) times.push(performance.now() - t0);
      losses.push(stats.loss);
    }
    const ms = median(times);
    return { d, n, batch, precision, kernels, msMedian: ms, msMin: Math.min(...times), tflops: (10 * batch * d * n) / (ms * 1e9), lossFirst: losses[0]!, lossLast: losses.at(-1)! };
  } finally {
    for (const x of inputs) x.dispose();
  }
}

async function main(): Promise<void> {
  const opts = new Command('sae-step-cuda')
    .option('--shapes <list>', 'd x n x B, comma-separated', '512x16384x4096,512x131072x4096,768x24576x4096')
    .option('--precision <list>', 'f32, bf16 or both', 'f32,bf16')
    .option('--kernels <list>', 'CUDA paths of the bf16 rows: tensor, mma, wgmma, simple', 'tensor')
    .option('--iters <n>', 'timed steps per shape', '30')
    .option('--peak-tflops <t>', 'measured bf16 GEMM peak of this GPU, for the fraction column')
    .option('--backend <name>', 'cuda or cpu', 'cuda')
    .option('--json <file>', 'also write the results as JSON')
    .parse(process.argv)
    .opts<{ shapes: string; precision: string; kernels: string; iters: string; peakTflops?: string; backend: string; json?: string }>();
  const backend = opts.backend as BackendName;
  if (backend !== 'cuda' && backend !== 'cpu') throw new RangeError(`--backend must be cuda or cpu (got ${opts.backend})`);
  const precisions = opts.precision.split(',').map((p) => {
    if (p !== 'f32' && p !== 'bf16') throw new RangeError(`--precision: '${p}' is not f32 or bf16`);
    return p;
  });
  const kernelList = opts.kernels.split(',').map((k) => {
    if (k !== 'tensor' && k !== 'mma' && k !== 'wgmma' && k !== 'simple') throw new RangeError(`--kernels: '${k}' is not tensor, mma, wgmma or simple`);
    return k;
  });
  const iters = Number(opts.iters);
  const peak = opts.peakTflops === undefined ? null : Number(opts.peakTflops);
  const results: Result[] = [];
  console.log(`| (d, n, B) | precision | kernels | median ms/step | min ms | TFLOP/s |${peak ? ' of bf16 peak |' : ''} loss first → last |`);
  console.log(`| --- | --- | --- | ---: | ---: | ---: |${peak ? ' ---: |' : ''} --- |`);
  for (const [d, n, batch] of parseShapes(opts.shapes)) {
    for (const precision of precisions) {
      // f32 has one path (the exact SIMT kernels); bf16 one row per --kernels entry.
      for (const kernels of precision === 'bf16' ? kernelList : (['simple'] as const)) {
        const r = await timeStep(backend, d, n, batch, precision, kernels, iters);
        results.push(r);
        const fraction = peak ? ` ${((100 * r.tflops) / peak).toFixed(0)}% |` : '';
        console.log(`| (${d}, ${n}, ${batch}) | ${precision} | ${kernels} | ${r.msMedian.toFixed(3)} | ${r.msMin.toFixed(3)} | ${r.tflops.toFixed(1)} |${fraction} ${r.lossFirst.toPrecision(4)} → ${r.lossLast.toPrecision(4)} |`);
      }
    }
  }
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ backend, peakTflops: peak, results }, null, 2));
}

await main();
