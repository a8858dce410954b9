/**
 * The tiled attention kernels (native/cuda/attention_tiled_kernels.h), checked without a GPU:
 * test/native/attention_tiled_emulation.cpp compiles them for the host, one thread per CUDA thread
 * and a barrier per __syncthreads, runs every block of their grids, and compares the forward
 * (out, log-sum-exp) and the gradients (dq, dk, dv) with float64 causal attention on ragged sizes
 * (1e-5 relative). A missing barrier, a wrong causal bound or a dropped partial sum fails it. Needs
 * a C++20 compiler (the one that builds the addon); skipped, saying so, without one.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const cxx = process.env.CXX ?? 'c++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
if (!hasCompiler) console.warn(`test/unit/attention-tiled: SKIPPED — no C++ compiler (${cxx})`);

it.skipIf(!hasCompiler)('the emulated tiled attention kernels equal float64 attention and its gradients', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ms-attention-tiled-'));
  try {
    const exe = path.join(dir, 'emulation');
    const src = path.join(root, 'test/native/attention_tiled_emulation.cpp');
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
