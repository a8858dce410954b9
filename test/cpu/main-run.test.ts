/**
 * The main job on the CPU with a tiny budget: the shipped model A and corpus → harvested, mixed
 * activations → SAE (interrupted and resumed) → SAELens export → reload → held-out evaluation;
 * and the machine-sized defaults.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { packageRoot } from '../../lib/native/load.js';
import { loadSaeLens } from '../../lib/sae/saelens.js';
import { openTokenShard, writeTokenShard } from '../../lib/data/token-shards.js';
import { resolveRunConfig, resolveStore, runMainJob } from '../../lib/sae/lm-run.js';
import { machineDefaults } from '../../lib/sae/run-config.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/run-fixtures.js';

/**
 * A run small enough for CI: 64 features, 40 steps of 128 inputs from 8-context windows, at λ = 1
 * (the default λ = 5 needs more steps than these to reconstruct better than the mean: FVU 0.93–1.03
 * over seeds 0–5, against 0.80–0.83 at λ = 1).
 */
const tiny = (outDir: string) => ({
  outDir,
  backend: 'cpu',
  sae: { dSae: 64, geometricMedianSamples: 256 },
  training: { totalSteps: 40, batchSize: 128, lrWarmupSteps: 10, l1Coeff: 1 },
  data: { contextLength: 64, positionsPerContext: 32, contextsPerWindow: 8, forwardBatch: 8 },
  resampling: { steps: [20], deadWindowSteps: 10, samples: 1024 },
  logging: { every: 10, densityWindowSamples: 1280 },
  normalization: { batches: 2 },
  eval: { contexts: 8 },
});

describe('monosemantic run', () => {
  it('model → SAE → export → reload → evaluation, with an interruption and exact resume', async () => {
    const root = tempDir('main-run');
    const whole = await runMainJob((await resolveRunConfig(tiny(path.join(root, 'whole')))).config);
    const cut = path.join(root, 'cut');
    const controller = new AbortController();
    const first = await runMainJob((await resolveRunConfig(tiny(cut))).config, {
      signal: controller.signal,
      makeProgress: () => ({ update: (done) => done === 17 && controller.abort(), log: () => {}, stop: () => {} }),
    });
    expect(first.train.interrupted).toBe(true);
    expect(first.evaluation).toBeNull();
    const resumed = await runMainJob((await resolveRunConfig({}, { resume: cut })).config, { resume: true });
    expect(resumed.train.steps).toBe(40);
    const weights = (dir: string) => readFileSync(path.join(dir, 'sae', 'sae_weights.safetensors'));
    expect(weights(cut).equals(weights(whole.outDir))).toBe(true); // the resumed stream is the same stream

    const sae = await loadSaeLens(path.join(whole.outDir, 'sae'));
    expect(sae).toMatchObject({ dIn: 512, dSae: 64, metadata: { hookName: 'blocks.0.mlp.hook_post', modelName: 'a', contextSize: 64 } });
    const e = whole.evaluation!;
    expect(e.rows).toBe(8 * 63);
    expect(e.fvu).toBeGreaterThan(0);
    expect(e.fvu).toBeLessThan(1); // better than predicting the mean
    expect(e.l0).toBeGreaterThan(0);
    expect(e.loss.zeroAblated).toBeGreaterThan(e.loss.clean);
    expect(e.loss.fractionRecovered).toBeGreaterThan(0);
    expect(e.loss.klSpliced).toBeGreaterThan(0);
    const summary = JSON.parse(readFileSync(path.join(whole.outDir, 'summary.json'), 'utf8'));
    expect(summary.evaluation.loss.fractionRecovered).toBeCloseTo(e.loss.fractionRecovered, 12);

    // `monosemantic eval` on the same held-out contexts (the SAE's context size, the first 8) agrees.
    const evaluated = runCli(['eval', '--sae', path.join(whole.outDir, 'sae'), '--contexts', '8', '--json'], { MONOSEMANTIC_BACKEND: 'cpu' });
    expect(evaluated.status, evaluated.stderr).toBe(0);
    const report = JSON.parse(evaluated.stdout);
    expect(report).toMatchObject({ hook: 'blocks.0.mlp.hook_post', contextLength: 64, rows: e.rows, dead: e.dead });
    expect(report.fvu).toBeCloseTo(e.fvu, 5);
    expect(report.loss.fractionRecovered).toBeCloseTo(e.loss.fractionRecovered, 5);
    expect(report.densityHistogramLog10.bins.reduce((n: number, b: { count: number }) => n + b.count, 0) + report.densityHistogramLog10.dead).toBe(64);

    // `monosemantic features` over the same 8 contexts: the same features never fire.
    const featuresDir = path.join(root, 'features');
    const features = runCli(['features', '--sae', path.join(whole.outDir, 'sae'), '--contexts', '8', '-o', featuresDir, '--top-k', '3'], { MONOSEMANTIC_BACKEND: 'cpu' });
    expect(features.status, features.stderr).toBe(0);
    const index = JSON.parse(readFileSync(path.join(featuresDir, 'features.json'), 'utf8'));
    expect(index).toMatchObject({ hook: 'blocks.0.mlp.hook_post', dSae: 64, contexts: 8, tokens: e.rows, contextLength: 64 });
    expect(index.features.filter((r: { density: number }) => r.density === 0).length).toBe(e.dead);
    const details = JSON.parse(readFileSync(path.join(featuresDir, 'features', '000000.json'), 'utf8'));
    expect(details.length).toBe(64);
    const live = details.find((d: { fires: number }) => d.fires > 0);
    expect(live.top.length).toBeGreaterThan(0);
    expect(live.top.length).toBeLessThanOrEqual(3);
    expect(live.logitWeights.top.length).toBe(10);
    expect(JSON.parse(readFileSync(path.join(featuresDir, 'vocab.json'), 'utf8')).length).toBe(8192);

    // `monosemantic steer`: both continuations, the steered one changed by a strongly pinned feature.
    const steer = (value: string) =>
      runCli(['steer', '--sae', path.join(whole.outDir, 'sae'), '--feature', '0', '--value', value, '--prompt', 'Subject: re', '-n', '8', '--temperature', '0', '--data', path.join(packageRoot(), 'corpus', 'val.tokens')], { MONOSEMANTIC_BACKEND: 'cpu' });
    const pinned = steer('300');
    expect(pinned.status, pinned.stderr).toBe(0);
    const [unsteered, steered] = pinned.stdout.split(/--- steered: feature 0 pinned to 300\.0 at blocks\.0\.mlp\.hook_post\n/);
    expect(unsteered).toMatch(/^--- unsteered\nSubject: re/);
    expect(steered).toMatch(/^Subject: re/);
    expect(steered).not.toBe(unsteered!.replace('--- unsteered\n', ''));
    const atMax = steer('max');
    expect(atMax.status, atMax.stderr).toBe(0);
    expect(atMax.stderr).toMatch(/feature 0: largest activation on 256 held-out contexts [\d.e+-]+; pinned to/);
  }, 180_000);

  it('keeps the first pass in memory for later passes, resumes inside them exactly, and decides "auto" once', async () => {
    const root = tempDir('main-run-store');
    // A corpus of 20,000 tokens of the held-out shard: a pass is about 300 contexts.
    const val = await openTokenShard(path.join(packageRoot(), 'corpus', 'val.tokens'), { preload: true });
    const shard = path.join(root, 'small.tokens');
    await writeTokenShard(shard, val.view(0, 20_000), val.info.vocabSize);
    await val.close();
    const config = (outDir: string, store: boolean | 'auto') => ({
      ...tiny(outDir),
      training: { batchSize: 128 },
      budget: { epochs: 2.5 },
      data: { ...tiny(outDir).data, paths: [shard], store },
    });
    const lines: string[] = [];
    const whole = await runMainJob((await resolveRunConfig(config(path.join(root, 'whole'), 'auto'))).config, { log: (l) => lines.push(l) });
    expect(lines.some((l) => /keeping the first pass's [\d,]+ activations/.test(l))).toBe(true);
    expect(whole.epochs).toBeCloseTo(2.5, 1);
    expect(JSON.parse(readFileSync(path.join(whole.outDir, 'run.json'), 'utf8')).data.store).toBe(true);
    // Interrupted in the second pass (served from the store) and resumed: the same stream.
    const cut = path.join(root, 'cut');
    const controller = new AbortController();
    const steps = whole.train.steps;
    await runMainJob((await resolveRunConfig(config(cut, true))).config, {
      signal: controller.signal,
      makeProgress: () => ({ update: (done) => done === Math.floor(steps * 0.6) && controller.abort(), log: () => {}, stop: () => {} }),
    });
    const resumed = await runMainJob((await resolveRunConfig({}, { resume: cut })).config, { resume: true });
    expect(resumed.train.steps).toBe(steps);
    const weights = (dir: string) => readFileSync(path.join(dir, 'sae', 'sae_weights.safetensors'));
    expect(weights(cut).equals(weights(whole.outDir))).toBe(true);
    // Without the store the later passes are harvested again, in other windows: another stream.
    const harvested = await runMainJob((await resolveRunConfig(config(path.join(root, 'harvested'), false))).config);
    expect(weights(harvested.outDir).equals(weights(whole.outDir))).toBe(false);

    const facts = { samplesPerEpoch: 1000, plannedSamples: 2500, width: 512, backend: 'cpu' as const };
    expect(resolveStore('auto', facts)).toBe(true);
    expect(resolveStore('auto', { ...facts, plannedSamples: 1000 })).toBe(false); // one pass: nothing to reuse
    expect(resolveStore('auto', { ...facts, samplesPerEpoch: 2 ** 40 / 512 })).toBe(false); // 4 TiB does not fit
    expect(resolveStore(false, facts)).toBe(false);
    expect(() => resolveStore(true, { ...facts, samplesPerEpoch: null })).toThrow(/data.store: needs token shards/);
  }, 180_000);

  it('a refused resume leaves run.json as it was; the model and hook cannot change on resume', async () => {
    const root = tempDir('main-run-resume');
    const dir = path.join(root, 'run');
    const controller = new AbortController();
    await runMainJob((await resolveRunConfig(tiny(dir))).config, {
      signal: controller.signal,
      makeProgress: () => ({ update: (done) => done === 12 && controller.abort(), log: () => {}, stop: () => {} }),
    });
    const saved = readFileSync(path.join(dir, 'run.json'), 'utf8');
    const resume = async (overrides: Record<string, unknown>) => runMainJob((await resolveRunConfig(overrides, { resume: dir })).config, { resume: true });
    await expect(resume({ sae: { dSae: 128 } })).rejects.toThrow(/the checkpoint is for d_in 512, d_sae 64; the config and data give 512, 128/);
    expect(readFileSync(path.join(dir, 'run.json'), 'utf8')).toBe(saved);
    await expect(resume({ hook: 'blocks.0.hook_mlp_out' })).rejects.toThrow(/keeps its hook \(blocks.0.mlp.hook_post → blocks.0.hook_mlp_out\)/);
    await expect(resume({ model: path.join(packageRoot(), 'models', 'b') })).rejects.toThrow(/keeps its model \(.*models\/a → .*models\/b\)/);
    // Other windows would rebuild the saved one differently (a larger one passed the offset check).
    await expect(resume({ data: { positionsPerContext: 48 } })).rejects.toThrow(/keeps its data\.positionsPerContext \(32 → 48\)/);
    await expect(resume({ data: { contextsPerWindow: 16 } })).rejects.toThrow(/keeps its data\.contextsPerWindow \(8 → 16\)/);
    expect(readFileSync(path.join(dir, 'run.json'), 'utf8')).toBe(saved);
    // A length in passes replaces the saved length in steps (the two were refused together).
    const inPasses = (await resolveRunConfig({ budget: { epochs: 3 } }, { resume: dir })).config;
    expect(inPasses.budget.epochs).toBe(3);
    expect(inPasses.training.totalSteps).toBeUndefined();
    const done = await resume({ training: { totalSteps: 44 } }); // a longer run is a fine override
    expect(done.train.steps).toBe(44);
    expect(JSON.parse(readFileSync(path.join(dir, 'run.json'), 'utf8')).training.totalSteps).toBe(44);
  }, 120_000);

  it('checks the held-out set before training, logs what a text corpus skips, and takes every position of a short context', async () => {
    const root = tempDir('main-run-inputs');
    const missing = path.join(root, 'nope.tokens');
    const early = path.join(root, 'early');
    await expect(runMainJob((await resolveRunConfig({ ...tiny(early), eval: { contexts: 8, paths: [missing] } })).config)).rejects.toThrow(/nope.tokens: no such file/);
    expect(existsSync(path.join(early, 'checkpoints'))).toBe(false); // refused before any training

    const text = path.join(root, 'story.txt');
    writeFileSync(text, 'The model reads this story again and again, one sentence after another. '.repeat(300));
    const binary = path.join(root, 'image.txt');
    writeFileSync(binary, Buffer.from([0, 159, 146, 150, 0, 1, 2, 3]));
    const lines: string[] = [];
    const config = tiny(path.join(root, 'text'));
    const doc = { ...config, data: { ...config.data, paths: [text, binary], contextLength: 16, positionsPerContext: 250 }, training: { totalSteps: 4, batchSize: 128 }, resampling: { steps: [] } };
    const summary = await runMainJob((await resolveRunConfig(doc)).config, { log: (line) => lines.push(line) });
    expect(summary.train.steps).toBe(4);
    expect(lines).toContain('data.positionsPerContext 250: a 16-token context has 15 positions after its BOS; taking them all');
    expect(lines.filter((l) => l.startsWith(`skipped ${binary}: `))).toHaveLength(1); // once, whatever the passes
    expect(summary.skipped).toEqual([{ file: binary, reason: expect.any(String) }]);
    expect(JSON.parse(readFileSync(path.join(summary.outDir, 'summary.json'), 'utf8')).skipped).toEqual(summary.skipped);
  }, 120_000);

  it('fills the machine’s defaults only where the user said nothing', async () => {
    const { config } = await resolveRunConfig({ backend: 'cpu', sae: { dSae: 300 }, training: { lr: 5e-4 } });
    expect(config.sae.dSae).toBe(300);
    expect(config.training).toMatchObject({ lr: 5e-4, batchSize: 1024, totalSteps: 8000 });
    expect(config).toMatchObject({ model: null, hook: 'blocks.0.mlp.hook_post', budget: { epochs: null } });
    expect(machineDefaults('cuda', {})).toMatchObject({ sae: { dSae: 4096 }, budget: { epochs: 10 }, data: { positionsPerContext: null, forwardBatch: 128 } });
    expect(machineDefaults('cuda', { training: { totalSteps: 10 } })).not.toHaveProperty('budget');
    // A length given in steps or samples moves the schedule with it; keys the user gives still win.
    expect((await resolveRunConfig({ backend: 'cpu', training: { totalSteps: 20_000 } })).config).toMatchObject({ resampling: { steps: [5000, 10_000, 15_000], deadWindowSteps: 2500 }, training: { lrWarmupSteps: 100 } });
    expect((await resolveRunConfig({ backend: 'cpu', training: { totalSteps: 30 } })).config).toMatchObject({ resampling: { steps: [8, 15, 23], deadWindowSteps: 4 }, training: { lrWarmupSteps: 1 } });
    expect(machineDefaults('cuda', { training: { totalSamples: 4096 * 400 } })).toMatchObject({ resampling: { steps: [100, 200, 300], deadWindowSteps: 50 } });
    expect((await resolveRunConfig({ backend: 'cpu', training: { totalSteps: 20_000 }, resampling: { steps: [700] } })).config.resampling.steps).toEqual([700]);
    expect((await resolveRunConfig({ backend: 'cpu' })).config).toMatchObject({ resampling: { steps: [2000, 4000, 6000], deadWindowSteps: 1000 }, training: { lrWarmupSteps: 100 } });
    expect((await resolveRunConfig({ backend: 'cpu', budget: { epochs: 0.5 } })).config.training.totalSteps).toBeUndefined();
    await expect(resolveRunConfig({ backend: 'cpu', budget: { epochs: 1 }, training: { totalSteps: 5 } })).rejects.toThrow(/exactly one of training.totalSteps, training.totalSamples and budget.epochs/);
    await expect(resolveRunConfig({ backend: 'cpu', data: { paths: ['a.tokens', 'b.txt'] }, training: { totalSteps: 1 } }).then((r) => runMainJob(r.config))).rejects.toThrow(/data.paths: mixes token shards/);
  });

  it('`run` prints a summary: the density window of training and the held-out evaluation', () => {
    const root = tempDir('main-run-cli');
    const config = path.join(root, 'run.json');
    writeFileSync(config, JSON.stringify(tiny(path.join(root, 'out'))));
    const done = runCli(['run', '-c', config, '--no-progress'], { MONOSEMANTIC_BACKEND: 'cpu' });
    expect(done.status, done.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(path.join(root, 'out', 'summary.json'), 'utf8'));
    const t = summary.trainingDensity;
    expect(t.samples).toBeGreaterThanOrEqual(1280);
    const printed = `${done.stdout}${done.stderr}`;
    expect(printed).toContain(`last density window of training (${t.samples.toLocaleString('en-US')} activations): dead ${t.dead} of 64`);
    expect(printed).toContain(`dead ${summary.evaluation.dead} of 64 (`);
    expect(printed).toMatch(new RegExp(`no activation on these ${summary.evaluation.rows.toLocaleString('en-US')}\\)`));
  }, 120_000);

  it('`run --print-config` shows the resolved defaults; a bad key is one line naming it', () => {
    const env = { MONOSEMANTIC_BACKEND: 'cpu' };
    const printed = runCli(['run', '--print-config', '--d-sae', '512'], env);
    expect(printed.status, printed.stderr).toBe(0);
    expect(JSON.parse(printed.stdout)).toMatchObject({ sae: { dSae: 512 }, training: { totalSteps: 8000 }, hook: 'blocks.0.mlp.hook_post' });
    const bad = runCli(['run', '--set', 'data.positions=3'], env);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/data: unknown key 'positions'/);
  });
});
