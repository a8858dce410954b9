/**
 * Training a GPT-2-family language model from token shards: `monosemantic lm train`.
 *
 * Per step: the next batch of contexts from the shard stream (lib/data/shard-contexts.ts), each
 * position's target the next token of its context, one Gpt2Training step (forward, fused
 * softmax–cross-entropy, backward, clipping, AdamW) at the scheduled learning rate. Every
 * `eval.every` steps the validation loss over the validation shards. The run folder holds
 * config.json, metrics.jsonl, checkpoints/ and, at the end, the exported model (model/: an HF
 * GPT-2 folder with tokenizer.json, a model card and its loss curve).
 *
 * Exact resume: a checkpoint holds the parameters, AdamW moments and step count, the stream's
 * position and the run's counters; on the CPU a resumed run is bit-identical to an uninterrupted one.
 */
import { copyFile } from 'node:fs/promises';
import path from 'node:path';

import { z } from 'zod';

import { renderCurvesSvg } from '../analysis/curves.js';
import { type BackendName, resolveBackend } from '../backend.js';
import { openShardContextStream, type ShardContextState, type ShardContextStream } from '../data/shard-contexts.js';
import { deviceDescription } from '../doctor.js';
import { writeFileAtomic } from '../io/atomic.js';
import { type Checkpoint, type CheckpointLayout, CheckpointError, latestGoodCheckpoint, listCheckpoints, writeCheckpoint } from '../io/checkpoint.js';
import { withFolderLock } from '../io/folder-lock.js';
import { makeFolder } from '../io/folders.js';
import { freshRunFolderProblem, removeAbandonedRunWrites } from '../io/run-folder.js';
import { decodeSafetensors, encodeSafetensors, tensorToFloat32 } from '../io/safetensors.js';
import { packageRoot } from '../native/load.js';
import { MetricsLog, readMetrics, type MetricsRecord } from '../sae/metrics-log.js';
import { TrainingError, noCheckpointMessage, type ProgressDisplay } from '../sae/trainer.js';
import { checkGpt2Config, type Gpt2Config } from './config.js';
import { initGpt2Weights } from './init.js';
import { type LmTrainConfig, lmLearningRateAt, lmTotalSteps, tokensPerStep } from './train-config.js';
import { Tokenizer } from './tokenizer.js';
import { nextTokenTargets } from './tokens.js';
import { Gpt2Training } from './training-model.js';
import { saveGpt2Model } from './weights.js';

export interface LmTrainHooks {
  /** Stops the run cleanly after the current step (a checkpoint is written first). */
  signal?: AbortSignal;
  /** Status lines (resumes, validation losses, checkpoints). */
  log?: (line: string) => void;
  makeProgress?: (initialStep: number, totalSteps: number) => ProgressDisplay;
  /** The command line that started the run, for the model card. */
  command?: string;
}

export interface LmTrainSummary {
  outDir: string;
  backend: BackendName;
  device: string;
  steps: number;
  totalSteps: number;
  /** Next-token predictions trained on. */
  tokens: number;
  seconds: number;
  interrupted: boolean;
  /** Mean training loss over the last logging window (null before one). */
  trainLoss: number | null;
  /** Mean training loss over at least the last 100 steps (all, if fewer), as the model card gives it; null before a logged window. */
  recentTrainLoss: { loss: number; steps: number } | null;
  /** The last validation loss (null without validation shards). */
  valLoss: number | null;
  /** The exported model folder (null when interrupted). */
  modelDir: string | null;
  checkpoint: string | null;
}

const count = z.number().nonnegative();

/** What this trainer's checkpoints hold: the files, and the state.json fields it resumes from. */
export const LM_CHECKPOINT_LAYOUT = {
  trainer: 'a language-model trainer',
  files: ['weights.safetensors', 'optimizer.safetensors', 'state.json'],
  state: z.object({
    step: z.number().int().nonnegative(),
    tokens: count,
    /** The shard stream's own state, which the stream checks. */
    source: z.looseObject({}),
    seconds: count,
    valLoss: z.number().nullable(),
    trainLoss: z.number().nullable(),
    /** The training losses of the steps since the last metrics record. */
    window: z.object({ sum: z.number(), steps: count }),
    /** The command lines that started and resumed the run, in order (absent in older states). */
    commands: z.array(z.string()).optional(),
  }),
} satisfies CheckpointLayout<{ step: number }>;
type RunState = Omit<z.infer<typeof LM_CHECKPOINT_LAYOUT.state>, 'source'> & { source: ShardContextState };

/** The package's default corpus folder. */
export function defaultCorpusDir(): string {
  return path.join(packageRoot(), 'corpus');
}

/** Config paths with the package defaults filled in (null → corpus/). */
export function resolveLmPaths(config: LmTrainConfig): { tokenizer: string; train: string[]; val: string[] } {
  const corpus = defaultCorpusDir();
  return {
    tokenizer: config.tokenizer ?? corpus,
    train: config.data.train ?? [path.join(corpus, 'train-sample.tokens')],
    val: config.data.val ?? [path.join(corpus, 'val.tokens')],
  };
}

/** The GPT-2 config a training config describes, for a tokenizer. */
export function lmModelConfig(config: LmTrainConfig, tokenizer: Tokenizer): Gpt2Config {
  const m = config.model;
  const gpt2: Gpt2Config = {
    nLayer: m.nLayer,
    nHead: m.nHead,
    dModel: m.dModel,
    dMlp: m.dMlp,
    nPositions: m.contextLength,
    vocabSize: tokenizer.vocabSize,
    activation: m.activation,
    layerNormEps: m.layerNormEps,
    tiedEmbeddings: m.tiedEmbeddings,
    scaleAttnWeights: true,
    bosTokenId: tokenizer.bosTokenId,
    eosTokenId: tokenizer.eosTokenId,
  };
  checkGpt2Config(gpt2, 'model');
  return gpt2;
}

/** Trains the language model `config` describes; resumes from outDir's latest good checkpoint when `resume`. */
export async function trainLm(config: LmTrainConfig, options: { resume?: boolean } & LmTrainHooks = {}): Promise<LmTrainSummary> {
  return withFolderLock(path.resolve(config.outDir), () => trainLmLocked(config, options));
}

async function trainLmLocked(config: LmTrainConfig, options: { resume?: boolean } & LmTrainHooks): Promise<LmTrainSummary> {
  const log = options.log ?? (() => {});
  const backend = resolveBackend(config.backend === 'auto' ? undefined : config.backend);
  const outDir = path.resolve(config.outDir);
  const checkpointsDir = path.join(outDir, 'checkpoints');
  const total = lmTotalSteps(config);
  const t = config.training;
  const B = t.batchSize;
  const T = config.model.contextLength;
  const paths = resolveLmPaths(config);

  let checkpoint: Checkpoint<z.infer<typeof LM_CHECKPOINT_LAYOUT.state>> | null = null;
  if (options.resume) {
    checkpoint = await latestGoodCheckpoint(checkpointsDir, LM_CHECKPOINT_LAYOUT, (e) => log(`skipping unusable checkpoint: ${e.message}`));
    if (!checkpoint) throw new TrainingError(noCheckpointMessage(checkpointsDir));
    const at = checkpoint.state.step;
    if (at > total) throw new TrainingError(`the checkpoint is at step ${at}, past the run's ${total} steps: give at least ${at} steps to resume it`);
  } else if ((await listCheckpoints(checkpointsDir)).length > 0) {
    throw new TrainingError(`${outDir} already holds a run; resume it (--resume ${outDir}) or choose another outDir`);
  } else {
    const problem = await freshRunFolderProblem(outDir, ['lm train']);
    if (problem !== null) throw new TrainingError(problem);
  }
  // The stream checks its own state (version, fingerprint) when it opens.
  const state = (checkpoint?.state ?? null) as RunState | null;
  // The model card names every command of the run: the one that started it, then each resume (a
  // state saved before commands were kept does not know how the run started).
  const previousCommands = state === null ? [] : (state.commands ?? ['(not recorded)']);
  const commands = [...previousCommands, ...(options.command ? [options.command] : [])];

  const tokenizer = await Tokenizer.load(paths.tokenizer);
  if (tokenizer.bosTokenId === null) throw new TrainingError(`the tokenizer in ${paths.tokenizer} has no BOS token to start contexts with`);
  const modelConfig = lmModelConfig(config, tokenizer);
  // Each shard's checksum and vocabulary are checked when first opened (the validation shards at
  // the first evaluation): a damaged shard is named before anything trains on it.
  const verified = new Set<string>();
  const openStream = async (shards: string[], epochs: number, saved?: ShardContextState) => {
    const verify = shards.some((p) => !verified.has(p));
    const opened = await openShardContextStream({
      paths: shards,
      contextLength: T,
      seed: config.seed,
      bosTokenId: tokenizer.bosTokenId,
      eosTokenId: tokenizer.eosTokenId,
      epochs,
      ...(verify ? { verify: true } : {}),
      ...(saved ? { state: saved } : {}),
    });
    for (const p of shards) verified.add(p);
    return opened;
  };
  const stream = await openStream(paths.train, Infinity, state?.source);
  let model: Gpt2Training | null = null;
  let metrics: MetricsLog | null = null;
  let progress: ProgressDisplay | null = null;
  try {
    if (stream.vocabSize > tokenizer.vocabSize) {
      throw new TrainingError(`the training shards' vocabulary (${stream.vocabSize} ids) is larger than the tokenizer's (${tokenizer.vocabSize}): they come from another tokenizer`);
    }
    model = new Gpt2Training(modelConfig, initGpt2Weights(modelConfig, config.seed, config.model.initStd), {
      batch: B,
      T,
      backend,
      ...(config.precision ? { precision: config.precision } : {}),
    });
    let step = 0;
    let tokens = 0;
    let secondsBefore = 0;
    let valLoss: number | null = null;
    let trainLoss: number | null = null;
    let window = { sum: 0, steps: 0, time: performance.now(), tokens };
    if (checkpoint && state) {
      restoreTraining(model, checkpoint, state.step);
      ({ step, tokens, valLoss, trainLoss } = state);
      window = { ...state.window, time: performance.now(), tokens };
      secondsBefore = state.seconds;
      log(`resuming from ${checkpoint.path} at step ${step} of ${total}`);
    }
    const finishedBefore = state !== null && step >= total;
    if (t.warmupSteps >= total) {
      log(`warning: training.warmupSteps (${t.warmupSteps}) is not below the run's ${total} steps: the learning rate never leaves its warm-up (set training.warmupSteps lower)`);
    }
    await makeFolder(outDir);
    await removeAbandonedRunWrites(outDir);
    await writeFileAtomic(path.join(outDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    // A fresh run starts an empty log (a start that failed before its first checkpoint may have left one).
    metrics = await MetricsLog.open(path.join(outDir, 'metrics.jsonl'), { truncateAfterStep: checkpoint ? step : -1, warn: log });
    progress = options.makeProgress?.(step, total) ?? null;
    const say = (line: string) => (progress ? progress.log(line) : log(line));
    const started = performance.now();
    const seconds = () => secondsBefore + (performance.now() - started) / 1000;
    const sessionStart = { time: performance.now(), tokens };
    const rateNow = () => ((tokens - sessionStart.tokens) * 1000) / Math.max(1e-9, performance.now() - sessionStart.time);
    let lastCheckpoint: string | null = checkpoint?.path ?? null;
    let interrupted = false;

    const validate = async () => {
      if (paths.val.length === 0) return;
      valLoss = await validationLoss(model!, () => openStream(paths.val, 1), config.eval.maxBatches, tokenizer.bosTokenId!);
      metrics!.append({ step, samples: tokens, valLoss });
      say(`step ${step}: validation loss ${valLoss.toFixed(4)}`);
    };
    // The queued steps' statistics, folded into the logging window (a wait for the backend: on
    // logging steps and at checkpoints only). A loss that stops being finite shows here.
    const absorb = () => {
      const s = model!.readStats();
      for (const loss of s.losses) {
        if (!Number.isFinite(loss)) {
          throw new TrainingError(`the loss became ${loss} by step ${step} (the loss is read every ${config.logging.every} steps); lower training.lr or set training.clipGradNorm. Checkpoints written so far are kept.`);
        }
        window.sum += loss;
        window.steps += 1;
      }
      return s;
    };
    const saveCheckpoint = async () => {
      absorb();
      await metrics!.flush();
      const runState: RunState = { step, tokens, source: stream.state(), seconds: seconds(), valLoss, trainLoss, window: { sum: window.sum, steps: window.steps }, commands };
      lastCheckpoint = await writeCheckpoint(checkpointsDir, step, checkpointFiles(model!, runState), config.checkpoints.keep);
    };

    if (step === 0 && config.eval.every > 0) await validate();
    while (step < total) {
      const contexts = await stream.next(B);
      if (!contexts || contexts.length !== B * T) throw new TrainingError('the training stream ended early'); // endless epochs: cannot happen
      const lr = lmLearningRateAt(t, step, total);
      await model.queueStep(contexts, nextTokenTargets(contexts, B, T), {
        lr,
        beta1: t.beta1,
        beta2: t.beta2,
        eps: t.eps,
        weightDecay: t.weightDecay,
        clipGradNorm: t.clipGradNorm,
      });
      step += 1;
      tokens += tokensPerStep(config);
      if (step % config.logging.every === 0 || step === total) {
        const stats = absorb();
        const now = performance.now();
        trainLoss = window.sum / window.steps;
        metrics.append({
          step,
          samples: tokens,
          loss: trainLoss,
          lr,
          gradNorm: stats.gradNorm,
          tokensPerSec: ((tokens - window.tokens) * 1000) / Math.max(1e-9, now - window.time),
          seconds: seconds(),
        });
        window = { sum: 0, steps: 0, time: now, tokens };
      }
      progress?.update(step, { 'tokens/s': rateNow(), ...(trainLoss !== null ? { loss: trainLoss } : {}), ...(valLoss !== null ? { val: valLoss } : {}) });
      if (config.eval.every > 0 && step % config.eval.every === 0 && step < total) await validate();
      // An interruption after the last step is no interruption: the run finishes (final validation included).
      if (options.signal?.aborted && step < total) {
        interrupted = true;
        break;
      }
      if (config.checkpoints.every > 0 && step % config.checkpoints.every === 0 && step < total) await saveCheckpoint();
    }
    progress?.stop();
    if (finishedBefore) {
      // A resume of a finished run: its last validation and checkpoint stand; the model is exported again.
      log(`the run had already finished at step ${step} of ${total}; exporting its model again`);
    } else {
      if (!interrupted) await validate();
      await saveCheckpoint();
      log(`checkpoint: ${lastCheckpoint}`);
    }
    await metrics.close();
    metrics = null;

    const device = deviceDescription(backend);
    const records = await readMetrics(path.join(outDir, 'metrics.jsonl'));
    const recentTrainLoss = recentTrainingLoss(records, RECENT_LOSS_STEPS);
    let modelDir: string | null = null;
    if (!interrupted) {
      modelDir = path.join(outDir, 'model');
      await exportModel(model, modelConfig, config, paths, modelDir, {
        bosToken: tokenizer.idToToken(tokenizer.bosTokenId) ?? String(tokenizer.bosTokenId),
        parameters: model.parameterNames.reduce((n, name) => n + model!.parameter(name).size, 0),
        steps: step,
        tokens,
        seconds: seconds(),
        device,
        backend,
        recentTrainLoss,
        valLoss,
        commands: finishedBefore ? previousCommands : commands, // exporting again trains nothing
        records,
      });
    }
    return { outDir, backend, device, steps: step, totalSteps: total, tokens, seconds: seconds(), interrupted, trainLoss, recentTrainLoss, valLoss, modelDir, checkpoint: lastCheckpoint };
  } finally {
    progress?.stop();
    await metrics?.close().catch(() => {});
    model?.dispose();
    await stream.close();
  }
}

/** Mean next-token loss over the validation stream (at most maxBatches batches); a short last batch is padded with untargeted rows. */
async function validationLoss(model: Gpt2Training, open: () => Promise<ShardContextStream>, maxBatches: number | null, bos: number): Promise<number> {
  const { batch: B, T } = model;
  const stream = await open();
  let sum = 0;
  let count = 0;
  try {
    for (let b = 0; maxBatches === null || b < maxBatches; b++) {
      const contexts = await stream.next(B);
      if (!contexts) break;
      const rows = contexts.length / T;
      const ids = new Int32Array(B * T).fill(bos);
      ids.set(contexts);
      const targets = nextTokenTargets(ids, B, T);
      targets.fill(-1, rows * T); // padding rows count for nothing
      const result = await model.evaluate(ids, targets);
      sum += result.sum;
      count += result.count;
    }
  } finally {
    await stream.close();
  }
  if (count === 0) throw new TrainingError('the validation shards hold no whole context');
  return sum / count;
}

function checkpointFiles(model: Gpt2Training, runState: RunState): Record<string, Buffer | string> {
  const s = model.readState();
  const weights: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  const optimizer: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const p of s.tensors) {
    weights[p.name] = { dtype: 'F32', shape: p.shape, data: p.value };
    optimizer[`m.${p.name}`] = { dtype: 'F32', shape: p.shape, data: p.m };
    optimizer[`v.${p.name}`] = { dtype: 'F32', shape: p.shape, data: p.v };
  }
  return {
    'weights.safetensors': encodeSafetensors(weights),
    'optimizer.safetensors': encodeSafetensors(optimizer, { adam_steps: String(s.steps) }),
    'state.json': `${JSON.stringify(runState, null, 2)}\n`,
  };
}

function restoreTraining(model: Gpt2Training, checkpoint: Checkpoint, steps: number): void {
  const decoded = (file: string) => decodeSafetensors(checkpoint.files[file]!, path.join(checkpoint.path, file)).tensors;
  const weights = decoded('weights.safetensors');
  const optimizer = decoded('optimizer.safetensors');
  const take = (set: typeof weights, name: string) => {
    const tensor = set[name];
    if (!tensor) throw new CheckpointError(checkpoint.path, `tensor ${name} is missing (a checkpoint of another model shape?)`);
    return tensorToFloat32(tensor, name);
  };
  const tensors = model.parameterNames.map((name) => ({ name, value: take(weights, name), m: take(optimizer, `m.${name}`), v: take(optimizer, `v.${name}`) }));
  try {
    model.writeState({ steps, tensors });
  } catch (error) {
    throw new CheckpointError(checkpoint.path, `does not fit this model: ${(error as Error).message}`);
  }
}

interface ExportFacts {
  /** The token every context starts with, as the tokenizer writes it. */
  bosToken: string;
  /** Trainable values (the tied unembedding counted once). */
  parameters: number;
  steps: number;
  tokens: number;
  seconds: number;
  device: string;
  backend: BackendName;
  recentTrainLoss: { loss: number; steps: number } | null;
  valLoss: number | null;
  /** The command lines of the run: the first started it, the others resumed it. */
  commands: string[];
  /** The run's metrics log. */
  records: MetricsRecord[];
}

/** model/: config.json + model.safetensors (HF GPT-2), tokenizer.json, loss-curve.svg and README.md (the model card). */
async function exportModel(model: Gpt2Training, modelConfig: Gpt2Config, config: LmTrainConfig, paths: ReturnType<typeof resolveLmPaths>, dir: string, facts: ExportFacts): Promise<void> {
  await makeFolder(dir);
  await saveGpt2Model(dir, modelConfig, model.readWeights(), { dtype: config.export.dtype === 'bf16' ? 'BF16' : 'F32' });
  await copyFile(path.join(paths.tokenizer, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  const records = facts.records;
  const series = (key: string, name: string) => ({
    name,
    points: records.filter((r) => typeof r[key] === 'number').map((r) => ({ x: r.samples, y: r[key] as number })),
  });
  const svg = await renderCurvesSvg({
    title: `${config.export.name}: next-token loss`,
    xLabel: 'tokens',
    panels: [{ yLabel: 'loss (nats/token)', series: [series('loss', 'train'), series('valLoss', 'validation')] }],
  });
  await writeFileAtomic(path.join(dir, 'loss-curve.svg'), svg);
  await writeFileAtomic(path.join(dir, 'README.md'), modelCard(modelConfig, config, paths, facts));
}

/** The final training loss (the summary's and the model card's) averages at least this many of the last steps (all, if fewer). */
const RECENT_LOSS_STEPS = 100;

/**
 * The mean training loss over the last logged windows that together span at least minSteps steps
 * (each record's loss is its window's mean, weighted by the steps since the record before; a window
 * whose loss is not finite is left out, its steps too); null when none has a finite loss. The last
 * window alone can be a step or two, too noisy for a summary.
 */
export function recentTrainingLoss(records: MetricsRecord[], minSteps: number): { loss: number; steps: number } | null {
  const logged = records.filter((r) => 'loss' in r); // training records (a non-finite loss is logged as null)
  let sum = 0;
  let steps = 0;
  let covered = 0; // steps of the windows walked, finite or not
  for (let i = logged.length - 1; i >= 0 && covered < minSteps; i--) {
    const span = logged[i]!.step - (i > 0 ? logged[i - 1]!.step : 0); // steps in this record's window
    if (span <= 0) continue; // a record repeated on resume
    covered += span;
    const loss = logged[i]!.loss;
    if (typeof loss !== 'number' || !Number.isFinite(loss)) continue; // a diverged window counts for nothing
    sum += loss * span;
    steps += span;
  }
  return steps === 0 ? null : { loss: sum / steps, steps };
}

function modelCard(m: Gpt2Config, config: LmTrainConfig, paths: ReturnType<typeof resolveLmPaths>, facts: ExportFacts): string {
  const final = facts.recentTrainLoss;
  const t = config.training;
  const fmt = (x: number | null) => (x === null ? 'n/a' : x.toFixed(4));
  // Paths as a reader of the card can use them: under the package or the working folder, relative
  // to it (the card is published; the absolute path would name the machine's folders).
  const rel = (p: string) => {
    for (const base of [packageRoot(), process.cwd()]) {
      const r = path.relative(base, p);
      if (path.isAbsolute(p) && r !== '' && !r.startsWith('..') && !path.isAbsolute(r)) return r;
    }
    return p;
  };
  return `# ${config.export.name}

A GPT-2-architecture language model trained by monosemantic (\`monosemantic lm train\`). Load it
with monosemantic (\`--model\` of any command) or Hugging Face transformers (\`GPT2LMHeadModel\`).

| | |
| --- | --- |
| layers, heads | ${m.nLayer}, ${m.nHead} |
| d_model, d_mlp | ${m.dModel}, ${m.dMlp} (${m.activation} MLP) |
| context | ${m.nPositions} tokens (the first is \`${facts.bosToken}\`, id ${m.bosTokenId}) |
| vocabulary | ${m.vocabSize} (byte-level BPE, tokenizer.json) |
| embeddings | ${m.tiedEmbeddings ? 'tied (the unembedding is wte)' : 'untied'} |
| parameters | ${facts.parameters.toLocaleString('en-US')} |
| weights | ${config.export.dtype} |

## Training

| | |
| --- | --- |
| command | ${facts.commands.length ? facts.commands.map((c, i) => (i === 0 ? (c === '(not recorded)' ? 'not recorded' : `\`${c}\``) : `resumed with \`${c}\``)).join(', then ') : 'n/a (library call)'} |
| training shards | ${paths.train.map((p) => `\`${rel(p)}\``).join(', ')} |
| validation shards | ${paths.val.length ? paths.val.map((p) => `\`${rel(p)}\``).join(', ') : 'none'} |
| seed | ${config.seed} |
| steps | ${facts.steps.toLocaleString('en-US')} of ${t.batchSize} contexts |
| tokens seen | ${facts.tokens.toLocaleString('en-US')} next-token predictions |
| optimizer | AdamW (β ${t.beta1}, ${t.beta2}; weight decay ${t.weightDecay}), peak lr ${t.lr}, ${t.warmupSteps} warm-up steps, cosine to ${t.minLrFraction} × lr, gradient clipping at ${t.clipGradNorm || 'off'} |
| device | ${facts.device} (${facts.backend} backend) |
| wall time | ${(facts.seconds / 60).toFixed(1)} min |
| final training loss | ${final === null ? 'n/a' : `${fmt(final.loss)} nats/token (mean of the last ${final.steps.toLocaleString('en-US')} steps)`} |
| final validation loss | ${fmt(facts.valLoss)} nats/token |

![loss curve](loss-curve.svg)
`;
}
