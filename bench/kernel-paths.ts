/**
 * Trains two bf16 SAEs on the CUDA backend from the same seed on the same batches, one through the
 * tensor-core path (fused GEMM epilogues) and one through the simple path
 * (MONOSEMANTIC_CUDA_KERNELS=simple), and reports how far apart their loss curves are.
 *
 *   node dist/bench/kernel-paths.js [--steps 1000] [--shape 512x4096x1024] [--backend cuda|cpu]
 *        [--json FILE]
 *
 * The data are a planted sparse dictionary (4·d unit directions, about 8 active per row with
 * exponential magnitudes, plus 5% Gaussian noise), drawn from a seeded generator so both runs see
 * identical batches. The two paths differ only in summation order inside bf16 products, so the
 * curves should agree within bf16 noise: the report gives the largest relative difference of single
 * steps and of 50-step means, and the final MSE, L0 and dead features of each. With --backend cpu
 * both runs are the CPU backend (a check of the script: differences must be exactly 0).
 */
import { writeFileSync } from 'node:fs';

import { Command } from 'commander';

import { unitRows } from '../lib/analysis/decoder-cosine.js';
import type { BackendName } from '../lib/backend.js';
import { Rng } from '../lib/random.js';
import { SparseAutoencoder } from '../lib/sae/sae.js';
import { Tensor } from '../lib/tensor.js';

const KERNELS = 'MONOSEMANTIC_CUDA_KERNELS';

function plantedBatch(rng: Rng, dict: Float32Array, atoms: number, d: number, batch: number): Float32Array {
  const x = new Float32Array(batch * d);
  for (let b = 0; b < batch; b++) {
    const row = x.subarray(b * d, (b + 1) * d); // x[b, :]
    for (let j = 0; j < d; j++) row[j] = 0.05 * rng.normal();
    const active = 4 + rng.int(9);
    for (let a = 0; a < active; a++) {
      const k = rng.int(atoms);
      const mag = -Math.log(1 - rng.uniform());
      const atom = dict.subarray(k * d, (k + 1) * d); // dict[k, :]
      for (let j = 0; j < d; j++) row[j]! += mag * atom[j]!;
    }
  }
  return x;
}

async function main(): Promise<void> {
  const opts = new Command('kernel-paths')
    .option('--steps <n>', 'training steps', '1000')
    .option('--shape <dxnxB>', 'd x n x B', '512x4096x1024')
    .option('--backend <name>', 'cuda or cpu', 'cuda')
    .option('--json <file>', 'also write the curves as JSON')
    .parse(process.argv)
    .opts<{ steps: string; shape: string; backend: string; json?: string }>();
  const backend = opts.backend as BackendName;
  if (backend !== 'cuda' && backend !== 'cpu') throw new RangeError(`--backend must be cuda or cpu (got ${opts.backend})`);
  const dims = opts.shape.toLowerCase().split('x').map(Number);
  if (dims.length !== 3 || !dims.every((v) => Number.isSafeInteger(v) && v > 0)) throw new RangeError(`--shape: '${opts.shape}' is not d x n x B`);
  const [d, n, batch] = dims as [number, number, number];
  const steps = Number(opts.steps);

  const config = { dIn: d, dSae: n, backend, precision: 'bf16' as const, seed: 7, l1Coeff: 1.0, lr: 1e-3 };
  using tensorPath = SparseAutoencoder.create(config);
  using simplePath = SparseAutoencoder.create(config);
  const atoms = 4 * d;
  const rng = new Rng(3);
  const dict = unitRows(rng.fillNormal(new Float32Array(atoms * d)), atoms, d);
  const curves = { tensor: [] as number[], simple: [] as number[] };
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    using x = Tensor.from(plantedBatch(rng, dict, atoms, d, batch), [batch, d], { backend });
    delete process.env[KERNELS];
    curves.tensor.push((await tensorPath.step(x)).loss);
    process.env[KERNELS] = 'simple';
    curves.simple.push((await simplePath.step(x)).loss);
  }
  delete process.env[KERNELS];
  const seconds = (performance.now() - t0) / 1000;

  const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
  let worstStep = 0;
  for (let s = 0; s < steps; s++) worstStep = Math.max(worstStep, rel(curves.tensor[s]!, curves.simple[s]!));
  const window = 50;
  let worstWindow = 0;
  for (let s0 = 0; s0 + window <= steps; s0 += window) {
    const mean = (c: number[]) => c.slice(s0, s0 + window).reduce((a, v) => a + v, 0) / window;
    worstWindow = Math.max(worstWindow, rel(mean(curves.tensor), mean(curves.simple)));
  }
  const dead = (sae: SparseAutoencoder) => sae.fireCounts().filter((c) => c === 0).length;
  const summary = {
    backend,
    d,
    n,
    batch,
    steps,
    seconds: Number(seconds.toFixed(1)),
    worstStepRelDiff: worstStep,
    worst50StepMeanRelDiff: worstWindow,
    finalLoss: { tensor: curves.tensor.at(-1), simple: curves.simple.at(-1) },
    neverFired: { tensor: dead(tensorPath), simple: dead(simplePath) },
  };
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ ...summary, curves }, null, 2));
  console.log(`| path | loss step 1 | loss step ${steps} | features never fired |`);
  console.log('| --- | ---: | ---: | ---: |');
  for (const k of ['tensor', 'simple'] as const)
    console.log(`| ${k} | ${curves[k][0]!.toPrecision(5)} | ${curves[k].at(-1)!.toPrecision(5)} | ${summary.neverFired[k]} |`);
  console.log(`largest relative loss difference: single step ${worstStep.toExponential(2)}, 50-step mean ${worstWindow.toExponential(2)} (${seconds.toFixed(1)} s)`);
}

await main();
