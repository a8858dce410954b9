/**
 * GPT-2 weights: the fixtures transformers saved (scripts/fixtures/make_gpt2_fixtures.py) load
 * with the right shapes and values, and a plain float64 forward pass over what was loaded
 * reproduces transformers' logits, loss and every hook activation, so each tensor reached the
 * field the forward pass expects. Missing, misshaped, unexpected and badly typed tensors are
 * refused naming the file and the tensor; saving and loading again gives the same model.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  type LoadedTensor,
  type WritableTensor,
  encodeSafetensors,
  float16BitsToFloat32,
  readSafetensors,
  readSafetensorsHeader,
  tensorToFloat32,
} from '../../lib/io/safetensors.js';
import { type Gpt2Config, loadGpt2Config } from '../../lib/lm/config.js';
import { type Gpt2Weights, ModelWeightsError, loadGpt2Weights, saveGpt2Model } from '../../lib/lm/weights.js';
import { packageRoot } from '../../lib/native/load.js';

const fixtures = path.join(packageRoot(), 'test/fixtures/gpt2');
const FIXTURE_NAMES = ['tiny-gelu-new-tied', 'tiny-relu-untied', 'tiny-gelu-bf16'] as const;

/** float64 forward against transformers' float64 outputs stored as F32: max error / max |ref|. */
const RELATIVE_TOLERANCE = 1e-5;

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'monosemantic-lm-weights-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// A plain float64 GPT-2 forward pass, written from the maths (row-major, Conv1D weights [in, out]).

function layerNorm(x: Float64Array, rows: number, C: number, w: Float32Array, b: Float32Array, eps: number): Float64Array {
  const out = new Float64Array(rows * C);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let c = 0; c < C; c++) mean += x[r * C + c]!;
    mean /= C;
    let variance = 0;
    for (let c = 0; c < C; c++) variance += (x[r * C + c]! - mean) ** 2;
    variance /= C;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < C; c++) out[r * C + c] = (x[r * C + c]! - mean) * inv * w[c]! + b[c]!;
  }
  return out;
}

/** x [rows, n] · W [n, m] + bias [m]. */
function linear(x: Float64Array, rows: number, n: number, W: Float32Array, bias: Float32Array, m: number): Float64Array {
  const out = new Float64Array(rows * m);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < m; j++) {
      let sum = bias[j]!;
      for (let k = 0; k < n; k++) sum += x[r * n + k]! * W[k * m + j]!;
      out[r * m + j] = sum;
    }
  }
  return out;
}

function activate(name: Gpt2Config['activation'], x: number): number {
  if (name === 'relu') return Math.max(0, x);
  if (name === 'gelu_new') return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  throw new Error('the fixtures use gelu_new and relu only');
}

function referenceForward(config: Gpt2Config, w: Gpt2Weights, ids: Int32Array, B: number, T: number): Record<string, Float64Array> {
  const C = config.dModel;
  const H = config.nHead;
  const hd = C / H;
  const rows = B * T;
  const out: Record<string, Float64Array> = {};
  const embed = new Float64Array(rows * C);
  const pos = new Float64Array(rows * C);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < C; c++) {
      embed[r * C + c] = w.wte[ids[r]! * C + c]!;
      pos[r * C + c] = w.wpe[(r % T) * C + c]!;
    }
  }
  out['hook_embed'] = embed;
  out['hook_pos_embed'] = pos;
  let resid = embed.map((v, i) => v + pos[i]!);
  for (let L = 0; L < config.nLayer; L++) {
    const lw = w.layers[L]!;
    const p = `blocks.${L}.`;
    out[`${p}hook_resid_pre`] = resid;
    const qkv = linear(layerNorm(resid, rows, C, lw.ln1W, lw.ln1B, config.layerNormEps), rows, C, lw.attnW, lw.attnB, 3 * C);
    const z = new Float64Array(rows * C);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const q = (b * T + t) * 3 * C + h * hd;
          const scores: number[] = [];
          for (let s = 0; s <= t; s++) {
            const k = (b * T + s) * 3 * C + C + h * hd;
            let dot = 0;
            for (let d = 0; d < hd; d++) dot += qkv[q + d]! * qkv[k + d]!;
            scores.push(dot / Math.sqrt(hd));
          }
          const max = Math.max(...scores);
          const weights = scores.map((s) => Math.exp(s - max));
          const total = weights.reduce((a, v) => a + v, 0);
          for (let s = 0; s <= t; s++) {
            const v = (b * T + s) * 3 * C + 2 * C + h * hd;
            for (let d = 0; d < hd; d++) z[(b * T + t) * C + h * hd + d]! += (weights[s]! / total) * qkv[v + d]!;
          }
        }
      }
    }
    out[`${p}attn.hook_z`] = z;
    const attnOut = linear(z, rows, C, lw.projW, lw.projB, C);
    out[`${p}hook_attn_out`] = attnOut;
    resid = resid.map((v, i) => v + attnOut[i]!);
    out[`${p}hook_resid_mid`] = resid;
    const pre = linear(layerNorm(resid, rows, C, lw.ln2W, lw.ln2B, config.layerNormEps), rows, C, lw.fcW, lw.fcB, config.dMlp);
    out[`${p}mlp.hook_pre`] = pre;
    const post = pre.map((v) => activate(config.activation, v));
    out[`${p}mlp.hook_post`] = post;
    const mlpOut = linear(post, rows, config.dMlp, lw.fcProjW, lw.fcProjB, C);
    out[`${p}hook_mlp_out`] = mlpOut;
    resid = resid.map((v, i) => v + mlpOut[i]!);
    out[`${p}hook_resid_post`] = resid;
  }
  const normed = layerNorm(resid, rows, C, w.lnFW, w.lnFB, config.layerNormEps);
  out['ln_final.hook_normalized'] = normed;
  const unembed = w.lmHead ?? w.wte; // [V, C]
  const V = config.vocabSize;
  const logits = new Float64Array(rows * V);
  for (let r = 0; r < rows; r++) {
    for (let v = 0; v < V; v++) {
      let sum = 0;
      for (let c = 0; c < C; c++) sum += normed[r * C + c]! * unembed[v * C + c]!;
      logits[r * V + v] = sum;
    }
  }
  out['logits'] = logits;
  const loss = new Float64Array(B * (T - 1));
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T - 1; t++) {
      const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
      const max = row.reduce((m, v) => Math.max(m, v), -Infinity);
      const logSumExp = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      loss[b * (T - 1) + t] = logSumExp - row[ids[b * T + t + 1]!]!;
    }
  }
  out['loss'] = loss;
  return out;
}

function int32Of(tensor: LoadedTensor): Int32Array {
  expect(tensor.dtype).toBe('I32');
  return new Int32Array(tensor.bytes.buffer, tensor.bytes.byteOffset, tensor.bytes.length / 4);
}

function expectClose(actual: Float64Array, expected: Float32Array, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]!));
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  }
  expect(scale, what).toBeGreaterThan(0);
  expect(worst / scale, `${what}: max error ${worst} against max |ref| ${scale}`).toBeLessThanOrEqual(RELATIVE_TOLERANCE);
}

// ---------------------------------------------------------------------------------------------

describe('loadGpt2Weights on the fixtures transformers saved', () => {
  for (const name of FIXTURE_NAMES) {
    it(`${name}: shapes, values, and transformers' outputs reproduced from them`, async () => {
      const dir = path.join(fixtures, name);
      const config = await loadGpt2Config(dir);
      const weights = await loadGpt2Weights(dir, config);
      const { nLayer, dModel: C, dMlp, vocabSize: V, nPositions } = config;

      expect(weights.sourceDtype).toBe(name === 'tiny-gelu-bf16' ? 'BF16' : 'F32');
      expect(weights.wte.length).toBe(V * C);
      expect(weights.wpe.length).toBe(nPositions * C);
      expect(weights.layers).toHaveLength(nLayer);
      for (const layer of weights.layers) {
        expect(Object.keys(layer).sort()).toEqual(
          ['attnB', 'attnW', 'fcB', 'fcProjB', 'fcProjW', 'fcW', 'ln1B', 'ln1W', 'ln2B', 'ln2W', 'projB', 'projW'].sort(),
        );
        expect([layer.ln1W, layer.ln1B, layer.ln2W, layer.ln2B, layer.projB, layer.fcProjB].map((a) => a.length)).toEqual([C, C, C, C, C, C]);
        expect(layer.attnW.length).toBe(C * 3 * C);
        expect(layer.attnB.length).toBe(3 * C);
        expect(layer.projW.length).toBe(C * C);
        expect(layer.fcW.length).toBe(C * dMlp);
        expect(layer.fcB.length).toBe(dMlp);
        expect(layer.fcProjW.length).toBe(dMlp * C);
        for (const array of Object.values(layer)) expect(array).toBeInstanceOf(Float32Array);
      }
      expect(weights.lnFW.length).toBe(C);
      expect(weights.lnFB.length).toBe(C);
      if (config.tiedEmbeddings) expect(weights.lmHead).toBeNull();
      else expect(weights.lmHead?.length).toBe(V * C);

      // Values: the same as an independent read of the file, by name.
      const { tensors } = await readSafetensors(path.join(dir, 'model.safetensors'));
      expect(weights.layers[nLayer - 1]!.fcProjW).toEqual(tensorToFloat32(tensors[`transformer.h.${nLayer - 1}.mlp.c_proj.weight`]!));
      expect(weights.wte).toEqual(tensorToFloat32(tensors['transformer.wte.weight']!));
      if (name === 'tiny-gelu-bf16') {
        // bf16 values widened exactly: the low 16 bits of every f32 are zero.
        expect(new Uint32Array(weights.wte.buffer, weights.wte.byteOffset, weights.wte.length).every((bits) => (bits & 0xffff) === 0)).toBe(true);
      }

      const reference = (await readSafetensors(path.join(dir, 'reference.safetensors'))).tensors;
      const idsTensor = reference['input_ids']!;
      const [B, T] = idsTensor.shape as [number, number];
      const ours = referenceForward(config, weights, int32Of(idsTensor), B, T);
      for (const [hook, values] of Object.entries(ours)) {
        const expected = reference[hook];
        expect(expected, `reference.safetensors holds ${hook}`).toBeDefined();
        expectClose(values, tensorToFloat32(expected!, hook), `${name} ${hook}`);
      }
      // Every activation in the reference file was checked, but the extra pre-affine LayerNorm output.
      expect(Object.keys(reference).filter((k) => !(k in ours)).sort()).toEqual(['input_ids', 'ln_final.normalized_before_affine']);
    });
  }
});

// ---------------------------------------------------------------------------------------------

let folderCount = 0;
/** A folder with the fixture's config.json and a model.safetensors made of `tensors`. */
async function folderWith(fixture: string, tensors: Record<string, WritableTensor>): Promise<string> {
  const dir = path.join(scratch, `model-${folderCount++}`);
  await mkdir(dir, { recursive: true });
  await copyFile(path.join(fixtures, fixture, 'config.json'), path.join(dir, 'config.json'));
  await writeFile(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  return dir;
}

/** The fixture's tensors as F32 WritableTensors, to be edited. */
async function fixtureTensors(fixture: string): Promise<Record<string, WritableTensor>> {
  const { tensors } = await readSafetensors(path.join(fixtures, fixture, 'model.safetensors'));
  const out: Record<string, WritableTensor> = {};
  for (const [name, t] of Object.entries(tensors)) out[name] = { dtype: 'F32', shape: t.shape, data: Float32Array.from(tensorToFloat32(t, name)) };
  return out;
}

async function loadError(dir: string): Promise<ModelWeightsError> {
  const config = await loadGpt2Config(dir);
  const error = await loadGpt2Weights(dir, config).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelWeightsError);
  return error as ModelWeightsError;
}

describe('names, buffers and dtypes', () => {
  it("GPT2Model's names (no \"transformer.\" prefix) load the same weights", async () => {
    const tensors = await fixtureTensors('tiny-gelu-new-tied');
    const bare = Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name.replace(/^transformer\./, ''), t]));
    const dir = await folderWith('tiny-gelu-new-tied', bare);
    const config = await loadGpt2Config(dir);
    const fromBare = await loadGpt2Weights(dir, config);
    const original = await loadGpt2Weights(path.join(fixtures, 'tiny-gelu-new-tied'), config);
    expect(fromBare).toEqual(original);
  });

  it('attention-mask buffers are skipped; a stored lm_head of a tied model is ignored', async () => {
    const tensors = await fixtureTensors('tiny-gelu-new-tied');
    const mask = new Uint8Array(24 * 24);
    const dir = await folderWith('tiny-gelu-new-tied', {
      ...tensors,
      'transformer.h.0.attn.bias': { dtype: 'U8', shape: [1, 1, 24, 24], data: mask },
      'transformer.h.1.attn.masked_bias': { dtype: 'F32', shape: [], data: new Float32Array([-1e4]) },
      'lm_head.weight': { dtype: 'F32', shape: [301, 36], data: new Float32Array(301 * 36) },
    });
    const weights = await loadGpt2Weights(dir, await loadGpt2Config(dir));
    expect(weights.lmHead).toBeNull();
    expect(weights.wte).toEqual(tensors['transformer.wte.weight']!.data);
  });

  it('F16 weights are widened to f32', async () => {
    const tensors = await fixtureTensors('tiny-relu-untied');
    const half: Record<string, WritableTensor> = {};
    for (const [name, t] of Object.entries(tensors)) half[name] = { dtype: 'F16', shape: t.shape, data: toHalfBits(t.data as Float32Array) };
    const dir = await folderWith('tiny-relu-untied', half);
    const weights = await loadGpt2Weights(dir, await loadGpt2Config(dir));
    expect(weights.sourceDtype).toBe('F16');
    expect(weights.lmHead).toEqual(float16BitsToFloat32(half['lm_head.weight']!.data as Uint16Array));
    expect(weights.layers[0]!.fcW).toEqual(float16BitsToFloat32(half['transformer.h.0.mlp.c_fc.weight']!.data as Uint16Array));
  });
});

/** IEEE half bit patterns of float32 values (truncating the mantissa; tiny values flush to zero). */
function toHalfBits(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(Float32Array.from(values).buffer);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    const sign = (b >>> 16) & 0x8000;
    const exponent = ((b >>> 23) & 0xff) - 127 + 15;
    out[i] = exponent <= 0 ? sign : exponent >= 31 ? sign | 0x7c00 : sign | (exponent << 10) | ((b >>> 13) & 0x3ff);
  }
  return out;
}

describe('refusals name the file and the tensor', () => {
  it('a missing tensor', async () => {
    const { 'transformer.h.1.mlp.c_fc.bias': _omitted, ...rest } = await fixtureTensors('tiny-gelu-new-tied');
    const dir = await folderWith('tiny-gelu-new-tied', rest);
    const error = await loadError(dir);
    expect(error.path).toBe(path.join(dir, 'model.safetensors'));
    expect(error.field).toBe('transformer.h.1.mlp.c_fc.bias');
    expect(error.message).toMatch(/model\.safetensors: transformer\.h\.1\.mlp\.c_fc\.bias: tensor missing \(the file holds 27 tensors: /);
  });

  it("an untied model without lm_head.weight; no embedding at all", async () => {
    const { 'lm_head.weight': _omitted, ...rest } = await fixtureTensors('tiny-relu-untied');
    const error = await loadError(await folderWith('tiny-relu-untied', rest));
    expect(error.field).toBe('lm_head.weight');
    expect(error.message).toMatch(/lm_head\.weight: tensor missing: config\.json's tie_word_embeddings is false, so the unembedding lm_head\.weight \[257, 32\] is needed/);

    const { 'transformer.wte.weight': _wte, ...noEmbedding } = await fixtureTensors('tiny-relu-untied');
    const none = await loadError(await folderWith('tiny-relu-untied', noEmbedding));
    expect(none.message).toMatch(/transformer\.wte\.weight: tensor missing: neither transformer\.wte\.weight \(GPT2LMHeadModel\) nor wte\.weight \(GPT2Model\)/);
  });

  it('a tensor whose shape disagrees with config.json: its shape and the expected one', async () => {
    const tensors = await fixtureTensors('tiny-gelu-new-tied');
    const transposed = { ...tensors, 'transformer.h.0.mlp.c_fc.weight': { dtype: 'F32', shape: [76, 36], data: tensors['transformer.h.0.mlp.c_fc.weight']!.data } } as const;
    const error = await loadError(await folderWith('tiny-gelu-new-tied', transposed));
    expect(error.field).toBe('transformer.h.0.mlp.c_fc.weight');
    expect(error.message).toMatch(/transformer\.h\.0\.mlp\.c_fc\.weight: has shape \[76, 36\], but config\.json's n_embd 36, n_inner 76 need \[36, 76\]$/);

    const vocab = { ...tensors, 'transformer.wte.weight': { dtype: 'F32', shape: [300, 36], data: new Float32Array(300 * 36) } } as const;
    expect((await loadError(await folderWith('tiny-gelu-new-tied', vocab))).message).toMatch(
      /transformer\.wte\.weight: has shape \[300, 36\], but config\.json's vocab_size 301, n_embd 36 need \[301, 36\]$/,
    );
  });

  it('a layer beyond n_layer, an unknown tensor, a non-float dtype', async () => {
    const tensors = await fixtureTensors('tiny-gelu-new-tied');
    const extraLayer = { ...tensors, 'transformer.h.2.ln_1.weight': { dtype: 'F32', shape: [36], data: new Float32Array(36) } } as const;
    const layer = await loadError(await folderWith('tiny-gelu-new-tied', extraLayer));
    expect(layer.field).toBe('transformer.h.2.ln_1.weight');
    expect(layer.message).toMatch(/unexpected tensor: layer 2 is beyond config\.json's n_layer 2/);

    const head = { ...tensors, 'score.weight': { dtype: 'F32', shape: [2, 36], data: new Float32Array(72) } } as const;
    expect((await loadError(await folderWith('tiny-gelu-new-tied', head))).message).toMatch(/score\.weight: unexpected tensor: not a parameter/);

    const ints = { ...tensors, 'transformer.ln_f.bias': { dtype: 'I32', shape: [36], data: new Int32Array(36) } } as const;
    expect((await loadError(await folderWith('tiny-gelu-new-tied', ints))).message).toMatch(
      /transformer\.ln_f\.bias: dtype I32 is not supported \(F32, F16 or BF16 expected\)/,
    );
  });

  it('a missing, sharded or truncated file', async () => {
    const dir = path.join(scratch, 'no-weights');
    await mkdir(dir, { recursive: true });
    await copyFile(path.join(fixtures, 'tiny-gelu-new-tied', 'config.json'), path.join(dir, 'config.json'));
    expect((await loadError(dir)).message).toMatch(/model\.safetensors: not found/);
    await writeFile(path.join(dir, 'model.safetensors.index.json'), '{}');
    expect((await loadError(dir)).message).toMatch(/sharded checkpoint .* not supported/);

    const whole = await readFile(path.join(fixtures, 'tiny-gelu-new-tied', 'model.safetensors'));
    await writeFile(path.join(dir, 'model.safetensors'), whole.subarray(0, whole.length - 100));
    const truncated = await loadError(dir);
    expect(truncated.path).toBe(path.join(dir, 'model.safetensors'));
    expect(truncated.message).toMatch(/truncated/);
  });
});

describe('saveGpt2Model', () => {
  for (const name of FIXTURE_NAMES) {
    it(`${name}: save then load gives the same config and weights`, async () => {
      const source = path.join(fixtures, name);
      const config = await loadGpt2Config(source);
      const weights = await loadGpt2Weights(source, config);
      const dir = path.join(scratch, `saved-${name}`);
      await saveGpt2Model(dir, config, weights);

      expect(await loadGpt2Config(dir)).toEqual(config);
      const again = await loadGpt2Weights(dir, config);
      expect(again).toEqual({ ...weights, sourceDtype: 'F32' });

      const header = await readSafetensorsHeader(path.join(dir, 'model.safetensors'));
      expect(header.metadata).toEqual({ format: 'pt' });
      expect(Object.hasOwn(header.tensors, 'lm_head.weight')).toBe(!config.tiedEmbeddings);
      expect(Object.keys(header.tensors).every((n) => n === 'lm_head.weight' || n.startsWith('transformer.'))).toBe(true);
      expect(Object.values(header.tensors).every((t) => t.dtype === 'F32')).toBe(true);
      const json = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(json).toMatchObject({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], tie_word_embeddings: config.tiedEmbeddings });
    });
  }

  it('refuses weights that do not fit the config, naming the field', async () => {
    const source = path.join(fixtures, 'tiny-relu-untied');
    const config = await loadGpt2Config(source);
    const weights = await loadGpt2Weights(source, config);
    const dir = path.join(scratch, 'not-saved');
    const layer0 = weights.layers[0]!;
    await expect(saveGpt2Model(dir, config, { ...weights, layers: [{ ...layer0, fcB: new Float32Array(3) }] })).rejects.toThrow(
      /weights\.layers\[0\]\.fcB holds 3 values; shape \[128\] needs 128/,
    );
    await expect(saveGpt2Model(dir, config, { ...weights, lmHead: null })).rejects.toThrow(/weights\.lmHead must be a Float32Array/);
    await expect(saveGpt2Model(dir, { ...config, tiedEmbeddings: true }, weights)).rejects.toThrow(/weights\.lmHead must be null/);
    await expect(saveGpt2Model(dir, config, { ...weights, layers: [] })).rejects.toThrow(/weights\.layers must hold config\.nLayer 1 layers \(got 0\)/);
    await expect(saveGpt2Model(dir, config, { ...weights, wte: Array.from(weights.wte) as unknown as Float32Array })).rejects.toThrow(
      /weights\.wte must be a Float32Array/,
    );
    await expect(saveGpt2Model(dir, { ...config, nHead: 5 }, weights)).rejects.toThrow(RangeError);
  });
});
