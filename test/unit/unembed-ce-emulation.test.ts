/**
 * The CUDA kernels of the fused unembedding cross-entropy (native/cuda/unembed_ce_kernels.h),
 * checked without a GPU: test/native/unembed_ce_emulation.cpp compiles the kernel header for the
 * host under test/native/mma_emulation.h (one thread per CUDA thread, mma.sync rebuilt from the
 * lanes' fragments with the PTX ISA layouts, cp.async landing only at the thread's wait), runs every
 * block of the forward, combine and backward grids, and compares lse, the losses and the bf16
 * gradient of the logits with float64 on ragged sizes (C 32, 64, 128; vocabularies ending in a
 * one-column tile; each store width; one split and several). A fragment index off by a lane, a
 * missing wait, an unmasked column past V, a lost split or a swapped pair fails it. Needs a C++20
 * compiler; skipped, saying so, without one.
 */
import { expect, it } from 'vitest';

import { hasCompiler, runNativeProgram, warnIfNoCompiler } from '../helpers/native-program.js';

warnIfNoCompiler('test/unit/unembed-ce-emulation');

it.skipIf(!hasCompiler)('the emulated fused unembedding cross-entropy kernels equal float64', () => {
  // A barrier that some threads skip would hang: the run is cut at 120 s.
  const lines = runNativeProgram('unembed_ce_emulation.cpp', { flags: ['-std=c++20', '-O2', '-pthread'], timeout: 120_000 });
  expect(lines.filter((l) => l.startsWith('ok   C')).length).toBe(8);
  expect(lines.at(-1)).toBe('ok');
}, 180_000);
