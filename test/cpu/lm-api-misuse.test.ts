/**
 * The transformer API under misuse: overlapping calls, interventions that break the rules,
 * mismatched caches and weights, non-finite steering, and tensors given the wrong data. Each is
 * either done right (overlapping steps run in call order) or refused with a typed error that says
 * what was wrong; a refusal leaves the model usable.
 */
import { describe, expect, it } from 'vitest';

import { generate } from '../../lib/lm/generate.js';
import { addDirection, meanAblate, replaceWith } from '../../lib/lm/interventions.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { nextTokenTargets } from '../../lib/lm/tokens.js';
import { Gpt2Training } from '../../lib/lm/training-model.js';
import { gatherRows } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { gpt2Fixture } from '../helpers/gpt2-fixture.js';

const backend = 'cpu' as const;


describe('Gpt2Training', () => {
  const settings = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipGradNorm: 0 };

  it('runs overlapping steps in call order, as if each had been awaited', async () => {
    const { config, weights } = await gpt2Fixture('tiny-relu-untied');
    const [B, T] = [2, 6];
    const rng = new Rng(3);
    const batches = Array.from({ length: 3 }, () => Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize)));
    using awaited = new Gpt2Training(config, weights, { batch: B, T, backend });
    const want = [];
    for (const ids of batches) want.push(await awaited.step(ids, nextTokenTargets(ids, B, T), settings));

    using overlapping = new Gpt2Training(config, weights, { batch: B, T, backend });
    const got = await Promise.all(batches.map((ids) => overlapping.step(ids, nextTokenTargets(ids, B, T), settings)));
    expect(got).toEqual(want);

    using queued = new Gpt2Training(config, weights, { batch: B, T, backend });
    const pending = batches.map((ids) => queued.queueStep(ids, nextTokenTargets(ids, B, T), settings));
    expect(() => queued.readStats()).toThrow(/Gpt2Training\.readStats was called while a step or evaluation is still running: await it first/);
    await Promise.all(pending);
    expect(queued.readStats().losses).toEqual(want.map((r) => r.loss));
    expect(Array.from(queued.readWeights().wte)).toEqual(Array.from(awaited.readWeights().wte));
  });

  it('refuses missing or non-finite settings, stray targets, and use after dispose', async () => {
    const { config, weights } = await gpt2Fixture('tiny-relu-untied');
    const [B, T] = [1, 4];
    const ids = Int32Array.of(1, 2, 3, 4);
    const training = new Gpt2Training(config, weights, { batch: B, T, backend });
    const call = (s: unknown) => training.step(ids, nextTokenTargets(ids, B, T), s as typeof settings);
    expect(() => call(undefined)).toThrow(TypeError);
    expect(() => call({ ...settings, lr: Number.NaN })).toThrow(/settings\.lr must be a finite number \(got NaN\)/);
    await expect(training.step(ids, Int32Array.of(2, 3, -5, -1), settings)).rejects.toThrow(/targets\[2\] = -5 .* not −1/);
    await training.step(ids, nextTokenTargets(ids, B, T), settings); // still usable
    training.dispose();
    expect(() => call(settings)).toThrow(/Gpt2Training\.step: this Gpt2Training has been disposed/);
    expect(() => training.readWeights()).toThrow(TypeError);
  });
});

describe('Gpt2Model', () => {
  it('refuses weights that do not fit the config, whatever the way in', async () => {
    const { config, weights } = await gpt2Fixture('tiny-relu-untied');
    expect(() => Gpt2Model.fromWeights(config, { ...weights, lmHead: null }, { backend })).toThrow(/weights\.lmHead must be a Float32Array .*tiedEmbeddings is false/);
    expect(() => Gpt2Model.fromWeights(config, { ...weights, layers: weights.layers.slice(1) }, { backend })).toThrow(/weights\.layers must hold config\.nLayer \d+ layers \(got \d+\)/);
    expect(() => Gpt2Model.fromWeights({ ...config, tiedEmbeddings: true }, weights, { backend })).toThrow(/weights\.lmHead must be null/);
    expect(() => new Gpt2Training(config, { ...weights, layers: weights.layers.slice(1) }, { batch: 1, T: 4, backend })).toThrow(/weights\.layers must hold/);
    // The model keeps its own frozen copy of the config: the caller's later changes do not reach it.
    const mine = { ...config };
    using model = Gpt2Model.fromWeights(mine, weights, { backend });
    mine.activation = mine.activation === 'relu' ? 'gelu' : 'relu';
    expect(model.config.activation).toBe(config.activation);
    expect(Object.isFrozen(model.config)).toBe(true);
  });

  it('refuses a cache of another model, and lists every hook name', async () => {
    const { config, weights } = await gpt2Fixture('tiny-gelu-new-tied'); // 2 layers
    using model = Gpt2Model.fromWeights(config, weights, { backend });
    using other = Gpt2Model.fromWeights({ ...config, nLayer: 1 }, { ...weights, layers: weights.layers.slice(0, 1) }, { backend });
    using cache = other.createCache(1, 4);
    await expect(model.forward(Int32Array.of(1, 2), 1, { cache })).rejects.toThrow(/the cache was made for a model of 1 layers .*; this one has 2 layers/);
    await expect(model.forward(Int32Array.of(1, 2), 1, { capture: 'blocks.0.mlp.hook_post' as unknown as string[] })).rejects.toThrow(/capture must be an array/);
    await expect(model.forward(Int32Array.of(1, 2), 1, { capture: ['blocks.0.mlp.hook_postt'] })).rejects.toThrow(
      /unknown hook 'blocks\.0\.mlp\.hook_postt': .*blocks\.\{0\.\.\d+\}\.\{hook_resid_pre, attn\.hook_z, hook_attn_out, hook_resid_mid, mlp\.hook_pre, mlp\.hook_post, hook_mlp_out, hook_resid_post\}/,
    );
  });

  it('refuses an intervention that disposes its activation or runs a forward of its own model, and stays usable', async () => {
    const { config, weights } = await gpt2Fixture('tiny-relu-untied');
    using model = Gpt2Model.fromWeights(config, weights, { backend });
    const ids = Int32Array.of(1, 2, 3);
    const hook = 'blocks.0.hook_resid_mid';
    await expect(model.forward(ids, 1, { logits: true, interventions: { [hook]: (x) => x.dispose() } })).rejects.toThrow(
      /the intervention at blocks\.0\.hook_resid_mid disposed the activation it was given/,
    );
    const reentrant = model.forward(ids, 1, { logits: true, interventions: { [hook]: async () => void (await model.forward(ids, 1, { logits: true })) } });
    const timeout = new Promise((resolve) => setTimeout(() => resolve('hung'), 5000));
    await expect(Promise.race([reentrant, timeout])).rejects.toThrow(/called from inside one of its own interventions/);
    const after = await model.forward(ids, 1, { logits: true });
    after.logits!.dispose();
  });

  it('checks replacements and steering values, and generation refuses non-finite logits', async () => {
    const { config, weights } = await gpt2Fixture('tiny-relu-untied');
    using model = Gpt2Model.fromWeights(config, weights, { backend });
    const ids = Int32Array.of(1, 2, 3);
    const hook = 'blocks.0.hook_resid_post';
    const C = config.dModel;
    using transposed = Tensor.zeros([C, 3], { backend });
    using ints = Tensor.zeros([3, C], { backend, dtype: 'i32' });
    await expect(model.forward(ids, 1, { logits: true, interventions: { [hook]: replaceWith(transposed) } })).rejects.toThrow(/has shape \[\d+, 3\]; the activation is \[3, \d+\]/);
    await expect(model.forward(ids, 1, { logits: true, interventions: { [hook]: replaceWith(ints) } })).rejects.toThrow(/is i32 on cpu; the activation is f32 on cpu/);
    let made: Tensor | null = null;
    const wrong = replaceWith(() => (made = Tensor.zeros([2, C], { backend })));
    await expect(model.forward(ids, 1, { logits: true, interventions: { [hook]: wrong } })).rejects.toThrow(RangeError);
    expect(made!.disposed).toBe(true); // the function's tensor is disposed even when refused
    const notATensor = replaceWith((() => 5) as unknown as () => Tensor);
    await expect(model.forward(ids, 1, { logits: true, interventions: { [hook]: notATensor } })).rejects.toThrow(/returned number, not a Tensor/);

    const direction = new Float32Array(C).fill(1);
    expect(() => addDirection(direction, Number.NaN)).toThrow(/the coefficient must be a finite number \(got NaN\)/);
    expect(() => addDirection(direction, undefined as unknown as number)).toThrow(RangeError);
    expect(() => meanAblate(Float32Array.of(...new Array<number>(C - 1).fill(0), Number.NaN))).toThrow(new RegExp(`mean\\[${C - 1}\\] is NaN`));
    await expect(generate(model, ids, { maxNewTokens: 2, interventions: { [hook]: (x) => x.fill(Number.NaN) } })).rejects.toThrow(/the logit of token 0 is NaN/);
    await expect(generate(model, Array.from(ids) as unknown as Int32Array, { maxNewTokens: 2 })).rejects.toThrow(/the prompt must be an Int32Array/);
  });
});

describe('Tensor data', () => {
  it('refuses values i32 cannot hold and data that is not numbers, instead of wrapping or reading NaN', () => {
    expect(() => Tensor.from([1.7, 2], [2], { dtype: 'i32', backend })).toThrow(/data\[0\] = 1\.7 is not an i32 value/);
    expect(() => Tensor.from([1, 2 ** 40], [2], { dtype: 'i32', backend })).toThrow(/data\[1\] = 1099511627776 is not an i32 value/);
    expect(() => Tensor.from('abcdef' as unknown as number[], [2, 3], { backend })).toThrow(/data must be a typed array or an array of numbers \(got string\)/);
    expect(() => Tensor.from(['a', 'b'] as unknown as number[], [2], { backend })).toThrow(/data\[0\] is a string, not a number/);
    using t = Tensor.zeros([4], { dtype: 'i32', backend });
    expect(() => t.fill(1e20)).toThrow(/fill value 100000000000000000000 is not an i32 value/);
    t.writeRange([7, 8], 1); // number[] converted, as upload does
    expect(Array.from(t.toArray())).toEqual([0, 7, 8, 0]);
    using f = Tensor.zeros([2], { backend });
    f.writeRange(Float64Array.of(1.5, 2.5) as unknown as Float32Array, 0);
    expect(Array.from(f.toArray())).toEqual([1.5, 2.5]);
    f.dispose();
    expect(() => f.toArray()).toThrow(TypeError);
  });

  it('gatherRows refuses to gather a tensor into itself', async () => {
    using x = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3], { backend });
    using idx = Tensor.from([1, 0], [2], { dtype: 'i32', backend });
    expect(() => gatherRows(x, idx, x)).toThrow(/dst must not be the same tensor as src/);
  });
});
