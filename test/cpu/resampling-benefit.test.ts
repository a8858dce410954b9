/**
 * On planted-dictionary data, runs with the paper's dead-feature resampling end with fewer dead
 * features and a lower held-out loss than the same runs (same seeds, same data) without it.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import { expect, it } from 'vitest';

import { loadSaeLensAsSae } from '../../lib/sae/saelens.js';
import { train } from '../../lib/sae/trainer.js';
import { Tensor } from '../../lib/tensor.js';
import { tempDir, testConfig, writePlantedActivations } from '../helpers/run-fixtures.js';

// Over two seeds: one run's end depends on the order of its floating-point sums (a feature's
// pre-activation crossing 0 sends it another way), and one pair can land either side of the other.
const SEEDS = [0, 1];

it('resampling leaves fewer dead features and a lower held-out loss (256 atoms in 64 dimensions, 512 features, two seeds)', async () => {
  const root = tempDir('resampling');
  const data = path.join(root, 'data');
  mkdirSync(data);
  const planted = writePlantedActivations(data, { atoms: 256, d: 64, files: 3, rowsPerFile: 20_000, seed: 3 });
  const heldOut = planted.sample(4096);

  const results: Record<string, { dead: number; evalLoss: number; resampled: number[] }> = {};
  for (const enabled of [false, true]) for (const seed of SEEDS) {
    // A high learning rate kills many features early: the situation resampling is for.
    const config = testConfig(data, path.join(root, `${enabled ? 'with' : 'without'}-${seed}`), {
      seed,
      sae: { dSae: 512 },
      training: { batchSize: 256, totalSteps: 3000, lr: 2e-2, l1Coeff: 1 },
      logging: { every: 100, densityWindowSamples: 256 * 250 },
      resampling: { enabled, steps: [500, 1000, 1500, 2000, 2500], deadWindowSteps: 250, samples: 256 * 40 },
      checkpoints: { every: 0 },
    });
    const summary = await train(config);
    // Held-out loss of the exported SAE on raw activations (same λ, scaled by the same factor).
    const { sae } = await loadSaeLensAsSae(summary.exportDir!, { backend: 'cpu', precision: 'f32' });
    using _ = sae;
    const s = summary.normalizationScale;
    // On raw x the same SAE has MSE / s² and the same f, so λ / s² on raw inputs, times s², is the training loss.
    sae.setHyperparameters({ l1Coeff: 1 / (s * s) });
    using x = Tensor.from(heldOut, [4096, 64], { backend: 'cpu' });
    const stats = await sae.computeGradients(x);
    const key = enabled ? 'with' : 'without';
    const sum = (results[key] ??= { dead: 0, evalLoss: 0, resampled: [] });
    sum.dead += summary.dead!;
    sum.evalLoss += (stats.loss * s * s) / SEEDS.length;
    sum.resampled.push(...summary.resamples.map((r) => r.resampled));
  }
  console.log(`planted-dictionary resampling comparison: ${JSON.stringify(results)}`);
  expect(results.with!.resampled.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  expect(results.with!.dead).toBeLessThan(results.without!.dead);
  expect(results.with!.evalLoss).toBeLessThan(results.without!.evalLoss);
});
