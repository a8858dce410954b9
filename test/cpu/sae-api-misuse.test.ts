/**
 * The SAE API under misuse: calls made without awaiting the one before, hyperparameters that only
 * fail once rounded to fp32, partial or impossible states, outputs aliasing inputs, and train()
 * given a hand-made config, an aborted signal or a shorter run to resume. Each is done in call
 * order or refused with a typed error that names the problem, and a refusal changes nothing.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { Rng } from '../../lib/random.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { SaeLensError, loadSaeLensAsSae, saveSaeLens } from '../../lib/sae/saelens.js';
import { learningRateAt } from '../../lib/sae/schedules.js';
import { ConfigError } from '../../lib/sae/train-config.js';
import { TrainingError, train } from '../../lib/sae/trainer.js';
import { Tensor } from '../../lib/tensor.js';
import { tempDir, testConfig, writePlantedActivations } from '../helpers/run-fixtures.js';

const backend = 'cpu' as const;
const [dIn, dSae, B] = [7, 13, 5];
const make = () => SparseAutoencoder.create({ dIn, dSae, seed: 3, backend, lr: 1e-2, l1Coeff: 0.5 });
const batch = (seed: number) => {
  const rng = new Rng(seed);
  return Tensor.from(Float32Array.from({ length: B * dIn }, () => rng.normal()), [B, dIn], { backend });
};

describe('SparseAutoencoder', () => {
  it('uses the hyperparameters as they were when a step was called, and refuses state reads and writes while it is pending', async () => {
    using x = batch(1);
    using inOrder = make();
    const want = await inOrder.step(x);
    inOrder.setHyperparameters({ lr: 0.5, l1Coeff: 3 });
    const wantNext = await inOrder.step(x);

    using overlapped = make();
    const first = overlapped.step(x);
    overlapped.setHyperparameters({ lr: 0.5, l1Coeff: 3 }); // for the next step, not the queued one
    const second = overlapped.step(x);
    for (const call of [
      () => overlapped.writeParameters({ b_dec: new Float32Array(dIn) }),
      () => overlapped.fireCounts(),
      () => overlapped.resetFireCounts(),
      () => overlapped.readParameters(),
      () => overlapped.writeOptimizerState(overlapped.readOptimizerState()),
    ]) {
      expect(call).toThrow(/was called while an operation on it is still pending: await it first/);
    }
    expect(await first).toEqual(want);
    expect(await second).toEqual(wantNext);
    expect(overlapped.readParameters()).toEqual(inOrder.readParameters());
  });

  it('runs queued calls on inputs the caller disposed once the calls were made', async () => {
    using reference = make();
    using kept = batch(4);
    const wantStep = await reference.step(kept);
    const wantCode = Array.from((await reference.encode(kept)).toArray() as Float32Array);

    using sae = make();
    const x = batch(4);
    const step = sae.step(x); // the calls below queue behind this one
    const code = sae.encode(x);
    x.dispose();
    expect(await step).toEqual(wantStep);
    using f = await code;
    expect(Array.from(f.toArray() as Float32Array)).toEqual(wantCode);
  });

  it('refuses hyperparameters that only go wrong in fp32, and unknown keys', () => {
    using sae = make();
    expect(() => sae.setHyperparameters({ beta2: 0.99999999 })).toThrow(/beta2 must be in \[0, 1\), also once rounded to fp32/);
    expect(() => sae.setHyperparameters({ beta1: 1 - 1e-9 })).toThrow(/beta1 must be in/);
    expect(() => sae.setHyperparameters({ eps: 1e-50 })).toThrow(/eps must be > 0, also once rounded to fp32/);
    expect(() => sae.setHyperparameters({ lr: 1e300 })).toThrow(/lr 1e\+300 is beyond fp32's range/);
    expect(() => sae.setHyperparameters({ learningRate: 5 } as never)).toThrow(/unknown hyperparameter 'learningRate'/);
    expect(sae.hyperparameters).toMatchObject({ lr: 1e-2, l1Coeff: 0.5 });
    expect(() => SparseAutoencoder.create({ dIn, dSae, backend, seed: 2 ** 32 })).toThrow(/seed must be a 32-bit integer/);
  });

  it('changes nothing when a write is refused, and refuses optimizer states Adam cannot use', () => {
    using sae = make();
    const before = sae.readParameters();
    expect(() => sae.writeParameters({ W_enc: new Float32Array(dIn * dSae).fill(9), b_enc: new Float32Array(2) })).toThrow(/b_enc holds 2 values/);
    expect(() => sae.writeParameters({ Wenc: new Float32Array(1) } as never)).toThrow(/unknown parameter 'Wenc'/);
    expect(sae.readParameters()).toEqual(before);
    const state = sae.readOptimizerState();
    expect(() => sae.writeOptimizerState({ ...state, steps: 2 ** 31 })).toThrow(/steps must be an integer in \[0, 2\^31 - 1\)/);
    const v = { ...state.v, b_dec: new Float32Array(dIn).fill(-1) };
    expect(() => sae.writeOptimizerState({ ...state, v })).toThrow(/v\.b_dec\[0\] is -1: Adam's second moment must be finite and >= 0/);
    expect(() => sae.writeOptimizerState(null as never)).toThrow(TypeError);
  });

  it('refuses an output that is the input or one of its own tensors, and a non-finite sample for b_dec', async () => {
    using sae = make();
    using x = batch(2);
    expect(() => sae.encode(x, sae.parameters.W_enc as never)).toThrow(/out must (have shape|not be \(or overlap\) the input)/);
    using f = await sae.encode(x);
    expect(() => sae.decode(f, x)).not.toThrow(); // a distinct tensor of the right shape is fine
    using square = SparseAutoencoder.create({ dIn: 4, dSae: 4, seed: 1, backend });
    using y = Tensor.from(new Float32Array(16).fill(0.5), [4, 4], { backend });
    expect(() => square.encode(y, y)).toThrow(/out must not be \(or overlap\) the input or one of this SAE's own tensors/);
    expect(() => square.encode(y, square.parameters.W_enc)).toThrow(/out must not be \(or overlap\) the input/);
    expect(() => square.initDecoderBiasToGeometricMedian(Float32Array.of(1, 2, Number.NaN, 4))).toThrow(/sample\[2\] is NaN/);
    // null where an options object goes: a TypeError naming it, not a property read of null.
    expect(() => square.step(y, null as never)).toThrow('options must be an object (got null)');
    expect(() => square.resampleFeatures(Int32Array.of(0), null as never)).toThrow('candidates must be an object { keys, rows }');
  });

  it('saveSaeLens says when the folder is a file, and refuses weights it could not load back', async () => {
    const root = tempDir('sae-misuse-save');
    const file = path.join(root, 'file');
    writeFileSync(file, 'x');
    using sae = make();
    const params = sae.readParameters();
    const metadata = { modelName: null, hookName: null, contextSize: null, datasetPath: null };
    await expect(saveSaeLens(file, { dIn, dSae, params, metadata })).rejects.toThrow(SaeLensError);
    await expect(saveSaeLens(path.join(file, 'sae'), { dIn, dSae, params, metadata })).rejects.toThrow(/is a file, or lies under one/);
    params.W_dec[3] = Number.NaN;
    await expect(saveSaeLens(path.join(root, 'nan'), { dIn, dSae, params, metadata })).rejects.toThrow(/sae\.params\.W_dec\[3\] is NaN/);
  });
});

describe('loadSaeLensAsSae', () => {
  it('keeps the unit-norm decoder constraint only for an SAE whose decoder rows have unit norm', async () => {
    const root = tempDir('sae-misuse-load');
    using sae = make(); // unit-norm rows (the paper's SAE)
    const params = sae.readParameters();
    const metadata = { modelName: null, hookName: null, contextSize: null, datasetPath: null };
    await saveSaeLens(path.join(root, 'unit'), { dIn, dSae, params, metadata });
    await saveSaeLens(path.join(root, 'free'), { dIn, dSae, params: { ...params, W_dec: params.W_dec.map((w) => 3 * w) }, metadata });
    const unit = await loadSaeLensAsSae(path.join(root, 'unit'), { backend });
    const free = await loadSaeLensAsSae(path.join(root, 'free'), { backend });
    try {
      expect(unit.sae.constrainDecoder).toBe(true);
      expect(free.sae.constrainDecoder).toBe(false); // a step would have rescaled its rows to 1
    } finally {
      unit.sae.dispose();
      free.sae.dispose();
    }
  });
});

describe('train()', () => {
  let data: string;
  beforeAll(() => {
    data = tempDir('sae-misuse-train');
    writePlantedActivations(data, { atoms: 32, d: 16, files: 2, rowsPerFile: 512, seed: 4 });
  });

  it('refuses a config that was not parsed, key by key', async () => {
    await expect(train({ outDir: path.join(data, 'raw'), training: { totalSteps: 3 } } as never)).rejects.toThrow(ConfigError);
  });

  it('takes no step under a signal aborted before it starts, and refuses to resume into a shorter run', async () => {
    const outDir = path.join(data, 'aborted');
    const controller = new AbortController();
    controller.abort();
    const aborted = await train(testConfig(data, outDir, { training: { totalSteps: 20 } }), { signal: controller.signal });
    expect(aborted).toMatchObject({ steps: 0, interrupted: true });
    await train(testConfig(data, outDir, { training: { totalSteps: 20 } }), { resume: true });
    await expect(train(testConfig(data, outDir, { training: { totalSteps: 10 } }), { resume: true })).rejects.toThrow(
      new TrainingError("the checkpoint is at step 20, past the run's 10 steps: give at least 20 steps to resume it"),
    );
  });
});

describe('learningRateAt', () => {
  it('stays at the final rate past the end, and refuses an unknown decay', () => {
    const s = { lr: 1, warmupSteps: 0, decay: 'linear' as const, decayFraction: 0.5, minFraction: 0.1, rewarmupSteps: 0 };
    expect(learningRateAt(s, 12, 10)).toBeCloseTo(0.1, 12);
    expect(learningRateAt({ ...s, decay: 'cosine' }, 12, 10)).toBeCloseTo(0.1, 12);
    expect(() => learningRateAt({ ...s, decay: 'exp' as never }, 5, 10)).toThrow(/decay must be 'constant', 'linear' or 'cosine' \(got "exp"\)/);
  });
});
