/**
 * The training run's configuration: one JSON document, validated by a zod schema. Unknown keys
 * are errors; every default is in the schema (and printed by `monosemantic train --print-config`).
 * Messages name the field (a dotted path) and what is allowed.
 */
import { existsSync } from 'node:fs';
import nodePath from 'node:path';

import { convertPathToPattern, isDynamicPattern } from 'tinyglobby';
import { z } from 'zod';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const fraction = z.number().min(0).max(1);

export const TrainConfigSchema = z.strictObject({
  /** Where the run's checkpoints, metrics, curves and exported SAE go. */
  outDir: z.string().min(1).default('runs/sae'),
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
  backend: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  /** Activation files; optional only when the caller supplies the data source itself (train's openSource). */
  data: z
    .strictObject({
      /** Activation files, folders or globs: .safetensors, .npy, or a raw-shard manifest .json. */
      paths: z.array(z.string().min(1)).min(1),
      /** The tensor to read from .safetensors files holding several 2-D tensors. */
      tensor: z.string().nullable().default(null),
      /** Rows read contiguously from one file (the shuffle's unit). */
      chunkRows: positiveInt.default(1024),
      /** Chunks mixed in one shuffle window. */
      bufferChunks: positiveInt.default(64),
    })
    .optional(),
  sae: z
    .strictObject({
      /** Dictionary size n (d_sae); d_in is read from the data. */
      dSae: positiveInt,
      /** 'l1': the 2023 paper (unit-norm decoder); 'l1_decnorm': April 2024 (λ Σ f_i ‖W_dec,i‖, free decoder). */
      penalty: z.enum(['l1', 'l1_decnorm']).default('l1'),
      /** Keep decoder rows unit-norm; null: true for 'l1', false for 'l1_decnorm'. */
      constrainDecoder: z.boolean().nullable().default(null),
      init: z.enum(['transpose', 'kaiming']).default('transpose'),
      /** Initial decoder row norm when the decoder is unconstrained. */
      decoderInitNorm: z.number().positive().default(0.1),
      /** Matrix-product precision; null: bf16 on CUDA, f32 on the CPU. */
      precision: z.enum(['f32', 'bf16']).nullable().default(null),
      /** Inputs for b_dec's geometric-median initialisation (0: b_dec starts at 0). */
      geometricMedianSamples: nonNegativeInt.default(4096),
    })
    .strict(),
  training: z.strictObject({
    batchSize: positiveInt.default(4096),
    /** Exactly one of totalSteps and totalSamples. */
    totalSteps: positiveInt.optional(),
    totalSamples: positiveInt.optional(),
    lr: z.number().positive().default(1e-4),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.999),
    /** Adam's ε (a float32 on the device: at least 1e-30, or it rounds to 0 and a zero gradient gives 0/0). */
    eps: z.number().gte(1e-30).default(1e-8),
    lrWarmupSteps: nonNegativeInt.default(0),
    /** 'linear' with decayFraction 0.2 and minLrFraction 0: Anthropic's decay to 0 over the last 20%. */
    lrDecay: z.enum(['constant', 'linear', 'cosine']).default('constant'),
    decayFraction: fraction.default(0.2),
    minLrFraction: fraction.default(0),
    /** λ at the end of its warm-up. */
    l1Coeff: z.number().nonnegative().default(5),
    l1WarmupSteps: nonNegativeInt.default(0),
    /** Max global gradient L2 norm (0: no clipping). */
    clipGradNorm: z.number().nonnegative().default(0),
  }),
  resampling: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Steps after which dead features are resampled (the paper: 25k, 50k, 75k, 100k). */
      steps: z.array(positiveInt).default([25_000, 50_000, 75_000, 100_000]),
      /** A feature is dead when it has not fired in this many steps (the paper: 12,500). */
      deadWindowSteps: positiveInt.default(12_500),
      /** Inputs whose loss is computed to sample from (the paper: 819,200). */
      samples: positiveInt.default(819_200),
      /** New encoder columns' norm relative to the mean live encoder norm (the paper: 0.2). */
      encoderNormFactor: z.number().nonnegative().default(0.2),
      /** Linear learning-rate re-warm-up after each resample (0: none). */
      lrRewarmupSteps: nonNegativeInt.default(0),
    })
    .default({ enabled: true, steps: [25_000, 50_000, 75_000, 100_000], deadWindowSteps: 12_500, samples: 819_200, encoderNormFactor: 0.2, lrRewarmupSteps: 0 }),
  normalization: z
    .strictObject({
      /** Scale inputs so that E‖x‖ = √d_in (folded back into the exported weights). */
      enabled: z.boolean().default(true),
      /** Batches used to estimate E‖x‖. */
      batches: positiveInt.default(16),
    })
    .default({ enabled: true, batches: 16 }),
  logging: z
    .strictObject({
      /**
       * Steps between metrics records (and firing-count snapshots). Only these steps read their
       * statistics back from the device, so a non-finite loss is reported at the next of them.
       */
      every: positiveInt.default(100),
      /** Inputs per feature-density window (dead / ultra-low-density counts), and the span of the exported densities. */
      densityWindowSamples: positiveInt.default(10_000_000),
      /** Show a progress bar (null: when stderr is a terminal). */
      progress: z.boolean().nullable().default(null),
    })
    .default({ every: 100, densityWindowSamples: 10_000_000, progress: null }),
  checkpoints: z
    .strictObject({
      /** Steps between checkpoints (0: only at the end and on interruption). */
      every: nonNegativeInt.default(5000),
      /** Checkpoints kept (older ones deleted). */
      keep: positiveInt.default(3),
    })
    .default({ every: 5000, keep: 3 }),
  /** Written into the exported SAE's cfg.json (SAELens metadata). */
  export: z
    .strictObject({
      modelName: z.string().nullable().default(null),
      hookName: z.string().nullable().default(null),
      contextSize: positiveInt.nullable().default(null),
      datasetPath: z.string().nullable().default(null),
    })
    .default({ modelName: null, hookName: null, contextSize: null, datasetPath: null }),
});

export type TrainConfig = z.output<typeof TrainConfigSchema>;
export type TrainConfigInput = z.input<typeof TrainConfigSchema>;

export class ConfigError extends Error {
  readonly issues: readonly string[];
  constructor(issues: readonly string[], source?: string) {
    super(`invalid training config${source ? ` (${source})` : ''}:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** One zod issue as "dotted.path: what is wrong" (for every config schema). */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length ? issue.path.join('.') : '(root)';
  switch (issue.code) {
    case 'unrecognized_keys':
      return `${where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    case 'invalid_value':
      return `${where}: must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return `${where}: ${issue.message}`;
  }
}

/** Validates a parsed JSON document; throws ConfigError listing every problem. */
export function parseTrainConfig(input: unknown, source?: string): TrainConfig {
  const result = TrainConfigSchema.safeParse(input);
  if (!result.success) throw new ConfigError(result.error.issues.map(describeIssue), source);
  const config = result.data;
  const t = config.training;
  const problems: string[] = [];
  if ((t.totalSteps === undefined) === (t.totalSamples === undefined)) {
    problems.push('training: give exactly one of totalSteps and totalSamples');
  }
  const sorted = [...config.resampling.steps].sort((a, b) => a - b);
  if (sorted.some((s, i) => i > 0 && s === sorted[i - 1])) problems.push('resampling.steps: steps must be distinct');
  if (config.resampling.enabled && config.sae.penalty === 'l1_decnorm') {
    // Allowed, but the April-2024 recipe does not resample; say so instead of guessing.
    problems.push("resampling.enabled: the 'l1_decnorm' recipe trains without resampling; set resampling.enabled to false");
  }
  if (problems.length) throw new ConfigError(problems, source);
  config.resampling.steps = sorted;
  return config;
}

/** Total optimizer steps of a run. */
export function totalSteps(config: TrainConfig): number {
  return config.training.totalSteps ?? Math.ceil(config.training.totalSamples! / config.training.batchSize);
}

/** Sets `value` at a dotted `path` of a plain object (creating objects on the way): for CLI overrides. */
export function setByPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  const bad = keys.find((key) => key === '__proto__' || key === 'constructor' || key === 'prototype');
  if (bad !== undefined) throw new ConfigError([`${path}: '${bad}' is not a config key`]);
  let node: Record<string, unknown> = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
}

/**
 * Makes the file paths at `keys` (dotted; a string or an array of strings, globs included) absolute
 * against the working directory, so that a run saved with them reads the same files from wherever
 * it is resumed. Absent and null values stay as they are.
 */
export function resolvePathKeys(doc: Record<string, unknown>, keys: readonly string[]): void {
  for (const key of keys) {
    const parts = key.split('.');
    let node: unknown = doc;
    for (const part of parts.slice(0, -1)) node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part] : undefined;
    if (typeof node !== 'object' || node === null) continue;
    const holder = node as Record<string, unknown>;
    const last = parts[parts.length - 1]!;
    const value = holder[last];
    if (typeof value === 'string' && value !== '') holder[last] = absolutePathOrPattern(value);
    else if (Array.isArray(value)) holder[last] = value.map((v) => (typeof v === 'string' && v !== '' ? absolutePathOrPattern(v) : v));
  }
}

/**
 * `p` made absolute against the working directory, keeping its meaning: a path that exists (or
 * names no pattern) as a path; a glob pattern behind the working directory escaped for glob syntax,
 * so that a folder such as "data (copy)" or "run [2]" is matched literally.
 */
export function absolutePathOrPattern(p: string): string {
  if (nodePath.isAbsolute(p) || existsSync(p) || !isDynamicPattern(p)) return nodePath.resolve(p);
  return nodePath.posix.join(convertPathToPattern(process.cwd()), p);
}
