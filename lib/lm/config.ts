/**
 * The configuration of a GPT-2-family model, read from a Hugging Face `config.json`
 * (transformers' GPT2Config), so that models saved by transformers run here as they run there.
 *
 * Only what the forward pass here computes is accepted: model_type "gpt2" (architectures
 * GPT2LMHeadModel, GPT2Model or absent), pre-LayerNorm blocks, attention scaled by 1/sqrt(d_head),
 * and the activations gelu_new (also spelled gelu_pytorch_tanh), gelu and relu. Anything else is
 * refused with a ModelConfigError naming the file, the field and its value, not run wrongly.
 *
 * The dimensions (n_layer, n_head, n_embd, n_positions, vocab_size) must be present; the other
 * fields take GPT2Config's defaults when absent, except bos_token_id and eos_token_id, which are
 * null when absent. A token id outside the vocabulary (GPT2Config's default 50256 left in the
 * config of a model with a smaller vocabulary) is read as null as well.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { z } from 'zod';

export const GPT2_CONFIG_FILE = 'config.json';

export type Gpt2Activation = 'gelu_new' | 'gelu' | 'relu';

export interface Gpt2Config {
  nLayer: number;
  nHead: number;
  /** Width of the residual stream (n_embd). */
  dModel: number;
  /** Width of the MLP's hidden layer (n_inner, or 4 · n_embd when n_inner is null). */
  dMlp: number;
  /** Longest sequence the position embedding covers. */
  nPositions: number;
  vocabSize: number;
  activation: Gpt2Activation;
  layerNormEps: number;
  /** The unembedding is the token embedding (wte) when true, lm_head.weight when false. */
  tiedEmbeddings: boolean;
  /** Attention scores divided by sqrt(d_head); always true (false is refused). */
  scaleAttnWeights: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
}

/** A config.json that is missing, malformed, or describes a model this forward pass cannot run. */
export class ModelConfigError extends Error {
  /** The file (or folder) at fault. */
  readonly path: string;
  /** The config.json field at fault, when there is one. */
  readonly field?: string;

  constructor(filePath: string, field: string | undefined, detail: string, options?: { cause?: unknown }) {
    super(`${filePath}: ${field === undefined ? '' : `${field}: `}${detail}`, options);
    this.name = 'ModelConfigError';
    this.path = filePath;
    if (field !== undefined) this.field = field;
  }
}

/** activation_function values accepted, and the function each one computes. */
const ACTIVATIONS: Readonly<Record<string, Gpt2Activation>> = {
  gelu_new: 'gelu_new',
  gelu_pytorch_tanh: 'gelu_new', // the same tanh approximation, computed by PyTorch's kernel
  gelu: 'gelu',
  relu: 'relu',
};

const ARCHITECTURES = ['GPT2LMHeadModel', 'GPT2Model'];

const positiveInteger = z.number().int().positive();
const tokenId = z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative()), z.null()]);

/** GPT2Config's fields that matter here; unknown fields (dropout rates, summary_*, ...) are kept. */
const configSchema = z.looseObject({
  model_type: z.string(),
  architectures: z.array(z.string()).nullish(),
  n_layer: positiveInteger,
  n_head: positiveInteger,
  n_embd: positiveInteger,
  n_inner: positiveInteger.nullish(),
  n_positions: positiveInteger,
  vocab_size: positiveInteger,
  activation_function: z.string().optional(),
  layer_norm_epsilon: z.number().positive().optional(),
  tie_word_embeddings: z.boolean().optional(),
  scale_attn_weights: z.boolean().optional(),
  scale_attn_by_inverse_layer_idx: z.boolean().optional(),
  reorder_and_upcast_attn: z.boolean().optional(),
  add_cross_attention: z.boolean().optional(),
  bos_token_id: tokenId.optional(),
  eos_token_id: tokenId.optional(),
});
type ParsedConfig = z.infer<typeof configSchema>;

/** Reads `dir`/config.json. */
export async function loadGpt2Config(dir: string): Promise<Gpt2Config> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('dir must be a non-empty string');
  const configPath = path.join(dir, GPT2_CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(configPath, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new ModelConfigError(configPath, undefined, 'not found (a model folder holds config.json, model.safetensors and tokenizer.json)', { cause: error });
    }
    throw new ModelConfigError(configPath, undefined, `cannot be read (${(error as Error).message})`, { cause: error });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ModelConfigError(configPath, undefined, `not valid JSON (${(error as Error).message})`, { cause: error });
  }
  return parseGpt2Config(raw, configPath);
}

/** Validates a parsed config.json; `source` names it in errors. */
export function parseGpt2Config(raw: unknown, source: string): Gpt2Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ModelConfigError(source, undefined, 'must hold a JSON object');
  }
  const fields = raw as Record<string, unknown>;
  // The model type first: another family's config should be named as such, not as a missing field.
  const modelType = fields['model_type'];
  if (modelType !== 'gpt2') {
    const got = modelType === undefined ? 'missing' : JSON.stringify(modelType);
    throw new ModelConfigError(source, 'model_type', `${got} is not supported: only GPT-2-family models (model_type "gpt2") are`);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.map(String).join('.');
    let value: unknown = raw;
    for (const key of issue.path) value = typeof value === 'object' && value !== null ? (value as Record<PropertyKey, unknown>)[key] : undefined;
    const got = value === undefined ? 'missing' : `got ${JSON.stringify(value)}`;
    throw new ModelConfigError(source, field === '' ? undefined : field, `${issue.message} (${got})`);
  }
  return toGpt2Config(source, result.data);
}

function toGpt2Config(source: string, cfg: ParsedConfig): Gpt2Config {
  const unsupported = (field: string, value: unknown, why: string) =>
    new ModelConfigError(source, field, `${JSON.stringify(value)} is not supported: ${why}`);

  if (cfg.architectures != null) {
    const other = cfg.architectures.find((name) => !ARCHITECTURES.includes(name));
    if (other !== undefined || cfg.architectures.length === 0) {
      throw unsupported('architectures', cfg.architectures, `only ${ARCHITECTURES.join(' and ')} are`);
    }
  }
  if (cfg.n_embd % cfg.n_head !== 0) {
    throw new ModelConfigError(source, 'n_embd', `${cfg.n_embd} is not a multiple of n_head ${cfg.n_head}: the heads must split it evenly`);
  }
  const activationName = cfg.activation_function ?? 'gelu_new';
  const activation = ACTIVATIONS[activationName];
  if (activation === undefined) {
    throw unsupported('activation_function', activationName, `supported are ${Object.keys(ACTIVATIONS).join(', ')}`);
  }
  if (cfg.scale_attn_weights === false) {
    throw unsupported('scale_attn_weights', false, 'attention scores are always divided by sqrt(d_head) here');
  }
  if (cfg.scale_attn_by_inverse_layer_idx === true) {
    throw unsupported('scale_attn_by_inverse_layer_idx', true, 'attention scores are not scaled by the layer index here');
  }
  if (cfg.reorder_and_upcast_attn === true) {
    throw unsupported('reorder_and_upcast_attn', true, 'only the standard attention computation is implemented');
  }
  if (cfg.add_cross_attention === true) {
    throw unsupported('add_cross_attention', true, 'only decoder-only models (no cross-attention) are');
  }

  return {
    nLayer: cfg.n_layer,
    nHead: cfg.n_head,
    dModel: cfg.n_embd,
    dMlp: cfg.n_inner ?? 4 * cfg.n_embd,
    nPositions: cfg.n_positions,
    vocabSize: cfg.vocab_size,
    activation,
    layerNormEps: cfg.layer_norm_epsilon ?? 1e-5,
    tiedEmbeddings: cfg.tie_word_embeddings ?? true,
    scaleAttnWeights: true,
    bosTokenId: tokenIdIn(cfg.bos_token_id, cfg.vocab_size),
    eosTokenId: tokenIdIn(cfg.eos_token_id, cfg.vocab_size),
  };
}

/** A token id field as one id in [0, vocabSize), or null (a list gives its first id). */
function tokenIdIn(value: number | number[] | null | undefined, vocabSize: number): number | null {
  const id = Array.isArray(value) ? value[0] : value;
  return id === undefined || id === null || id >= vocabSize ? null : id;
}

/** Checks a Gpt2Config given as an argument: TypeError or RangeError naming the field. */
export function checkGpt2Config(config: Gpt2Config, name = 'config'): void {
  if (typeof config !== 'object' || config === null) throw new TypeError(`${name} must be a Gpt2Config object`);
  for (const key of ['nLayer', 'nHead', 'dModel', 'dMlp', 'nPositions', 'vocabSize'] as const) {
    const value = config[key];
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name}.${key} must be a positive integer (got ${value})`);
  }
  if (config.dModel % config.nHead !== 0) {
    throw new RangeError(`${name}.dModel ${config.dModel} must be a multiple of ${name}.nHead ${config.nHead}`);
  }
  if (!(['gelu_new', 'gelu', 'relu'] as unknown[]).includes(config.activation)) {
    throw new RangeError(`${name}.activation must be 'gelu_new', 'gelu' or 'relu' (got ${JSON.stringify(config.activation)})`);
  }
  if (typeof config.layerNormEps !== 'number' || !Number.isFinite(config.layerNormEps) || config.layerNormEps <= 0) {
    throw new RangeError(`${name}.layerNormEps must be a finite number > 0 (got ${config.layerNormEps})`);
  }
  if (typeof config.tiedEmbeddings !== 'boolean') throw new TypeError(`${name}.tiedEmbeddings must be a boolean`);
  if (config.scaleAttnWeights !== true) throw new RangeError(`${name}.scaleAttnWeights must be true (unscaled attention is not supported)`);
  for (const key of ['bosTokenId', 'eosTokenId'] as const) {
    const id = config[key];
    if (id !== null && (!Number.isSafeInteger(id) || id < 0 || id >= config.vocabSize)) {
      throw new RangeError(`${name}.${key} must be null or an integer in [0, ${config.vocabSize}) (got ${id})`);
    }
  }
}

/**
 * config.json's contents for `config`, with transformers' GPT2Config field names; `dtype` names the
 * weights' dtype (transformers' `dtype="auto"` loads them in it), under its older name too.
 */
export function gpt2ConfigToJson(config: Gpt2Config, dtype: 'float32' | 'bfloat16' = 'float32'): Record<string, unknown> {
  checkGpt2Config(config);
  return {
    activation_function: config.activation,
    add_cross_attention: false,
    architectures: ['GPT2LMHeadModel'],
    bos_token_id: config.bosTokenId,
    dtype,
    eos_token_id: config.eosTokenId,
    layer_norm_epsilon: config.layerNormEps,
    model_type: 'gpt2',
    n_embd: config.dModel,
    n_head: config.nHead,
    n_inner: config.dMlp,
    n_layer: config.nLayer,
    n_positions: config.nPositions,
    reorder_and_upcast_attn: false,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    tie_word_embeddings: config.tiedEmbeddings,
    torch_dtype: dtype,
    vocab_size: config.vocabSize,
  };
}
