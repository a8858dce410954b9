/**
 * The weights of a GPT-2-family model, read from a Hugging Face `model.safetensors` into f32
 * arrays with one field per parameter, so that the forward pass never deals in tensor names.
 *
 * Names: GPT2LMHeadModel's ("transformer.h.0.attn.c_attn.weight", "lm_head.weight") or
 * GPT2Model's ("h.0.attn.c_attn.weight"). GPT-2's linear layers are Conv1D modules, which store
 * their weight [in, out] (the transpose of torch.nn.Linear). The attention-mask buffers some
 * versions save (".attn.bias", ".attn.masked_bias") are skipped; any other tensor the config does
 * not account for (a layer beyond n_layer, another head) is refused, as are a missing tensor, a
 * shape that disagrees with config.json, and dtypes other than F32, F16 and BF16. Errors are
 * ModelWeightsErrors naming the file and the tensor.
 *
 * Tensors are read one at a time from the file, so a checkpoint larger than a Node.js buffer
 * loads, and memory peaks at the f32 weights plus one tensor's stored bytes.
 *
 * saveGpt2Model writes a folder transformers' from_pretrained loads: config.json and an F32
 * model.safetensors with GPT2LMHeadModel's names (lm_head.weight only when untied).
 */
import { open, stat } from 'node:fs/promises';
import path from 'node:path';

import { float32ToBf16 } from '../bf16.js';
import { writeFileAtomic } from '../io/atomic.js';
import { makeFolder } from '../io/folders.js';
import { readFullyAt } from '../io/large-files.js';
import {
  type LoadedTensor,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type WritableTensor,
  SafetensorsError,
  encodeSafetensors,
  readSafetensorsHeader,
  tensorToFloat32,
} from '../io/safetensors.js';
import { GPT2_CONFIG_FILE, type Gpt2Config, checkGpt2Config, gpt2ConfigToJson } from './config.js';

export const GPT2_WEIGHTS_FILE = 'model.safetensors';

export interface Gpt2LayerWeights {
  /** ln_1: the LayerNorm before attention [C]. */
  ln1W: Float32Array;
  ln1B: Float32Array;
  /** attn.c_attn: queries, keys and values side by side [C, 3C], bias [3C]. */
  attnW: Float32Array;
  attnB: Float32Array;
  /** attn.c_proj: the attention output projection [C, C], bias [C]. */
  projW: Float32Array;
  projB: Float32Array;
  /** ln_2: the LayerNorm before the MLP [C]. */
  ln2W: Float32Array;
  ln2B: Float32Array;
  /** mlp.c_fc [C, dMlp], bias [dMlp]. */
  fcW: Float32Array;
  fcB: Float32Array;
  /** mlp.c_proj [dMlp, C], bias [C]. */
  fcProjW: Float32Array;
  fcProjB: Float32Array;
}

export interface Gpt2Weights {
  /** Token embedding [V, C]. */
  wte: Float32Array;
  /** Position embedding [nPositions, C]. */
  wpe: Float32Array;
  layers: Gpt2LayerWeights[];
  /** ln_f: the final LayerNorm [C]. */
  lnFW: Float32Array;
  lnFB: Float32Array;
  /** The unembedding [V, C] when the config says untied; null when it is wte. */
  lmHead: Float32Array | null;
  /** The dtype the weights were stored in (that of wte; checkpoints use one dtype throughout). */
  sourceDtype: 'F32' | 'F16' | 'BF16';
}

/** A model.safetensors that is missing, malformed, or disagrees with config.json. */
export class ModelWeightsError extends Error {
  /** The file (or folder) at fault. */
  readonly path: string;
  /** The tensor (or header field) at fault, when there is one. */
  readonly field?: string;

  constructor(filePath: string, field: string | undefined, detail: string, options?: { cause?: unknown }) {
    super(`${filePath}: ${field === undefined ? '' : `${field}: `}${detail}`, options);
    this.name = 'ModelWeightsError';
    this.path = filePath;
    if (field !== undefined) this.field = field;
  }
}

const LAYER_FIELDS: readonly (readonly [keyof Gpt2LayerWeights, string])[] = [
  ['ln1W', 'ln_1.weight'],
  ['ln1B', 'ln_1.bias'],
  ['attnW', 'attn.c_attn.weight'],
  ['attnB', 'attn.c_attn.bias'],
  ['projW', 'attn.c_proj.weight'],
  ['projB', 'attn.c_proj.bias'],
  ['ln2W', 'ln_2.weight'],
  ['ln2B', 'ln_2.bias'],
  ['fcW', 'mlp.c_fc.weight'],
  ['fcB', 'mlp.c_fc.bias'],
  ['fcProjW', 'mlp.c_proj.weight'],
  ['fcProjB', 'mlp.c_proj.bias'],
];

/** Shape of a parameter, and the config.json fields that give it (for error messages). */
interface ExpectedShape {
  shape: number[];
  from: string;
}

/** The shapes of one layer's parameters, by their name within the block. */
function layerShapes(config: Gpt2Config): Record<string, ExpectedShape> {
  const C = config.dModel;
  const byC = { shape: [C], from: `n_embd ${C}` };
  const mlpFrom = `n_embd ${C}, n_inner ${config.dMlp}`;
  return {
    'ln_1.weight': byC,
    'ln_1.bias': byC,
    'attn.c_attn.weight': { shape: [C, 3 * C], from: `n_embd ${C}` },
    'attn.c_attn.bias': { shape: [3 * C], from: `n_embd ${C}` },
    'attn.c_proj.weight': { shape: [C, C], from: `n_embd ${C}` },
    'attn.c_proj.bias': byC,
    'ln_2.weight': byC,
    'ln_2.bias': byC,
    'mlp.c_fc.weight': { shape: [C, config.dMlp], from: mlpFrom },
    'mlp.c_fc.bias': { shape: [config.dMlp], from: `n_inner ${config.dMlp}` },
    'mlp.c_proj.weight': { shape: [config.dMlp, C], from: mlpFrom },
    'mlp.c_proj.bias': byC,
  };
}

/** Every parameter's name (with `prefix`) and expected shape. */
function expectedTensors(config: Gpt2Config, prefix: string, withLmHead: boolean): Map<string, ExpectedShape> {
  const C = config.dModel;
  const out = new Map<string, ExpectedShape>();
  out.set(`${prefix}wte.weight`, { shape: [config.vocabSize, C], from: `vocab_size ${config.vocabSize}, n_embd ${C}` });
  out.set(`${prefix}wpe.weight`, { shape: [config.nPositions, C], from: `n_positions ${config.nPositions}, n_embd ${C}` });
  const perLayer = layerShapes(config);
  for (let L = 0; L < config.nLayer; L++) {
    for (const [, name] of LAYER_FIELDS) out.set(`${prefix}h.${L}.${name}`, perLayer[name]!);
  }
  out.set(`${prefix}ln_f.weight`, { shape: [C], from: `n_embd ${C}` });
  out.set(`${prefix}ln_f.bias`, { shape: [C], from: `n_embd ${C}` });
  if (withLmHead) out.set('lm_head.weight', { shape: [config.vocabSize, C], from: `vocab_size ${config.vocabSize}, n_embd ${C}` });
  return out;
}

/** The causal-mask buffers of GPT2Attention that some transformers versions save. */
const MASK_BUFFER = /(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/;
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

/** Reads `dir`/model.safetensors; every shape is checked against `config`. */
export async function loadGpt2Weights(dir: string, config: Gpt2Config): Promise<Gpt2Weights> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('dir must be a non-empty string');
  checkGpt2Config(config);
  const weightsPath = path.join(dir, GPT2_WEIGHTS_FILE);
  await checkWeightsFile(dir, weightsPath);
  const header = await readHeader(weightsPath);
  const entries = header.tensors;

  // GPT2LMHeadModel nests the transformer under "transformer."; GPT2Model saves it bare.
  const prefix = Object.hasOwn(entries, 'transformer.wte.weight') ? 'transformer.' : Object.hasOwn(entries, 'wte.weight') ? '' : null;
  if (prefix === null) {
    throw new ModelWeightsError(
      weightsPath,
      'transformer.wte.weight',
      `tensor missing: neither transformer.wte.weight (GPT2LMHeadModel) nor wte.weight (GPT2Model) is in the file (${describeHeld(entries)})`,
    );
  }
  const expected = expectedTensors(config, prefix, !config.tiedEmbeddings);

  // Everything in the header is checked before any data is read.
  for (const [name, want] of expected) {
    const entry = entries[name];
    if (entry === undefined) {
      const why =
        name === 'lm_head.weight'
          ? `tensor missing: config.json's tie_word_embeddings is false, so the unembedding lm_head.weight [${want.shape.join(', ')}] is needed`
          : `tensor missing (the file holds ${describeHeld(entries)})`;
      throw new ModelWeightsError(weightsPath, name, why);
    }
    checkEntry(weightsPath, name, entry, want);
  }
  for (const name of Object.keys(entries)) {
    if (expected.has(name) || MASK_BUFFER.test(name)) continue;
    if (name === 'lm_head.weight' && config.tiedEmbeddings) continue; // tied: transformers uses wte, whatever is stored
    throw new ModelWeightsError(weightsPath, name, `unexpected tensor: ${whyUnexpected(name, prefix, config)}`);
  }

  const handle = await open(weightsPath, 'r');
  try {
    const read = async (name: string): Promise<Float32Array> => {
      const entry = entries[name]!;
      const bytes = new Uint8Array(entry.end - entry.begin);
      await readFullyAt(handle, bytes, entry.begin, (byte) => new ModelWeightsError(weightsPath, name, `unexpected end of file at byte ${byte}`));
      const tensor: LoadedTensor = { dtype: entry.dtype, shape: entry.shape, bytes };
      return tensorToFloat32(tensor, name);
    };
    const layers: Gpt2LayerWeights[] = [];
    for (let L = 0; L < config.nLayer; L++) {
      const layer: Partial<Gpt2LayerWeights> = {};
      for (const [field, name] of LAYER_FIELDS) layer[field] = await read(`${prefix}h.${L}.${name}`);
      layers.push(layer as Gpt2LayerWeights);
    }
    return {
      wte: await read(`${prefix}wte.weight`),
      wpe: await read(`${prefix}wpe.weight`),
      layers,
      lnFW: await read(`${prefix}ln_f.weight`),
      lnFB: await read(`${prefix}ln_f.bias`),
      lmHead: config.tiedEmbeddings ? null : await read('lm_head.weight'),
      sourceDtype: entries[`${prefix}wte.weight`]!.dtype as Gpt2Weights['sourceDtype'],
    };
  } finally {
    await handle.close();
  }
}

/** A missing model.safetensors, with what the folder holds instead when it says more. */
async function checkWeightsFile(dir: string, weightsPath: string): Promise<void> {
  try {
    await stat(weightsPath);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') {
      throw new ModelWeightsError(weightsPath, undefined, `cannot be read (${(error as Error).message})`, { cause: error });
    }
  }
  const present = async (name: string) =>
    stat(path.join(dir, name)).then(
      () => true,
      () => false,
    );
  if (await present('model.safetensors.index.json')) {
    throw new ModelWeightsError(weightsPath, undefined, 'not found: the folder holds a sharded checkpoint (model.safetensors.index.json), which is not supported; save it unsharded');
  }
  if (await present('pytorch_model.bin')) {
    throw new ModelWeightsError(weightsPath, undefined, 'not found: the folder holds pytorch_model.bin, which is not read here; save the model with safetensors');
  }
  throw new ModelWeightsError(weightsPath, undefined, 'not found (a model folder holds config.json and model.safetensors)');
}

async function readHeader(weightsPath: string): Promise<SafetensorsHeader> {
  try {
    return await readSafetensorsHeader(weightsPath);
  } catch (error) {
    if (error instanceof SafetensorsError) {
      const prefix = `${error.path}: ${error.field === undefined ? '' : `${error.field}: `}`;
      const detail = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
      throw new ModelWeightsError(weightsPath, error.field, detail, { cause: error });
    }
    throw new ModelWeightsError(weightsPath, undefined, `cannot be read (${(error as Error).message})`, { cause: error });
  }
}

function checkEntry(weightsPath: string, name: string, entry: SafetensorsEntry, want: ExpectedShape): void {
  if (!FLOAT_DTYPES.has(entry.dtype)) {
    throw new ModelWeightsError(weightsPath, name, `dtype ${entry.dtype} is not supported (F32, F16 or BF16 expected)`);
  }
  if (entry.shape.length !== want.shape.length || entry.shape.some((size, i) => size !== want.shape[i])) {
    throw new ModelWeightsError(
      weightsPath,
      name,
      `has shape [${entry.shape.join(', ')}], but config.json's ${want.from} need [${want.shape.join(', ')}]`,
    );
  }
}

function whyUnexpected(name: string, prefix: string, config: Gpt2Config): string {
  const layer = /(?:^|\.)h\.(\d+)\./.exec(name);
  if (layer !== null && Number(layer[1]) >= config.nLayer) {
    return `layer ${layer[1]} is beyond config.json's n_layer ${config.nLayer}`;
  }
  if (name === 'lm_head.weight') return 'a GPT2Model checkpoint (names without "transformer.") has no lm_head';
  return `not a parameter of a GPT-2 model${prefix === '' ? ' saved as GPT2Model' : ''} with this config.json`;
}

function describeHeld(entries: Record<string, SafetensorsEntry>): string {
  const names = Object.keys(entries);
  if (names.length === 0) return 'no tensors';
  const shown = names.slice(0, 6).join(', ');
  return names.length > 6 ? `${names.length} tensors: ${shown}, ...` : shown;
}

// ---------------------------------------------------------------------------------------------
// Saving

/**
 * Checks that `weights` fit `config` (checked itself first): every array a Float32Array of its
 * parameter's size, config.nLayer layers, and lmHead null exactly when the embeddings are tied.
 */
export function checkGpt2Weights(config: Gpt2Config, weights: Gpt2Weights): void {
  checkGpt2Config(config);
  if (typeof weights !== 'object' || weights === null) throw new TypeError('weights must be a Gpt2Weights object');
  if (!Array.isArray(weights.layers) || weights.layers.length !== config.nLayer) {
    throw new RangeError(`weights.layers must hold config.nLayer ${config.nLayer} layers (got ${Array.isArray(weights.layers) ? weights.layers.length : typeof weights.layers})`);
  }
  if (config.tiedEmbeddings && weights.lmHead !== null) {
    throw new TypeError('weights.lmHead must be null when config.tiedEmbeddings is true (the unembedding is wte)');
  }
  if (!config.tiedEmbeddings && weights.lmHead === null) {
    throw new TypeError('weights.lmHead must be a Float32Array [vocabSize, dModel] when config.tiedEmbeddings is false');
  }
  const check = (argument: string, data: unknown, shape: readonly number[]) => {
    const count = shape.reduce((product, size) => product * size, 1);
    if (!(data instanceof Float32Array)) throw new TypeError(`${argument} must be a Float32Array`);
    if (data.length !== count) throw new RangeError(`${argument} holds ${data.length} values; shape [${shape.join(', ')}] needs ${count}`);
  };
  const C = config.dModel;
  check('weights.wte', weights.wte, [config.vocabSize, C]);
  check('weights.wpe', weights.wpe, [config.nPositions, C]);
  const perLayer = layerShapes(config);
  weights.layers.forEach((layer, L) => {
    if (typeof layer !== 'object' || layer === null) throw new TypeError(`weights.layers[${L}] must be a Gpt2LayerWeights object`);
    for (const [field, name] of LAYER_FIELDS) check(`weights.layers[${L}].${field}`, layer[field], perLayer[name]!.shape);
  });
  check('weights.lnFW', weights.lnFW, [C]);
  check('weights.lnFB', weights.lnFB, [C]);
  if (weights.lmHead !== null) check('weights.lmHead', weights.lmHead, [config.vocabSize, C]);
}

/**
 * Writes `dir` (created if needed): model.safetensors (F32, or BF16 rounded to nearest even, with
 * GPT2LMHeadModel's names and metadata format "pt" as transformers requires), then config.json,
 * each atomically.
 */
export async function saveGpt2Model(dir: string, config: Gpt2Config, weights: Gpt2Weights, options: { dtype?: 'F32' | 'BF16' } = {}): Promise<void> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('dir must be a non-empty string');
  const dtype = options.dtype ?? 'F32';
  if (dtype !== 'F32' && dtype !== 'BF16') throw new RangeError(`options.dtype must be 'F32' or 'BF16' (got ${String(dtype)})`);
  const configJson = gpt2ConfigToJson(config, dtype === 'BF16' ? 'bfloat16' : 'float32'); // checks config
  checkGpt2Weights(config, weights);

  const tensors: Record<string, WritableTensor> = {};
  const put = (name: string, data: Float32Array, shape: readonly number[]) => {
    tensors[name] = dtype === 'F32' ? { dtype, shape, data } : { dtype, shape, data: float32ToBf16(data) };
  };
  const C = config.dModel;
  const V = config.vocabSize;
  put('transformer.wte.weight', weights.wte, [V, C]);
  put('transformer.wpe.weight', weights.wpe, [config.nPositions, C]);
  const perLayer = layerShapes(config);
  weights.layers.forEach((layer, L) => {
    for (const [field, name] of LAYER_FIELDS) put(`transformer.h.${L}.${name}`, layer[field], perLayer[name]!.shape);
  });
  put('transformer.ln_f.weight', weights.lnFW, [C]);
  put('transformer.ln_f.bias', weights.lnFB, [C]);
  if (weights.lmHead !== null) put('lm_head.weight', weights.lmHead, [V, C]);

  const encoded = encodeSafetensors(tensors, { format: 'pt' });
  await makeFolder(dir);
  await writeFileAtomic(path.join(dir, GPT2_WEIGHTS_FILE), encoded);
  // config.json last: a folder whose config.json is new has its new weights already in place.
  await writeFileAtomic(path.join(dir, GPT2_CONFIG_FILE), `${JSON.stringify(configJson, null, 2)}\n`);
}
