/**
 * Dead-feature resampling as the trainer wires it (lib/sae/trainer.ts, lib/sae/resample.ts):
 *   - resampleDeadFeatures gives every input of the stream the same chance when losses are equal,
 *     whichever chunk it arrives in (each chunk's sampling keys are offset by the inputs before it);
 *   - in a run, a resample at exactly step deadWindowSteps already finds the features that never
 *     fired; features it re-initialises count as fresh, so a resample 10 steps later leaves them
 *     alone; each resample takes its sampling seed from the run's generator.
 * The run's data make dead features certain: every input is t·u + small noise with t in [1, 2]
 * (one side of the origin), b_dec stays near 0 (no geometric-median initialisation, lr 1e-3), so
 * features whose encoder points away from u never fire. With encoderNormFactor 0, a re-initialised
 * feature has a zero encoder column and bias: it never fires again, and its decoder row never
 * moves (zero gradient, Adam moments reset), so a second re-initialisation would show as a new
 * decoder row.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { encodeNpy } from '../../lib/io/npy.js';
import { readCheckpoint } from '../../lib/io/checkpoint.js';
import { readSafetensors, tensorToFloat32 } from '../../lib/io/safetensors.js';
import { Rng } from '../../lib/random.js';
import { resampleDeadFeatures } from '../../lib/sae/resample.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { SAE_CHECKPOINT_LAYOUT, type TrainSummary, train } from '../../lib/sae/trainer.js';
import { Tensor } from '../../lib/tensor.js';
import { tempDir, testConfig } from '../helpers/run-fixtures.js';

it('every input of the stream is equally likely when losses are equal, whichever chunk it is in', async () => {
  // 47 inputs on the unit circle at angles 0.05·i, served in chunks of 16, 16 and 15; a zero
  // encoder and b_enc = −1 make every reconstruction b_dec = 0, so every loss is 1.
  const rows = 47;
  const d = 2;
  const data = new Float32Array(rows * d);
  for (let i = 0; i < rows; i++) [data[2 * i], data[2 * i + 1]] = [Math.cos(i * 0.05), Math.sin(i * 0.05)];
  const trials = 300;
  let late = 0;
  for (let seed = 0; seed < trials; seed++) {
    using sae = SparseAutoencoder.create({ dIn: d, dSae: 3, backend: 'cpu', seed: 1 });
    sae.writeParameters({ W_enc: new Float32Array(d * 3), b_enc: new Float32Array(3).fill(-1), W_dec: sae.readParameters().W_dec, b_dec: new Float32Array(d) });
    let served = 0;
    const tensors: Tensor[] = [];
    const next = async (n: number) => {
      const t = Tensor.from(data.slice(served * d, (served + n) * d), [n, d], { backend: 'cpu' });
      served += n;
      tensors.push(t);
      return t;
    };
    await resampleDeadFeatures(sae, Int32Array.of(0), next, { samples: rows, batchSize: 16, encNormFactor: 0.2, seed });
    for (const t of tensors) t.dispose();
    const w = sae.readParameters().W_dec; // row 0 is the drawn input
    if (Math.round(Math.atan2(w[1]!, w[0]!) / 0.05) >= 16) late++;
  }
  // 31 of the 47 inputs come after the first chunk. Binomial band of 4.5 standard deviations (a
  // chance of about 1e-5 to fail by bad luck). Keys that restarted at each chunk would repeat the
  // first chunk's keys in the later chunks: the draw then lands in the first chunk about 96% of
  // the time.
  const p = 31 / 47;
  expect(Math.abs(late / trials - p)).toBeLessThan(4.5 * Math.sqrt((p * (1 - p)) / trials));
});

describe('resampling in a training run', () => {
  const d = 6;
  const N = 512;
  const seed = 9;
  let run: TrainSummary;
  let root = '';

  beforeAll(async () => {
    root = tempDir('resample-wiring');
    const dataDir = path.join(root, 'data');
    mkdirSync(dataDir);
    const rng = new Rng(31);
    const u = Float32Array.from({ length: d }, () => rng.normal());
    const uNorm = Math.hypot(...u);
    const x = new Float32Array(N * d);
    for (let r = 0; r < N; r++) {
      const t = 1 + rng.uniform();
      for (let j = 0; j < d; j++) x[r * d + j] = (t * u[j]!) / uNorm + rng.range(-0.1, 0.1); // x[r, j]
    }
    writeFileSync(path.join(dataDir, 'acts.npy'), encodeNpy(x, [N, d]));
    run = await train(
      testConfig(dataDir, path.join(root, 'run'), {
        seed,
        sae: { dSae: 48, geometricMedianSamples: 0 },
        normalization: { enabled: false },
        training: { batchSize: 32, totalSteps: 40, lr: 1e-3, l1Coeff: 1 },
        resampling: { enabled: true, steps: [20, 30], deadWindowSteps: 20, samples: 256, encoderNormFactor: 0 },
        logging: { every: 10 },
        checkpoints: { every: 10, keep: 10 },
      }),
    );
  });

  const checkpointAt = (step: number) => path.join(run.outDir, 'checkpoints', `step-${String(step).padStart(9, '0')}`);
  async function params(step: number) {
    const { tensors } = await readSafetensors(path.join(checkpointAt(step), 'sae_weights.safetensors'));
    return { W_enc: tensorToFloat32(tensors.W_enc!, 'W_enc'), W_dec: tensorToFloat32(tensors.W_dec!, 'W_dec') };
  }

  it('resamples at step = deadWindowSteps the features that never fired', () => {
    expect(run.resamples.map((r) => r.step)).toEqual([20, 30]);
    expect(run.resamples[0]!.dead).toBeGreaterThan(0);
    expect(run.resamples[0]!.resampled).toBe(run.resamples[0]!.dead);
  });

  it('does not count the features re-initialised at step 20 as dead at step 30', async () => {
    const n = 48;
    const at20 = await params(20);
    const end = await params(40);
    // Re-initialised at 20 (encoderNormFactor 0): exactly zero encoder columns.
    const fresh: number[] = [];
    for (let i = 0; i < n; i++) if (Array.from({ length: d }, (_, j) => at20.W_enc[j * n + i]!).every((v) => v === 0)) fresh.push(i);
    expect(fresh.length).toBe(run.resamples[0]!.resampled);
    for (const i of fresh) {
      // The decoder row set at step 20 is still there at 40 (renormalising a unit row moves it by
      // fp32 rounding only: 1e-6); a second re-initialisation would point it at another input,
      // about 0.05 or more away.
      for (let j = 0; j < d; j++) expect(Math.abs(end.W_dec[i * d + j]! - at20.W_dec[i * d + j]!), `feature ${i}`).toBeLessThan(1e-6);
    }
  });

  it('draws each resample’s seed from the run’s generator: after two resamples it has made two draws', async () => {
    const { state } = await readCheckpoint(checkpointAt(40), SAE_CHECKPOINT_LAYOUT);
    const rng = new Rng(seed);
    expect(state.rng).not.toEqual(rng.state());
    rng.uniform();
    rng.uniform();
    expect(state.rng).toEqual(rng.state());
  });
});
