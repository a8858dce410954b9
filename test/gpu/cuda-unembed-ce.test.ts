/**
 * The fused unembedding cross-entropy on CUDA (native/cuda/unembed_ce.cu: tensor cores, bf16
 * operands, the logits never formed) against the CPU backend's (the same bf16 operands, the logits
 * formed a block of rows at a time), on awkward sizes: rows that leave a ragged row block, a
 * vocabulary ending in a partial tile, odd V (16-bit stores), C 32, 64 and 128, one vocabulary split
 * and many. Tolerances, against the CPU:
 *   - lse and the losses (logits of a few units, fp32 sums of exact products): 1e-4 absolute;
 *   - the bf16 gradient of the logits: max |cuda − cpu| / max |cpu| below 1e-2, and each element
 *     within 2^-7 of the CPU's plus 1e-6 of the scale (each side rounded to bf16 once from sums in
 *     another order: a rounding the other way is one bf16 step);
 *   - two runs: the same bits; a target past V: the CPU's error, nothing written; a width without a
 *     kernel: MS_ERR_UNSUPPORTED.
 * Then a forward-backward of the shipped model A (d_model 128, V 8,192) fused and unfused on CUDA,
 * from the same weights and tokens: the loss within 1e-3 relative and every parameter's gradient
 * within 2e-2 (relative Frobenius error; the unfused path rounds the logits to bf16 before the
 * softmax, as the CPU's test of the two modes measures).
 * Skipped, with the reason printed, where the CUDA backend is not available.
 */
import { describe, expect, it } from 'vitest';

import { type BackendName, backendStatus } from '../../lib/backend.js';
import { bf16ToFloat32 } from '../../lib/bf16.js';
import { MonosemanticError } from '../../lib/errors.js';
import { loadGpt2Config } from '../../lib/lm/config.js';
import { shippedModelDir } from '../../lib/lm/default-model.js';
import { unembedCrossEntropy, unembedCrossEntropyBackward } from '../../lib/lm/grad-ops.js';
import { nextTokenTargets } from '../../lib/lm/tokens.js';
import { Gpt2Training } from '../../lib/lm/training-model.js';
import { loadGpt2Weights } from '../../lib/lm/weights.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { maxErr, normalArray, relDiff, relError } from '../helpers/data.js';
import { rejection } from '../helpers/rejection.js';
import { expectSameValues } from '../helpers/same-values.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

/** max |a − ref|; Infinity when a holds a non-finite value. */
function maxAbs(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  expect(a.length).toBe(ref.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Number.isFinite(a[i]!) ? Math.abs(a[i]! - ref[i]!) : Infinity);
  return m;
}

interface Outputs {
  lse: Float32Array;
  losses: Float32Array;
  dlogits: Float32Array;
}

/** The op's forward and backward on `backend`, x given as f32 or as bf16. */
async function run(
  backend: BackendName, rows: number, V: number, C: number, x: Float32Array, W: Float32Array, targets: Int32Array, xDtype: 'f32' | 'bf16',
): Promise<Outputs & { bits: Uint16Array }> {
  using tx = Tensor.from(x, [rows, C], { backend, dtype: xDtype });
  using tw = Tensor.from(W, [V, C], { backend });
  using tt = Tensor.from(targets, [rows], { backend, dtype: 'i32' });
  using lse = Tensor.full([rows], Number.NaN, { backend });
  using losses = Tensor.full([rows], Number.NaN, { backend });
  using dlogits = Tensor.full([rows, V], Number.NaN, { backend, dtype: 'bf16' });
  await unembedCrossEntropy(tx, tw, tt, lse, losses, 'bf16');
  await unembedCrossEntropyBackward(tx, tw, tt, lse, 1 / rows, dlogits, 'bf16');
  const bits = dlogits.toArray() as Uint16Array;
  return { lse: lse.toArray() as Float32Array, losses: losses.toArray() as Float32Array, dlogits: bf16ToFloat32(bits), bits };
}

describe.skipIf(!hasCuda)('fused unembedding cross-entropy on CUDA', () => {
  // [rows, V, C]: ragged row blocks (128 rows a block), partial last tiles (64 columns a tile), odd V,
  // the shipped models' vocabulary, one split (many rows) and many (few rows).
  const shapes = [
    [37, 1013, 128],
    [300, 8192, 128],
    [129, 4097, 64],
    [65, 301, 32],
    [129, 4098, 64], // V even, not a multiple of 4: the pair stores
    [5000, 2056, 128],
    [3, 1, 64],
  ] as const;
  for (const [rows, V, C] of shapes) {
    it(`[${rows}, ${V}] from width ${C} matches the CPU (x in f32 and bf16), twice the same bits`, async () => {
      const rng = new Rng(rows + V + C);
      const x = normalArray(rng, rows * C, 3 / Math.sqrt(C));
      const W = normalArray(rng, V * C, 1);
      const targets = Int32Array.from({ length: rows }, (_, r) => (r % 7 === 3 ? -1 : r % 5 === 1 ? V - 1 : rng.int(V)));
      for (const xDtype of ['f32', 'bf16'] as const) {
        const cpu = await run('cpu', rows, V, C, x, W, targets, xDtype);
        const cuda = await run('cuda', rows, V, C, x, W, targets, xDtype);
        expect(maxAbs(cuda.lse, cpu.lse), `lse, x ${xDtype}`).toBeLessThan(1e-4);
        expect(maxAbs(cuda.losses, cpu.losses), `losses, x ${xDtype}`).toBeLessThan(1e-4);
        for (let r = 0; r < rows; r++) if (targets[r]! < 0) expect(cuda.losses[r]).toBe(0);
        expect(maxErr(cuda.dlogits, cpu.dlogits), `dlogits, x ${xDtype}`).toBeLessThan(1e-2);
        // Each element: within a bf16 step of the CPU's either way (2^-7 of the value) and 1e-6 of the
        // scale, so an error in a low-probability column fails too.
        let bad = -1;
        for (let i = 0; i < cuda.dlogits.length && bad < 0; i++)
          if (!(Math.abs(cuda.dlogits[i]! - cpu.dlogits[i]!) <= 2 ** -7 * Math.abs(cpu.dlogits[i]!) + 1e-6 / rows)) bad = i;
        expect(bad, `dlogits, x ${xDtype}: the first element off`).toBe(-1);
        const again = await run('cuda', rows, V, C, x, W, targets, xDtype);
        expectSameValues(again.bits, cuda.bits, 'dlogits of a second run');
        expectSameValues(again.lse, cuda.lse, 'lse of a second run');
      }
    });
  }

  it('a target past the vocabulary is the CPU error and writes nothing; a width without a kernel is unsupported', async () => {
    const [rows, V, C] = [40, 300, 64];
    const rng = new Rng(3);
    const x = normalArray(rng, rows * C);
    const W = normalArray(rng, V * C, 0.2);
    const targets = Int32Array.from({ length: rows }, () => rng.int(V));
    targets[rows - 2] = V;
    const errors: Record<string, unknown> = {};
    for (const backend of ['cpu', 'cuda'] as const) {
      using tx = Tensor.from(x, [rows, C], { backend });
      using tw = Tensor.from(W, [V, C], { backend });
      using tt = Tensor.from(targets, [rows], { backend, dtype: 'i32' });
      using lse = Tensor.full([rows], Number.NaN, { backend });
      using losses = Tensor.full([rows], Number.NaN, { backend });
      using dlogits = Tensor.full([rows, V], Number.NaN, { backend, dtype: 'bf16' });
      errors[backend] = await rejection(unembedCrossEntropy(tx, tw, tt, lse, losses, 'bf16'));
      expect(Array.from(losses.toArray() as Float32Array).every(Number.isNaN), `${backend}: losses untouched`).toBe(true);
      const backward = await rejection(unembedCrossEntropyBackward(tx, tw, tt, lse, 1, dlogits, 'bf16'));
      expect(backward).toBeInstanceOf(MonosemanticError);
      expect(Array.from(bf16ToFloat32(dlogits.toArray() as Uint16Array)).every(Number.isNaN), `${backend}: dlogits untouched`).toBe(true);
    }
    expect(errors.cuda).toBeInstanceOf(MonosemanticError);
    expect((errors.cuda as MonosemanticError).message).toBe((errors.cpu as MonosemanticError).message);

    using tx = Tensor.from(normalArray(rng, rows * 96), [rows, 96], { backend: 'cuda' });
    using tw = Tensor.from(normalArray(rng, V * 96), [V, 96], { backend: 'cuda' });
    using tt = Tensor.from(new Int32Array(rows), [rows], { backend: 'cuda', dtype: 'i32' });
    using lse = Tensor.empty([rows], { backend: 'cuda' });
    using losses = Tensor.empty([rows], { backend: 'cuda' });
    const unsupported = await rejection(unembedCrossEntropy(tx, tw, tt, lse, losses, 'bf16'));
    expect(unsupported).toBeInstanceOf(MonosemanticError);
    expect((unsupported as MonosemanticError).code).toBe('E_UNSUPPORTED');
  });

  it('a training step of the shipped model A fused gives the loss and gradients of the logits formed', async () => {
    const dir = shippedModelDir('a');
    const config = await loadGpt2Config(dir);
    const weights = await loadGpt2Weights(dir, config);
    const [B, T] = [4, 250];
    const make = (crossEntropy: 'logits' | 'fused') => new Gpt2Training(config, weights, { batch: B, T, backend: 'cuda', precision: 'bf16', crossEntropy });
    using logits = make('logits');
    using fused = make('fused');
    expect([logits.crossEntropy, fused.crossEntropy]).toEqual(['logits', 'fused']);
    const rng = new Rng(9);
    const ids = Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize));
    const targets = nextTokenTargets(ids, B, T);
    const [a, b] = [await logits.forwardBackward(ids, targets), await fused.forwardBackward(ids, targets)];
    expect(relDiff(b, a), 'loss').toBeLessThan(1e-3);
    for (const name of logits.parameterNames) {
      expect(relError(fused.gradient(name).toFloat32(), logits.gradient(name).toFloat32()), name).toBeLessThan(2e-2);
    }
  });
});
