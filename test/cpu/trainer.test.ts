/**
 * The training run end to end on the CPU backend: exact resume after an interruption, corrupt
 * and truncated checkpoints, the SAELens export (normalisation folded in), metrics and curves.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it, vi } from 'vitest';

import { readSafetensors, tensorToFloat32, tensorToFloat64 } from '../../lib/io/safetensors.js';
import { CheckpointError, latestGoodCheckpoint, listCheckpoints, readCheckpoint } from '../../lib/io/checkpoint.js';
import { readMetrics } from '../../lib/sae/metrics-log.js';
import { loadSaeLens, loadSaeLensAsSae } from '../../lib/sae/saelens.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { SAE_CHECKPOINT_LAYOUT, TrainingError, checkpointTooLarge, train } from '../../lib/sae/trainer.js';
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
    // So are the exported densities: the checkpoint at step 55 (between two snapshots) kept the recent firing counts.
    expect(readFileSync(path.join(resumed.exportDir!, 'sparsity.safetensors')).equals(readFileSync(path.join(whole.exportDir!, 'sparsity.safetensors')))).toBe(true);

    // The metrics log has every step once, with the same values except timings.
    const strip = (records: Awaited<ReturnType<typeof readMetrics>>) => records.map(({ samplesPerSec, seconds, dataWaitFraction, ...rest }) => rest); // timings differ between runs
    const mWhole = await readMetrics(path.join(whole.outDir, 'metrics.jsonl'));
    const mResumed = await readMetrics(path.join(resumed.outDir, 'metrics.jsonl'));
    expect(strip(mResumed)).toEqual(strip(mWhole));
    expect(mWhole.filter((r) => r.event === 'resample').map((r) => r.step)).toEqual([50, 90]);
  });

  // 120 steps of 64, cut at step 95 (between two snapshots). A window of 3,200 inputs: the export
  // covers steps 70 to 120, across the cut. Of 1,600: steps 90 to 120, the snapshot before the cut
  // and the checkpoint's at 95 in one bucket, as in the uninterrupted run.
  it.each([3_200, 1_600])('exports the densities of the latest inputs, the same after an interruption within them (window %i)', async (window) => {
    const overrides = { training: { batchSize: 64, totalSteps: 120 }, logging: { every: 10, densityWindowSamples: window } };
    const whole = await train(testConfig(data, path.join(root, `density-whole-${window}`), overrides));
    const controller = new AbortController();
    const cutDir = path.join(root, `density-cut-${window}`);
    await train(testConfig(data, cutDir, overrides), { signal: controller.signal, onStep: (step) => step === 95 && controller.abort() });
    const resumed = await train(testConfig(data, cutDir, overrides), { resume: true });
    const sparsity = (dir: string) => readFileSync(path.join(dir, 'sparsity.safetensors'));
    expect(sparsity(resumed.exportDir!).equals(sparsity(whole.exportDir!))).toBe(true);

    // The run's latest inputs, as the SAE ended: with the window of 3,200, not the window that
    // closed last (steps 50 to 100); with 1,600, the one that closed at step 120 is just those.
    const exported = (await loadSaeLens(whole.exportDir!)).sparsityLog10!;
    const checkpoint = await readCheckpoint(path.join(whole.outDir, 'checkpoints', 'step-000000120'), SAE_CHECKPOINT_LAYOUT);
    expect(checkpoint.state.firing.recentSamples!.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(window);
    const { tensors } = await readSafetensors(path.join(checkpoint.path, 'firing.safetensors'));
    const lastWindow = tensorToFloat64(tensors.last_density!);
    expect(Array.from(exported).some((v, j) => Math.abs(v - Math.log10(lastWindow[j]! + 1e-10)) > 1e-3)).toBe(window === 3_200);
  });

  it('resumes a checkpoint written before recent firing counts were kept, from its density windows', async () => {
    const overrides = { training: { batchSize: 64, totalSteps: 60 }, logging: { every: 10, densityWindowSamples: 1_600 }, checkpoints: { every: 30 } };
    const outDir = path.join(root, 'density-older');
    const controller = new AbortController();
    await train(testConfig(data, outDir, overrides), { signal: controller.signal, onStep: (step) => step === 35 && controller.abort() });
    const checkpoint = path.join(outDir, 'checkpoints', 'step-000000035');
    const state = JSON.parse(readFileSync(path.join(checkpoint, 'state.json'), 'utf8')) as { firing: Record<string, unknown> };
    delete state.firing.recentSamples;
    const bytes = Buffer.from(JSON.stringify(state));
    writeFileSync(path.join(checkpoint, 'state.json'), bytes);
    const manifest = JSON.parse(readFileSync(path.join(checkpoint, 'manifest.json'), 'utf8')) as { files: Record<string, { bytes: number; sha256: string }> };
    manifest.files['state.json'] = { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    writeFileSync(path.join(checkpoint, 'manifest.json'), JSON.stringify(manifest));

    const resumed = await train(testConfig(data, outDir, overrides), { resume: true });
    expect(resumed.steps).toBe(60);
    const sparsity = (await loadSaeLens(resumed.exportDir!)).sparsityLog10!;
    expect(sparsity.length).toBe(64);
    expect(sparsity.every((v) => Number.isFinite(v) && v <= 0)).toBe(true);
  });

  it('a stop after the last step still finishes the run: the SAE is exported', async () => {
    const controller = new AbortController();
    const run = await train(testConfig(data, path.join(root, 'stopped-at-end'), { training: { totalSteps: 30 } }), {
      signal: controller.signal,
      onStep: (step) => step === 30 && controller.abort(),
    });
    expect(run).toMatchObject({ interrupted: false, steps: 30 });
    expect(run.exportDir).not.toBeNull();
  });

  it('refuses to start over an existing run and to resume one without checkpoints', async () => {
    const config = testConfig(data, path.join(root, 'twice'), { training: { totalSteps: 5 } });
    await train(config);
    await expect(train(config)).rejects.toThrow(/already holds a run/);
    await expect(train(testConfig(data, path.join(root, 'never'), {}), { resume: true })).rejects.toThrow(TrainingError);
  });

  it('resumes over a metrics log with a bad line (not the torn last one), dropping it with a one-line warning', async () => {
    const outDir = path.join(root, 'metrics-bad-line');
    await train(testConfig(data, outDir, { training: { totalSteps: 40 }, checkpoints: { every: 20 } }));
    const metricsFile = path.join(outDir, 'metrics.jsonl');
    const lines = readFileSync(metricsFile, 'utf8').split('\n');
    lines.splice(1, 0, '\0\0\0\0'); // NULs as a crash or power loss leaves them
    writeFileSync(metricsFile, lines.join('\n'));
    // The warning goes to the log or, where the trainer gives the metrics log none, to stderr.
    const said: string[] = [];
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => said.push(String(chunk)) > 0);
    try {
      const resumed = await train(testConfig(data, outDir, { training: { totalSteps: 60 }, checkpoints: { every: 20 } }), { resume: true, log: (l) => said.push(l) });
      expect(resumed.steps).toBe(60);
    } finally {
      stderr.mockRestore();
    }
    expect(said.filter((l) => /^metrics log .*metrics\.jsonl: dropping line 2 that is not a metrics record: "\\u0000/.test(l))).toHaveLength(1);
    const steps = (await readMetrics(metricsFile)).map((r) => r.step);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(new Set(steps).size).toBe(steps.length);
    expect(steps.at(-1)).toBe(60);
  });
});

describe('resampling', () => {
  const lrAt = (records: Awaited<ReturnType<typeof readMetrics>>, step: number) => records.find((r) => r.step === step && r.lr !== undefined)!.lr as number;

  it('skips a resample at the last step (the export would hold untrained features), saying so', async () => {
    const lines: string[] = [];
    const overrides = { training: { batchSize: 64, totalSteps: 100, lr: 3e-2, l1Coeff: 2 }, resampling: { ...resampling, steps: [50, 100] } };
    const run = await train(testConfig(data, path.join(root, 'resample-at-end'), overrides), { log: (line) => lines.push(line) });
    expect(run.resamples.map((r) => r.step)).toEqual([50]);
    expect(run.resamples[0]!.resampled).toBeGreaterThan(0);
    expect(lines.filter((line) => line.startsWith('resampling.steps [100]: not before'))).toHaveLength(1);
  });

  it('before deadWindowSteps have passed, a resample finds no feature dead (none has been silent for a whole window)', async () => {
    const lines: string[] = [];
    const overrides = { training: { batchSize: 64, totalSteps: 12, lr: 3e-2, l1Coeff: 2 }, resampling: { ...resampling, steps: [2, 10], deadWindowSteps: 8 } };
    const run = await train(testConfig(data, path.join(root, 'resample-before-window'), overrides), { log: (line) => lines.push(line) });
    expect(run.resamples[0]).toMatchObject({ step: 2, dead: 0, resampled: 0 });
    expect(lines).toContain('step 2: resampling.deadWindowSteps (8) have not passed yet: no feature can be called dead');
    expect(run.resamples[1]!.step).toBe(10); // after the window: counted as usual
  });

  it('warms the learning rate up again after a resample that resampled features, not after one that found none dead', async () => {
    // λ = 2 and a high rate kill features by step 50; λ = 0 at a low rate kills none.
    const run = async (name: string, training: object) => {
      const overrides = { training: { batchSize: 64, totalSteps: 60, ...training }, resampling: { ...resampling, steps: [50], lrRewarmupSteps: 10 }, logging: { every: 1, densityWindowSamples: 1280 } };
      const result = await train(testConfig(data, path.join(root, name), overrides));
      return { event: result.resamples[0]!, metrics: await readMetrics(path.join(result.outDir, 'metrics.jsonl')) };
    };
    const killing = await run('rewarm-after-resample', { lr: 3e-2, l1Coeff: 2 });
    expect(killing.event.resampled).toBeGreaterThan(0);
    expect(lrAt(killing.metrics, 51) / lrAt(killing.metrics, 50)).toBeCloseTo(0.1, 6); // 1/10 of the rate, then up again
    const none = await run('no-rewarm-without-resample', { lr: 1e-3, l1Coeff: 0 });
    expect(none.event).toMatchObject({ dead: 0, resampled: 0 });
    expect(lrAt(none.metrics, 51)).toBe(lrAt(none.metrics, 50));
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
    await expect(readCheckpoint(path.join(dir, 'step-000000100'), SAE_CHECKPOINT_LAYOUT)).rejects.toThrow(/sae_weights\.safetensors fails its SHA-256 check/);
    truncateSync(path.join(dir, 'step-000000080', 'optimizer.safetensors'), 100);
    await expect(readCheckpoint(path.join(dir, 'step-000000080'), SAE_CHECKPOINT_LAYOUT)).rejects.toThrow(/optimizer\.safetensors holds 100 bytes, the manifest says \d+ \(truncated/);

    const skipped: string[] = [];
    const good = await latestGoodCheckpoint(dir, SAE_CHECKPOINT_LAYOUT, (e) => skipped.push(e.message));
    expect(good?.step).toBe(60);
    expect(skipped).toHaveLength(2);
    const log: string[] = [];
    const resumed = await train(testConfig(data, outDir, { training: { totalSteps: 100 }, checkpoints: { every: 20, keep: 3 } }), { resume: true, log: (l) => log.push(l) });
    expect(resumed.steps).toBe(100);
    expect(log.filter((l) => l.startsWith('skipping unusable checkpoint'))).toHaveLength(2);
    await expect(readCheckpoint(path.join(root, 'nowhere'), SAE_CHECKPOINT_LAYOUT)).rejects.toBeInstanceOf(CheckpointError);
  });

  it('skips a newest checkpoint that verifies but is incomplete (files or state.json fields missing) and falls back', async () => {
    const outDir = path.join(root, 'ckpt-incomplete');
    const config = testConfig(data, outDir, { training: { totalSteps: 40 }, checkpoints: { every: 20, keep: 3 } });
    await train(config);
    const dir = path.join(outDir, 'checkpoints');
    const newest = path.join(dir, 'step-000000040');
    const manifestFile = path.join(newest, 'manifest.json');
    const stateFile = path.join(newest, 'state.json');
    const original = { manifest: readFileSync(manifestFile, 'utf8'), state: readFileSync(stateFile, 'utf8') };
    const manifest = () => JSON.parse(original.manifest) as { files: Record<string, { bytes: number; sha256: string }> };
    // A state.json written with a manifest that matches it, so that only its fields are at fault.
    const writeState = (state: object) => {
      const bytes = Buffer.from(JSON.stringify(state));
      writeFileSync(stateFile, bytes);
      const m = manifest();
      m.files['state.json'] = { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
      writeFileSync(manifestFile, JSON.stringify(m));
    };
    const damages: { name: string; damage: () => void; message: RegExp }[] = [
      { name: 'no files listed', damage: () => writeFileSync(manifestFile, JSON.stringify({ ...manifest(), files: {} })), message: /sae_weights\.safetensors is not listed in manifest\.json \(an SAE trainer writes / },
      {
        name: 'a file not listed',
        damage: () => {
          const m = manifest();
          delete m.files['firing.safetensors'];
          writeFileSync(manifestFile, JSON.stringify(m));
        },
        message: /firing\.safetensors is not listed in manifest\.json/,
      },
      { name: 'state.json fields missing', damage: () => writeState({ step: 40 }), message: /state\.json: samples: .*\(and \d+ more problems\)/ },
      { name: 'state.json of another step', damage: () => writeState({ ...JSON.parse(original.state), step: 39 }), message: /state\.json is for step 39, manifest\.json for step 40/ },
    ];
    for (const { name, damage, message } of damages) {
      damage();
      const error: unknown = await readCheckpoint(newest, SAE_CHECKPOINT_LAYOUT).catch((e: unknown) => e);
      expect(error, name).toBeInstanceOf(CheckpointError);
      expect((error as Error).message, name).toMatch(message);
      const skipped: string[] = [];
      expect((await latestGoodCheckpoint(dir, SAE_CHECKPOINT_LAYOUT, (e) => skipped.push(e.message)))?.step, name).toBe(20);
      expect(skipped, name).toEqual([(error as Error).message]);
      writeFileSync(manifestFile, original.manifest);
      writeFileSync(stateFile, original.state);
    }
    expect((await readCheckpoint(newest, SAE_CHECKPOINT_LAYOUT)).step).toBe(40);

    // A resume falls back to step 20, reporting the skip as it reports a corrupt checkpoint.
    damages[0]!.damage();
    const log: string[] = [];
    const resumed = await train(config, { resume: true, log: (l) => log.push(l) });
    expect(resumed.steps).toBe(40);
    expect(log.filter((l) => /^skipping unusable checkpoint: .*step-000000040: sae_weights\.safetensors is not listed/.test(l))).toHaveLength(1);
    expect(log).toContainEqual(expect.stringMatching(/^resuming from .*step-000000020 at step 20 of 40$/));
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
    const ckpt = await readCheckpoint(summary.checkpoint!, SAE_CHECKPOINT_LAYOUT);
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

    // Loaded to train, the export's decoder rows (norm 1/s) are not renormalised by a step.
    using reloaded = (await loadSaeLensAsSae(summary.exportDir!, { backend: 'cpu' })).sae;
    expect(reloaded.constrainDecoder).toBe(false);
    reloaded.setHyperparameters({ lr: 1e-12 });
    await reloaded.step(xt);
    const after = reloaded.readParameters().W_dec;
    for (let i = 0; i < after.length; i++) expect(Math.abs(after[i]! - loaded.params.W_dec[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(loaded.params.W_dec[i]!)));

    const svg = readFileSync(path.join(outDir, 'curves.svg'), 'utf8');
    expect(svg).toContain('<svg');
    const records = await readMetrics(path.join(outDir, 'metrics.jsonl'));
    expect(records.map((r) => r.step)).toEqual([10, 20, 30]);
    for (const key of ['loss', 'mse', 'l1', 'l0', 'fvu', 'lr', 'l1Coeff', 'samplesPerSec', 'dataWaitFraction']) expect(typeof records[2]![key]).toBe('number');
    // The loop's own time, without the final checkpoint, export and curves the whole run's includes.
    expect(summary.trainingSeconds).toBeGreaterThan(0);
    expect(summary.trainingSeconds).toBeLessThan(summary.seconds);
    expect(summary.dataWaitFraction).toBeGreaterThanOrEqual(0);
    expect(summary.dataWaitFraction).toBeLessThanOrEqual(1);
  });
});

describe('starting a run', () => {
  // Node 22 raised buffer.constants.MAX_LENGTH to 2^53 − 1: there such an SAE is not refused.
  it.runIf(checkpointTooLarge(16, 2 ** 25) !== null)('refuses, before training, an SAE whose optimizer state no checkpoint file could hold', async () => {
    const dSae = 2 ** 25; // 16 bytes × (16 · 2^25 weights + 2^25 + 16 biases) = 8.5 GiB of Adam moments: more than one buffer holds in Node 20
    await expect(train(testConfig(data, path.join(root, 'too-large'), { sae: { dSae }, training: { totalSteps: 10 } }))).rejects.toThrow(
      new TrainingError(checkpointTooLarge(16, dSae)!),
    );
    expect(checkpointTooLarge(16, dSae)).toMatch(/^an SAE of d_in 16 × d_sae 33554432 has 8\.5 GiB of optimizer state, and this Node\.js holds at most \d+\.\d GiB in the one buffer/);
    expect(checkpointTooLarge(512, 131_072)).toBeNull(); // the paper's largest: 1 GiB
  });

  it('a start that failed before its first checkpoint does not block a fresh start', async () => {
    const outDir = path.join(root, 'failed-start');
    await expect(train(testConfig(path.join(root, 'no-such-data'), outDir, {}))).rejects.toThrow(/no-such-data/);
    const summary = await train(testConfig(data, outDir, { training: { totalSteps: 10 } }));
    expect(summary.steps).toBe(10);
    expect((await readMetrics(path.join(outDir, 'metrics.jsonl'))).map((r) => r.step)).toEqual([10]);
  });

  it('refuses a folder of other files (it would replace them), and removes the temporary files of a killed run', async () => {
    const model = path.join(root, 'a-model');
    mkdirSync(model);
    writeFileSync(path.join(model, 'config.json'), '{"model_type": "gpt2"}\n');
    writeFileSync(path.join(model, 'model.safetensors'), 'weights');
    await expect(train(testConfig(data, model, { training: { totalSteps: 10 } }))).rejects.toThrow(
      `${model} is not empty and holds no monosemantic run (config.json, model.safetensors): a run would replace files there; choose a new or empty folder`,
    );
    expect(readFileSync(path.join(model, 'config.json'), 'utf8')).toBe('{"model_type": "gpt2"}\n');

    // A run killed mid-write leaves temporary files (of a process that is gone: pid 2^22 + 1 is
    // above Linux's pid_max): here killed writing its first file, then, once finished, writing its
    // export again on a resume. The next start or resume removes them.
    const killed = path.join(root, 'killed');
    mkdirSync(killed);
    const first = path.join(killed, 'config.json.tmp-4194305-0123456789ab');
    writeFileSync(first, 'partial');
    const config = testConfig(data, killed, { training: { totalSteps: 10 } });
    await train(config);
    expect(existsSync(first)).toBe(false);
    const exported = path.join(killed, 'sae', 'sae_weights.safetensors.tmp-4194305-ba9876543210');
    writeFileSync(exported, 'partial');
    await train(config, { resume: true });
    expect(existsSync(exported)).toBe(false);
  });

  it('refuses a folder another run is using, takes over the lock of one that was killed, and leaves no lock behind', async () => {
    const outDir = path.join(root, 'locked');
    mkdirSync(outDir);
    writeFileSync(path.join(outDir, '.DS_Store'), 'a file manager'); // hidden files are no content
    const lock = path.join(outDir, '.lock');
    writeFileSync(lock, `${process.ppid} 0123456789abcdef\n`); // a live process: this one's parent
    const config = testConfig(data, outDir, { training: { totalSteps: 10 } });
    await expect(train(config)).rejects.toThrow(`${outDir} is in use by another monosemantic run (pid ${process.ppid})`);
    writeFileSync(lock, '4194305 0123456789abcdef\n'); // above Linux's pid_max: a process that is gone
    expect((await train(config)).steps).toBe(10);
    expect(existsSync(lock)).toBe(false);
    // This process's own id with a token it does not hold: left by an earlier process that had the
    // same id (a container restarted), so stale too.
    writeFileSync(lock, `${process.pid} 0123456789abcdef\n`);
    expect((await train(config, { resume: true })).steps).toBe(10);
    // Two runs of one folder in this process: the second is refused while the first holds it.
    const twice = testConfig(data, path.join(root, 'one-writer'), { training: { totalSteps: 30 } });
    let second: Promise<unknown> | undefined;
    const first = await train(twice, { onStep: (step) => void (step === 5 && (second = train(twice, { resume: true }).catch((error: unknown) => error))) });
    expect(first.steps).toBe(30);
    expect(String(await second)).toMatch(/is in use by another monosemantic run \(pid \d+\)/);
    // A refused run leaves no folder it created, parents included.
    const never = path.join(root, 'not-made', 'inner');
    await expect(train(testConfig(data, never, {}), { resume: true })).rejects.toThrow(/no usable checkpoint/);
    expect(existsSync(path.join(root, 'not-made'))).toBe(false);
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
