/**
 * The tensor-core attention kernels (native/cuda/attention_mma_kernels.h), checked without a GPU:
 * test/native/attention_mma_emulation.cpp compiles them for the host, one thread per CUDA thread,
 * a barrier per __syncthreads, and mma.sync / __shfl_sync as warp-collective exchanges that
 * rebuild each 16x16 and 16x8 operand from the 32 lanes' fragments (PTX ISA layouts). It runs
 * every block of their grids and compares the forward (out, log-sum-exp) and the gradients (dq,
 * dk, dv) with float64 causal attention of the same inputs rounded to bf16, on ragged sizes and
 * head sizes 32 and 64: 1e-2 relative for the products of the bf16-rounded P and dS, 1e-5 for the
 * log-sum-exp. A wrong causal bound, a fragment index off by a lane, or a missing rescale fails
 * it. Needs a C++20 compiler (the one that builds the addon); skipped, saying so, without one.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const cxx = process.env.CXX ?? 'c++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
if (!hasCompiler) console.warn(`test/unit/attention-mma: SKIPPED — no C++ compiler (${cxx})`);

it.skipIf(!hasCompiler)('the emulated tensor-core attention kernels equal float64 attention and its gradients', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ms-attention-mma-'));
  try {
    const exe = path.join(dir, 'emulation');
    const src = path.join(root, 'test/native/attention_mma_emulation.cpp');
    const build = spawnSync(cxx, ['-std=c++20', '-O2', '-pthread', '-I', path.join(root, 'native'), src, '-o', exe], { encoding: 'utf8' });
    expect(build.status, build.stderr).toBe(0);
    const run = spawnSync(exe, { encoding: 'utf8', timeout: 120_000 }); // a barrier that some threads skip would hang
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('ok');
    expect(lines.filter((l) => l.startsWith('ok   B')).length).toBe(6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 180_000);
