/**
 * A linear layer's backward through the ReLU before it (reluLinearBackward) on CUDA against the CPU
 * backend and float64, on awkward sizes and the paper model's MLP (rows ragged against the 128-row
 * tiles, in 512, out 128). CUDA takes the product with the masked bf16 gradient and its column sums
 * in the feature-gradient epilogue (mma.sync, or wgmma with MONOSEMANTIC_CUDA_GEMM=wgmma), and with
 * MONOSEMANTIC_CUDA_KERNELS=simple or W stored [out, in] an fp32 gradient and passes. Tolerances:
 *   - dpre: exactly 0 where x is not positive (both backends); elsewhere within 2⁻⁷ of the CPU's
 *     (each side rounds fp32 sums taken in another order to bf16 once: one bf16 step apart at most)
 *     plus 1e-5, and within 2⁻⁸ plus 1e-4 of float64 on the small shape;
 *   - dW, dbias, dpreBias (added to random values): max |cuda − cpu| / max |cpu| below 1e-4;
 *   - two runs: dpre's same bits; dpreBias's too where the epilogue's per-tile column partials are
 *     summed in order (the simple kernels add their column chunks with float atomics).
 * Then a training step of a ReLU fixture at bf16 on CUDA against the CPU: the loss within 1e-3 and
 * every gradient within 2e-2 (relative Frobenius error; the products take bf16 operands).
 * Skipped, with the reason printed, where the CUDA backend is not available.
 */
import { describe, expect, it } from 'vitest';

import { type BackendName, backendStatus, nativeAddon } from '../../lib/backend.js';
import { reluLinearBackward } from '../../lib/lm/grad-ops.js';
import { nextTokenTargets } from '../../lib/lm/tokens.js';
import { Gpt2Training } from '../../lib/lm/training-model.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { maxErr, normalArray, relDiff, relError, worst } from '../helpers/data.js';
import { withEnv } from '../helpers/env.js';
import { gpt2Fixture } from '../helpers/gpt2-fixture.js';
import { expectSameValues } from '../helpers/same-values.js';
import { type ReluLinearOperands, reluLinearOperands, reluLinearReference } from '../helpers/relu-linear.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

interface Outputs {
  dpre: Float32Array;
  bits: Uint16Array;
  dW: Float32Array;
  dbias: Float32Array;
  dpreBias: Float32Array;
}

/** The op on `backend` from the same starting gradients (random: the op adds to them). */
async function run(backend: BackendName, o: ReluLinearOperands, transW = false): Promise<Outputs> {
  const rng = new Rng(99);
  const start = { dW: normalArray(rng, o.nIn * o.nOut), dbias: normalArray(rng, o.nOut), dpreBias: normalArray(rng, o.nIn) };
  const wShape = transW ? [o.nOut, o.nIn] : [o.nIn, o.nOut];
  using dout = Tensor.from(o.dout, [o.rows, o.nOut], { backend });
  using x = Tensor.from(o.x, [o.rows, o.nIn], { backend, dtype: 'bf16' });
  using W = Tensor.from(o.W, wShape, { backend });
  using dpre = Tensor.full([o.rows, o.nIn], Number.NaN, { backend, dtype: 'bf16' });
  using dW = Tensor.from(start.dW, wShape, { backend });
  using dbias = Tensor.from(start.dbias, [o.nOut], { backend });
  using dpreBias = Tensor.from(start.dpreBias, [o.nIn], { backend });
  if (transW) {
    await nativeAddon().reluLinearBackward({
      rows: o.rows, nIn: o.nIn, nOut: o.nOut, transW, dout: dout.native, x: x.native, weight: W.native, dpre: dpre.native,
      dweight: dW.native, dbias: dbias.native, dpreBias: dpreBias.native,
    });
  } else {
    await reluLinearBackward(dout, x, W, dpre, dW, dbias, dpreBias);
  }
  return { dpre: dpre.toFloat32(), bits: dpre.toArray() as Uint16Array, dW: dW.toFloat32(), dbias: dbias.toFloat32(), dpreBias: dpreBias.toFloat32() };
}

function expectCpu(cuda: Outputs, cpu: Outputs, o: ReluLinearOperands): void {
  for (let i = 0; i < o.x.length; i++) {
    if (o.x[i]! > 0) continue;
    if (cuda.dpre[i] !== 0 || cpu.dpre[i] !== 0) expect.fail(`dpre[${i}] = ${cuda.dpre[i]} (cpu ${cpu.dpre[i]}) where x is ${o.x[i]}`);
  }
  expect(worst(cuda.dpre, cpu.dpre, (i) => 2 ** -7 * Math.abs(cpu.dpre[i]!) + 1e-5), 'dpre').toBeLessThanOrEqual(1);
  expect(maxErr(cuda.dW, cpu.dW), 'dW').toBeLessThan(1e-4);
  expect(maxErr(cuda.dbias, cpu.dbias), 'dbias').toBeLessThan(1e-4);
  expect(maxErr(cuda.dpreBias, cpu.dpreBias), 'dpreBias').toBeLessThan(1e-4);
}

describe.skipIf(!hasCuda)('reluLinearBackward on CUDA', () => {
  // [rows, in, out]: odd sizes, the paper model's MLP over ragged row tiles, and a wide one.
  const shapes = [
    [37, 45, 23],
    [1000, 512, 128],
    [4100, 515, 136],
    [129, 2048, 72],
  ] as const;
  // [name, environment, whether dpreBias is summed in a fixed order]
  const modes: [string, Record<string, string>, boolean][] = [
    ['the feature-gradient epilogue', {}, true],
    ['the epilogue on wgmma', { MONOSEMANTIC_CUDA_GEMM: 'wgmma' }, true],
    ['the simple kernels', { MONOSEMANTIC_CUDA_KERNELS: 'simple' }, false],
  ];
  for (const [rows, nIn, nOut] of shapes) {
    for (const [mode, vars, orderedBias] of modes) {
      it(`[${rows}, ${nIn}] x [${nIn}, ${nOut}], ${mode}: the CPU's values`, async () => {
        const o = reluLinearOperands(rows + nIn, rows, nIn, nOut);
        const cpu = await run('cpu', o);
        const cuda = await withEnv(vars, () => run('cuda', o));
        expectCpu(cuda, cpu, o);
        if (rows * nIn * nOut < 1e5) {
          const ref = reluLinearReference(o);
          expect(worst(cuda.dpre, ref.dpre, (i) => 2 ** -8 * Math.abs(ref.dpre[i]!) + 1e-4), 'dpre against float64').toBeLessThanOrEqual(1);
        }
        const again = await withEnv(vars, () => run('cuda', o));
        expectSameValues(again.bits, cuda.bits, 'dpre bits, second run');
        if (orderedBias) expectSameValues(again.dpreBias, cuda.dpreBias, 'dpreBias, second run');
      });
    }
  }

  it('takes W stored [out, in] (an fp32 gradient and passes)', async () => {
    const o = reluLinearOperands(5, 300, 130, 70);
    expectCpu(await run('cuda', o, true), await run('cpu', o, true), o);
  });

  it('trains a ReLU model at bf16 as the CPU does', async () => {
    const { config, weights } = await gpt2Fixture('tiny-relu-untied');
    const [B, T] = [5, config.nPositions];
    const rng = new Rng(3);
    const ids = Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize));
    const targets = nextTokenTargets(ids, B, T);
    using cpu = new Gpt2Training(config, weights, { batch: B, T, backend: 'cpu', precision: 'bf16', crossEntropy: 'logits' });
    using cuda = new Gpt2Training(config, weights, { batch: B, T, backend: 'cuda', precision: 'bf16', crossEntropy: 'logits' });
    const [lossCpu, lossCuda] = [await cpu.forwardBackward(ids, targets), await cuda.forwardBackward(ids, targets)];
    expect(relDiff(lossCuda, lossCpu), 'loss').toBeLessThan(1e-3);
    for (const name of cpu.parameterNames) {
      expect(relError(cuda.gradient(name).toFloat32(), cpu.gradient(name).toFloat32()), name).toBeLessThan(2e-2);
    }
  });
});
