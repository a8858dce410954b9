/**
 * The tensor-core GEMMs' index computations, checked without a GPU.
 *
 * mma.sync (native/cuda/gemm_tensor_layout.h): test/native/gemm_tensor_emulation.cpp replays the kernel's tile copies, ldmatrix, mma.sync
 * and epilogue on the host with the PTX ISA's fragment layouts, using the same header as the
 * kernel, and compares every output with a direct product (exact: small integer operands), for
 * ragged and whole-tile shapes in every storage order, and with K split (partial products summed
 * in order) for the store products' orders; and the layouts of the epilogue's column
 * reduction and of the mask it reads before writing.
 *
 * wgmma (native/cuda/gemm_wgmma_layout.h): test/native/gemm_wgmma_emulation.cpp replays the TMA
 * copies into 128-byte-swizzled stages, the operand descriptors (each operand K-major or MN-major,
 * as stored, in every order), wgmma.m64n256k16's D fragments and the three epilogues (store with split K,
 * bias + ReLU with column sums and firing counts, the feature gradient with the mask it reads from
 * the buffer it overwrites) on ragged shapes.
 *
 * Needs a C++17 compiler (the one that builds the addon); skipped, saying so, without one.
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

it.skipIf(!hasCompiler)('the emulated wgmma GEMM equals direct products and epilogues on ragged shapes', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ms-gemm-wgmma-layout-'));
  try {
    const exe = path.join(dir, 'emulation');
    const build = spawnSync(cxx, ['-std=c++17', '-O2', '-I', path.join(root, 'native'), path.join(root, 'test/native/gemm_wgmma_emulation.cpp'), '-o', exe], { encoding: 'utf8' });
    expect(build.status, build.stderr).toBe(0);
    const run = spawnSync(exe, { encoding: 'utf8' });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('ok');
    expect(lines.filter((l) => l.startsWith('ok   M')).length).toBe(13); // store in every order (3 with split K), bias-ReLU NN, feature gradient NT
    for (const order of ['NT', 'NN', 'TN', 'TT']) expect(lines.some((l) => l.startsWith('ok   M') && l.endsWith(order)), order).toBe(true);
    expect(lines).toContain('ok   mask bit layout');
    expect(lines).toContain('ok   split counts and ranges');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
