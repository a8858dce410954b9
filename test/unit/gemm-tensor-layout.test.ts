/**
 * The tensor-core GEMMs' index computations, checked without a GPU.
 *
 * mma.sync (native/cuda/gemm_tensor_layout.h): test/native/gemm_tensor_emulation.cpp replays the kernel's tile copies, ldmatrix, mma.sync
 * and epilogue on the host with the PTX ISA's fragment layouts, using the same header as the
 * kernel, and compares every output with a direct product (exact: small integer operands), for
 * ragged and whole-tile shapes in every storage order, and with K split (partial products summed
 * in order) for the store products' orders; the short-K kernel (NT, whole-K tiles, runs of N
 * tiles); and the layouts of the epilogue's column reduction, of the mask it reads before writing
 * and of the staged store's buffer (each element written once and read back by the thread that
 * stores it, aligned, a half-warp's pair stores free of bank conflicts).
 *
 * wgmma (native/cuda/gemm_wgmma_layout.h): test/native/gemm_wgmma_emulation.cpp replays the TMA
 * copies into 128-byte-swizzled stages, the operand descriptors (each operand K-major or MN-major,
 * as stored, in every order), wgmma.m64n256k16's D fragments and the three epilogues (store with split K,
 * bias + ReLU with column sums and firing counts, the feature gradient with the mask it reads from
 * the buffer it overwrites) on ragged shapes.
 *
 * Needs a C++17 compiler (the one that builds the addon); skipped, saying so, without one.
 */
import { expect, it } from 'vitest';

import { hasCompiler, runNativeProgram, warnIfNoCompiler } from '../helpers/native-program.js';

warnIfNoCompiler('test/unit/gemm-tensor-layout');

it.skipIf(!hasCompiler)('the emulated tensor-core GEMM equals a direct product on ragged shapes in every storage order', () => {
  const lines = runNativeProgram('gemm_tensor_emulation.cpp');
  expect(lines.filter((l) => l.startsWith('ok   M')).length).toBe(40); // 7 shapes x 4 storage orders, 4 split-K shapes x 3
  expect(lines.filter((l) => l.startsWith('ok   short K')).length).toBe(5); // the short-K kernel's whole-K tiles and runs of N tiles
  expect(lines).toContain('ok   column reduction layout');
  expect(lines).toContain('ok   epilogue mask layout');
  expect(lines).toContain('ok   staged store layout');
});

it.skipIf(!hasCompiler)('the emulated wgmma GEMM equals direct products and epilogues on ragged shapes', () => {
  const lines = runNativeProgram('gemm_wgmma_emulation.cpp');
  // Store in every order (3 with split K), bias-ReLU NN, feature gradient NT; each with a block per
  // item and on a GPU of two multiprocessors, where blocks take several items in turn; the same
  // with the square 128-wide tiles (two blocks per multiprocessor); the tile stored by TMA (a block
  // per item on any GPU: run once); wide tiles in pairs sharing B, in every order and epilogue.
  const cases = lines.filter((l) => l.startsWith('ok   M'));
  expect(cases.length).toBe(78);
  for (const order of ['NT', 'NN', 'TN']) expect(cases.some((l) => l.includes(` ${order}  256-wide tiles in pairs`)), `${order}, pairs`).toBe(true);
  for (const epi of ['bias-relu', 'feature-grad', 'tma-store'])
    expect(cases.some((l) => l.includes(epi) && l.includes('in pairs')), `${epi}, pairs`).toBe(true);
  for (const width of ['256', '128']) expect(cases.some((l) => l.includes('tma-store') && l.includes(`${width}-wide tiles`)), `TMA store, ${width}`).toBe(true);
  for (const order of ['NT', 'NN', 'TN', 'TT']) expect(cases.some((l) => l.includes(` ${order}  256-wide tiles`)), order).toBe(true);
  for (const order of ['NT', 'NN', 'TN']) expect(cases.some((l) => l.includes(` ${order}  128-wide tiles`)), `${order}, square`).toBe(true);
  for (const epi of ['bias-relu', 'feature-grad'])
    expect(cases.some((l) => l.includes(epi) && l.includes('128-wide tiles')), `${epi}, square`).toBe(true);
  const runs = cases.map((l) => {
    const [, epi, blocks, items] = /(tma-store|store|bias-relu|feature-grad) .* (\d+) blocks for +(\d+) items/.exec(l)!;
    return { epi, itemsPerBlock: Number(items) / Number(blocks) };
  });
  expect(runs.some((r) => r.itemsPerBlock === 1)).toBe(true);
  for (const epi of ['store', 'bias-relu', 'feature-grad']) expect(runs.some((r) => r.epi === epi && r.itemsPerBlock > 1), epi).toBe(true);
  expect(lines).toContain('ok   mask bit layout');
  expect(lines).toContain('ok   split counts and ranges');
  expect(lines).toContain('ok   work items and block counts');
});
