/**
 * The SAE training run: data → (normalise) → steps with schedules → firing statistics →
 * dead-feature resampling → metrics, checkpoints, resume → SAELens export.
 *
 * JS decides what happens and when; the native backend does the arithmetic. Per step: one batch
 * written by the data source into a device tensor, one scaling op, one fused native step; firing
 * counts are read back only at snapshot steps (every `logging.every` steps and around resamples).
 *
 * Exact resume: everything that influences later steps is in the checkpoint — parameters, Adam
 * moments and step count, the source's position, the resampling RNG, the firing statistics,
 * the normalisation scale and the schedules' state (the last resample step). Checkpoints are taken
 * only between steps, after a firing-count snapshot, so the device holds no unsaved state. On the
 * CPU backend a resumed run is bit-identical to an uninterrupted one.
 */
import { constants } from 'node:buffer';
import path from 'node:path';

import { z } from 'zod';

import { writeTrainingCurves } from '../analysis/curves.js';
import { type BackendName, resolveBackend } from '../backend.js';
import { type ActivationSource, type ActivationSourceState, openActivationSource } from '../data/activation-source.js';
import { writeFileAtomic } from '../io/atomic.js';
import { type Checkpoint, type CheckpointLayout, CheckpointError, latestGoodCheckpoint, listCheckpoints, readCheckpoint, writeCheckpoint } from '../io/checkpoint.js';
import { withFolderLock } from '../io/folder-lock.js';
import { makeFolder } from '../io/folders.js';
import { freshRunFolderProblem, removeAbandonedRunWrites } from '../io/run-folder.js';
import { decodeSafetensors, encodeSafetensors, tensorToFloat32, tensorToFloat64, type LoadedTensor } from '../io/safetensors.js';
import { columnStats, rowSqDist, scaleInPlace } from '../ops.js';
import { Rng } from '../random.js';
import { Tensor, formatShape } from '../tensor.js';
import { type CountBucket, FiringStats } from './firing-stats.js';
import type { SaeParameterArrays } from './init.js';
import { MetricsLog, type MetricsRecord } from './metrics-log.js';
import { resampleDeadFeatures } from './resample.js';
import { SparseAutoencoder, type TrainStepStats } from './sae.js';
import { saveSaeLens } from './saelens.js';
import { l1CoeffAt, learningRateAt } from './schedules.js';
import { type TrainConfig, parseTrainConfig, totalSteps } from './train-config.js';

/** The error of a resume that finds nothing to resume, and how such a run starts again. */
export function noCheckpointMessage(checkpointsDir: string): string {
  return `no usable checkpoint under ${checkpointsDir} to resume from (a run stopped before its first checkpoint starts again from the beginning: run the command that started it)`;
}

export class TrainingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingError';
  }
}

export interface ProgressDisplay {
  update(done: number, fields: Record<string, string | number>): void;
  log(line: string): void;
  stop(): void;
}

/**
 * What the trainer reads inputs from: activation files by default (lib/data/activation-source.ts),
 * or a language model's hook (lib/data/lm-activations.ts) through TrainHooks.openSource.
 */
export interface TrainingDataSource {
  readonly d: number;
  /**
   * Writes the next `rows` inputs into `out` [rows, d], a tensor on the trainer's backend: all of
   * them (the trainer cannot tell rows left unwritten from data), or throws.
   */
  next(rows: number, out: Tensor): Promise<void>;
  /** A JSON-serialisable position; openSource(state) must continue the same stream exactly. */
  state(): unknown;
  close(): Promise<void>;
}

/** Activation files as a TrainingDataSource: rows are read on the host and uploaded. */
export function fileTrainingSource(source: ActivationSource): TrainingDataSource {
  const host = new Map<number, Float32Array>();
  return {
    d: source.d,
    async next(rows, out) {
      // Checked before reading, so that a refused call does not use up rows of the stream.
      if (out.shape.length !== 2 || out.shape[0] !== rows || out.shape[1] !== source.d) {
        throw new RangeError(`out must have shape [${rows}, ${source.d}] (the source's rows are ${source.d} wide; got ${formatShape(out.shape)})`);
      }
      let buffer = host.get(rows);
      if (!buffer) host.set(rows, (buffer = new Float32Array(rows * source.d)));
      await source.next(rows, buffer);
      out.upload(buffer);
    },
    state: () => source.state(),
    close: () => source.close(),
  };
}

export interface TrainHooks {
  /** Opens the data source (at a saved position when resuming); default: config.data's files. */
  openSource?: (state: unknown) => Promise<TrainingDataSource>;
  /** Stops the run cleanly after the current step (a checkpoint is written first). */
  signal?: AbortSignal;
  /** Status lines (resumes, resamples, checkpoints, skipped corrupt checkpoints). */
  log?: (line: string) => void;
  /**
   * Called after every step with its statistics. Without it, statistics are read back only on
   * logging steps, so the host does not wait for the device at every step.
   */
  onStep?: (step: number, stats: TrainStepStats) => void;
  /** Makes the progress display once the starting step is known; the run calls update() after each step and stop() at the end. */
  makeProgress?: (initialStep: number, totalSteps: number) => ProgressDisplay;
  /**
   * Called once the run can start: a resumed checkpoint was accepted (or a fresh run was set up),
   * right before config.json is written. What a caller records about the run belongs here, so that
   * a refused resume leaves the folder as it was.
   */
  onStart?: () => Promise<void>;
}

export interface ResampleEvent {
  /** Steps done when it happened. */
  step: number;
  dead: number;
  resampled: number;
  /** Null when no feature was dead. */
  meanLiveEncoderNorm: number | null;
}

export interface TrainSummary {
  outDir: string;
  backend: BackendName;
  steps: number;
  totalSteps: number;
  samples: number;
  /** Wall time of the run, all sessions, up to the end (final checkpoint, export and curves included). */
  seconds: number;
  /** The same up to the end of the training loop (the steps and their data only). */
  trainingSeconds: number;
  interrupted: boolean;
  /** Statistics of the last logged step since this call started or resumed the run (null if none). */
  last: (TrainStepStats & { fvu: number | null }) | null;
  /** Dead / ultra-low-density features in the last completed density window (null before one). */
  dead: number | null;
  ultraLow: number | null;
  /** Inputs that window covered (null before one). */
  densitySamples: number | null;
  resamples: ResampleEvent[];
  /** The exported SAELens folder (null when interrupted). */
  exportDir: string | null;
  checkpoint: string | null;
  normalizationScale: number;
  /** Fraction of this session's training loop spent waiting for the data source (harvesting, reading files). */
  dataWaitFraction: number;
}

const count = z.number().nonnegative();
const stepCount = z.number().int().nonnegative();

/** What this trainer's checkpoints hold: the files, and the state.json fields it resumes from. */
export const SAE_CHECKPOINT_LAYOUT = {
  trainer: 'an SAE trainer',
  files: ['sae_weights.safetensors', 'optimizer.safetensors', 'firing.safetensors', 'state.json'],
  state: z.object({
    step: stepCount,
    samples: count,
    dIn: z.number().int().positive(),
    dSae: z.number().int().positive(),
    normalizationScale: z.number().positive(),
    lastResampleStep: stepCount.nullable(),
    rng: z.array(z.number()),
    /** The data source's own state, which the source checks. */
    source: z.unknown(),
    firing: z.object({
      windowSamples: count,
      lastDensitySamples: count,
      totalSamples: count,
      hasLastDensity: z.boolean(),
      /** Inputs of each bucket of recent counts (firing.safetensors' recent_counts rows); absent in older checkpoints. */
      recentSamples: z.array(count).optional(),
    }),
    samplesSinceSnapshot: count,
    resamples: z.array(z.object({ step: stepCount, dead: count, resampled: count, meanLiveEncoderNorm: z.number().nullable() })),
    seconds: count,
  }),
} satisfies CheckpointLayout<{ step: number }>;
type RunState = z.infer<typeof SAE_CHECKPOINT_LAYOUT.state>;

const PARAMS = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const;

/** Trains an SAE as `config` says, resuming from `outDir`'s latest good checkpoint when `resume`. */
export async function train(input: TrainConfig, options: { resume?: boolean; checkpoint?: string } & TrainHooks = {}): Promise<TrainSummary> {
  // Checked (and its defaults filled) here too: a config built by hand is refused key by key, not deep inside.
  const config = parseTrainConfig(input, 'the train() config');
  return withFolderLock(path.resolve(config.outDir), () => trainLocked(config, options));
}

async function trainLocked(config: TrainConfig, options: { resume?: boolean; checkpoint?: string } & TrainHooks): Promise<TrainSummary> {
  const log = options.log ?? (() => {});
  const backend = resolveBackend(config.backend === 'auto' ? undefined : config.backend);
  const outDir = path.resolve(config.outDir);
  const checkpointsDir = path.join(outDir, 'checkpoints');
  const total = totalSteps(config);
  const t = config.training;

  let checkpoint: Checkpoint<RunState> | null = null;
  if (options.checkpoint) {
    checkpoint = await readCheckpoint(options.checkpoint, SAE_CHECKPOINT_LAYOUT);
  } else if (options.resume) {
    checkpoint = await latestGoodCheckpoint(checkpointsDir, SAE_CHECKPOINT_LAYOUT, (e) => log(`skipping unusable checkpoint: ${e.message}`));
    if (!checkpoint) throw new TrainingError(noCheckpointMessage(checkpointsDir));
  } else if ((await listCheckpoints(checkpointsDir)).length > 0) {
    throw new TrainingError(`${outDir} already holds a run; resume it (--resume ${outDir}) or choose another outDir`);
  } else {
    // `run` trains in its own folder (run.json beside this trainer's files).
    const problem = await freshRunFolderProblem(outDir, ['train', 'run']);
    if (problem !== null) throw new TrainingError(problem);
  }
  await makeFolder(outDir);
  await removeAbandonedRunWrites(outDir);

  const state = checkpoint?.state ?? null;
  const data = config.data;
  if (!options.openSource && !data) throw new TrainingError('the config names no data (data.paths: activation files)');
  const openSource =
    options.openSource ??
    (async (saved: unknown) =>
      fileTrainingSource(
        await openActivationSource({
          paths: data!.paths,
          seed: config.seed,
          chunkRows: data!.chunkRows,
          bufferChunks: data!.bufferChunks,
          ...(data!.tensor !== null ? { tensor: data!.tensor } : {}),
          ...(saved !== undefined ? { state: saved as ActivationSourceState } : {}),
        }),
      ));
  const source: TrainingDataSource = await openSource(state?.source);
  const dIn = source.d;
  if (state && (state.dIn !== dIn || state.dSae !== config.sae.dSae)) {
    await source.close();
    throw new TrainingError(`the checkpoint is for d_in ${state.dIn}, d_sae ${state.dSae}; the config and data give ${dIn}, ${config.sae.dSae}`);
  }
  const tooLarge = checkpointTooLarge(dIn, config.sae.dSae);
  if (tooLarge !== null) {
    await source.close();
    throw new TrainingError(tooLarge);
  }

  let sae: SparseAutoencoder;
  try {
    sae = SparseAutoencoder.create({
      dIn,
      dSae: config.sae.dSae,
      seed: config.seed,
      backend,
      penalty: config.sae.penalty,
      ...(config.sae.constrainDecoder !== null ? { constrainDecoder: config.sae.constrainDecoder } : {}),
      ...(config.sae.precision !== null ? { precision: config.sae.precision } : {}),
      init: config.sae.init,
      decoderInitNorm: config.sae.decoderInitNorm,
      l1Coeff: t.l1Coeff,
      lr: t.lr,
      beta1: t.beta1,
      beta2: t.beta2,
      eps: t.eps,
    });
  } catch (error) {
    await source.close();
    throw error;
  }
  const owned: Tensor[] = [];
  let progress: ProgressDisplay | null = null;
  const batches = new Map<number, Tensor>();
  let metrics: MetricsLog | null = null;
  try {
    let step: number;
    let samples: number;
    let scale: number;
    let lastResampleStep: number | null;
    let rng: Rng;
    let firing: FiringStats;
    let samplesSinceSnapshot: number;
    let resamples: ResampleEvent[];
    let secondsBefore: number;

    /** Milliseconds spent waiting for the data source (since the last metrics record, and in this session). */
    let dataMs = 0;
    let dataMsSession = 0;
    /** The next `rows` inputs on the device, scaled; the tensor is reused by the next call of the same size. */
    const nextBatch = async (rows: number): Promise<Tensor> => {
      let b = batches.get(rows);
      if (!b) {
        b = Tensor.empty([rows, dIn], { backend });
        owned.push(b);
        batches.set(rows, b);
      }
      const t0 = performance.now();
      await source.next(rows, b);
      dataMs += performance.now() - t0;
      if (scale !== 1) await scaleInPlace(b, scale);
      return b;
    };

    if (checkpoint && state) {
      restoreModel(sae, checkpoint);
      step = state.step;
      samples = state.samples;
      scale = state.normalizationScale;
      lastResampleStep = state.lastResampleStep;
      rng = Rng.fromState(state.rng);
      firing = restoreFiring(checkpoint, config);
      samplesSinceSnapshot = state.samplesSinceSnapshot;
      resamples = state.resamples;
      secondsBefore = state.seconds;
      if (step > total) throw new TrainingError(`the checkpoint is at step ${step}, past the run's ${total} steps: give at least ${step} steps to resume it`);
      log(`resuming from ${checkpoint.path} at step ${step} of ${total}`);
    } else {
      step = 0;
      samples = 0;
      lastResampleStep = null;
      rng = new Rng(config.seed);
      firing = new FiringStats(config.sae.dSae, config.logging.densityWindowSamples);
      samplesSinceSnapshot = 0;
      resamples = [];
      secondsBefore = 0;
      scale = 1;
      if (config.normalization.enabled) {
        scale = await estimateNormalizationScale(nextBatch, backend, t.batchSize, config.normalization.batches, dIn);
        log(`normalisation: inputs scaled by ${scale.toPrecision(6)} so that E‖x‖ = √${dIn}`);
      }
      if (config.sae.geometricMedianSamples > 0) {
        const x = await nextBatch(config.sae.geometricMedianSamples);
        sae.initDecoderBiasToGeometricMedian(x);
      }
    }

    // The resolved config (a resumed run's overrides included), written once training can start.
    await options.onStart?.();
    await writeFileAtomic(path.join(outDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    progress = options.makeProgress?.(step, total) ?? null;
    // A fresh run starts an empty log (a start that failed before its first checkpoint may have left one).
    metrics = await MetricsLog.open(path.join(outDir, 'metrics.jsonl'), { truncateAfterStep: checkpoint ? step : -1, warn: log });
    const snapshotAt = snapshotSteps(config, total);
    // A resample at (or past) the last step would export features no step has trained: skipped.
    const resampleAt = new Set(config.resampling.enabled ? config.resampling.steps.filter((r) => r < total) : []);
    const tooLate = config.resampling.enabled ? config.resampling.steps.filter((r) => r >= total) : [];
    if (tooLate.length > 0 && step === 0) log(`resampling.steps ${JSON.stringify(tooLate)}: not before this ${total}-step run's last step, so skipped (the export would hold features resampled and never trained)`);
    const started = performance.now();
    dataMs = 0; // the wait measured is that of the training loop (not normalisation or initialisation)
    const seconds = () => secondsBefore + (performance.now() - started) / 1000;
    let last: (TrainStepStats & { fvu: number | null }) | null = null;
    let lastCheckpoint: string | null = checkpoint?.path ?? null;
    let rateMark = { time: performance.now(), samples };
    const sessionStart = { time: performance.now(), samples };
    const rateNow = () => ((samples - sessionStart.samples) * 1000) / Math.max(1e-9, performance.now() - sessionStart.time);
    let interrupted = false;

    const snapshot = (mayCloseWindow: boolean) => {
      const counts = sae.fireCounts();
      sae.resetFireCounts();
      firing.absorb(counts, step, samplesSinceSnapshot, mayCloseWindow);
      samplesSinceSnapshot = 0;
    };
    const saveCheckpoint = async () => {
      snapshot(false);
      const runState: RunState = {
        step,
        samples,
        dIn,
        dSae: config.sae.dSae,
        normalizationScale: scale,
        lastResampleStep,
        rng: rng.state(),
        source: source.state(),
        firing: (() => {
          const f = firing.state();
          return {
            windowSamples: f.windowSamples,
            lastDensitySamples: f.lastDensitySamples,
            totalSamples: f.totalSamples,
            hasLastDensity: f.lastDensity !== null,
            recentSamples: f.recent.map((bucket) => bucket.samples),
          };
        })(),
        samplesSinceSnapshot,
        resamples,
        seconds: seconds(),
      };
      await metrics!.flush();
      lastCheckpoint = await writeCheckpoint(checkpointsDir, step, checkpointFiles(sae, firing, runState), config.checkpoints.keep);
    };

    let lastRead: TrainStepStats | null = null; // the statistics of the latest step that read them
    while (step < total) {
      if (options.signal?.aborted) {
        interrupted = true; // already interrupted: no step is taken
        break;
      }
      sae.setHyperparameters({ lr: learningRateAt(lrSchedule(config), step, total, lastResampleStep), l1Coeff: l1CoeffAt({ l1Coeff: t.l1Coeff, warmupSteps: t.l1WarmupSteps }, step) });
      const x = await nextBatch(t.batchSize);
      // A step's statistics are read back (a wait for the device) only where they are used: on
      // logging steps and the last, or on every step for an onStep hook. A loss that stops being
      // finite in between shows at the next read; checkpoints check the parameters themselves.
      const logging = (step + 1) % config.logging.every === 0 || step + 1 === total;
      let stats: TrainStepStats | null = null;
      if (logging || options.onStep) stats = await sae.step(x, { clipGradNorm: t.clipGradNorm });
      else await sae.queueStep(x, { clipGradNorm: t.clipGradNorm });
      step += 1;
      samples += t.batchSize;
      samplesSinceSnapshot += t.batchSize;
      if (stats) {
        if (!Number.isFinite(stats.loss)) {
          const when = options.onStep ? `at step ${step}` : `by step ${step} (the loss is read every ${config.logging.every} steps)`;
          throw new TrainingError(`the loss became ${stats.loss} ${when}; lower the learning rate or enable gradient clipping (training.clipGradNorm). Checkpoints written so far are kept.`);
        }
        lastRead = stats;
        options.onStep?.(step, stats);
      }
      if (snapshotAt.has(step) || logging) snapshot(step % config.logging.every === 0);
      if (logging && stats) {
        const variance = await batchVariance(batches.get(t.batchSize)!, t.batchSize);
        last = { ...stats, fvu: variance > 0 ? stats.mse / variance : null };
        const now = performance.now();
        const rate = ((samples - rateMark.samples) * 1000) / Math.max(1e-9, now - rateMark.time);
        const rateMarkTime = rateMark.time;
        rateMark = { time: now, samples };
        const density = firing.summary();
        const h = sae.hyperparameters;
        const record: MetricsRecord = {
          step,
          samples,
          loss: stats.loss,
          mse: stats.mse,
          l1: stats.sparsity,
          l0: stats.l0,
          fvu: last.fvu,
          dead: density?.dead ?? null,
          ultraLow: density?.ultraLow ?? null,
          deadFraction: density ? density.dead / config.sae.dSae : null,
          lr: h.lr,
          l1Coeff: h.l1Coeff,
          gradNorm: Number.isFinite(stats.gradNorm) ? stats.gradNorm : null,
          samplesPerSec: rate,
          dataWaitFraction: dataMs / Math.max(1e-9, now - rateMarkTime),
          seconds: seconds(),
        };
        dataMsSession += dataMs;
        dataMs = 0;
        metrics.append(record);
      }
      progress?.update(step, lastRead ? { 'samples/s': rateNow(), loss: lastRead.loss, L0: lastRead.l0 } : { 'samples/s': rateNow() });

      if (resampleAt.has(step)) {
        // Dead: silent for the whole window; before a window has passed, no feature can be.
        const window = config.resampling.deadWindowSteps;
        const dead = step >= window ? firing.deadSince(step - window) : new Int32Array(0);
        if (step < window) (progress ? (line: string) => progress!.log(line) : log)(`step ${step}: resampling.deadWindowSteps (${window}) have not passed yet: no feature can be called dead`);
        const report = await resampleDeadFeatures(sae, dead, nextBatch, {
          samples: config.resampling.samples,
          batchSize: t.batchSize,
          encNormFactor: config.resampling.encoderNormFactor,
          seed: Math.floor(rng.uniform() * 2 ** 53),
        });
        firing.markFresh(report.applied, step); // the ones left alone stay dead
        if (report.resampled > 0) lastResampleStep = step; // the learning rate warms up again only after a resample
        const event: ResampleEvent = { step, dead: report.dead, resampled: report.resampled, meanLiveEncoderNorm: report.dead > 0 && report.live > 0 ? report.meanLiveEncoderNorm : null };
        resamples.push(event);
        metrics.append({ step, samples, event: 'resample', dead: report.dead, resampled: report.resampled });
        (progress ? (line: string) => progress!.log(line) : log)(`step ${step}: resampled ${report.resampled} of ${report.dead} dead features (from ${report.inputs} inputs)`);
      }
      // An interruption after the last step is no interruption: the run finishes and exports.
      if (options.signal?.aborted && step < total) {
        interrupted = true;
        break;
      }
      if (config.checkpoints.every > 0 && step % config.checkpoints.every === 0 && step < total) await saveCheckpoint();
    }
    // The loop's figures, before the final checkpoint, export and curves.
    const trainingSeconds = seconds();
    const dataWaitFraction = (dataMsSession + dataMs) / Math.max(1e-9, performance.now() - started);
    progress?.stop();
    progress = null;
    await saveCheckpoint();
    log(`checkpoint: ${lastCheckpoint}`);
    await metrics.close();
    metrics = null;

    let exportDir: string | null = null;
    if (!interrupted) {
      exportDir = path.join(outDir, 'sae');
      await exportSae(sae, firing, scale, config, step, samples, exportDir);
      await writeTrainingCurves(path.join(outDir, 'metrics.jsonl'), path.join(outDir, 'curves.svg'), { title: `SAE ${dIn} → ${config.sae.dSae}` }).catch(
        (error: Error) => log(`could not draw the curves: ${error.message}`),
      );
    }
    const density = firing.summary();
    return {
      outDir,
      backend,
      steps: step,
      totalSteps: total,
      samples,
      seconds: seconds(),
      trainingSeconds,
      interrupted,
      last,
      dead: density?.dead ?? null,
      ultraLow: density?.ultraLow ?? null,
      densitySamples: density?.samples ?? null,
      resamples,
      exportDir,
      checkpoint: lastCheckpoint,
      normalizationScale: scale,
      dataWaitFraction,
    };
  } finally {
    progress?.stop();
    await metrics?.close().catch(() => {});
    for (const tensor of owned) tensor.dispose();
    sae.dispose();
    await source.close();
  }
}

function lrSchedule(config: TrainConfig) {
  const t = config.training;
  return { lr: t.lr, warmupSteps: t.lrWarmupSteps, decay: t.lrDecay, decayFraction: t.decayFraction, minFraction: t.minLrFraction, rewarmupSteps: config.resampling.lrRewarmupSteps };
}

/** Steps (counted as steps done) after which firing counts must be read: R − W and R for each resample R. */
function snapshotSteps(config: TrainConfig, total: number): Set<number> {
  const out = new Set<number>();
  if (!config.resampling.enabled) return out;
  for (const r of config.resampling.steps) {
    if (r >= total) continue; // not resampled (see resampleAt)
    out.add(r);
    if (r - config.resampling.deadWindowSteps > 0) out.add(r - config.resampling.deadWindowSteps);
  }
  return out;
}

/** √d / E‖x‖ over `batches` batches, with the norms computed on the device. */
async function estimateNormalizationScale(
  nextBatch: (rows: number) => Promise<Tensor>,
  backend: BackendName,
  batchSize: number,
  batches: number,
  dIn: number,
): Promise<number> {
  let sum = 0;
  let count = 0;
  const norms = Tensor.empty([batchSize], { backend });
  try {
    for (let b = 0; b < batches; b++) {
      const x = await nextBatch(batchSize);
      const sq = (await rowSqDist(x, null, norms)).toArray() as Float32Array;
      for (const v of sq) sum += Math.sqrt(v);
      count += sq.length;
    }
  } finally {
    norms.dispose();
  }
  const mean = sum / count;
  if (!(mean > 0) || !Number.isFinite(mean)) throw new TrainingError(`cannot normalise the inputs: their mean norm is ${mean}`);
  return Math.sqrt(dIn) / mean;
}

/**
 * Σ_j of column j's variance over the batch x [rows, d] (mean squared deviation from the column
 * means): Σ_j (Σ x² − (Σ x)² / rows) / rows from the backend's float64 column sums, so the batch
 * is not read back.
 */
async function batchVariance(x: Tensor, rows: number): Promise<number> {
  const { sum, sumsq } = await columnStats(x);
  let total = 0;
  for (let j = 0; j < sum.length; j++) total += sumsq[j]! - (sum[j]! * sum[j]!) / rows;
  return Math.max(0, total / rows);
}

/**
 * Why an SAE of d_in × d_sae could not be checkpointed in this Node.js, or null: each checkpoint
 * file is made in one buffer, and the optimizer's (Adam's two moments of both matrices, 16·d_in·d_sae
 * bytes) is the largest. Told before training, not at the first checkpoint.
 */
export function checkpointTooLarge(dIn: number, dSae: number): string | null {
  const optimizerBytes = 16 * (dIn * dSae + dIn + dSae);
  if (optimizerBytes + 65_536 <= constants.MAX_LENGTH) return null; // and the file's header
  const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(1);
  return `an SAE of d_in ${dIn} × d_sae ${dSae} has ${gib(optimizerBytes)} GiB of optimizer state, and this Node.js holds at most ${gib(constants.MAX_LENGTH)} GiB in the one buffer a checkpoint file is made in (buffer.constants.MAX_LENGTH): train a smaller dictionary, or run Node.js 22 or later (2^53 − 1 bytes)`;
}

function checkpointFiles(sae: SparseAutoencoder, firing: FiringStats, runState: RunState): Record<string, Buffer | string> {
  const p = sae.readParameters();
  // The loss is not read at every step: a run that diverged since the last read is caught here,
  // before it overwrites anything.
  for (const name of PARAMS) {
    const bad = p[name].findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new TrainingError(
        `${name}[${bad}] is ${p[name][bad]} at step ${runState.step}: training diverged; lower the learning rate or enable gradient clipping (training.clipGradNorm). Nothing was saved; checkpoints written so far are kept.`,
      );
    }
  }
  const opt = sae.readOptimizerState();
  const shapes: Record<(typeof PARAMS)[number], number[]> = { W_enc: [sae.dIn, sae.dSae], b_enc: [sae.dSae], W_dec: [sae.dSae, sae.dIn], b_dec: [sae.dIn] };
  const weights: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  const optimizer: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const name of PARAMS) {
    weights[name] = { dtype: 'F32', shape: shapes[name], data: p[name] };
    optimizer[`m.${name}`] = { dtype: 'F32', shape: shapes[name], data: opt.m[name] };
    optimizer[`v.${name}`] = { dtype: 'F32', shape: shapes[name], data: opt.v[name] };
  }
  const f = firing.state();
  const n = sae.dSae;
  return {
    'sae_weights.safetensors': encodeSafetensors(weights),
    'optimizer.safetensors': encodeSafetensors(optimizer, { adam_steps: String(opt.steps) }),
    'firing.safetensors': encodeSafetensors({
      last_fired: { dtype: 'I32', shape: [n], data: f.lastFired },
      window_counts: { dtype: 'F64', shape: [n], data: f.windowCounts },
      last_density: { dtype: 'F64', shape: [n], data: f.lastDensity ?? new Float64Array(n) },
      ...(f.recent.length > 0 ? { recent_counts: { dtype: 'F64' as const, shape: [f.recent.length, n], data: concatCounts(f.recent, n) } } : {}),
    }),
    'state.json': `${JSON.stringify(runState, null, 2)}\n`,
  };
}

/** The tensors of one of a verified checkpoint's safetensors files. */
function parseTensors(checkpoint: Checkpoint, file: string): Record<string, LoadedTensor> {
  return decodeSafetensors(checkpoint.files[file]!, path.join(checkpoint.path, file)).tensors;
}

function restoreModel(sae: SparseAutoencoder, checkpoint: Checkpoint<RunState>): void {
  const weights = parseTensors(checkpoint, 'sae_weights.safetensors');
  const optimizer = parseTensors(checkpoint, 'optimizer.safetensors');
  const take = (set: Record<string, LoadedTensor>, name: string) => {
    const tensor = set[name];
    if (!tensor) throw new CheckpointError(checkpoint.path, `tensor ${name} is missing`);
    return tensorToFloat32(tensor, name);
  };
  const params = {} as SaeParameterArrays;
  const m = {} as SaeParameterArrays;
  const v = {} as SaeParameterArrays;
  for (const name of PARAMS) {
    params[name] = take(weights, name);
    m[name] = take(optimizer, `m.${name}`);
    v[name] = take(optimizer, `v.${name}`);
  }
  sae.writeParameters(params);
  sae.writeOptimizerState({ steps: checkpoint.state.step, m, v });
}

function restoreFiring(checkpoint: Checkpoint<RunState>, config: TrainConfig): FiringStats {
  const state = checkpoint.state;
  const t = parseTensors(checkpoint, 'firing.safetensors');
  const get = (name: string) => {
    const tensor = t[name];
    if (!tensor) throw new CheckpointError(checkpoint.path, `firing statistic ${name} is missing`);
    return tensor;
  };
  const lastFired = new Int32Array(get('last_fired').bytes.slice().buffer);
  const n = config.sae.dSae;
  const windowCounts = tensorToFloat64(get('window_counts'));
  const lastDensity = state.firing.hasLastDensity ? tensorToFloat64(get('last_density')) : null;
  let recent: CountBucket[];
  if (state.firing.recentSamples !== undefined) {
    const sizes = state.firing.recentSamples;
    const all = sizes.length > 0 ? tensorToFloat64(get('recent_counts')) : new Float64Array(0);
    if (all.length !== sizes.length * n) {
      throw new CheckpointError(checkpoint.path, `firing statistic recent_counts holds ${all.length} values, not ${sizes.length} buckets of ${n}`);
    }
    recent = sizes.map((samples, b) => ({ counts: all.slice(b * n, (b + 1) * n), samples }));
  } else {
    // An older checkpoint: the recent counts are those of the last completed window and the open one.
    recent = [];
    if (lastDensity && state.firing.lastDensitySamples > 0) {
      recent.push({ counts: lastDensity.map((d) => d * state.firing.lastDensitySamples), samples: state.firing.lastDensitySamples });
    }
    if (state.firing.windowSamples > 0) recent.push({ counts: windowCounts.slice(), samples: state.firing.windowSamples });
  }
  return new FiringStats(n, config.logging.densityWindowSamples, {
    lastFired,
    windowCounts,
    windowSamples: state.firing.windowSamples,
    lastDensity,
    lastDensitySamples: state.firing.lastDensitySamples,
    totalSamples: state.firing.totalSamples,
    recent,
  });
}

/** Buckets' counts one after another: [buckets, n]. */
function concatCounts(buckets: readonly CountBucket[], n: number): Float64Array {
  const out = new Float64Array(buckets.length * n);
  buckets.forEach((bucket, b) => out.set(bucket.counts, b * n));
  return out;
}

/** Writes the SAELens folder with the normalisation folded in, so the SAE works on raw activations. */
async function exportSae(sae: SparseAutoencoder, firing: FiringStats, scale: number, config: TrainConfig, steps: number, samples: number, dir: string): Promise<void> {
  const p = sae.readParameters();
  // Trained on s·x: f = ReLU((s x − b_dec) W_enc + b_enc), x̂ = (f W_dec + b_dec) / s.
  // Raw form: W_enc' = s W_enc, b_dec' = b_dec / s, W_dec' = W_dec / s, b_enc' = b_enc.
  const folded: SaeParameterArrays = {
    W_enc: p.W_enc.map((w) => w * scale),
    b_enc: p.b_enc,
    W_dec: p.W_dec.map((w) => w / scale),
    b_dec: p.b_dec.map((b) => b / scale),
  };
  const density = firing.density()?.density;
  await saveSaeLens(dir, {
    dIn: sae.dIn,
    dSae: sae.dSae,
    params: folded,
    metadata: {
      modelName: config.export.modelName,
      hookName: config.export.hookName,
      contextSize: config.export.contextSize,
      datasetPath: config.export.datasetPath,
    },
    ...(density ? { sparsityLog10: Float32Array.from(density, (x) => Math.log10(x + 1e-10)) } : {}),
    training: {
      penalty: sae.penalty,
      l1_coeff: config.training.l1Coeff,
      training_steps: steps,
      training_samples: samples,
      normalization_scale_folded: scale,
      seed: config.seed,
    },
  });
}
