/**
 * The CUDA attention kernels, checked without a GPU: each emulation in test/native compiles a
 * kernel header for the host (one thread per CUDA thread, a barrier per __syncthreads; for the
 * tensor-core kernels, mma.sync and __shfl_sync as warp-collective exchanges that rebuild each
 * operand from the 32 lanes' fragments with the PTX ISA layouts), runs every block of the grids,
 * and compares the forward (out, log-sum-exp) and the gradients (dq, dk, dv) with float64 causal
 * attention (test/native/attention_reference.h) on ragged sizes:
 *   - tiled (attention_tiled_kernels.h, fp32): 1e-5 relative;
 *   - tensor cores (attention_mma_kernels.h, bf16 operands): against the bf16-rounded inputs, 1e-2
 *     for the products of the rounded P and dS, 1e-5 for the log-sum-exp.
 * A missing barrier, a wrong causal bound, a fragment index off by a lane or a dropped partial sum
 * fails them. Needs a C++20 compiler (the one that builds the addon); skipped, saying so, without one.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const cxx = process.env.CXX ?? 'c++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
if (!hasCompiler) console.warn(`test/unit/attention-emulation: SKIPPED — no C++ compiler (${cxx})`);

for (const [kernels, source] of [
  ['tiled', 'attention_tiled_emulation.cpp'],
  ['tensor-core', 'attention_mma_emulation.cpp'],
] as const) {
  it.skipIf(!hasCompiler)(`the emulated ${kernels} attention kernels equal float64 attention and its gradients`, () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ms-attention-emulation-'));
    try {
      const exe = path.join(dir, 'emulation');
      const build = spawnSync(cxx, ['-std=c++20', '-O2', '-pthread', '-I', path.join(root, 'native'), path.join(root, 'test/native', source), '-o', exe], { encoding: 'utf8' });
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
}
