/**
 * Gpt2Training's two ways of taking the loss on the CPU (crossEntropy: 'logits', 'fused'): from
 * the same weights and batches, the fused unembedding cross-entropy gives the losses, gradients,
 * evaluation and training steps of the logits formed in memory, within what rounding the logits to
 * bf16 (the logits mode at bf16 precision) changes: measured about 2.5e-4 relative on the losses
 * (tolerance 1e-3; 2e-3 over four AdamW steps), 7e-3 on the gradients (relative Frobenius error,
 * tolerance 2e-2) and 1.3e-3 on the steps' gradient norms (tolerance 5e-3). Also how the mode is
 * chosen: the option, else MONOSEMANTIC_CROSS_ENTROPY, and 'logits' at f32 precision; and
 * Gpt2Model's loss without logits, fused under the variable, against its logits path (1e-3).
 */
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { Gpt2Model } from '../../lib/lm/model.js';
import { nextTokenTargets } from '../../lib/lm/tokens.js';
import { type CrossEntropyMode } from '../../lib/lm/cross-entropy-mode.js';
import { Gpt2Training } from '../../lib/lm/training-model.js';
import { Rng } from '../../lib/random.js';
import { relDiff, relError } from '../helpers/data.js';
import { GPT2_FIXTURES, gpt2Fixture } from '../helpers/gpt2-fixture.js';

const backend = 'cpu' as const;


describe.each(['tiny-gelu-new-tied', 'tiny-relu-untied'])('%s at bf16', (name) => {
  it('fused gives the losses, gradients, evaluation and steps of the logits formed in memory', async () => {
    const { config, weights } = await gpt2Fixture(name);
    const [B, T] = [5, config.nPositions]; // 80 or 120 rows: more than one block of 64
    const rng = new Rng(17);
    const batches = Array.from({ length: 4 }, () => Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize)));
    const make = (crossEntropy: CrossEntropyMode) => new Gpt2Training(config, weights, { batch: B, T, backend, precision: 'bf16', crossEntropy });
    using logits = make('logits');
    using fused = make('fused');
    expect([logits.crossEntropy, fused.crossEntropy]).toEqual(['logits', 'fused']);

    const [ids, targets] = [batches[0]!, nextTokenTargets(batches[0]!, B, T)];
    const lossLogits = await logits.forwardBackward(ids, targets);
    const lossFused = await fused.forwardBackward(ids, targets);
    expect(relDiff(lossFused, lossLogits), 'loss').toBeLessThan(1e-3);
    for (const param of logits.parameterNames) {
      const error = relError(fused.gradient(param).toFloat32(), logits.gradient(param).toFloat32());
      expect(error, param).toBeLessThan(2e-2);
    }

    const [evalLogits, evalFused] = [await logits.evaluate(ids, targets), await fused.evaluate(ids, targets)];
    expect(evalFused.count).toBe(evalLogits.count);
    expect(relDiff(evalFused.sum, evalLogits.sum), 'evaluation').toBeLessThan(1e-3);
    expect(evalFused.sum / evalFused.count).toBeCloseTo(lossFused, 6); // the same losses as the step's

    const settings = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipGradNorm: 1 };
    for (const [step, batch] of batches.entries()) {
      const t = nextTokenTargets(batch, B, T);
      const [a, b] = [await logits.step(batch, t, settings), await fused.step(batch, t, settings)];
      expect(relDiff(b.loss, a.loss), `step ${step} loss`).toBeLessThan(2e-3);
      expect(relDiff(b.gradNorm, a.gradNorm), `step ${step} gradient norm`).toBeLessThan(5e-3);
    }
  });
});

describe('the mode', () => {
  const saved = process.env.MONOSEMANTIC_CROSS_ENTROPY;
  afterEach(() => {
    if (saved === undefined) delete process.env.MONOSEMANTIC_CROSS_ENTROPY;
    else process.env.MONOSEMANTIC_CROSS_ENTROPY = saved;
  });

  it('is the option, else MONOSEMANTIC_CROSS_ENTROPY, else logits; fused needs bf16 precision', async () => {
    const { config, weights } = await gpt2Fixture('tiny-relu-untied');
    const mode = (options: { precision: 'f32' | 'bf16'; crossEntropy?: CrossEntropyMode }) => {
      using model = new Gpt2Training(config, weights, { batch: 1, T: 4, backend, ...options });
      return model.crossEntropy;
    };
    delete process.env.MONOSEMANTIC_CROSS_ENTROPY;
    expect(mode({ precision: 'bf16' })).toBe('logits');
    expect(mode({ precision: 'bf16', crossEntropy: 'fused' })).toBe('fused');
    expect(mode({ precision: 'f32', crossEntropy: 'fused' })).toBe('logits'); // its bf16 gradient needs bf16 products
    process.env.MONOSEMANTIC_CROSS_ENTROPY = 'fused';
    expect(mode({ precision: 'bf16' })).toBe('fused');
    expect(mode({ precision: 'bf16', crossEntropy: 'logits' })).toBe('logits');
    expect(mode({ precision: 'f32' })).toBe('logits');
    expect(() => mode({ precision: 'bf16', crossEntropy: 'fuse' as CrossEntropyMode })).toThrow(`crossEntropy must be 'logits' or 'fused' (got "fuse")`);
  });

  it("Gpt2Model's loss without logits fuses under MONOSEMANTIC_CROSS_ENTROPY=fused, with the logits path's losses", async () => {
    using model = await Gpt2Model.load(path.join(GPT2_FIXTURES, 'tiny-gelu-new-tied'), { backend, precision: 'bf16' });
    const [B, T] = [3, model.config.nPositions];
    const rng = new Rng(5);
    const ids = Int32Array.from({ length: B * T }, () => rng.int(model.config.vocabSize));
    delete process.env.MONOSEMANTIC_CROSS_ENTROPY;
    const formed = (await model.forward(ids, B, { loss: true })).loss!.perToken;
    const formedBf16 = (await model.forward(ids, B, { loss: true, logitsDType: 'bf16' })).loss!.perToken;
    process.env.MONOSEMANTIC_CROSS_ENTROPY = 'fused';
    const fused = (await model.forward(ids, B, { loss: true })).loss!.perToken;
    const fusedBf16 = (await model.forward(ids, B, { loss: true, logitsDType: 'bf16' })).loss!.perToken;
    const withLogits = await model.forward(ids, B, { loss: true, logits: true }); // logits asked for: formed
    withLogits.logits!.dispose();
    // The CPU's fused op forms each block of logits in fp32 as linear does: the f32 logits' losses.
    expect(relError(fused, formed)).toBeLessThan(1e-6);
    // Fused, no logits are formed: their dtype changes nothing, where the bf16 logits' rounding does.
    expect(Array.from(fusedBf16)).toEqual(Array.from(fused));
    expect(relError(formedBf16, formed)).toBeGreaterThan(0);
    expect(fused.length).toBe(B * (T - 1));
    expect(Array.from(withLogits.loss!.perToken)).toEqual(Array.from(formed));
  });
});
