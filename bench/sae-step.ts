/**
 * The standard SAE training step on the CPU, side by side in one run with TensorFlow.js (pure-JS
 * `cpu` and `wasm` backends, same math, hand-written gradients) and with the sgemm rate of
 * OpenBLAS on the step's five matrix products.
 *
 *   npm run bench -- [--d 512] [--n 4096] [--batch 1024] [--iters 20] [--l0 20] [--skip-tfjs-cpu] [--json FILE]
 *
 * At initialisation about half the features fire, and the step runs its five products on sgemm.
 * --l0 K also times the step on the same batch with the encoder bias lowered until about K features
 * fire per input, as in a trained dictionary, both ways: the products after the encoder over the
 * active entries only (native/cpu/sae_sparse_cpu.h; MONOSEMANTIC_CPU_SAE_SPARSE=always) and on
 * sgemm (=never). By default the step takes the first when at most 5% of the features fire.
 *
 * FLOPs per step are counted as 10·B·d·n (five products of 2·B·d·n). The OpenBLAS reference is a
 * small C program (bench/reference/openblas_sgemm.c) compiled here when libopenblas is installed
 * (Debian: libopenblas-dev); it is skipped, and said so, when it is not.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Command } from 'commander';

import { nativeAddon } from '../lib/backend.js';
import { packageRoot } from '../lib/native/load.js';
import { Rng } from '../lib/random.js';
import { SparseAutoencoder } from '../lib/sae/sae.js';
import { Tensor } from '../lib/tensor.js';
import { timeTfjsSaeStep } from './reference/tfjs-sae-step.js';
import { median } from './median.js';

interface Row {
  name: string;
  medianMs: number;
  gflops: number;
  note?: string;
}

/** Mean active features per row of f [rows, n]. */
function meanActive(f: Float32Array, rows: number): number {
  let active = 0;
  for (const v of f) active += v > 0 ? 1 : 0;
  return active / rows;
}

/**
 * Step times (and the last step's L0) from the same seed and batch; with `l0`, the encoder bias is
 * first lowered by one common shift, found by bisection, until about l0 features fire per input.
 */
async function timeNativeStep(d: number, n: number, batch: number, warmup: number, iters: number, l0?: number): Promise<{ times: number[]; l0: number }> {
  const rng = new Rng(1);
  using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend: 'cpu', precision: 'f32', seed: 1 });
  const data = rng.fillNormal(new Float32Array(batch * d));
  using x = Tensor.from(data, [batch, d], { backend: 'cpu' });
  sae.initDecoderBiasToGeometricMedian(data.subarray(0, 256 * d), 256);
  if (l0 !== undefined) {
    const bEnc = sae.readParameters().b_enc;
    using f = Tensor.empty([batch, n], { backend: 'cpu' });
    let [lo, hi] = [0, 64];
    for (let i = 0; i < 30; i++) {
      const shift = (lo + hi) / 2;
      sae.writeParameters({ b_enc: bEnc.map((b) => b - shift) });
      await sae.encode(x, f);
      if (meanActive(f.toFloat32(), batch) > l0) lo = shift;
      else hi = shift;
    }
    sae.writeParameters({ b_enc: bEnc.map((b) => b - hi) });
  }
  const times: number[] = [];
  let last = 0;
  for (let i = 0; i < warmup + iters; i++) {
    const t0 = performance.now();
    last = (await sae.step(x)).l0;
    if (i >= warmup) times.push(performance.now() - t0);
  }
  return { times, l0: last };
}

/** The five products of one step, as (M, N, K, transA, transB). */
function stepProducts(d: number, n: number, B: number): Array<[number, number, number, number, number]> {
  return [
    [B, n, d, 0, 0], // pre = x̄ W_enc
    [B, d, n, 0, 0], // x̂ = f W_dec
    [n, d, B, 1, 0], // dW_dec = fᵀ g
    [B, n, d, 0, 1], // g_f = g W_decᵀ
    [d, n, B, 1, 0], // dW_enc = x̄ᵀ g_pre
  ];
}

/** OpenBLAS time for the step's five products (sum of per-product medians), or a reason it is missing. */
function openblasStepProducts(d: number, n: number, B: number, reps: number): { ms: number } | { skipped: string } {
  const root = packageRoot();
  const outDir = path.join(root, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  const exe = path.join(outDir, 'openblas_sgemm');
  const cc = spawnSync('cc', ['-O2', '-o', exe, path.join(root, 'bench/reference/openblas_sgemm.c'), '-lopenblas'], { encoding: 'utf8' });
  if (cc.status !== 0) return { skipped: `could not build the OpenBLAS reference (is libopenblas-dev installed?): ${cc.stderr.trim().split('\n')[0]}` };
  let ms = 0;
  for (const [M, N, K, ta, tb] of stepProducts(d, n, B)) {
    const out = execFileSync(exe, [M, N, K, ta, tb, reps].map(String), { encoding: 'utf8' });
    ms += (JSON.parse(out.trim().split('\n').pop()!) as { median_ms: number }).median_ms;
  }
  return { ms };
}

async function main(): Promise<void> {
  const opts = new Command('sae-step')
    .option('--d <n>', 'input width', '512')
    .option('--n <n>', 'dictionary size', '4096')
    .option('--batch <n>', 'batch rows', '1024')
    .option('--iters <n>', 'timed steps', '20')
    .option('--l0 <k>', 'also time a batch where about k features fire per input (sparse products, and sgemm beside it)')
    .option('--skip-tfjs-cpu', 'skip the (very slow) pure-JS tfjs backend')
    .option('--json <file>', 'also write the results as JSON')
    .parse(process.argv)
    .opts<{ d: string; n: string; batch: string; iters: string; l0?: string; skipTfjsCpu?: boolean; json?: string }>();
  const [d, n, B, iters] = [opts.d, opts.n, opts.batch, opts.iters].map(Number) as [number, number, number, number];
  const flop = 10 * B * d * n;
  const gflops = (ms: number) => flop / (ms * 1e6);
  const cpu = nativeAddon().cpuInfo();
  console.log(`SAE step (d, n, B) = (${d}, ${n}, ${B}); ${(flop / 1e9).toFixed(2)} GFLOP per step`);
  console.log(`machine: ${cpu.model}, ${os.cpus().length} cores; native: ${cpu.simd}, ${cpu.threads} threads; node ${process.version}`);

  const rows: Row[] = [];
  const native = await timeNativeStep(d, n, B, 3, iters);
  const nativeMs = median(native.times);
  rows.push({ name: `monosemantic cpu (${cpu.simd}, ${cpu.threads} threads), L0 ${native.l0.toFixed(0)}`, medianMs: nativeMs, gflops: gflops(nativeMs) });
  if (opts.l0 !== undefined) {
    const k = Number(opts.l0);
    if (!(k > 0 && k < n)) throw new RangeError(`--l0 must be in (0, ${n}), got '${opts.l0}'`);
    const setting = process.env.MONOSEMANTIC_CPU_SAE_SPARSE;
    try {
      for (const mode of ['always', 'never'] as const) {
        process.env.MONOSEMANTIC_CPU_SAE_SPARSE = mode;
        const r = await timeNativeStep(d, n, B, 3, iters, k);
        const ms = median(r.times);
        const how = mode === 'always' ? 'products over the active entries, forced' : 'sgemm, forced';
        rows.push({ name: `monosemantic cpu, L0 ${r.l0.toFixed(1)} (${how})`, medianMs: ms, gflops: gflops(ms), note: 'FLOPs counted as dense' });
      }
    } finally {
      if (setting === undefined) delete process.env.MONOSEMANTIC_CPU_SAE_SPARSE;
      else process.env.MONOSEMANTIC_CPU_SAE_SPARSE = setting;
    }
  }

  const blas = openblasStepProducts(d, n, B, Math.max(10, iters));
  if ('ms' in blas) {
    rows.push({ name: 'OpenBLAS sgemm, the step\'s 5 products only', medianMs: blas.ms, gflops: gflops(blas.ms) });
  } else {
    console.log(`OpenBLAS reference skipped: ${blas.skipped}`);
  }

  const wasm = await timeTfjsSaeStep({ backend: 'wasm', d, n, batch: B, warmup: 2, iters: Math.min(iters, 10) });
  rows.push({ name: 'tfjs-backend-wasm', medianMs: wasm.medianMs, gflops: gflops(wasm.medianMs), note: wasm.note });
  if (!opts.skipTfjsCpu) {
    const pure = await timeTfjsSaeStep({ backend: 'cpu', d, n, batch: B, warmup: 1, iters: 2 });
    rows.push({ name: 'tfjs (pure-JS cpu)', medianMs: pure.medianMs, gflops: gflops(pure.medianMs), note: pure.note });
  }

  const tfjsBest = Math.min(...rows.filter((r) => r.name.startsWith('tfjs')).map((r) => r.medianMs));
  console.log('');
  console.log('| implementation | median ms/step | samples/s | GFLOP/s | vs monosemantic |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    const samples = (B / r.medianMs) * 1000;
    console.log(`| ${r.name} | ${r.medianMs.toFixed(1)} | ${samples.toFixed(0)} | ${r.gflops.toFixed(1)} | ${(r.medianMs / nativeMs).toFixed(2)}x |`);
  }
  console.log('');
  console.log(`speed-up over the faster tfjs backend: ${(tfjsBest / nativeMs).toFixed(2)}x (target >= 4x)`);
  if ('ms' in blas) {
    console.log(`fraction of the OpenBLAS sgemm rate: ${((100 * blas.ms) / nativeMs).toFixed(0)}% (target >= 70%)`);
  }
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ d, n, batch: B, flop, cpu, rows }, null, 2));
}

await main();
