/**
 * The configuration of `monosemantic lm train`: one JSON document validated by a zod schema, as
 * for the SAE trainer (lib/sae/train-config.ts). Unknown keys are errors; every default is in the
 * schema (printed by `monosemantic lm train --print-config`).
 *
 * Paths left null mean the package's default corpus (corpus/ in the package): its tokenizer, the
 * training sample shard and the validation shard.
 */
import { z } from 'zod';

import { ConfigError, describeIssue } from '../sae/train-config.js';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const fraction = z.number().min(0).max(1);

export const LmTrainConfigSchema = z.strictObject({
  /** Where checkpoints, metrics, curves and the exported model go. */
  outDir: z.string().min(1).default('runs/lm'),
  /** Seeds the initial weights and the order of training contexts. */
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
  backend: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  /** Matrix-product precision; null: bf16 on CUDA (fp32 master weights), f32 on the CPU. */
  precision: z.enum(['f32', 'bf16']).nullable().default(null),
  /** The architecture (GPT-2); the vocabulary size comes from the tokenizer. Defaults: the paper's one-layer model. */
  model: z
    .strictObject({
      nLayer: positiveInt.default(1),
      nHead: positiveInt.default(4),
      dModel: positiveInt.default(128),
      dMlp: positiveInt.default(512),
      /** Tokens per training context (the BOS included); also the model's n_positions. */
      contextLength: z.number().int().min(2).default(256),
      activation: z.enum(['relu', 'gelu_new', 'gelu']).default('relu'),
      tiedEmbeddings: z.boolean().default(true),
      layerNormEps: z.number().positive().default(1e-5),
      /** Std of the normal initial weights (GPT-2: 0.02; residual projections / √(2 nLayer)). */
      initStd: z.number().positive().default(0.02),
    })
    .default({ nLayer: 1, nHead: 4, dModel: 128, dMlp: 512, contextLength: 256, activation: 'relu', tiedEmbeddings: true, layerNormEps: 1e-5, initStd: 0.02 }),
  /** A folder holding tokenizer.json (null: the package's corpus/); its BOS token starts every context. */
  tokenizer: z.string().min(1).nullable().default(null),
  data: z
    .strictObject({
      /** Training token shards (null: the package's corpus/train-sample.tokens). */
      train: z.array(z.string().min(1)).min(1).nullable().default(null),
      /** Validation token shard(s) (null: the package's corpus/val.tokens; [] for none). */
      val: z.array(z.string().min(1)).nullable().default(null),
    })
    .default({ train: null, val: null }),
  training: z.strictObject({
    /** Contexts per step. */
    batchSize: positiveInt.default(16),
    /** Exactly one of totalSteps and totalTokens (tokens = steps × batchSize × (contextLength − 1) predicted positions). */
    totalSteps: positiveInt.optional(),
    totalTokens: positiveInt.optional(),
    /** Peak learning rate, after a linear warm-up; then cosine decay to minLrFraction × lr at the last step. */
    lr: z.number().positive().default(2e-3),
    warmupSteps: nonNegativeInt.default(100),
    minLrFraction: fraction.default(0.1),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.95),
    /** Adam's ε (a float32 on the device: at least 1e-30, or it rounds to 0 and a zero gradient gives 0/0). */
    eps: z.number().gte(1e-30).default(1e-8),
    /** Decoupled weight decay on the matrices and embeddings (not biases or LayerNorm). */
    weightDecay: z.number().nonnegative().default(0.1),
    /** Max global gradient L2 norm (0: no clipping). */
    clipGradNorm: z.number().nonnegative().default(1),
  }),
  eval: z
    .strictObject({
      /** Steps between validation losses (0: only at the end). */
      every: nonNegativeInt.default(250),
      /** Validation contexts per evaluation, in batches of training.batchSize (null: the whole validation set). */
      maxBatches: positiveInt.nullable().default(null),
    })
    .default({ every: 250, maxBatches: null }),
  logging: z
    .strictObject({
      /** Steps between metrics records. */
      every: positiveInt.default(10),
      /** Show a progress bar (null: when stderr is a terminal). */
      progress: z.boolean().nullable().default(null),
    })
    .default({ every: 10, progress: null }),
  checkpoints: z
    .strictObject({
      /** Steps between checkpoints (0: only at the end and on interruption). */
      every: nonNegativeInt.default(500),
      keep: positiveInt.default(2),
    })
    .default({ every: 500, keep: 2 }),
  export: z
    .strictObject({
      /** Weight dtype of the exported model.safetensors. */
      dtype: z.enum(['bf16', 'f32']).default('bf16'),
      /** The model's name in its model card. */
      name: z.string().min(1).default('monosemantic-1l'),
    })
    .default({ dtype: 'bf16', name: 'monosemantic-1l' }),
});

export type LmTrainConfig = z.output<typeof LmTrainConfigSchema>;
export type LmTrainConfigInput = z.input<typeof LmTrainConfigSchema>;

/** Validates a parsed JSON document; throws ConfigError listing every problem. */
export function parseLmTrainConfig(input: unknown, source?: string): LmTrainConfig {
  const result = LmTrainConfigSchema.safeParse(input);
  if (!result.success) throw new ConfigError(result.error.issues.map(describeIssue), source);
  const config = result.data;
  const problems: string[] = [];
  const t = config.training;
  if ((t.totalSteps === undefined) === (t.totalTokens === undefined)) problems.push('training: give exactly one of totalSteps and totalTokens');
  if (t.lr * t.weightDecay >= 1) problems.push(`training.weightDecay: lr × weightDecay = ${t.lr * t.weightDecay} must be below 1 (each step multiplies the decayed weights by 1 − lr × weightDecay)`);
  if (config.model.dModel % config.model.nHead !== 0) problems.push(`model.nHead: ${config.model.nHead} does not divide model.dModel ${config.model.dModel}`);
  if (problems.length) throw new ConfigError(problems, source);
  return config;
}

/** Next-token predictions per step: every position of a context but the last has a target. */
export function tokensPerStep(config: LmTrainConfig): number {
  return config.training.batchSize * (config.model.contextLength - 1);
}

export function lmTotalSteps(config: LmTrainConfig): number {
  return config.training.totalSteps ?? Math.ceil(config.training.totalTokens! / tokensPerStep(config));
}

/** Linear warm-up over warmupSteps, then cosine decay from lr to minLrFraction × lr at the last step (0-based step). */
export function lmLearningRateAt(t: LmTrainConfig['training'], step: number, total: number): number {
  if (step < t.warmupSteps) return (t.lr * (step + 1)) / t.warmupSteps;
  const span = total - t.warmupSteps;
  const p = span <= 1 ? 1 : Math.min(1, (step - t.warmupSteps) / (span - 1));
  return t.lr * (t.minLrFraction + ((1 - t.minLrFraction) * (1 + Math.cos(Math.PI * p))) / 2);
}
