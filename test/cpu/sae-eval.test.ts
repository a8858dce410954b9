/**
 * evaluateSae on SAEs with known answers, at the ReLU MLP of the fixture model (activations ≥ 0):
 * a lossless dictionary [I | −I] (nothing unexplained, loss fully recovered, KL 0, the −I half
 * dead) and one whose decoder is zero (its splice equals zero-ablation: nothing recovered); and a
 * random SAE whose device-reduced statistics match a float64 recomputation on the host.
 */
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { densityHistogram, evaluateSae } from '../../lib/analysis/sae-eval.js';
import { saeSplice } from '../../lib/lm/interventions.js';
import { Gpt2Model, type Intervention } from '../../lib/lm/model.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { klRowsRef } from '../reference/transformer-reference.js';

const dir = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-relu-untied');
const hook = 'blocks.0.mlp.hook_post';
const T = 13;
const COUNT = 11; // contexts: not a multiple of the batch of 4
let model: Gpt2Model;
let contexts: Int32Array;

beforeAll(async () => {
  model = await Gpt2Model.load(dir, { backend: 'cpu' });
  const rng = new Rng(5);
  contexts = Int32Array.from({ length: COUNT * T }, () => rng.int(model.config.vocabSize));
});

/** SAE with W_enc [d, 2d] = [I | −I] · s and W_dec [2d, d] = [I; −I] / s (or zero). */
function plusMinusSae(d: number, decoder: 'identity' | 'zero'): SparseAutoencoder {
  const n = 2 * d;
  const sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend: 'cpu', precision: 'f32', constrainDecoder: false, penalty: 'l1_decnorm' });
  const W_enc = new Float32Array(d * n);
  const W_dec = new Float32Array(n * d);
  for (let j = 0; j < d; j++) {
    W_enc[j * n + j] = 1; // W_enc[j, j]
    W_enc[j * n + d + j] = -1; // W_enc[j, d + j]
    if (decoder === 'identity') {
      W_dec[j * d + j] = 1; // W_dec[j, j]
      W_dec[(d + j) * d + j] = -1; // W_dec[d + j, j]
    }
  }
  sae.writeParameters({ W_enc, W_dec, b_enc: new Float32Array(n), b_dec: new Float32Array(d) });
  return sae;
}

/** The hook's activations of every context, positions 1..T−1: per-neuron "ever positive" and the mean count of positive entries. */
async function activationFacts(d: number) {
  const ever = new Uint8Array(d);
  let positive = 0;
  let rows = 0;
  const { captured } = await model.forward(contexts, COUNT, { capture: [hook] });
  using x = captured[hook]!;
  const xs = x.toArray() as Float32Array;
  for (let r = 0; r < COUNT * T; r++) {
    if (r % T === 0) continue;
    rows += 1;
    for (let j = 0; j < d; j++) {
      if (xs[r * d + j]! > 0) {
        ever[j] = 1;
        positive += 1;
      }
    }
  }
  return { everPositive: ever.reduce((a, b) => a + b, 0), l0: positive / rows, rows };
}

describe('evaluateSae', () => {
  it('a lossless dictionary: FVU 0, loss fully recovered, KL 0; the −I half and silent neurons are dead', async () => {
    const d = model.config.dMlp;
    using sae = plusMinusSae(d, 'identity');
    const facts = await activationFacts(d);
    const e = await evaluateSae(model, sae, hook, contexts, T, { batch: 4 });
    expect(e.rows).toBe(facts.rows);
    expect(e.mse).toBe(0);
    expect(e.fvu).toBe(0);
    expect(e.loss.spliced).toBe(e.loss.clean);
    expect(e.loss.fractionRecovered).toBe(1);
    expect(e.loss.klSpliced).toBe(0);
    expect(e.l0).toBeCloseTo(facts.l0, 12);
    expect(e.dead).toBe(2 * d - facts.everPositive);
    const histogram = densityHistogram(e.density);
    expect(histogram.dead).toBe(e.dead);
    expect(histogram.bins.reduce((n, b) => n + b.count, 0)).toBe(facts.everPositive);
  });

  it('a zero decoder: the splice is zero-ablation, nothing recovered, FVU = Σ‖x‖² / Σ‖x − mean‖²', async () => {
    const d = model.config.dMlp;
    using sae = plusMinusSae(d, 'zero');
    const e = await evaluateSae(model, sae, hook, contexts, T, { batch: 4 });
    expect(e.loss.spliced).toBe(e.loss.zeroAblated); // x̂ = b_dec = 0 everywhere but the BOS rows, which both keep
    expect(Math.abs(e.loss.fractionRecovered)).toBe(0);
    expect(e.loss.klSpliced).toBeGreaterThan(0);
    expect(e.fvu).toBeGreaterThan(1); // nonnegative activations have a nonzero mean
  });

  it('a random SAE: MSE, FVU, L0, densities and KL equal a float64 recomputation on the host', async () => {
    const d = model.config.dMlp;
    const n = 3 * d + 5;
    using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend: 'cpu', precision: 'f32', seed: 9 });
    const e = await evaluateSae(model, sae, hook, contexts, T, { batch: 3 });

    const { captured } = await model.forward(contexts, COUNT, { capture: [hook] });
    using x = captured[hook]!;
    using f = await sae.encode(x);
    using xhat = await sae.decode(f);
    const [xs, xh, fs] = [x.toFloat32(), xhat.toFloat32(), f.toFloat32()];
    const fired = new Float64Array(n);
    const sum = new Float64Array(d);
    let [sq, err, active, rows] = [0, 0, 0, 0];
    for (let r = 0; r < COUNT * T; r++) {
      if (r % T === 0) continue; // the BOS position
      rows += 1;
      for (let j = 0; j < d; j++) {
        const v = xs[r * d + j]!; // x[r, j]
        sum[j]! += v;
        sq += v * v;
        err += (v - xh[r * d + j]!) ** 2;
      }
      for (let i = 0; i < n; i++) if (fs[r * n + i]! > 0) (fired[i]! += 1), (active += 1); // f[r, i]
    }
    const centred = sq - sum.reduce((a, s) => a + (s * s) / rows, 0);
    expect(e.rows).toBe(rows);
    // Per-row errors come back in fp32: 1e-7 relative.
    expect(Math.abs(e.mse - err / (rows * d)) / (err / (rows * d))).toBeLessThan(1e-7);
    expect(Math.abs(e.fvu - err / centred) / (err / centred)).toBeLessThan(1e-7);
    expect(e.l0).toBeCloseTo(active / rows, 12);
    expect(Array.from(e.density)).toEqual(Array.from(fired, (c) => c / rows));
    expect(e.dead).toBe(fired.filter((c) => c === 0).length);

    const keepBos: Intervention = async (t, context) => {
      const bos = Array.from({ length: COUNT }, (_, c) => t.readRange(c * T * d, d)); // row c·T
      await saeSplice(sae)(t, context);
      bos.forEach((row, c) => t.writeRange(row, c * T * d));
    };
    const clean = await model.forward(contexts, COUNT, { logits: true });
    using cleanLogits = clean.logits!;
    const spliced = await model.forward(contexts, COUNT, { logits: true, interventions: { [hook]: keepBos } });
    using splicedLogits = spliced.logits!;
    const V = model.config.vocabSize;
    const kl = klRowsRef(cleanLogits.toFloat32(), splicedLogits.toFloat32(), COUNT * T, V);
    // Positions 1..T−2: position 0's prediction is the same in both (its activation kept), T−1 has no next token.
    const klMean = kl.reduce((a, v, r) => (r % T === 0 || r % T === T - 1 ? a : a + v), 0) / (COUNT * (T - 2));
    expect(kl.filter((_, r) => r % T === 0).every((v) => Math.abs(v) < 1e-9)).toBe(true);
    expect(e.loss.tokens).toBe(COUNT * (T - 2));
    expect(klMean).toBeGreaterThan(1e-4);
    expect(Math.abs(e.loss.klSpliced - klMean) / klMean).toBeLessThan(1e-5);
  });

  it('refuses a hook the model lacks or a width the SAE does not read', async () => {
    using sae = plusMinusSae(8, 'zero');
    await expect(evaluateSae(model, sae, 'blocks.3.mlp.hook_post', contexts, T)).rejects.toThrow(/unknown hook 'blocks.3.mlp.hook_post'/);
    await expect(evaluateSae(model, sae, hook, contexts, T)).rejects.toThrow(/reads 8-wide activations but blocks.0.mlp.hook_post is 128 wide/);
  });
});
