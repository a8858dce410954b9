/**
 * GPT-2 config.json files: those transformers wrote for the fixtures parse to the expected
 * Gpt2Config, and every malformed or unsupported config is refused with an error naming the file,
 * the field and its value.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type Gpt2Config, ModelConfigError, checkGpt2Config, gpt2ConfigToJson, loadGpt2Config, parseGpt2Config } from '../../lib/lm/config.js';
import { packageRoot } from '../../lib/native/load.js';

const fixtures = path.join(packageRoot(), 'test/fixtures/gpt2');
let scratch: string;
let baseConfig: Record<string, unknown>;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'monosemantic-lm-config-'));
  baseConfig = JSON.parse(await readFile(path.join(fixtures, 'tiny-gelu-new-tied', 'config.json'), 'utf8')) as Record<string, unknown>;
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

let folderCount = 0;
/** A folder whose config.json is the tiny-gelu-new-tied one changed by `edit`. */
async function configWith(edit: (cfg: Record<string, unknown>) => void): Promise<string> {
  const dir = path.join(scratch, `model-${folderCount++}`);
  await mkdir(dir, { recursive: true });
  const cfg = structuredClone(baseConfig);
  edit(cfg);
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg));
  return dir;
}

async function loadError(dir: string): Promise<ModelConfigError> {
  const error = await loadGpt2Config(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelConfigError);
  expect((error as ModelConfigError).path).toBe(path.join(dir, 'config.json'));
  return error as ModelConfigError;
}

describe('loadGpt2Config on the fixtures transformers wrote', () => {
  it('tiny-gelu-new-tied', async () => {
    expect(await loadGpt2Config(path.join(fixtures, 'tiny-gelu-new-tied'))).toEqual({
      nLayer: 2,
      nHead: 3,
      dModel: 36,
      dMlp: 76,
      nPositions: 24,
      vocabSize: 301,
      activation: 'gelu_new',
      layerNormEps: 1e-5,
      tiedEmbeddings: true,
      scaleAttnWeights: true,
      bosTokenId: 300,
      eosTokenId: 300,
    } satisfies Gpt2Config);
  });

  it('tiny-relu-untied and tiny-gelu-bf16', async () => {
    expect(await loadGpt2Config(path.join(fixtures, 'tiny-relu-untied'))).toEqual({
      nLayer: 1,
      nHead: 4,
      dModel: 32,
      dMlp: 128,
      nPositions: 16,
      vocabSize: 257,
      activation: 'relu',
      layerNormEps: 1e-5,
      tiedEmbeddings: false,
      scaleAttnWeights: true,
      bosTokenId: 256,
      eosTokenId: 256,
    } satisfies Gpt2Config);
    const bf16 = await loadGpt2Config(path.join(fixtures, 'tiny-gelu-bf16'));
    expect(bf16).toMatchObject({ nLayer: 2, dModel: 36, dMlp: 76, vocabSize: 301, activation: 'gelu_new', tiedEmbeddings: true });
  });
});

describe('defaults and spellings', () => {
  it('n_inner null is 4 · n_embd; absent optional fields take GPT2Config defaults', async () => {
    const config = await loadGpt2Config(
      await configWith((cfg) => {
        cfg['n_inner'] = null;
        for (const key of ['activation_function', 'layer_norm_epsilon', 'tie_word_embeddings', 'scale_attn_weights', 'bos_token_id', 'eos_token_id', 'architectures']) {
          delete cfg[key];
        }
      }),
    );
    expect(config).toMatchObject({ dMlp: 144, activation: 'gelu_new', layerNormEps: 1e-5, tiedEmbeddings: true, bosTokenId: null, eosTokenId: null });
  });

  it('gelu_pytorch_tanh is gelu_new; gelu is gelu; GPT2Model is accepted', async () => {
    expect((await loadGpt2Config(await configWith((cfg) => (cfg['activation_function'] = 'gelu_pytorch_tanh')))).activation).toBe('gelu_new');
    expect((await loadGpt2Config(await configWith((cfg) => (cfg['activation_function'] = 'gelu')))).activation).toBe('gelu');
    expect((await loadGpt2Config(await configWith((cfg) => (cfg['architectures'] = ['GPT2Model'])))).nLayer).toBe(2);
  });

  it("token ids outside the vocabulary (GPT2Config's default 50256 in a small model) are null; a list gives its first id", async () => {
    const config = await loadGpt2Config(
      await configWith((cfg) => {
        cfg['bos_token_id'] = 50256;
        cfg['eos_token_id'] = [7, 300];
      }),
    );
    expect(config.bosTokenId).toBeNull();
    expect(config.eosTokenId).toBe(7);
  });
});

describe('refusals name the file, the field and the value', () => {
  it('other model types and architectures', async () => {
    const llama = await loadError(await configWith((cfg) => (cfg['model_type'] = 'llama')));
    expect(llama.field).toBe('model_type');
    expect(llama.message).toMatch(/config\.json: model_type: "llama" is not supported: only GPT-2-family models/);
    const none = await loadError(await configWith((cfg) => delete cfg['model_type']));
    expect(none.message).toMatch(/model_type: missing is not supported/);
    const head = await loadError(await configWith((cfg) => (cfg['architectures'] = ['GPT2ForSequenceClassification'])));
    expect(head.field).toBe('architectures');
    expect(head.message).toMatch(/architectures: \["GPT2ForSequenceClassification"\] is not supported/);
  });

  it('n_embd not divisible by n_head', async () => {
    const error = await loadError(await configWith((cfg) => (cfg['n_head'] = 5)));
    expect(error.field).toBe('n_embd');
    expect(error.message).toMatch(/n_embd: 36 is not a multiple of n_head 5/);
  });

  it('attention variants and cross-attention', async () => {
    for (const [field, value, why] of [
      ['scale_attn_weights', false, /always divided by sqrt\(d_head\)/],
      ['scale_attn_by_inverse_layer_idx', true, /not scaled by the layer index/],
      ['reorder_and_upcast_attn', true, /standard attention/],
      ['add_cross_attention', true, /cross-attention/],
    ] as const) {
      const error = await loadError(await configWith((cfg) => (cfg[field] = value)));
      expect(error.field).toBe(field);
      expect(error.message).toContain(`${field}: ${JSON.stringify(value)} is not supported: `);
      expect(error.message).toMatch(why);
    }
  });

  it('activation functions other than gelu_new, gelu_pytorch_tanh, gelu and relu', async () => {
    for (const name of ['silu', 'gelu_fast', 'quick_gelu', 'tanh']) {
      const error = await loadError(await configWith((cfg) => (cfg['activation_function'] = name)));
      expect(error.field).toBe('activation_function');
      expect(error.message).toMatch(new RegExp(`activation_function: "${name}" is not supported: supported are gelu_new, gelu_pytorch_tanh, gelu, relu`));
    }
  });

  it('fields of the wrong type, out of range or missing', async () => {
    const text = await loadError(await configWith((cfg) => (cfg['n_embd'] = '36')));
    expect(text.field).toBe('n_embd');
    expect(text.message).toMatch(/config\.json: n_embd: .*expected number.*\(got "36"\)/);
    const zero = await loadError(await configWith((cfg) => (cfg['n_layer'] = 0)));
    expect(zero.field).toBe('n_layer');
    expect(zero.message).toMatch(/\(got 0\)$/);
    const fraction = await loadError(await configWith((cfg) => (cfg['vocab_size'] = 300.5)));
    expect(fraction.field).toBe('vocab_size');
    const missing = await loadError(await configWith((cfg) => delete cfg['n_positions']));
    expect(missing.field).toBe('n_positions');
    expect(missing.message).toMatch(/\(missing\)$/);
    const eps = await loadError(await configWith((cfg) => (cfg['layer_norm_epsilon'] = -1)));
    expect(eps.field).toBe('layer_norm_epsilon');
    const tie = await loadError(await configWith((cfg) => (cfg['tie_word_embeddings'] = 'yes')));
    expect(tie.field).toBe('tie_word_embeddings');
  });

  it('a missing file, invalid JSON or a non-object', async () => {
    const missing = await loadError(path.join(scratch, 'no-such-model'));
    expect(missing.message).toMatch(/config\.json: not found/);
    const dir = await configWith(() => undefined);
    await writeFile(path.join(dir, 'config.json'), '{"n_layer": 2,');
    expect((await loadError(dir)).message).toMatch(/config\.json: not valid JSON/);
    await writeFile(path.join(dir, 'config.json'), '[]');
    expect((await loadError(dir)).message).toMatch(/config\.json: must hold a JSON object/);
  });
});

describe('gpt2ConfigToJson', () => {
  it('writes transformers field names that parse back to the same config', async () => {
    for (const name of ['tiny-gelu-new-tied', 'tiny-relu-untied']) {
      const config = await loadGpt2Config(path.join(fixtures, name));
      const json = gpt2ConfigToJson(config);
      expect(json).toMatchObject({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: config.dModel, n_inner: config.dMlp });
      expect(parseGpt2Config(json, 'saved')).toEqual(config);
    }
  });

  it('refuses configs this package cannot run, naming the field', async () => {
    const config = await loadGpt2Config(path.join(fixtures, 'tiny-gelu-new-tied'));
    expect(() => checkGpt2Config({ ...config, nHead: 5 })).toThrow(/config\.dModel 36 must be a multiple of config\.nHead 5/);
    expect(() => checkGpt2Config({ ...config, dMlp: 0 })).toThrow(/config\.dMlp must be a positive integer/);
    expect(() => checkGpt2Config({ ...config, activation: 'silu' as 'relu' })).toThrow(/config\.activation/);
    expect(() => checkGpt2Config({ ...config, bosTokenId: 301 })).toThrow(/config\.bosTokenId must be null or an integer in \[0, 301\)/);
    expect(() => checkGpt2Config({ ...config, scaleAttnWeights: false })).toThrow(/config\.scaleAttnWeights must be true/);
  });
});
