/**
 * The main job, `monosemantic run`: a language model's hook, harvested over a corpus and mixed
 * across contexts on the device (lib/data/lm-activations.ts), feeds the SAE trainer; the exported
 * SAE is then evaluated on held-out contexts (lib/analysis/sae-eval.ts) and a summary written.
 *
 * The run folder: run.json (this run's resolved config), config.json (the trainer's), metrics.jsonl,
 * curves.svg, checkpoints/, sae/ (SAELens) and summary.json. A resumed run reads run.json back, and
 * its data position comes from the trainer's checkpoint, so it continues the same stream.
 */
import { readFile } from 'node:fs/promises';
import { freemem } from 'node:os';
import path from 'node:path';

import { densityHistogram, evaluateSae, type SaeEvaluation } from '../analysis/sae-eval.js';
import { type BackendName, nativeAddon, resolveBackend } from '../backend.js';
import { corpusKind, openCorpusContexts, readContexts, skipLog } from '../data/corpus-contexts.js';
import { LmActivationSource, type LmActivationState } from '../data/lm-activations.js';
import { passSeed } from '../data/stream-common.js';
import { writeFileAtomic } from '../io/atomic.js';
import { defaultModelDir } from '../lm/default-model.js';
import { Gpt2Model } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { packageRoot } from '../native/load.js';
import { listCheckpoints } from '../io/checkpoint.js';
import { freshRunFolderProblem, runFolderKind } from '../io/run-folder.js';
import { ConfigError, type TrainConfig } from './train-config.js';
import { machineDefaults, parseRunConfig, type RunConfig, stepSchedule, trainerConfig, withDefaults } from './run-config.js';
import { loadSaeLensAsSae } from './saelens.js';
import { type ProgressDisplay, type TrainSummary, TrainingError, train } from './trainer.js';

export const RUN_CONFIG_FILE = 'run.json';

export interface MainRunHooks {
  signal?: AbortSignal;
  log?: (line: string) => void;
  makeProgress?: (initialStep: number, totalSteps: number) => ProgressDisplay;
}

export interface MainRunSummary {
  outDir: string;
  backend: BackendName;
  modelDir: string;
  hook: string;
  train: TrainSummary;
  /** Inputs per pass over the corpus (token shards only), and the passes made. */
  samplesPerEpoch: number | null;
  epochs: number | null;
  /** What the text reader skipped or repaired, once per file and reason. */
  skipped: { file: string; reason: string }[];
  /** Null when the run was interrupted. */
  evaluation: Omit<SaeEvaluation, 'density'> | null;
}

/**
 * The run's config: `doc` (flags and file), or for `resume` the folder's run.json with `doc`'s keys
 * on top, the machine's defaults filled in where neither says anything.
 */
export async function resolveRunConfig(doc: Record<string, unknown>, options: { resume?: string; source?: string } = {}): Promise<{ config: RunConfig; backend: BackendName }> {
  let base: Record<string, unknown> = {};
  let source = options.source ?? 'flags';
  if (options.resume) {
    source = path.join(options.resume, RUN_CONFIG_FILE);
    try {
      base = JSON.parse(await readFile(source, 'utf8')) as Record<string, unknown>;
    } catch (error) {
      throw new ConfigError([`cannot read ${source}: ${(error as Error).message}`]);
    }
    base.outDir = options.resume;
    // A run length given now replaces the saved one, in whichever form it was saved.
    const training = doc['training'] as Record<string, unknown> | undefined;
    const budget = doc['budget'] as Record<string, unknown> | undefined;
    const newLength = training?.['totalSteps'] !== undefined || training?.['totalSamples'] !== undefined || (budget?.['epochs'] ?? null) !== null;
    if (newLength) {
      const savedTraining = { ...(base['training'] as Record<string, unknown> | undefined) };
      delete savedTraining['totalSteps'];
      delete savedTraining['totalSamples'];
      base = { ...base, training: savedTraining, budget: { ...(base['budget'] as Record<string, unknown> | undefined), epochs: null } };
    }
  }
  const merged = withDefaults(base, doc);
  const requested = merged.backend;
  if (requested !== undefined && requested !== 'auto' && requested !== 'cpu' && requested !== 'cuda') {
    throw new ConfigError([`backend: must be one of "auto", "cpu", "cuda"`], source);
  }
  const backend = resolveBackend(requested === 'auto' || requested === undefined ? undefined : requested);
  const config = parseRunConfig(withDefaults(machineDefaults(backend, merged), merged), source);
  return { config, backend };
}

/** Runs (or resumes) the main job as `config` says. */
export async function runMainJob(runConfig: RunConfig, options: { resume?: boolean } & MainRunHooks = {}): Promise<MainRunSummary> {
  let config = runConfig;
  const log = options.log ?? (() => {});
  const backend = resolveBackend(config.backend === 'auto' ? undefined : config.backend);
  const modelDir = config.model ?? defaultModelDir();
  const tokenizer = await Tokenizer.load(modelDir);
  using model = await Gpt2Model.load(modelDir, { backend });
  const contextLength = config.data.contextLength ?? model.config.nPositions;
  if (contextLength > model.config.nPositions) {
    throw new ConfigError([`data.contextLength: ${contextLength} exceeds the model's n_positions ${model.config.nPositions}`]);
  }
  // The BOS, a position the SAE trains on, and one more whose next token the evaluation predicts.
  if (contextLength < 3) throw new ConfigError([`data.contextLength: must be at least 3 (got ${contextLength})`]);
  // At most every position after the BOS: a shorter context than the setting (or the CPU's default
  // of 250) was made for gives all it has.
  const positions = Math.min(config.data.positionsPerContext ?? contextLength - 1, contextLength - 1);
  if (config.data.positionsPerContext !== null && config.data.positionsPerContext > positions) {
    log(`data.positionsPerContext ${config.data.positionsPerContext}: a ${contextLength}-token context has ${positions} positions after its BOS; taking them all`);
  }
  const corpusDir = path.join(packageRoot(), 'corpus');
  const corpusPaths = config.data.paths ?? [path.join(corpusDir, 'train-sample.tokens')];
  const heldOutPaths = config.eval.paths ?? [path.join(corpusDir, 'val.tokens')];
  try {
    corpusKind(corpusPaths, 'data.paths');
    corpusKind(heldOutPaths, 'eval.paths');
  } catch (error) {
    throw new ConfigError([(error as Error).message]);
  }
  const threads = config.data.tokenizerThreads;
  // What a text corpus skips is logged once per file and reason, and listed in the summary.
  const { onSkip, skipped } = skipLog(log);
  const corpus = { paths: corpusPaths, textField: config.data.textField, tokenizer, contextLength, onSkip, ...(threads !== null ? { tokenizerThreads: threads } : {}) };

  // Before any training: token shards are checked whole (checksum, every token in the vocabulary),
  // a text corpus must give at least one context, and so must the held-out set.
  const probe = await openCorpusContexts({ ...corpus, seed: config.seed, verify: true });
  try {
    if (probe.kind === 'text') await probe.next(1);
  } finally {
    await probe.close?.();
  }
  const samplesPerEpoch = probe.contextsPerEpoch === null ? null : probe.contextsPerEpoch * positions;
  await readContexts({ ...corpus, paths: heldOutPaths, seed: 0, verify: true }, 1);
  let totalSamples: number | undefined;
  if (config.budget.epochs !== null) {
    if (samplesPerEpoch === null) throw new ConfigError(['budget.epochs: needs token shards (data.paths ending in .tokens) to count the corpus; give training.totalSteps for text']);
    totalSamples = Math.ceil(config.budget.epochs * samplesPerEpoch);
  }
  const modelName = path.basename(path.resolve(modelDir));
  const trainConfig = trainerConfig(config, {
    ...(totalSamples !== undefined ? { totalSamples } : {}),
    modelName,
    contextSize: contextLength,
    datasetPath: corpusPaths.join(','),
  });
  warnIfScheduleMisfits(trainConfig, log);
  const outDir = path.resolve(config.outDir);
  if (!options.resume && (await listCheckpoints(path.join(outDir, 'checkpoints'))).length > 0) {
    const kind = (await runFolderKind(outDir)) ?? 'run';
    throw new TrainingError(`${outDir} already holds a \`monosemantic ${kind}\` run; resume it (monosemantic ${kind} --resume ${outDir}) or choose another outDir`);
  }
  if (!options.resume) {
    const problem = await freshRunFolderProblem(outDir, ['run']);
    if (problem !== null) throw new TrainingError(problem);
  }
  const width = model.hooks.find((h) => h.name === config.hook)?.width;
  if (width === undefined) throw new ConfigError([`hook: the model has no hook '${config.hook}'`]);
  const plannedSamples = trainConfig.training.totalSamples ?? (trainConfig.training.totalSteps ?? 0) * trainConfig.training.batchSize;
  // Resolved once and written to run.json; a resumed stream follows its saved position (below).
  const store = resolveStore(config.data.store, { samplesPerEpoch, plannedSamples, width, backend });
  config = { ...config, data: { ...config.data, store } };
  if (store) {
    log(`keeping the first pass's ${samplesPerEpoch!.toLocaleString('en-US')} activations (${(storeBytes(samplesPerEpoch!, width) / 2 ** 30).toFixed(2)} GiB) on ${backend}; later passes are served from them`);
  }
  if (options.resume) await checkResumeIdentity(outDir, config);
  const summary = await train(trainConfig, {
    // run.json is written once the trainer has accepted the checkpoint: a refused resume leaves it as it was.
    onStart: () => writeFileAtomic(path.join(outDir, RUN_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`),
    ...(options.resume ? { resume: true } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.makeProgress ? { makeProgress: options.makeProgress } : {}),
    log,
    openSource: (state) => {
      const saved = state as LmActivationState | undefined;
      // A resumed stream keeps its first pass exactly when the saved one did.
      const keep = saved ? saved.stored === true : store;
      if (keep && samplesPerEpoch === null) throw new ConfigError(['data.paths: the saved run kept its first pass of token shards; resume it on token shards']);
      return LmActivationSource.open({
        model,
        hook: config.hook,
        contextLength,
        seed: config.seed,
        positionsPerContext: positions,
        contextsPerWindow: config.data.contextsPerWindow,
        forwardBatch: config.data.forwardBatch,
        ...(keep ? { storeRows: samplesPerEpoch! } : {}),
        // Each pass over the corpus in an order of its own (without a store, every pass is harvested again).
        openContexts: (contextState, pass) => openCorpusContexts({ ...corpus, seed: passSeed(config.seed, pass), ...(contextState ? { state: contextState } : {}) }),
        ...(saved ? { state: saved } : {}),
      });
    },
  });

  let evaluation: MainRunSummary['evaluation'] = null;
  if (!summary.interrupted && summary.exportDir) {
    const { sae } = await loadSaeLensAsSae(summary.exportDir, { backend });
    try {
      // Held-out contexts in a fixed order (seed 0), whatever the run's seed.
      const contexts = await readContexts({ ...corpus, paths: heldOutPaths, seed: 0, verify: false }, config.eval.contexts); // verified before training
      const { density, ...rest } = await evaluateSae(model, sae, config.hook, contexts, contextLength);
      evaluation = rest;
      await writeFileAtomic(
        path.join(outDir, 'summary.json'),
        `${JSON.stringify(
          {
            model: modelDir,
            hook: config.hook,
            samples: summary.samples,
            steps: summary.steps,
            seconds: summary.seconds,
            samplesPerEpoch,
            skipped: skipped(),
            // The trainer's last completed density window (null before one closed).
            trainingDensity: summary.densitySamples === null ? null : { samples: summary.densitySamples, dead: summary.dead, ultraLow: summary.ultraLow },
            evaluation: rest,
            densityHistogramLog10: densityHistogram(density),
          },
          null,
          2,
        )}\n`,
      );
    } finally {
      sae.dispose();
    }
  }
  return {
    outDir,
    backend,
    modelDir,
    hook: config.hook,
    train: summary,
    samplesPerEpoch,
    epochs: samplesPerEpoch ? summary.samples / samplesPerEpoch : null,
    skipped: skipped(),
    evaluation,
  };
}

/**
 * The presets' schedule follows a run length given in steps (run-config.ts: stepSchedule), but not
 * one given in passes over the corpus, known only now: say so when the resamples or the warm-up do
 * not fit the run (all resamples in its first half, or past its end).
 */
function warnIfScheduleMisfits(config: TrainConfig, log: (line: string) => void): void {
  const t = config.training;
  const steps = t.totalSteps ?? Math.ceil(t.totalSamples! / t.batchSize);
  const at = config.resampling.enabled ? config.resampling.steps : [];
  const suggested = stepSchedule(steps);
  const fix = `(for ${steps.toLocaleString('en-US')} steps: --set 'resampling.steps=${JSON.stringify(suggested.resampling.steps)}' --set resampling.deadWindowSteps=${suggested.resampling.deadWindowSteps})`;
  if (at.some((s) => s >= steps)) log(`resampling.steps ${JSON.stringify(at)}: at or past the end of this ${steps.toLocaleString('en-US')}-step run ${fix}`);
  else if (at.length > 0 && at[at.length - 1]! < steps / 2) log(`resampling.steps ${JSON.stringify(at)}: all in the first half of this ${steps.toLocaleString('en-US')}-step run ${fix}`);
  if (t.lrWarmupSteps > steps) log(`training.lrWarmupSteps ${t.lrWarmupSteps}: longer than this ${steps.toLocaleString('en-US')}-step run`);
}

/**
 * A resumed run must keep the model, hook and activation windows it was started with: the trainer
 * checks the SAE's shape and the context stream its corpus and options, but another model, another
 * hook of the same width, or windows of other positions or contexts would feed the same SAE
 * another stream without either noticing.
 */
async function checkResumeIdentity(outDir: string, config: RunConfig): Promise<void> {
  const file = path.join(outDir, RUN_CONFIG_FILE);
  let saved: { model?: unknown; hook?: unknown; data?: Record<string, unknown> };
  try {
    saved = JSON.parse(await readFile(file, 'utf8')) as { model?: unknown; hook?: unknown; data?: Record<string, unknown> };
  } catch (error) {
    throw new ConfigError([`cannot read ${file}: ${(error as Error).message}`]);
  }
  const modelOf = (m: unknown) => path.resolve(typeof m === 'string' ? m : defaultModelDir());
  const changed: string[] = [];
  if (modelOf(saved.model) !== modelOf(config.model)) changed.push(`model (${modelOf(saved.model)} → ${modelOf(config.model)})`);
  if (saved.hook !== config.hook) changed.push(`hook (${String(saved.hook)} → ${config.hook})`);
  // What each window of the activation stream holds: another value would rebuild the saved window differently.
  for (const key of ['positionsPerContext', 'contextsPerWindow'] as const) {
    const before = saved.data?.[key];
    if (before !== undefined && before !== config.data[key]) changed.push(`data.${key} (${String(before)} → ${String(config.data[key])})`);
  }
  if (changed.length > 0) throw new ConfigError([`a resumed run keeps its ${changed.join(' and ')}: start a new run (another -o) instead`], file);
}

/** Bytes of a stored pass: fp32 rows of the hook's width. */
function storeBytes(rows: number, width: number): number {
  return rows * width * 4;
}

/**
 * Whether the main job keeps its first pass (data.store): always when asked, and for "auto" when
 * the run makes more than one pass over token shards whose pass takes at most half the free memory
 * of the backend (the CUDA device's, or the host's for the CPU).
 */
export function resolveStore(
  setting: RunConfig['data']['store'],
  facts: { samplesPerEpoch: number | null; plannedSamples: number; width: number; backend: BackendName },
): boolean {
  if (setting === false) return false;
  if (facts.samplesPerEpoch === null) {
    if (setting === true) throw new ConfigError(['data.store: needs token shards (data.paths ending in .tokens), whose passes have a known length']);
    return false;
  }
  if (setting === true) return true;
  if (facts.plannedSamples <= facts.samplesPerEpoch) return false;
  const free = facts.backend === 'cuda' ? (nativeAddon().backendInfo('cuda').devices[0]?.freeBytes ?? 0) : freemem();
  return storeBytes(facts.samplesPerEpoch, facts.width) <= free / 2;
}
