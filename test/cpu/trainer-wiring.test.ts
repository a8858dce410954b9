/**
 * What the SAE trainer (lib/sae/trainer.ts) computes around its steps, checked against float64
 * recomputations on a data set small enough to know every batch: 96 rows of d = 7, far from the
 * origin (a different offset of 3 to 6 on each coordinate), in one file.
 *   - FVU: a batch of 96 rows is one whole epoch, so every logged FVU is the step's mse over the
 *     variance of the whole data set about its column means (an uncentred variance would count
 *     the offsets);
 *   - each record's l1Coeff and lr are the schedules' values for the step that ran, not the next;
 *   - normalisation: the scale makes the mean norm of the scaled inputs √d;
 *   - initialisation: b_dec starts at the geometric median of the scaled sample.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { encodeNpy } from '../../lib/io/npy.js';
import { readCheckpoint } from '../../lib/io/checkpoint.js';
import { readSafetensors, tensorToFloat64 } from '../../lib/io/safetensors.js';
import { Rng } from '../../lib/random.js';
import { geometricMedian } from '../../lib/sae/geometric-median.js';
import { readMetrics } from '../../lib/sae/metrics-log.js';
import { l1CoeffAt, learningRateAt } from '../../lib/sae/schedules.js';
import { SAE_CHECKPOINT_LAYOUT, train } from '../../lib/sae/trainer.js';
import { tempDir, testConfig } from '../helpers/run-fixtures.js';

const N = 96;
const d = 7;
let root = '';
let dataDir = '';
const x = new Float32Array(N * d);

beforeAll(() => {
  root = tempDir('trainer-wiring');
  dataDir = path.join(root, 'data');
  mkdirSync(dataDir);
  const rng = new Rng(23);
  for (let r = 0; r < N; r++) for (let j = 0; j < d; j++) x[r * d + j] = 3 + 0.5 * j + rng.normal() * (0.5 + 0.1 * j); // x[r, j]
  writeFileSync(path.join(dataDir, 'acts.npy'), encodeNpy(x, [N, d]));
});

describe('SAE trainer wiring', () => {
  it('logs FVU = mse / centred variance of the batch, and the λ and lr of the step that ran', async () => {
    const total = 7;
    const config = testConfig(dataDir, path.join(root, 'fvu'), {
      data: { chunkRows: 16, bufferChunks: 2 },
      sae: { dSae: 20, geometricMedianSamples: 0 },
      normalization: { enabled: false },
      training: { batchSize: N, totalSteps: total, lr: 1e-2, l1Coeff: 2, l1WarmupSteps: 4, lrWarmupSteps: 3 },
      logging: { every: 1 },
      checkpoints: { every: 0 },
    });
    const summary = await train(config);
    // Σ_j variance of column j over all N rows, two-pass in float64.
    let variance = 0;
    for (let j = 0; j < d; j++) {
      let mean = 0;
      for (let r = 0; r < N; r++) mean += x[r * d + j]! / N;
      for (let r = 0; r < N; r++) variance += (x[r * d + j]! - mean) ** 2 / N;
    }
    const records = (await readMetrics(path.join(summary.outDir, 'metrics.jsonl'))).filter((r) => r.mse !== undefined);
    expect(records.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const t = config.training;
    const schedule = { lr: t.lr, warmupSteps: t.lrWarmupSteps, decay: t.lrDecay, decayFraction: t.decayFraction, minFraction: t.minLrFraction, rewarmupSteps: 0 };
    for (const r of records) {
      // The trainer's variance comes from float64 column sums (Σx² − (Σx)²/N) of the same values:
      // 1e-9 relative covers that formula's cancellation at these offsets (about 1e-14).
      const [fvu, mse] = [r.fvu as number, r.mse as number];
      expect(Math.abs(fvu - mse / variance), `step ${r.step}`).toBeLessThan(1e-9 * (mse / variance));
      // Record `step` follows steps 0 … step − 1; its hyperparameters are those step − 1 ran with.
      expect(r.l1Coeff, `λ at step ${r.step}`).toBe(l1CoeffAt({ l1Coeff: t.l1Coeff, warmupSteps: t.l1WarmupSteps }, r.step - 1));
      expect(r.lr, `lr at step ${r.step}`).toBe(learningRateAt(schedule, r.step - 1, total));
    }
    expect(records[0]!.l1Coeff).toBe(0.5); // λ / 4 at step 0
  });

  it('scales the inputs to mean norm √d and starts b_dec at the geometric median of the scaled sample', async () => {
    // Normalisation reads 2 batches of 48 and the median 96 rows: both see every row once.
    const config = testConfig(dataDir, path.join(root, 'init'), {
      data: { chunkRows: 16, bufferChunks: 2 },
      sae: { dSae: 20, geometricMedianSamples: N },
      normalization: { enabled: true, batches: 2 },
      training: { batchSize: N / 2, totalSteps: 1, lr: 1e-9 },
      logging: { every: 1 },
      checkpoints: { every: 0 },
    });
    const summary = await train(config);
    const checkpoint = await readCheckpoint(summary.checkpoint!, SAE_CHECKPOINT_LAYOUT);
    const scale = checkpoint.state.normalizationScale;
    let meanNorm = 0;
    for (let r = 0; r < N; r++) meanNorm += Math.hypot(...x.subarray(r * d, (r + 1) * d)) / N;
    // The trainer's norms are fp32 on the backend: 1e-6 relative. (d / mean would be √7 times larger.)
    expect(Math.abs(scale * meanNorm - Math.sqrt(d))).toBeLessThan(1e-6 * Math.sqrt(d));

    const { tensors } = await readSafetensors(path.join(summary.checkpoint!, 'sae_weights.safetensors'));
    const bDec = tensorToFloat64(tensors.b_dec!, 'b_dec');
    const median = geometricMedian(x, N, d).map((v) => v * scale);
    // Weiszfeld stops within 1e-7 (1 + ‖m‖) of the median, with rows in another order here; the one
    // step at lr 1e-9 moves b_dec by at most 1e-9. Tolerance 1e-6 relative to ‖m‖.
    let diff = 0;
    let norm = 0;
    for (let j = 0; j < d; j++) {
      diff += (bDec[j]! - median[j]!) ** 2;
      norm += median[j]! ** 2;
    }
    expect(Math.sqrt(diff)).toBeLessThan(1e-6 * Math.sqrt(norm));
  });
});
