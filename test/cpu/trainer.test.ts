/**
 * The training run end to end on the CPU backend: exact resume after an interruption, corrupt
 * and truncated checkpoints, the SAELens export (normalisation folded in), metrics and curves.
 */
import { mkdirSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { readSafetensors, tensorToFloat32 } from '../../lib/io/safetensors.js';
import { CheckpointError, latestGoodCheckpoint, listCheckpoints, readCheckpoint } from '../../lib/sae/checkpoint.js';
import { readMetrics } from '../../lib/sae/metrics-log.js';
import { loadSaeLens } from '../../lib/sae/saelens.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { TrainingError, train } from '../../lib/sae/trainer.js';
import { Tensor } from '../../lib/tensor.js';
import { tempDir, testConfig, writePlantedActivations } from '../helpers/run-fixtures.js';

let root = '';
let data = '';

beforeAll(() => {
  root = tempDir('trainer');
  data = path.join(root, 'data');
  mkdirSync(data);
  writePlantedActivations(data, { atoms: 48, d: 16, files: 3, rowsPerFile: 1500, seed: 1 });
});

async function weights(dir: string): Promise<Record<string, Float32Array>> {
  const { tensors } = await readSafetensors(path.join(dir, 'sae_weights.safetensors'));
  return Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, tensorToFloat32(t, k)]));
}

const resampling = { enabled: true, steps: [50, 90], deadWindowSteps: 20, samples: 300 };

describe('resume', () => {
  it('an interrupted and resumed run ends bit-identical to an uninterrupted one (resampling, clipping, schedules on)', async () => {
    const overrides = {
      training: { batchSize: 64, totalSteps: 120, lr: 3e-2, l1Coeff: 2, lrWarmupSteps: 10, lrDecay: 'linear', l1WarmupSteps: 15, clipGradNorm: 5 },
      resampling: { ...resampling, lrRewarmupSteps: 5 },
    };
    const whole = await train(testConfig(data, path.join(root, 'whole'), overrides));
    expect(whole.interrupted).toBe(false);
    expect(whole.resamples.map((r) => r.step)).toEqual([50, 90]);

    const controller = new AbortController();
    const cut = await train(testConfig(data, path.join(root, 'cut'), overrides), {
      signal: controller.signal,
      onStep: (step) => step === 55 && controller.abort(),
    });
    expect(cut).toMatchObject({ interrupted: true, steps: 55, exportDir: null });
    expect(path.basename(cut.checkpoint!)).toBe('step-000000055');
    const resumed = await train(testConfig(data, path.join(root, 'cut'), overrides), { resume: true });
    expect(resumed).toMatchObject({ interrupted: false, steps: 120 });
    expect(resumed.resamples).toEqual(whole.resamples);
    console.log(`resume test resamples: ${JSON.stringify(whole.resamples)}`);
    expect(whole.resamples.every((r) => r.resampled > 0)).toBe(true);

    const a = await weights(whole.exportDir!);
    const b = await weights(resumed.exportDir!);
    for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec']) expect(Buffer.from(b[name]!.buffer).equals(Buffer.from(a[name]!.buffer))).toBe(true);

    // The metrics log has every step once, with the same values except timings.
    const strip = (records: Awaited<ReturnType<typeof readMetrics>>) => records.map(({ samplesPerSec, seconds, dataWaitFraction, ...rest }) => rest); // timings differ between runs
    const mWhole = await readMetrics(path.join(whole.outDir, 'metrics.jsonl'));
    const mResumed = await readMetrics(path.join(resumed.outDir, 'metrics.jsonl'));
    expect(strip(mResumed)).toEqual(strip(mWhole));
    expect(mWhole.filter((r) => r.event === 'resample').map((r) => r.step)).toEqual([50, 90]);
  });

  it('refuses to start over an existing run and to resume one without checkpoints', async () => {
    const config = testConfig(data, path.join(root, 'twice'), { training: { totalSteps: 5 } });
    await train(config);
    await expect(train(config)).rejects.toThrow(/already holds a run/);
    await expect(train(testConfig(data, path.join(root, 'never'), {}), { resume: true })).rejects.toThrow(TrainingError);
  });
});

describe('checkpoints', () => {
  it('keeps the newest K, detects corrupt and truncated ones, and falls back to the previous good one', async () => {
    const outDir = path.join(root, 'ckpt');
    await train(testConfig(data, outDir, { training: { totalSteps: 100 }, checkpoints: { every: 20, keep: 3 } }));
    const dir = path.join(outDir, 'checkpoints');
    expect((await listCheckpoints(dir)).map((c) => c.step)).toEqual([60, 80, 100]);
    expect(readdirSync(dir).some((n) => n.includes('.tmp-'))).toBe(false);

    const newest = path.join(dir, 'step-000000100', 'sae_weights.safetensors');
    const bytes = readFileSync(newest);
    bytes[bytes.length - 3]! ^= 0x40;
    writeFileSync(newest, bytes);
    await expect(readCheckpoint(path.join(dir, 'step-000000100'))).rejects.toThrow(/sae_weights\.safetensors fails its SHA-256 check/);
    truncateSync(path.join(dir, 'step-000000080', 'optimizer.safetensors'), 100);
    await expect(readCheckpoint(path.join(dir, 'step-000000080'))).rejects.toThrow(/optimizer\.safetensors holds 100 bytes, the manifest says \d+ \(truncated/);

    const skipped: string[] = [];
    const good = await latestGoodCheckpoint(dir, (e) => skipped.push(e.message));
    expect(good?.step).toBe(60);
    expect(skipped).toHaveLength(2);
    const log: string[] = [];
    const resumed = await train(testConfig(data, outDir, { training: { totalSteps: 100 }, checkpoints: { every: 20, keep: 3 } }), { resume: true, log: (l) => log.push(l) });
    expect(resumed.steps).toBe(100);
    expect(log.filter((l) => l.startsWith('skipping unusable checkpoint'))).toHaveLength(2);
    await expect(readCheckpoint(path.join(root, 'nowhere'))).rejects.toBeInstanceOf(CheckpointError);
  });
});

describe('export', () => {
  it('folds the input normalisation into the SAELens weights so they work on raw activations', async () => {
    const outDir = path.join(root, 'export');
    const config = testConfig(data, outDir, { training: { totalSteps: 30 } });
    const summary = await train(config);
    expect(summary.normalizationScale).not.toBe(1);
    const loaded = await loadSaeLens(summary.exportDir!);
    expect(loaded.training).toMatchObject({ normalization_scale_folded: summary.normalizationScale, training_steps: 30 });
    expect(loaded.sparsityLog10?.length).toBe(64);

    // The trained (normalised-space) SAE of the last checkpoint, applied to s·x, reconstructs
    // s·x̂ where x̂ is the exported SAE's reconstruction of raw x.
    const ckpt = await readCheckpoint(summary.checkpoint!);
    const trained = await weights(ckpt.path);
    const s = summary.normalizationScale;
    const x = new Float32Array(8 * 16).map((_, i) => Math.sin(i * 0.7) * 3);
    using raw = SparseAutoencoder.create({ dIn: 16, dSae: 64, backend: 'cpu' });
    raw.writeParameters(loaded.params);
    using scaled = SparseAutoencoder.create({ dIn: 16, dSae: 64, backend: 'cpu' });
    scaled.writeParameters({ W_enc: trained.W_enc!, b_enc: trained.b_enc!, W_dec: trained.W_dec!, b_dec: trained.b_dec! });
    using xt = Tensor.from(x, [8, 16], { backend: 'cpu' });
    using xs = Tensor.from(x.map((v) => v * s), [8, 16], { backend: 'cpu' });
    using fRaw = await raw.encode(xt);
    using fScaled = await scaled.encode(xs);
    const a = fRaw.toArray() as Float32Array;
    const b = fScaled.toArray() as Float32Array;
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(b[i]!)));
    using rRaw = await raw.decode(fRaw);
    using rScaled = await scaled.decode(fScaled);
    const ra = rRaw.toArray() as Float32Array;
    const rb = rScaled.toArray() as Float32Array;
    for (let i = 0; i < ra.length; i++) expect(Math.abs(ra[i]! * s - rb[i]!)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(rb[i]!)));

    const svg = readFileSync(path.join(outDir, 'curves.svg'), 'utf8');
    expect(svg).toContain('<svg');
    const records = await readMetrics(path.join(outDir, 'metrics.jsonl'));
    expect(records.map((r) => r.step)).toEqual([10, 20, 30]);
    for (const key of ['loss', 'mse', 'l1', 'l0', 'fvu', 'lr', 'l1Coeff', 'samplesPerSec', 'dataWaitFraction']) expect(typeof records[2]![key]).toBe('number');
  });
});

describe('starting a run', () => {
  it('a start that failed before its first checkpoint does not block a fresh start', async () => {
    const outDir = path.join(root, 'failed-start');
    await expect(train(testConfig(path.join(root, 'no-such-data'), outDir, {}))).rejects.toThrow(/no-such-data/);
    const summary = await train(testConfig(data, outDir, { training: { totalSteps: 10 } }));
    expect(summary.steps).toBe(10);
    expect((await readMetrics(path.join(outDir, 'metrics.jsonl'))).map((r) => r.step)).toEqual([10]);
  });
});

describe('divergence', () => {
  // The loss is read back only on logging steps; an enormous learning rate overflows within a step or two.
  it('a loss that stops being finite between reads is reported at the next read, naming the interval', async () => {
    const outDir = path.join(root, 'diverge-log');
    const cfg = testConfig(data, outDir, { training: { totalSteps: 60, lr: 1e30 }, logging: { every: 20 }, checkpoints: { every: 0 } });
    await expect(train(cfg)).rejects.toThrow(/the loss became (NaN|-?Infinity) by step 20 \(the loss is read every 20 steps\)/);
    expect(await listCheckpoints(path.join(outDir, 'checkpoints'))).toEqual([]);
  });

  it('a checkpoint between reads refuses parameters that are not finite, and writes nothing', async () => {
    const outDir = path.join(root, 'diverge-checkpoint');
    const cfg = testConfig(data, outDir, { training: { totalSteps: 60, lr: 1e30 }, logging: { every: 50 }, checkpoints: { every: 10 } });
    const error = await train(cfg).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TrainingError);
    expect((error as Error).message).toMatch(/^\w+\[\d+\] is (NaN|-?Infinity) at step 10: training diverged/);
    expect(await listCheckpoints(path.join(outDir, 'checkpoints'))).toEqual([]);
  });

  it('with an onStep hook every step is read, so the first non-finite loss is named exactly', async () => {
    const cfg = testConfig(data, path.join(root, 'diverge-hook'), { training: { totalSteps: 60, lr: 1e30 }, logging: { every: 20 }, checkpoints: { every: 0 } });
    const seen: number[] = [];
    const error = await train(cfg, { onStep: (step) => seen.push(step) }).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/the loss became (NaN|-?Infinity) at step (\d+);/);
    const at = Number(/at step (\d+);/.exec((error as Error).message)![1]);
    expect(at).toBeLessThan(20);
    expect(seen).toEqual(Array.from({ length: at - 1 }, (_, i) => i + 1)); // every step before it, each with finite statistics
  });
});
