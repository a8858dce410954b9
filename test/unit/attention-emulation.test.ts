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
import { expect, it } from 'vitest';

import { hasCompiler, runNativeProgram, warnIfNoCompiler } from '../helpers/native-program.js';

warnIfNoCompiler('test/unit/attention-emulation');

for (const [kernels, source] of [
  ['tiled', 'attention_tiled_emulation.cpp'],
  ['tensor-core', 'attention_mma_emulation.cpp'],
] as const) {
  it.skipIf(!hasCompiler)(`the emulated ${kernels} attention kernels equal float64 attention and its gradients`, () => {
    // A barrier that some threads skip would hang: the run is cut at 120 s.
    const lines = runNativeProgram(source, { flags: ['-std=c++20', '-O2', '-pthread'], timeout: 120_000 });
    expect(lines.filter((l) => l.startsWith('ok   B')).length).toBe(source === 'attention_mma_emulation.cpp' ? 12 : 6);
  }, 180_000);
}
