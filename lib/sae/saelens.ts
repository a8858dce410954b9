/**
 * SAEs on disk in SAELens's layout, so that SAEs trained here open in SAELens (and Neuronpedia's
 * tooling) and SAELens's standard SAEs run here.
 *
 * A folder holds:
 *   cfg.json                  SAELens's SAEConfig.to_dict(): d_in, d_sae, dtype, device,
 *                             apply_b_dec_to_input, normalize_activations, reshape_activations,
 *                             metadata {model_name, hook_name, context_size, dataset_path, ...},
 *                             architecture. Our own training record sits under "monosemantic",
 *                             a key SAELens ignores (it keeps only the fields it knows).
 *   sae_weights.safetensors   W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]
 *   sparsity.safetensors      optional: "sparsity" [d_sae], log10 of each feature's firing density
 *
 * Saving writes SAELens 6.x's layout, every file atomically. Loading also takes the flat cfg.json
 * of SAELens 3–5 (model_name, hook_name, ... at the top level) and weights in F32, F16, BF16 or
 * F64 (converted to f32). Only SAEs that compute exactly what SparseAutoencoder computes are
 * accepted — f = ReLU((x − b_dec) W_enc + b_enc), x̂ = f W_dec + b_dec on raw inputs — and anything
 * else is refused with a SaeLensError naming the file and the field, not run wrongly.
 */
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';

import { z } from 'zod';

import type { BackendName } from '../backend.js';
import { writeFileAtomic } from '../io/atomic.js';
import { makeFolder } from '../io/folders.js';
import { type LoadedTensor, SafetensorsError, encodeSafetensors, readSafetensors, tensorToFloat32 } from '../io/safetensors.js';
import { type Penalty, type Precision, type SaeOptions, positiveInteger } from './config.js';
import type { SaeParameterArrays } from './init.js';
import { SparseAutoencoder } from './sae.js';

export const SAELENS_CFG_FILE = 'cfg.json';
export const SAELENS_WEIGHTS_FILE = 'sae_weights.safetensors';
export const SAELENS_SPARSITY_FILE = 'sparsity.safetensors';
/** The SAELens release whose cfg.json layout saveSaeLens writes (recorded as its version fields). */
export const SAELENS_FORMAT_VERSION = '6.12.1';

/** What the SAE was trained on, as SAELens records it; null where unknown. */
export interface SaeLensMetadata {
  modelName: string | null;
  hookName: string | null;
  contextSize: number | null;
  datasetPath: string | null;
  /** Whether the model's inputs began with a BOS token (saved as true when absent). */
  prependBos?: boolean;
  /** The attention head the hook reads, for per-head hooks (saved as null when absent). */
  hookHeadIndex?: number | null;
}

export interface SaeLensExport {
  dIn: number;
  dSae: number;
  params: SaeParameterArrays;
  metadata: SaeLensMetadata;
  /** log10 of each feature's firing density [dSae] (written to sparsity.safetensors). */
  sparsityLog10?: Float32Array;
  /** Saved under cfg.json's "monosemantic" key (penalty, l1_coeff, training_steps, ...). */
  training?: Record<string, unknown>;
}

export interface LoadedSaeLens {
  dIn: number;
  dSae: number;
  /** The weights as f32, whatever dtype they were stored in. */
  params: SaeParameterArrays;
  /** cfg.json as parsed. */
  cfg: Record<string, unknown>;
  metadata: SaeLensMetadata;
  architecture: string;
  /** sparsity.safetensors's log10 densities [dSae]; null when the file is absent. */
  sparsityLog10: Float32Array | null;
  /** cfg.json's "monosemantic" block; null when absent (an SAE not saved by monosemantic). */
  training: Record<string, unknown> | null;
}

/** A SAELens folder that is missing, malformed, or holds an SAE monosemantic cannot run. */
export class SaeLensError extends Error {
  /** The file (or folder) at fault. */
  readonly path: string;
  /** The cfg.json field or tensor at fault, when there is one. */
  readonly field?: string;

  constructor(filePath: string, field: string | undefined, detail: string, options?: { cause?: unknown }) {
    super(`${filePath}: ${field === undefined ? '' : `${field}: `}${detail}`, options);
    this.name = 'SaeLensError';
    this.path = filePath;
    if (field !== undefined) this.field = field;
  }
}

// ---------------------------------------------------------------------------------------------
// Saving

/** Writes `sae` into `dir` (created if needed) in SAELens 6.x's layout. */
export async function saveSaeLens(dir: string, sae: SaeLensExport): Promise<void> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('dir must be a non-empty string');
  checkExport(sae);
  const { dIn, dSae, params } = sae;
  const weights = encodeSafetensors({
    W_enc: { dtype: 'F32', shape: [dIn, dSae], data: params.W_enc },
    b_enc: { dtype: 'F32', shape: [dSae], data: params.b_enc },
    W_dec: { dtype: 'F32', shape: [dSae, dIn], data: params.W_dec },
    b_dec: { dtype: 'F32', shape: [dIn], data: params.b_dec },
  });
  const cfgText = `${JSON.stringify(saeLensConfig(sae), null, 2)}\n`;

  try {
    await makeFolder(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new SaeLensError(dir, undefined, code === 'EEXIST' || code === 'ENOTDIR' ? 'is a file, or lies under one: an SAE is saved as a folder' : `cannot be made (${(error as Error).message})`, { cause: error });
  }
  await writeFileAtomic(path.join(dir, SAELENS_WEIGHTS_FILE), weights);
  const sparsityPath = path.join(dir, SAELENS_SPARSITY_FILE);
  if (sae.sparsityLog10 !== undefined) {
    await writeFileAtomic(sparsityPath, encodeSafetensors({ sparsity: { dtype: 'F32', shape: [dSae], data: sae.sparsityLog10 } }));
  } else {
    await rm(sparsityPath, { force: true }); // a previous save's densities would describe other weights
  }
  // cfg.json last: a folder whose cfg.json is new has its new weights already in place.
  await writeFileAtomic(path.join(dir, SAELENS_CFG_FILE), cfgText);
}

/** cfg.json's contents, with SAELens 6.x's field names and order. */
function saeLensConfig(sae: SaeLensExport): Record<string, unknown> {
  const m = sae.metadata;
  const cfg: Record<string, unknown> = {
    d_in: sae.dIn,
    d_sae: sae.dSae,
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: true,
    normalize_activations: 'none',
    reshape_activations: 'none',
    metadata: {
      model_name: m.modelName,
      hook_name: m.hookName,
      model_class_name: null,
      hook_head_index: m.hookHeadIndex ?? null,
      model_from_pretrained_kwargs: {},
      prepend_bos: m.prependBos ?? true,
      exclude_special_tokens: false,
      neuronpedia_id: null,
      context_size: m.contextSize,
      seqpos_slice: [null],
      dataset_path: m.datasetPath,
      sae_lens_version: SAELENS_FORMAT_VERSION,
      sae_lens_training_version: SAELENS_FORMAT_VERSION,
    },
    architecture: 'standard',
  };
  if (sae.training !== undefined) cfg['monosemantic'] = sae.training;
  return cfg;
}

function checkExport(sae: SaeLensExport): void {
  if (typeof sae !== 'object' || sae === null) throw new TypeError('sae must be an object');
  const dIn = positiveInteger('sae.dIn', sae.dIn);
  const dSae = positiveInteger('sae.dSae', sae.dSae);
  if (typeof sae.params !== 'object' || sae.params === null) throw new TypeError('sae.params must hold W_enc, b_enc, W_dec and b_dec');
  const shapes: Record<keyof SaeParameterArrays, number[]> = { W_enc: [dIn, dSae], b_enc: [dSae], W_dec: [dSae, dIn], b_dec: [dIn] };
  for (const [name, shape] of Object.entries(shapes)) {
    const values = sae.params[name as keyof SaeParameterArrays];
    checkFloat32(`sae.params.${name}`, values, shape);
    // loadSaeLens refuses non-finite weights: a folder it could not read back is not written.
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new RangeError(`sae.params.${name}[${bad}] is ${values[bad]}: the weights are not finite`);
  }
  if (sae.sparsityLog10 !== undefined) checkFloat32('sae.sparsityLog10', sae.sparsityLog10, [dSae]);

  const m = sae.metadata;
  if (typeof m !== 'object' || m === null) throw new TypeError('sae.metadata must be an object');
  for (const key of ['modelName', 'hookName', 'datasetPath'] as const) {
    if (m[key] !== null && typeof m[key] !== 'string') throw new TypeError(`sae.metadata.${key} must be a string or null (got ${typeof m[key]})`);
  }
  if (m.contextSize !== null) positiveInteger('sae.metadata.contextSize', m.contextSize);
  if (m.prependBos !== undefined && typeof m.prependBos !== 'boolean') throw new TypeError('sae.metadata.prependBos must be a boolean');
  if (m.hookHeadIndex !== undefined && m.hookHeadIndex !== null) {
    if (!Number.isSafeInteger(m.hookHeadIndex) || m.hookHeadIndex < 0) {
      throw new RangeError(`sae.metadata.hookHeadIndex must be an integer >= 0 or null (got ${m.hookHeadIndex})`);
    }
  }
  if (sae.training !== undefined && (typeof sae.training !== 'object' || sae.training === null || Array.isArray(sae.training))) {
    throw new TypeError('sae.training must be a plain object');
  }
}

function checkFloat32(name: string, data: unknown, shape: readonly number[]): void {
  if (!(data instanceof Float32Array)) throw new TypeError(`${name} must be a Float32Array`);
  const needed = shape.reduce((product, size) => product * size, 1);
  if (data.length !== needed) throw new RangeError(`${name} holds ${data.length} values; shape [${shape.join(', ')}] needs ${needed}`);
}

// ---------------------------------------------------------------------------------------------
// Loading

const metadataFields = {
  model_name: z.string().nullish(),
  hook_name: z.string().nullish(),
  hook_head_index: z.number().int().nonnegative().nullish(),
  prepend_bos: z.boolean().nullish(),
  context_size: z.number().int().positive().nullish(),
  dataset_path: z.string().nullish(),
};
const metadataSchema = z.looseObject(metadataFields);

/**
 * cfg.json of SAELens 3 to 6. 6.x nests the metadata under "metadata" (its first releases:
 * "meta"); earlier versions put the same fields at the top level. Unknown fields are kept.
 */
const cfgSchema = z.looseObject({
  d_in: z.number().int().positive(),
  d_sae: z.number().int().positive(),
  dtype: z.string().optional(),
  architecture: z.string().optional(),
  apply_b_dec_to_input: z.boolean().optional(),
  normalize_activations: z.union([z.string(), z.boolean()]).nullish(),
  activation_fn_str: z.string().nullish(),
  activation_fn: z.string().nullish(), // SAELens 5's name for activation_fn_str
  activation_fn_kwargs: z.record(z.string(), z.unknown()).nullish(),
  finetuning_scaling_factor: z.boolean().nullish(),
  metadata: metadataSchema.optional(),
  meta: metadataSchema.optional(),
  ...metadataFields,
  monosemantic: z.record(z.string(), z.unknown()).optional(),
});
type ParsedCfg = z.infer<typeof cfgSchema>;

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);
const PARAM_NAMES = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const;

/** Reads a SAELens folder; the weights come back as f32. */
export async function loadSaeLens(dir: string): Promise<LoadedSaeLens> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('dir must be a non-empty string');
  await checkDirectory(dir);
  const cfgPath = path.join(dir, SAELENS_CFG_FILE);
  const raw = await readJson(cfgPath);
  const cfg = parseCfg(cfgPath, raw);
  const architecture = checkRunnable(cfgPath, cfg);
  const dIn = cfg.d_in;
  const dSae = cfg.d_sae;

  const weightsPath = path.join(dir, SAELENS_WEIGHTS_FILE);
  const { tensors } = await readSafetensorsFile(weightsPath);
  checkScalingFactor(cfgPath, weightsPath, cfg, tensors, dSae);
  for (const name of Object.keys(tensors)) {
    if (name === SCALING_FACTOR) continue; // all ones: nothing to apply
    if (!(PARAM_NAMES as readonly string[]).includes(name)) {
      throw new SaeLensError(weightsPath, name, `unexpected tensor: a standard SAE holds only ${PARAM_NAMES.join(', ')}`);
    }
  }
  const sizes = `cfg.json's d_in ${dIn}, d_sae ${dSae}`;
  const params: SaeParameterArrays = {
    W_enc: floatTensor(weightsPath, tensors, 'W_enc', [dIn, dSae], sizes),
    b_enc: floatTensor(weightsPath, tensors, 'b_enc', [dSae], sizes),
    W_dec: floatTensor(weightsPath, tensors, 'W_dec', [dSae, dIn], sizes),
    b_dec: floatTensor(weightsPath, tensors, 'b_dec', [dIn], sizes),
  };
  for (const name of PARAM_NAMES) {
    const values = params[name];
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new SaeLensError(weightsPath, name, `element ${bad} is ${values[bad]}: the weights are not finite (a diverged or damaged SAE)`);
  }

  const sparsityPath = path.join(dir, SAELENS_SPARSITY_FILE);
  let sparsityLog10: Float32Array | null = null;
  if (await exists(sparsityPath)) {
    const sparsity = await readSafetensorsFile(sparsityPath);
    sparsityLog10 = floatTensor(sparsityPath, sparsity.tensors, 'sparsity', [dSae], `cfg.json's d_sae ${dSae}`);
  }

  const meta = cfg.metadata ?? cfg.meta ?? cfg; // 6.x nests it; 3–5 keep it at the top level
  const metadata: SaeLensMetadata = {
    modelName: meta.model_name ?? null,
    hookName: meta.hook_name ?? null,
    contextSize: meta.context_size ?? null,
    datasetPath: meta.dataset_path ?? null,
    hookHeadIndex: meta.hook_head_index ?? null,
  };
  if (typeof meta.prepend_bos === 'boolean') metadata.prependBos = meta.prepend_bos;

  return {
    dIn,
    dSae,
    params,
    cfg: raw as Record<string, unknown>,
    metadata,
    architecture,
    sparsityLog10,
    training: cfg.monosemantic ?? null,
  };
}

/**
 * Loads a SAELens folder into a SparseAutoencoder (on `backend`, default the active one). The
 * penalty and λ come from the "monosemantic" block when it records them; otherwise the defaults
 * apply (they do not change encode or decode). The decoder's unit-norm constraint is kept only
 * when every decoder row has unit norm: a step would otherwise rescale the rows, and with them the
 * reconstruction, of an SAE trained without it, or of a monosemantic export whose input
 * normalisation s was folded in (its rows have norm 1/s). Training goes on exactly from the run's
 * checkpoints, not from an export.
 */
export async function loadSaeLensAsSae(
  dir: string,
  options: { backend?: BackendName; precision?: Precision } = {},
): Promise<{ sae: SparseAutoencoder; loaded: LoadedSaeLens }> {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const loaded = await loadSaeLens(dir);
  const recorded = recordedHyperparameters(loaded.training);
  const create: SaeOptions = { dIn: loaded.dIn, dSae: loaded.dSae, ...recorded };
  if (!unitNormRows(loaded.params.W_dec, loaded.dSae, loaded.dIn)) create.constrainDecoder = false;
  if (options.backend !== undefined) create.backend = options.backend;
  if (options.precision !== undefined) create.precision = options.precision;
  const sae = SparseAutoencoder.create(create);
  try {
    sae.writeParameters(loaded.params);
  } catch (error) {
    sae.dispose();
    throw error;
  }
  return { sae, loaded };
}

/** Whether every row of W [rows, width] has an L2 norm within 1e-3 of 1. */
function unitNormRows(W: Float32Array, rows: number, width: number): boolean {
  for (let r = 0; r < rows; r++) {
    let sq = 0;
    for (let j = 0; j < width; j++) sq += W[r * width + j]! ** 2; // W[r, j]
    if (Math.abs(Math.sqrt(sq) - 1) > 1e-3) return false;
  }
  return true;
}

/** The penalty and λ recorded by a monosemantic save, where they are valid. */
function recordedHyperparameters(training: Record<string, unknown> | null): { penalty?: Penalty; l1Coeff?: number } {
  const out: { penalty?: Penalty; l1Coeff?: number } = {};
  if (training === null) return out;
  const penalty = training['penalty'];
  if (penalty === 'l1' || penalty === 'l1_decnorm') out.penalty = penalty;
  const l1Coeff = training['l1_coeff'];
  if (typeof l1Coeff === 'number' && Number.isFinite(l1Coeff) && l1Coeff >= 0) out.l1Coeff = l1Coeff;
  return out;
}

async function checkDirectory(dir: string): Promise<void> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(dir)).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new SaeLensError(dir, undefined, 'no such directory', { cause: error });
    throw new SaeLensError(dir, undefined, `cannot be read (${(error as Error).message})`, { cause: error });
  }
  if (!isDirectory) {
    throw new SaeLensError(dir, undefined, `not a directory (a SAELens SAE is a folder holding ${SAELENS_CFG_FILE} and ${SAELENS_WEIGHTS_FILE})`);
  }
}

async function exists(filePath: string): Promise<boolean> {
  try {
    await stat(filePath);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new SaeLensError(filePath, undefined, `cannot be read (${(error as Error).message})`, { cause: error });
  }
}

function fileError(filePath: string, error: unknown): SaeLensError {
  if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
    return new SaeLensError(filePath, undefined, `not found (a SAELens SAE folder holds ${SAELENS_CFG_FILE} and ${SAELENS_WEIGHTS_FILE})`, { cause: error });
  }
  return new SaeLensError(filePath, undefined, `cannot be read (${(error as Error).message})`, { cause: error });
}

async function readJson(filePath: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(filePath, 'utf8');
  } catch (error) {
    throw fileError(filePath, error);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new SaeLensError(filePath, undefined, `not valid JSON (${(error as Error).message})`, { cause: error });
  }
}

async function readSafetensorsFile(filePath: string): Promise<{ tensors: Record<string, LoadedTensor> }> {
  try {
    return await readSafetensors(filePath);
  } catch (error) {
    if (error instanceof SafetensorsError) {
      const prefix = `${error.path}: ${error.field === undefined ? '' : `${error.field}: `}`;
      const detail = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
      throw new SaeLensError(filePath, error.field, detail, { cause: error });
    }
    throw fileError(filePath, error);
  }
}

/** Validates cfg.json's fields; the error names the first field at fault and its value. */
function parseCfg(cfgPath: string, raw: unknown): ParsedCfg {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new SaeLensError(cfgPath, undefined, 'must hold a JSON object');
  }
  const result = cfgSchema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.map(String).join('.');
  let value: unknown = raw;
  for (const key of issue.path) value = typeof value === 'object' && value !== null ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  const got = value === undefined ? 'missing' : `got ${JSON.stringify(value)}`;
  throw new SaeLensError(cfgPath, field === '' ? undefined : field, `${issue.message} (${got})`);
}

/** Refuses SAEs that compute something other than SparseAutoencoder; returns the architecture. */
function checkRunnable(cfgPath: string, cfg: ParsedCfg): string {
  const architecture = cfg.architecture ?? 'standard'; // SAELens 3 had only the standard SAE
  if (architecture !== 'standard') {
    throw new SaeLensError(
      cfgPath,
      'architecture',
      `${JSON.stringify(architecture)} is not supported: monosemantic runs only standard (ReLU) SAEs`,
    );
  }
  // SAELens reads either key (activation_fn_str first); "topk" with a k makes it a TopK SAE.
  const activationField = cfg.activation_fn_str != null ? 'activation_fn_str' : 'activation_fn';
  const activation = cfg.activation_fn_str ?? cfg.activation_fn ?? 'relu';
  if (activation !== 'relu') {
    throw new SaeLensError(cfgPath, activationField, `${JSON.stringify(activation)} is not supported: monosemantic's SAEs use ReLU`);
  }
  const normalize = cfg.normalize_activations ?? 'none';
  if (normalize === 'expected_average_only_in') {
    throw new SaeLensError(
      cfgPath,
      'normalize_activations',
      `"expected_average_only_in" means this SAE expects its inputs multiplied by a dataset-wide scaling factor that is not ` +
        `saved with it; the scaling factor must be folded into the weights first (SAELens: ` +
        `sae.fold_activation_norm_scaling_factor(factor), then save again, which sets normalize_activations to "none")`,
    );
  }
  if (normalize !== 'none' && normalize !== false) {
    throw new SaeLensError(
      cfgPath,
      'normalize_activations',
      `${JSON.stringify(normalize)} is not supported: monosemantic runs SAEs on the raw activations ("none" only)`,
    );
  }
  if (cfg.apply_b_dec_to_input === false) {
    throw new SaeLensError(
      cfgPath,
      'apply_b_dec_to_input',
      'false is not supported: monosemantic always subtracts b_dec from the input before encoding (x − b_dec)',
    );
  }
  return architecture;
}

const SCALING_FACTOR = 'scaling_factor';

/**
 * SAELens multiplies the features by a learned vector when finetuning_scaling_factor is true, held
 * as the tensor scaling_factor [d_sae]. For a while it saved a scaling_factor of ones with every SAE;
 * on loading it drops one that is all ones (torch.allclose) and the flag with it, and so do we. Any
 * other scaling is refused.
 */
function checkScalingFactor(cfgPath: string, weightsPath: string, cfg: ParsedCfg, tensors: Record<string, LoadedTensor>, dSae: number): void {
  if (tensors[SCALING_FACTOR] === undefined) {
    if (cfg.finetuning_scaling_factor === true) {
      throw new SaeLensError(cfgPath, 'finetuning_scaling_factor', 'true is not supported: it scales the features by an extra learned vector');
    }
    return;
  }
  const values = floatTensor(weightsPath, tensors, SCALING_FACTOR, [dSae], `cfg.json's d_sae ${dSae}`);
  const bad = values.findIndex((v) => !(Math.abs(v - 1) <= 1e-8 + 1e-5)); // torch.allclose(v, 1)
  if (bad >= 0) {
    throw new SaeLensError(
      weightsPath,
      SCALING_FACTOR,
      `element ${bad} is ${values[bad]}: a scaling factor other than ones (SAELens's finetuning_scaling_factor) scales the features by an extra learned vector, which monosemantic does not run`,
    );
  }
}

/** A float tensor of the expected shape, as f32; errors name the tensor, its shape and the expected one. */
function floatTensor(
  filePath: string,
  tensors: Record<string, LoadedTensor>,
  name: string,
  shape: readonly number[],
  shapeSource: string,
): Float32Array {
  const tensor = tensors[name];
  if (tensor === undefined) {
    const held = Object.keys(tensors);
    throw new SaeLensError(filePath, name, `tensor missing (the file holds ${held.length === 0 ? 'no tensors' : held.join(', ')})`);
  }
  if (!FLOAT_DTYPES.has(tensor.dtype)) {
    throw new SaeLensError(filePath, name, `dtype ${tensor.dtype} is not supported (F32, F16, BF16 or F64 expected)`);
  }
  if (tensor.shape.length !== shape.length || tensor.shape.some((size, i) => size !== shape[i])) {
    throw new SaeLensError(filePath, name, `has shape [${tensor.shape.join(', ')}], but ${shapeSource} need [${shape.join(', ')}]`);
  }
  return tensorToFloat32(tensor, name);
}
