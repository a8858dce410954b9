/**
 * The tensor-core GEMM's index computations (native/cuda/gemm_tensor_layout.h), checked without a
 * GPU: test/native/gemm_tensor_emulation.cpp replays the kernel's tile copies, ldmatrix, mma.sync
 * and epilogue on the host with the PTX ISA's fragment layouts, using the same header as the
 * kernel, and compares every output with a direct product (exact: small integer operands), for
 * ragged and whole-tile shapes in every storage order, and with K split (partial products summed
 * in order) for the store products' orders; and the layouts of the epilogue's column
 * reduction and of the mask it reads before writing. Needs a C++17 compiler (the one that builds
 * the addon); skipped, saying so, without one.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const cxx = process.env.CXX ?? 'c++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
if (!hasCompiler) console.warn(`test/unit/gemm-tensor-layout: SKIPPED — no C++ compiler (${cxx})`);

it.skipIf(!hasCompiler)('the emulated tensor-core GEMM equals a direct product on ragged shapes in every storage order', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ms-gemm-layout-'));
  try {
    const exe = path.join(dir, 'emulation');
    const build = spawnSync(cxx, ['-std=c++17', '-O2', '-I', path.join(root, 'native'), path.join(root, 'test/native/gemm_tensor_emulation.cpp'), '-o', exe], { encoding: 'utf8' });
    expect(build.status, build.stderr).toBe(0);
    const run = spawnSync(exe, { encoding: 'utf8' });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('ok');
    expect(lines.filter((l) => l.startsWith('ok   M')).length).toBe(40); // 7 shapes x 4 storage orders, 4 split-K shapes x 3
    expect(lines).toContain('ok   column reduction layout');
    expect(lines).toContain('ok   epilogue mask layout');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
