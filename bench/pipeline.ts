/**
 * The main job's data pipeline, in three measurements on the active backend:
 *   1. harvested: activations/s that the language-model source serves on its own (the shipped model
 *      `models/a`, its `blocks.0.mlp.hook_post`, the shipped corpus; every position but the BOS;
 *      no prefetch, so this is the harvest itself);
 *   2. consumed: activations/s of SAE steps alone, on one batch of random activations (d = 512),
 *      queued as the trainer queues them (statistics not read back between logging steps);
 *   3. together: `monosemantic run` (runMainJob) for --steps steps (and with --passes, for that many
 *      passes over the corpus: the CUDA default is ten, the later ones served from the stored first
 *      pass, data.store "auto"), and the fraction of its training
 *      time spent waiting for the source (the trainer's dataWaitFraction: the wall time of its
 *      awaits on the source, which with queued CUDA operations misses device work charged to
 *      whatever waits next), and the fraction of the run the SAE was not stepping, 1 − (in the
 *      run) / (consumed alone): what the data costs the SAE, however it is charged.
 * Each measurement also prints how busy the JavaScript thread was (its event loop's utilisation):
 * near 100%, the thread that queues the device's work is what limits the rate. Waits for the
 * device inside native calls (reads, synchronisations) count as busy; run with
 * MONOSEMANTIC_PROFILE=1 to see how long those took.
 *
 *   node dist/bench/pipeline.js [--backend cpu|cuda] [--d-sae 4096,16384] [--batch 4096]
 *        [--steps 1000] [--passes 10] [--forward-batch 128] [--window 1024] [--corpus PATHS] [--json FILE]
 *
 * --corpus: text, JSONL or Parquet files (comma-separated) instead of the shipped token shards,
 * tokenised as the run goes (on worker threads; see bench/contexts.js for the tokenizer alone).
 *
 * Defaults are the CUDA run's (batch 4,096; 128 contexts per forward; 1,024 per window); on a CPU
 * pass small values (e.g. --batch 256 --steps 20 --forward-batch 8 --window 32 --d-sae 512).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { Command } from 'commander';

import { type BackendName, resolveBackend, synchronize } from '../lib/backend.js';
import { openCorpusContexts } from '../lib/data/corpus-contexts.js';
import { LmActivationSource } from '../lib/data/lm-activations.js';
import { Gpt2Model } from '../lib/lm/model.js';
import { Tokenizer } from '../lib/lm/tokenizer.js';
import { packageRoot } from '../lib/native/load.js';
import { columnStats } from '../lib/ops.js';
import { Rng } from '../lib/random.js';
import { resolveRunConfig, runMainJob } from '../lib/sae/lm-run.js';
import { SparseAutoencoder } from '../lib/sae/sae.js';
import { Tensor } from '../lib/tensor.js';

const program = new Command('pipeline')
  .option('--backend <name>', 'cpu or cuda (default: the active backend)')
  .option('--d-sae <list>', 'dictionary sizes, comma-separated', '4096,16384')
  .option('--batch <n>', 'activations per SAE step', '4096')
  .option('--steps <n>', 'SAE steps timed alone and in the run', '1000')
  .option('--passes <n>', 'also run the main job for this many passes over the corpus (data.store "auto")')
  .option('--forward-batch <n>', 'contexts per model forward', '128')
  .option('--window <n>', 'contexts per shuffle window', '1024')
  .option('--corpus <paths>', 'text corpus instead of the shipped token shards (comma-separated)')
  .option('--json <file>', 'also write the rows as JSON')
  .parse();
const o = program.opts<{ backend?: BackendName; dSae: string; batch: string; steps: string; passes?: string; forwardBatch: string; window: string; corpus?: string; json?: string }>();
const backend = resolveBackend(o.backend);
const [batch, steps, forwardBatch, window] = [Number(o.batch), Number(o.steps), Number(o.forwardBatch), Number(o.window)];
const sizes = o.dSae.split(',').map(Number);
for (const [name, v] of Object.entries({ batch, steps, forwardBatch, window })) {
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`--${name}: a positive integer, got ${v}`);
}
if (!sizes.every((n) => Number.isSafeInteger(n) && n > 0)) throw new RangeError(`--d-sae: positive integers, got '${o.dSae}'`);
const passes = o.passes === undefined ? null : Number(o.passes);
if (passes !== null && !(passes > 0)) throw new RangeError(`--passes: a positive number, got '${o.passes}'`);

const modelDir = path.join(packageRoot(), 'models/a');
const corpus = o.corpus ? o.corpus.split(',') : [path.join(packageRoot(), 'corpus/train-sample.tokens')];
if (o.corpus && passes !== null) throw new RangeError('--passes counts passes over token shards: leave it out with --corpus');
const hook = 'blocks.0.mlp.hook_post';

/** Activations/s, and the fraction of the time the JavaScript thread was busy. */
interface Measured {
  perSecond: number;
  busy: number;
}

/** 1. Activations/s served by the source alone, over two windows. */
async function harvested(): Promise<Measured> {
  const tokenizer = await Tokenizer.load(modelDir);
  using model = await Gpt2Model.load(modelDir, { backend });
  const T = model.config.nPositions;
  const source = await LmActivationSource.open({
    model,
    hook,
    contextLength: T,
    seed: 1,
    positionsPerContext: T - 1,
    contextsPerWindow: window,
    forwardBatch,
    prefetch: false,
    openContexts: (state) => openCorpusContexts({ paths: corpus, textField: 'text', tokenizer, contextLength: T, seed: 1, ...(state ? { state } : {}) }),
  });
  try {
    using out = Tensor.empty([batch, source.d], { backend });
    await source.next(batch, out); // the first window, and everything's first use
    synchronize(backend);
    const rows = 2 * window * (T - 1);
    const busy0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    for (let served = 0; served < rows; served += batch) await source.next(batch, out);
    synchronize(backend);
    const perSecond = (Math.ceil(rows / batch) * batch) / ((performance.now() - t0) / 1000);
    return { perSecond, busy: performance.eventLoopUtilization(busy0).utilization };
  } finally {
    await source.close();
  }
}

/**
 * 2. Activations/s of SAE steps alone, reading back what the run's trainer reads at its logging
 * steps (logging.every of the run's config on this backend): the step's statistics and the firing
 * counts.
 */
async function consumed(dSae: number): Promise<Measured> {
  const logEvery = (await runConfig(dSae, { steps }, path.join(tmpdir(), 'ms-pipeline-config'))).logging.every;
  using sae = SparseAutoencoder.create({ dIn: 512, dSae, backend, seed: 1 });
  using x = Tensor.from(new Rng(2).fillNormal(new Float32Array(batch * 512)), [batch, 512], { backend });
  for (let i = 0; i < 3; i++) await sae.step(x);
  synchronize(backend);
  const busy0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  for (let i = 1; i <= steps; i++) {
    if (i % logEvery === 0) {
      // As the trainer's logging step: the statistics, the firing counts (then reset) and the
      // batch's variance (for the FVU).
      await sae.step(x);
      sae.fireCounts();
      sae.resetFireCounts();
      await columnStats(x);
    } else {
      await sae.queueStep(x);
    }
  }
  synchronize(backend);
  return { perSecond: (steps * batch) / ((performance.now() - t0) / 1000), busy: performance.eventLoopUtilization(busy0).utilization };
}

/** 3. The main job for `steps` steps or `passes` passes: activations/s and the fraction of time waiting for data. */
/** The main job's config for these runs (this backend's defaults for the rest). */
async function runConfig(dSae: number, budget: { steps: number } | { passes: number }, outDir: string) {
  const { config } = await resolveRunConfig({
    backend,
    outDir,
    sae: { dSae },
    training: { batchSize: batch, ...('steps' in budget ? { totalSteps: budget.steps } : {}) },
    data: { forwardBatch, contextsPerWindow: window, positionsPerContext: null, store: 'auto', ...(o.corpus ? { paths: corpus } : {}) },
    budget: { epochs: 'passes' in budget ? budget.passes : null },
    resampling: { enabled: false },
    checkpoints: { every: 0 },
    eval: { contexts: 2 },
  });
  return config;
}

async function together(dSae: number, budget: { steps: number } | { passes: number }): Promise<Measured & { dataWait: number; passes: number }> {
  const outDir = mkdtempSync(path.join(tmpdir(), 'ms-pipeline-'));
  try {
    const config = await runConfig(dSae, budget, outDir);
    // The training loop's: from when the trainer makes its progress display to when it stops it.
    let busy = Number.NaN;
    const summary = await runMainJob(config, {
      makeProgress: () => {
        const busy0 = performance.eventLoopUtilization();
        return { update: () => {}, log: () => {}, stop: () => (busy = performance.eventLoopUtilization(busy0).utilization) };
      },
    });
    // The training loop's rate: the final checkpoint, export and evaluation are not the pipeline's.
    return { perSecond: summary.train.samples / summary.train.trainingSeconds, busy, dataWait: summary.train.dataWaitFraction, passes: summary.epochs ?? 0 };
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}

const harvest = await harvested();
const percent = (fraction: number) => `${(100 * fraction).toFixed(1)}%`;
console.log(`backend ${backend}; batch ${batch}, ${forwardBatch} contexts per forward, ${window} per window; corpus ${o.corpus ?? 'the shipped token shards'}`);
console.log(`harvested alone: ${Math.round(harvest.perSecond).toLocaleString('en-US')} activations/s (${hook} of models/a); JavaScript thread busy ${percent(harvest.busy)}`);
console.log('| (d, n, B) | run | consumed alone, act/s | in the run, act/s | data wait (trainer) | not stepping, 1 − run/alone | JS thread busy: alone, run |');
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
const rows = [];
const budgets: ({ steps: number } | { passes: number })[] = [{ steps }, ...(passes !== null ? [{ passes }] : [])];
for (const n of sizes) {
  const alone = await consumed(n);
  for (const budget of budgets) {
    const run = await together(n, budget);
    const notStepping = 1 - run.perSecond / alone.perSecond;
    const label = `${'steps' in budget ? `${budget.steps} steps` : `${budget.passes} passes`} (${run.passes.toFixed(2)} passes)`;
    rows.push({ d: 512, n, batch, budget, passes: run.passes, consumedAlone: alone.perSecond, inRun: run.perSecond, dataWait: run.dataWait, notStepping, busyAlone: alone.busy, busyInRun: run.busy });
    console.log(
      `| (512, ${n}, ${batch}) | ${label} | ${Math.round(alone.perSecond).toLocaleString('en-US')} | ${Math.round(run.perSecond).toLocaleString('en-US')} | ${percent(run.dataWait)} | ${percent(notStepping)} | ${percent(alone.busy)}, ${percent(run.busy)} |`,
    );
  }
}
if (o.json) writeFileSync(o.json, JSON.stringify({ backend, batch, forwardBatch, window, corpus: o.corpus ?? null, harvested: harvest.perSecond, harvestBusy: harvest.busy, rows }, null, 2));
