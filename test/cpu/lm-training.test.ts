/**
 * Training a GPT-2-family model on the CPU (Gpt2Training): its loss equals the inference forward's,
 * its gradients match central differences of that loss, and AdamW steps on real text lower the
 * loss. (Every gradient against PyTorch autograd: test/cpu/transformer-grad-ops.test.ts.)
 */
import { readFileSync } from 'node:fs';

import { readSafetensors } from '../../lib/io/safetensors.js';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadGpt2Config } from '../../lib/lm/config.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { nextTokenTargets as shiftTargets } from '../../lib/lm/tokens.js';
import { Gpt2Training } from '../../lib/lm/training-model.js';
import { loadGpt2Weights } from '../../lib/lm/weights.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';

const fixtures = path.join(packageRoot(), 'test/fixtures/gpt2');
const backend = 'cpu' as const;

describe.each(['tiny-gelu-new-tied', 'tiny-relu-untied'])('%s', (name) => {
  it('the loss equals the inference forward’s, and gradients match central differences of it', async () => {
    const dir = path.join(fixtures, name);
    const config = await loadGpt2Config(dir);
    const weights = await loadGpt2Weights(dir, config);
    const [B, T] = [2, Math.min(9, config.nPositions)];
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 53 + 7) % config.vocabSize);
    const targets = shiftTargets(ids, B, T);
    using trainer = new Gpt2Training(config, weights, { batch: B, T, backend, precision: 'f32' });
    const loss = await trainer.forwardBackward(ids, targets);
    using model = Gpt2Model.fromWeights(config, weights, { backend, precision: 'f32' });
    const reference = (await model.forward(ids, B, { loss: true })).loss!.mean;
    expect(Math.abs(loss - reference)).toBeLessThan(1e-5 * reference);

    // Central differences on the inference forward (f32, h = 1e-2 on O(0.1–1) weights): a loose
    // check that every parameter's gradient lands in the right place with the right scale.
    const lossWith = async (mutate: (w: typeof weights) => void) => {
      const copy = structuredClone(weights);
      mutate(copy);
      using m = Gpt2Model.fromWeights(config, copy, { backend, precision: 'f32' });
      return (await m.forward(ids, B, { loss: true })).loss!.mean;
    };
    const probes: [string, (w: typeof weights) => Float32Array][] = [
      ['wpe', (w) => w.wpe],
      ['h.0.attnW', (w) => w.layers[0]!.attnW],
      ['h.0.projB', (w) => w.layers[0]!.projB],
      ['h.0.ln1W', (w) => w.layers[0]!.ln1W],
      ['h.0.fcW', (w) => w.layers[0]!.fcW],
      ['h.0.fcProjW', (w) => w.layers[0]!.fcProjW],
      ['lnFB', (w) => w.lnFB],
      ...(config.tiedEmbeddings ? [['wte', (w: typeof weights) => w.wte] as [string, (w: typeof weights) => Float32Array]] : [['lmHead', (w: typeof weights) => w.lmHead!] as [string, (w: typeof weights) => Float32Array]]),
    ];
    const h = 1e-2;
    for (const [param, pick] of probes) {
      const grad = trainer.gradient(param).toArray() as Float32Array;
      // the coordinate with the largest gradient, where the difference is well above f32 noise
      let best = 0;
      for (let i = 1; i < grad.length; i++) if (Math.abs(grad[i]!) > Math.abs(grad[best]!)) best = i;
      const plus = await lossWith((w) => void (pick(w)[best]! += h));
      const minus = await lossWith((w) => void (pick(w)[best]! -= h));
      const numeric = (plus - minus) / (2 * h);
      expect(Math.abs(numeric - grad[best]!), `${param}[${best}]: ${grad[best]} vs ${numeric}`).toBeLessThan(0.05 * Math.abs(grad[best]!) + 1e-4);
    }
  });
});

describe.each(['tiny-relu-untied', 'tiny-gelu-new-tied'])('%s', (name) => {
  it('10 AdamW steps track PyTorch’s losses (torch.optim.AdamW, float64) within 1e-4 relative', async () => {
    const dir = path.join(fixtures, name);
    const config = await loadGpt2Config(dir);
    const weights = await loadGpt2Weights(dir, config);
    const reference = JSON.parse(readFileSync(path.join(dir, 'adamw-losses.json'), 'utf8')) as { losses: number[] };
    const { tensors } = await readSafetensors(path.join(dir, 'reference.safetensors'));
    const ids = new Int32Array(tensors.input_ids!.bytes.slice().buffer);
    const [B, T] = tensors.input_ids!.shape as [number, number];
    using trainer = new Gpt2Training(config, weights, { batch: B, T, backend, precision: 'f32' });
    const settings = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipGradNorm: 0 };
    for (const [step, want] of reference.losses.entries()) {
      const { loss } = await trainer.step(ids, shiftTargets(ids, B, T), settings);
      expect(Math.abs(loss - want), `step ${step}: ${loss} vs ${want}`).toBeLessThan(1e-4 * want);
    }
  });
});

it('queued steps (statistics read once, clipping on the backend) equal steps completed one by one', async () => {
  const dir = path.join(fixtures, 'tiny-gelu-new-tied');
  const config = await loadGpt2Config(dir);
  const weights = await loadGpt2Weights(dir, config);
  const [B, T] = [3, config.nPositions];
  const rng = new Rng(5);
  const batches = Array.from({ length: 6 }, () => Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize)));
  const settings = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipGradNorm: 0.5 };
  using oneByOne = new Gpt2Training(config, weights, { batch: B, T, backend, precision: 'f32' });
  using queued = new Gpt2Training(config, weights, { batch: B, T, backend, precision: 'f32' });
  const results = [];
  for (const ids of batches) results.push(await oneByOne.step(ids, shiftTargets(ids, B, T), settings));
  expect(results.some((r) => r.gradNorm > settings.clipGradNorm)).toBe(true); // clipping took part
  for (const ids of batches) await queued.queueStep(ids, shiftTargets(ids, B, T), settings);
  const stats = queued.readStats();
  expect(stats.losses).toEqual(results.map((r) => r.loss));
  expect(stats.gradNorm).toBe(results.at(-1)!.gradNorm);
  expect(queued.readStats()).toEqual({ losses: [], gradNorm: Number.NaN });
  const [a, b] = [oneByOne.readState(), queued.readState()];
  expect(b.steps).toBe(6);
  for (const [i, t] of a.tensors.entries()) expect(Array.from(b.tensors[i]!.value), t.name).toEqual(Array.from(t.value));
});

it('AdamW steps on real text lower the loss', async () => {
  const dir = path.join(fixtures, 'tiny-gelu-new-tied');
  const config = await loadGpt2Config(dir);
  const weights = await loadGpt2Weights(dir, config);
  const tokenizer = await Tokenizer.load(dir);
  const text = readFileSync(path.join(packageRoot(), 'README.md'), 'utf8');
  const tokens = tokenizer.encode(text);
  const [B, T] = [8, config.nPositions];
  using trainer = new Gpt2Training(config, weights, { batch: B, T, backend, precision: 'f32' });
  const settings = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipGradNorm: 1 };
  const losses: number[] = [];
  for (let s = 0; s < 60; s++) {
    const ids = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const start = ((s * B + b) * 97) % (tokens.length - T - 1);
      ids.set(tokens.subarray(start, start + T), b * T);
    }
    const { loss, gradNorm } = await trainer.step(ids, shiftTargets(ids, B, T), settings);
    expect(Number.isFinite(gradNorm)).toBe(true);
    losses.push(loss);
  }
  const first = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
  const last = losses.slice(-5).reduce((a, b) => a + b) / 5;
  console.log(`lm training on README text: loss ${first.toFixed(3)} → ${last.toFixed(3)} over 60 steps`);
  expect(last).toBeLessThan(first * 0.8);
  expect(trainer.steps).toBe(60);
});
