/**
 * The configuration of `monosemantic run`, the main job: the SAE trainer's config
 * (lib/sae/train-config.ts) plus the language model, its hook, the corpus the activations are
 * harvested from, and the held-out contexts of the final evaluation.
 *
 * Defaults are sized for the machine (machineDefaults): keys the user leaves out are filled from
 * the CPU or the CUDA preset before validation, so a config file or flags change anything.
 */
import { z } from 'zod';

import { ConfigError, TrainConfigSchema, describeIssue, parseTrainConfig, type TrainConfig } from './train-config.js';

const positiveInt = z.number().int().positive();

export const RunConfigSchema = TrainConfigSchema.extend({
  outDir: z.string().min(1).default('runs/sae'),
  /** HF model folder (null: the package's default model, models/a). */
  model: z.string().min(1).nullable().default(null),
  /** The hook whose activations the SAE learns. */
  hook: z.string().min(1).default('blocks.0.mlp.hook_post'),
  data: z
    .strictObject({
      /** Token shards (.tokens), or text files, folders, JSONL / Parquet files and globs (null: the package's corpus/train-sample.tokens). */
      paths: z.array(z.string().min(1)).min(1).nullable().default(null),
      /** JSONL field / Parquet column holding the text. */
      textField: z.string().min(1).default('text'),
      /** Tokens per context, BOS included (null: the model's n_positions). */
      contextLength: positiveInt.nullable().default(null),
      /** Random positions kept per context (the paper: 250; null: every position but the BOS). */
      positionsPerContext: positiveInt.nullable().default(250),
      /** Contexts whose positions are mixed in one device-resident shuffle window. */
      contextsPerWindow: positiveInt.default(256),
      /** Contexts per model forward while harvesting. */
      forwardBatch: positiveInt.default(16),
      /**
       * Keep the first pass's activations in memory on the backend and serve later passes from
       * them, each in a fresh order over the whole pass, instead of running the model again.
       * "auto": when the run makes more than one pass over token shards and the pass takes at
       * most half the free memory. Resolved once, when the run starts.
       */
      store: z.union([z.literal('auto'), z.boolean()]).default('auto'),
      /** Text corpora: worker threads that tokenise ahead of the model (null: one per core but one, at most 8; 0: none). */
      tokenizerThreads: z.number().int().min(0).max(256).nullable().default(null),
    })
    .default({ paths: null, textField: 'text', contextLength: null, positionsPerContext: 250, contextsPerWindow: 256, forwardBatch: 16, store: 'auto', tokenizerThreads: null }),
  /** Training length in passes over the corpus (token shards only), instead of training.totalSteps / totalSamples. */
  budget: z.strictObject({ epochs: z.number().positive().nullable().default(null) }).default({ epochs: null }),
  eval: z
    .strictObject({
      /** Held-out token shards or text (null: the package's corpus/val.tokens). */
      paths: z.array(z.string().min(1)).min(1).nullable().default(null),
      /** Held-out contexts evaluated at the end. */
      contexts: positiveInt.default(128),
    })
    .default({ paths: null, contexts: 128 }),
});

export type RunConfig = z.output<typeof RunConfigSchema>;

type Doc = Record<string, unknown>;

function isPlainObject(value: unknown): value is Doc {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `doc` with `defaults` filled in where it has no value (objects merged key by key; the doc wins). */
export function withDefaults(defaults: Doc, doc: Doc): Doc {
  const out: Doc = { ...defaults };
  for (const [key, value] of Object.entries(doc)) {
    out[key] = isPlainObject(value) && isPlainObject(defaults[key]) ? withDefaults(defaults[key] as Doc, value) : value;
  }
  return out;
}

/**
 * The step schedule of a run of `steps` steps, as the presets place it: resampling at 25%, 50% and
 * 75% of the run, features dead over the last 12.5% of it resampled, and a learning-rate warm-up
 * of 100 steps (at most 5% of the run). A run under 8 steps is too short to resample.
 */
export function stepSchedule(steps: number): { resampling: { steps: number[]; deadWindowSteps: number }; lrWarmupSteps: number } {
  const at = steps < 8 ? [] : [0.25, 0.5, 0.75].map((f) => Math.round(f * steps));
  return { resampling: { steps: at, deadWindowSteps: Math.max(1, Math.round(steps / 8)) }, lrWarmupSteps: Math.min(100, Math.floor(steps / 20)) };
}

/**
 * The presets, both the paper's A/1 shape (4,096 features). CPU (2 cores in a few minutes):
 * 8,000 steps of 1,024 activations (two passes over the shipped sample's positions), three
 * resamples. CUDA: ten passes over every position of the
 * corpus (all but the BOS), batches of 4,096, three resamples; 128 contexts per model forward and
 * 1,024 per shuffle window, so the model's forward keeps up with the SAE's steps. A run length in
 * steps or samples that the user gives moves the schedule with it (stepSchedule); one in passes
 * over the corpus is only known once the corpus is opened (runMainJob says when the preset's
 * schedule does not fit it).
 */
export function machineDefaults(backend: 'cpu' | 'cuda', doc: Doc): Doc {
  const training = isPlainObject(doc.training) ? doc.training : {};
  const budget = isPlainObject(doc.budget) ? doc.budget : {};
  const lengthGiven = training.totalSteps !== undefined || training.totalSamples !== undefined || (budget.epochs ?? null) !== null;
  const batchSize = typeof training.batchSize === 'number' ? training.batchSize : backend === 'cuda' ? 4096 : 1024;
  const givenSteps =
    typeof training.totalSteps === 'number' ? training.totalSteps : typeof training.totalSamples === 'number' ? Math.ceil(training.totalSamples / batchSize) : null;
  const scaled = givenSteps !== null && givenSteps > 0 ? stepSchedule(givenSteps) : null;
  if (backend === 'cuda') {
    return {
      sae: { dSae: 4096 },
      training: { batchSize: 4096, lr: 1e-3, lrWarmupSteps: scaled?.lrWarmupSteps ?? 100, lrDecay: 'linear', decayFraction: 0.2, l1Coeff: 5 },
      data: { positionsPerContext: null, forwardBatch: 128, contextsPerWindow: 1024 },
      ...(lengthGiven ? {} : { budget: { epochs: 10 } }),
      resampling: scaled?.resampling ?? { steps: [2500, 5000, 7500], deadWindowSteps: 1250 },
      logging: { every: 50, densityWindowSamples: 1_000_000 },
      checkpoints: { every: 1000 },
    };
  }
  const steps = 8000;
  return {
    sae: { dSae: 4096 },
    training: { batchSize: 1024, lr: 1e-3, lrWarmupSteps: scaled?.lrWarmupSteps ?? 100, lrDecay: 'linear', decayFraction: 0.2, l1Coeff: 5, ...(lengthGiven ? {} : { totalSteps: steps }) },
    data: { contextsPerWindow: 64 },
    resampling: { ...(scaled?.resampling ?? stepSchedule(steps).resampling), samples: 65_536 },
    logging: { every: 50, densityWindowSamples: 250 * 1024 },
    checkpoints: { every: 500 },
  };
}

/** Validates a run config document (machine defaults already merged). */
export function parseRunConfig(input: unknown, source?: string): RunConfig {
  const result = RunConfigSchema.safeParse(input);
  if (!result.success) throw new ConfigError(result.error.issues.map(describeIssue), source);
  const config = result.data;
  const t = config.training;
  const given = [t.totalSteps !== undefined, t.totalSamples !== undefined, config.budget.epochs !== null].filter(Boolean).length;
  if (given !== 1) throw new ConfigError(['training: give exactly one of training.totalSteps, training.totalSamples and budget.epochs'], source);
  return config;
}

/** The SAE trainer's config for a run (the corpus feeds it; export metadata names the model and hook), validated as the trainer's own. */
export function trainerConfig(config: RunConfig, facts: { totalSamples?: number; modelName: string; contextSize: number; datasetPath: string }): TrainConfig {
  const { model: _model, hook, data: _data, budget: _budget, eval: _eval, ...rest } = config;
  const training = { ...rest.training };
  if (facts.totalSamples !== undefined) {
    delete training.totalSteps;
    training.totalSamples = facts.totalSamples;
  }
  return parseTrainConfig({
    ...rest,
    training,
    export: {
      modelName: rest.export.modelName ?? facts.modelName,
      hookName: rest.export.hookName ?? hook,
      contextSize: rest.export.contextSize ?? facts.contextSize,
      datasetPath: rest.export.datasetPath ?? facts.datasetPath,
    },
  });
}
