/**
 * SAELens folders: SAEs written by PyTorch + safetensors (scripts/fixtures/make_saelens_fixture.py)
 * load and run here with PyTorch's outputs; our saves load back bit for bit with SAELens 6.x's
 * cfg.json fields; and every SAE we cannot run is refused with an error naming the file and field.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { writeFileAtomic } from '../../lib/io/atomic.js';
import { type WritableTensor, encodeSafetensors, readSafetensors, tensorToFloat32 } from '../../lib/io/safetensors.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';
import type { SaeParameterArrays } from '../../lib/sae/init.js';
import { type SaeLensExport, SaeLensError, loadSaeLens, loadSaeLensAsSae, saveSaeLens } from '../../lib/sae/saelens.js';
import { Tensor } from '../../lib/tensor.js';

const fixtures = path.join(packageRoot(), 'test/fixtures');

/** Our f32 CPU outputs against PyTorch's float64 ones: max error within this fraction of max |ref|. */
const RELATIVE_TOLERANCE = 1e-5;

function maxAbs(values: Float32Array): number {
  let max = 0;
  for (const v of values) max = Math.max(max, Math.abs(v));
  return max;
}

function expectClose(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  const scale = maxAbs(expected);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  expect(worst / scale, `${what}: max error ${worst} against max |ref| ${scale}`).toBeLessThanOrEqual(RELATIVE_TOLERANCE);
}

function bytesOf(array: Float32Array): Buffer {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

async function readInputs(dir: string) {
  const { tensors } = await readSafetensors(path.join(dir, 'inputs.safetensors'));
  const get = (name: string) => {
    const t = tensors[name];
    if (t === undefined) throw new Error(`${dir}/inputs.safetensors lacks ${name}`);
    return { shape: t.shape, data: tensorToFloat32(t, name) };
  };
  return { x: get('x'), featureActs: get('feature_acts'), reconstruction: get('reconstruction') };
}

describe('SAELens fixtures written by PyTorch', () => {
  for (const [name, rows] of [
    ['saelens-standard', 9],
    ['saelens-v5-bf16', 5],
  ] as const) {
    it(`${name}: encode and decode match PyTorch within ${RELATIVE_TOLERANCE} of the output scale`, async () => {
      const dir = path.join(fixtures, name);
      const { sae, loaded } = await loadSaeLensAsSae(dir, { backend: 'cpu', precision: 'f32' });
      try {
        const { x, featureActs, reconstruction } = await readInputs(dir);
        expect(x.shape).toEqual([rows, loaded.dIn]);
        using xt = Tensor.from(x.data, x.shape, { backend: 'cpu' });
        using f = await sae.encode(xt);
        const ours = f.toArray() as Float32Array;
        expectClose(ours, featureActs.data, 'feature_acts');
        // The same features are on (no pre-activation in the fixtures is within 1e-3 of zero).
        expect(Array.from(ours, (v) => v > 0)).toEqual(Array.from(featureActs.data, (v) => v > 0));
        const active = featureActs.data.filter((v) => v > 0).length;
        expect(active).toBeGreaterThan(0);
        expect(active).toBeLessThan(featureActs.data.length);
        using xhat = await sae.decode(f);
        expectClose(xhat.toArray() as Float32Array, reconstruction.data, 'reconstruction');
      } finally {
        sae.dispose();
      }
    });
  }

  it('reads the 6.x layout: nested metadata, F32 weights, sparsity with dead features', async () => {
    const loaded = await loadSaeLens(path.join(fixtures, 'saelens-standard'));
    expect(loaded.dIn).toBe(13);
    expect(loaded.dSae).toBe(37);
    expect(loaded.architecture).toBe('standard');
    expect(loaded.metadata).toEqual({
      modelName: 'pythia-70m-deduped',
      hookName: 'blocks.3.hook_resid_post',
      contextSize: 128,
      datasetPath: 'NeelNanda/pile-small-tokenized-2b',
      prependBos: true,
      hookHeadIndex: null,
    });
    expect(loaded.training).toBeNull();
    expect(loaded.sparsityLog10).toHaveLength(37);
    expect(loaded.sparsityLog10![0]).toBe(-10);
    expect(loaded.sparsityLog10![1]).toBe(-Infinity);
    expect(loaded.params.W_enc).toHaveLength(13 * 37);
  });

  it('reads the flat 3–5 layout with BF16 weights, converted exactly', async () => {
    const loaded = await loadSaeLens(path.join(fixtures, 'saelens-v5-bf16'));
    expect([loaded.dIn, loaded.dSae]).toEqual([8, 16]);
    expect(loaded.metadata).toEqual({
      modelName: 'gpt2-small',
      hookName: 'blocks.8.hook_resid_pre',
      contextSize: 1024,
      datasetPath: 'Skylion007/openwebtext',
      prependBos: true,
      hookHeadIndex: null,
    });
    expect(loaded.sparsityLog10).toBeNull();
    expect(loaded.cfg['dtype']).toBe('torch.bfloat16');
    // bf16 values widened to f32 have their low 16 bits clear.
    const bits = new Uint32Array(Float32Array.from(loaded.params.W_dec).buffer);
    expect(bits.every((b) => (b & 0xffff) === 0)).toBe(true);
    expect(bits.some((b) => b !== 0)).toBe(true);
  });
});

/** The four tensors of a standard SAE (d_in 13, d_sae 37) as sae_weights.safetensors holds them, and their values. */
function standardTensors(seed: number): { params: SaeLensExport['params']; tensors: Record<string, WritableTensor> } {
  const params = randomExport(13, 37, seed).params;
  return {
    params,
    tensors: {
      W_enc: { dtype: 'F32', shape: [13, 37], data: params.W_enc },
      b_enc: { dtype: 'F32', shape: [37], data: params.b_enc },
      W_dec: { dtype: 'F32', shape: [37, 13], data: params.W_dec },
      b_dec: { dtype: 'F32', shape: [13], data: params.b_dec },
    },
  };
}

function randomExport(dIn: number, dSae: number, seed: number): SaeLensExport {
  const rng = new Rng(seed);
  const params: SaeParameterArrays = {
    W_enc: rng.fillUniform(new Float32Array(dIn * dSae), -1, 1),
    b_enc: rng.fillUniform(new Float32Array(dSae), -1, 1),
    W_dec: rng.fillUniform(new Float32Array(dSae * dIn), -1, 1),
    b_dec: rng.fillUniform(new Float32Array(dIn), -1, 1),
  };
  const sparsityLog10 = rng.fillUniform(new Float32Array(dSae), -8, -0.5);
  sparsityLog10[0] = -Infinity;
  sparsityLog10[1] = -10;
  return {
    dIn,
    dSae,
    params,
    metadata: { modelName: 'gpt2', hookName: 'blocks.6.hook_resid_post', contextSize: 64, datasetPath: '/data/acts' },
    sparsityLog10,
    training: {
      penalty: 'l1_decnorm',
      l1_coeff: 3.5,
      training_steps: 1200,
      training_samples: 4_915_200,
      normalization_scale_folded: true,
      version: '0.1.0',
    },
  };
}

describe('saveSaeLens / loadSaeLens', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'monosemantic-saelens-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('round-trips weights, sparsity and the training block bit for bit', async () => {
    const dir = path.join(root, 'round-trip', 'nested'); // created by saveSaeLens
    const sae = randomExport(11, 29, 3);
    await saveSaeLens(dir, sae);
    expect((await readdir(dir)).sort()).toEqual(['cfg.json', 'sae_weights.safetensors', 'sparsity.safetensors']); // no temp files left
    const loaded = await loadSaeLens(dir);
    expect([loaded.dIn, loaded.dSae]).toEqual([11, 29]);
    for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
      expect(bytesOf(loaded.params[name]).equals(bytesOf(sae.params[name])), name).toBe(true);
    }
    expect(bytesOf(loaded.sparsityLog10!).equals(bytesOf(sae.sparsityLog10!))).toBe(true);
    expect(loaded.training).toEqual(sae.training);
    expect(loaded.metadata).toEqual({ ...sae.metadata, prependBos: true, hookHeadIndex: null });
    expect(loaded.architecture).toBe('standard');
  });

  it("writes cfg.json with SAELens 6.x's field names, and our record under \"monosemantic\"", async () => {
    const dir = path.join(root, 'cfg');
    const sae = randomExport(5, 7, 4);
    await saveSaeLens(dir, { ...sae, metadata: { ...sae.metadata, prependBos: false, hookHeadIndex: 3 } });
    const cfg = JSON.parse(await readFile(path.join(dir, 'cfg.json'), 'utf8'));
    expect(Object.keys(cfg)).toEqual([
      'd_in',
      'd_sae',
      'dtype',
      'device',
      'apply_b_dec_to_input',
      'normalize_activations',
      'reshape_activations',
      'metadata',
      'architecture',
      'monosemantic',
    ]);
    expect(cfg).toEqual({
      d_in: 5,
      d_sae: 7,
      dtype: 'float32',
      device: 'cpu',
      apply_b_dec_to_input: true,
      normalize_activations: 'none',
      reshape_activations: 'none',
      metadata: {
        model_name: 'gpt2',
        hook_name: 'blocks.6.hook_resid_post',
        model_class_name: null,
        hook_head_index: 3,
        model_from_pretrained_kwargs: {},
        prepend_bos: false,
        exclude_special_tokens: false,
        neuronpedia_id: null,
        context_size: 64,
        seqpos_slice: [null],
        dataset_path: '/data/acts',
        sae_lens_version: '6.12.1',
        sae_lens_training_version: '6.12.1',
      },
      architecture: 'standard',
      monosemantic: sae.training,
    });
    const { tensors } = await readSafetensors(path.join(dir, 'sae_weights.safetensors'));
    expect(Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, [t.dtype, t.shape]]))).toEqual({
      W_enc: ['F32', [5, 7]],
      b_enc: ['F32', [7]],
      W_dec: ['F32', [7, 5]],
      b_dec: ['F32', [5]],
    });
    const sparsity = await readSafetensors(path.join(dir, 'sparsity.safetensors'));
    expect(Object.keys(sparsity.tensors)).toEqual(['sparsity']);
    expect(sparsity.tensors['sparsity']!.shape).toEqual([7]);
  });

  it('saving without sparsity removes an earlier sparsity.safetensors; no training block, no "monosemantic"', async () => {
    const dir = path.join(root, 'resave');
    const sae = randomExport(4, 6, 5);
    await saveSaeLens(dir, sae);
    const { sparsityLog10: _dropped, training: _none, ...bare } = sae;
    await saveSaeLens(dir, bare);
    expect((await readdir(dir)).sort()).toEqual(['cfg.json', 'sae_weights.safetensors']);
    const loaded = await loadSaeLens(dir);
    expect(loaded.sparsityLog10).toBeNull();
    expect(loaded.training).toBeNull();
    expect('monosemantic' in loaded.cfg).toBe(false);
  });

  it('loadSaeLensAsSae builds a SparseAutoencoder with the saved weights and recorded penalty and λ', async () => {
    const dir = path.join(root, 'as-sae');
    const saved = randomExport(9, 17, 6);
    await saveSaeLens(dir, saved);
    const { sae } = await loadSaeLensAsSae(dir, { backend: 'cpu', precision: 'f32' });
    try {
      expect([sae.dIn, sae.dSae, sae.backend, sae.precision, sae.penalty]).toEqual([9, 17, 'cpu', 'f32', 'l1_decnorm']);
      expect(sae.hyperparameters.l1Coeff).toBe(3.5);
      const params = sae.readParameters();
      for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
        expect(bytesOf(params[name]).equals(bytesOf(saved.params[name])), name).toBe(true);
      }
    } finally {
      sae.dispose();
    }
  });

  it('refuses bad exports with TypeError/RangeError naming the argument', async () => {
    const dir = path.join(root, 'bad-export');
    const sae = randomExport(3, 4, 7);
    await expect(saveSaeLens(dir, { ...sae, params: { ...sae.params, W_dec: new Float32Array(11) } })).rejects.toThrow(
      new RangeError('sae.params.W_dec holds 11 values; shape [4, 3] needs 12'),
    );
    await expect(saveSaeLens(dir, { ...sae, dSae: 0 })).rejects.toThrow(RangeError);
    await expect(saveSaeLens(dir, { ...sae, sparsityLog10: new Float32Array(3) })).rejects.toThrow(/sae\.sparsityLog10 holds 3 values/);
    await expect(
      saveSaeLens(dir, { ...sae, params: { ...sae.params, b_enc: [1, 2, 3, 4] as unknown as Float32Array } }),
    ).rejects.toThrow(new TypeError('sae.params.b_enc must be a Float32Array'));
    await expect(saveSaeLens(dir, { ...sae, metadata: { ...sae.metadata, contextSize: 1.5 } })).rejects.toThrow(/sae\.metadata\.contextSize/);
  });

  it('converts F64 and F16 weights to f32', async () => {
    const dir = path.join(root, 'wide-and-half');
    await saveSaeLens(dir, randomExport(2, 3, 8));
    const f64 = (values: number[], shape: number[]): WritableTensor => ({ dtype: 'F64', shape, data: Float64Array.from(values) });
    // IEEE half bit patterns: 1, 0.5, -2, 0.25, -1, 3 (all exact in f32).
    const half = Uint16Array.from([0x3c00, 0x3800, 0xc000, 0x3400, 0xbc00, 0x4200]);
    await writeFile(
      path.join(dir, 'sae_weights.safetensors'),
      encodeSafetensors({
        W_enc: f64([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [2, 3]),
        b_enc: f64([-1, 0, 1], [3]),
        W_dec: { dtype: 'F16', shape: [3, 2], data: half },
        b_dec: f64([0.125, -0.125], [2]),
      }),
    );
    const loaded = await loadSaeLens(dir);
    expect(loaded.params.W_enc).toEqual(Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]));
    expect(Array.from(loaded.params.W_dec)).toEqual([1, 0.5, -2, 0.25, -1, 3]);
    expect(Array.from(loaded.params.b_dec)).toEqual([0.125, -0.125]);
  });
});

describe('loadSaeLens refuses what it cannot run', () => {
  let root: string;
  let count = 0;
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'monosemantic-saelens-errors-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** A freshly saved valid SAE (d_in 13, d_sae 37) with its cfg.json edited by `edit`. */
  async function savedWith(edit: (cfg: Record<string, unknown>) => void = () => undefined): Promise<string> {
    const dir = path.join(root, `sae-${count++}`);
    await saveSaeLens(dir, randomExport(13, 37, count));
    const cfgPath = path.join(dir, 'cfg.json');
    const cfg = JSON.parse(await readFile(cfgPath, 'utf8'));
    edit(cfg);
    await writeFile(cfgPath, JSON.stringify(cfg));
    return dir;
  }

  async function loadError(dir: string): Promise<SaeLensError> {
    const error = await loadSaeLens(dir).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SaeLensError);
    return error as SaeLensError;
  }

  it('a missing folder, a file instead of a folder, a missing cfg.json or weights file: the path is named', async () => {
    const missing = path.join(root, 'nowhere');
    expect((await loadError(missing)).message).toBe(`${missing}: no such directory`);

    const file = path.join(root, 'a-file');
    await writeFile(file, 'x');
    expect((await loadError(file)).message).toMatch(new RegExp(`^${file}: not a directory`));

    const noCfg = await savedWith();
    await rm(path.join(noCfg, 'cfg.json'));
    const cfgError = await loadError(noCfg);
    expect(cfgError.path).toBe(path.join(noCfg, 'cfg.json'));
    expect(cfgError.message).toMatch(/cfg\.json: not found/);

    const noWeights = await savedWith();
    await rm(path.join(noWeights, 'sae_weights.safetensors'));
    expect((await loadError(noWeights)).message).toMatch(new RegExp(`^${path.join(noWeights, 'sae_weights.safetensors')}: not found`));
  });

  it('architectures other than "standard", and non-ReLU activations', async () => {
    const jumprelu = await loadError(await savedWith((cfg) => (cfg['architecture'] = 'jumprelu')));
    expect(jumprelu.field).toBe('architecture');
    expect(jumprelu.message).toMatch(/architecture: "jumprelu" is not supported: monosemantic runs only standard/);
    const topk = await loadError(
      await savedWith((cfg) => {
        delete cfg['architecture'];
        cfg['activation_fn_str'] = 'topk';
      }),
    );
    expect(topk.message).toMatch(/activation_fn_str: "topk" is not supported/);
    // SAELens 5 saved the same field as activation_fn, with k in activation_fn_kwargs.
    const topk5 = await loadError(
      await savedWith((cfg) => {
        delete cfg['architecture'];
        delete cfg['activation_fn_str'];
        cfg['activation_fn'] = 'topk';
        cfg['activation_fn_kwargs'] = { k: 4 };
      }),
    );
    expect(topk5.field).toBe('activation_fn');
    expect(topk5.message).toMatch(/activation_fn: "topk" is not supported/);
    const relu5 = await savedWith((cfg) => {
      delete cfg['architecture'];
      delete cfg['activation_fn_str'];
      cfg['activation_fn'] = 'relu';
    });
    expect((await loadSaeLens(relu5)).cfg.d_sae).toBe(37);
  });

  it('scaling_factor: all ones (as SAELens once saved with every SAE) is dropped, anything else refused', async () => {
    const { params, tensors } = standardTensors(5);
    const ones = await savedWith((cfg) => (cfg['finetuning_scaling_factor'] = true));
    await writeFile(
      path.join(ones, 'sae_weights.safetensors'),
      encodeSafetensors({ ...tensors, scaling_factor: { dtype: 'F32', shape: [37], data: new Float32Array(37).fill(1) } }),
    );
    const loaded = await loadSaeLens(ones);
    expect(Array.from(loaded.params.W_enc)).toEqual(Array.from(params.W_enc));

    const scaled = await savedWith((cfg) => (cfg['finetuning_scaling_factor'] = true));
    const factor = new Float32Array(37).fill(1);
    factor[5] = 1.5;
    await writeFile(path.join(scaled, 'sae_weights.safetensors'), encodeSafetensors({ ...tensors, scaling_factor: { dtype: 'F32', shape: [37], data: factor } }));
    const error = await loadError(scaled);
    expect(error.field).toBe('scaling_factor');
    expect(error.message).toMatch(/scaling_factor: element 5 is 1\.5: a scaling factor other than ones/);

    const flagOnly = await loadError(await savedWith((cfg) => (cfg['finetuning_scaling_factor'] = true)));
    expect(flagOnly.field).toBe('finetuning_scaling_factor');
  });

  it('normalize_activations other than "none"; expected_average_only_in asks for the factor to be folded', async () => {
    const rescale = await loadError(await savedWith((cfg) => (cfg['normalize_activations'] = 'constant_norm_rescale')));
    expect(rescale.message).toMatch(/normalize_activations: "constant_norm_rescale" is not supported/);
    const layerNorm = await loadError(await savedWith((cfg) => (cfg['normalize_activations'] = 'layer_norm')));
    expect(layerNorm.message).toMatch(/"layer_norm" is not supported/);
    const average = await loadError(await savedWith((cfg) => (cfg['normalize_activations'] = 'expected_average_only_in')));
    expect(average.field).toBe('normalize_activations');
    expect(average.message).toMatch(/"expected_average_only_in".*scaling factor must be folded into the weights first/);
  });

  it('apply_b_dec_to_input: false', async () => {
    const error = await loadError(await savedWith((cfg) => (cfg['apply_b_dec_to_input'] = false)));
    expect(error.field).toBe('apply_b_dec_to_input');
    expect(error.message).toMatch(/apply_b_dec_to_input: false is not supported: monosemantic always subtracts b_dec/);
  });

  it('shapes that disagree with cfg.json: the tensor, its shape and the expected shape are named', async () => {
    const error = await loadError(await savedWith((cfg) => (cfg['d_sae'] = 36)));
    expect(error.path).toMatch(/sae_weights\.safetensors$/);
    expect(error.field).toBe('W_enc');
    expect(error.message).toMatch(/W_enc: has shape \[13, 37\], but cfg\.json's d_in 13, d_sae 36 need \[13, 36\]$/);

    const transposed = await savedWith();
    const params = randomExport(13, 37, 99).params;
    await writeFile(
      path.join(transposed, 'sae_weights.safetensors'),
      encodeSafetensors({
        W_enc: { dtype: 'F32', shape: [13, 37], data: params.W_enc },
        b_enc: { dtype: 'F32', shape: [37], data: params.b_enc },
        W_dec: { dtype: 'F32', shape: [13, 37], data: params.W_dec },
        b_dec: { dtype: 'F32', shape: [13], data: params.b_dec },
      }),
    );
    expect((await loadError(transposed)).message).toMatch(/W_dec: has shape \[13, 37\], but .* need \[37, 13\]$/);

    const badSparsity = await savedWith();
    await writeFile(
      path.join(badSparsity, 'sparsity.safetensors'),
      encodeSafetensors({ sparsity: { dtype: 'F32', shape: [36], data: new Float32Array(36) } }),
    );
    expect((await loadError(badSparsity)).message).toMatch(/sparsity\.safetensors: sparsity: has shape \[36\], but cfg\.json's d_sae 37 need \[37\]$/);
  });

  it('missing, unexpected and non-float tensors, and a truncated file', async () => {
    const dir = await savedWith();
    const weightsPath = path.join(dir, 'sae_weights.safetensors');
    const { params, tensors } = standardTensors(5);
    const { b_dec: _omitted, ...withoutBDec } = tensors;
    await writeFile(weightsPath, encodeSafetensors(withoutBDec));
    expect((await loadError(dir)).message).toMatch(/b_dec: tensor missing \(the file holds W_dec, W_enc, b_enc\)/);

    await writeFile(weightsPath, encodeSafetensors({ ...tensors, threshold: { dtype: 'F32', shape: [37], data: new Float32Array(37) } }));
    expect((await loadError(dir)).message).toMatch(/threshold: unexpected tensor: a standard SAE holds only W_enc, b_enc, W_dec, b_dec/);

    await writeFile(weightsPath, encodeSafetensors({ ...tensors, b_enc: { dtype: 'I32', shape: [37], data: new Int32Array(37) } }));
    expect((await loadError(dir)).message).toMatch(/b_enc: dtype I32 is not supported \(F32, F16, BF16 or F64 expected\)/);

    const whole = encodeSafetensors(tensors);
    await writeFile(weightsPath, whole.subarray(0, whole.length - 10));
    const truncated = await loadError(dir);
    expect(truncated.path).toBe(weightsPath);
    expect(truncated.message).toMatch(/truncated/);
  });

  it('cfg.json fields of the wrong type, or not JSON: the field and its value are named', async () => {
    const dIn = await loadError(await savedWith((cfg) => (cfg['d_in'] = '13')));
    expect(dIn.field).toBe('d_in');
    expect(dIn.message).toMatch(/cfg\.json: d_in: .*expected number.*\(got "13"\)/);

    const noSae = await loadError(await savedWith((cfg) => delete cfg['d_sae']));
    expect(noSae.message).toMatch(/cfg\.json: d_sae: .*\(missing\)/);

    const context = await loadError(await savedWith((cfg) => ((cfg['metadata'] as Record<string, unknown>)['context_size'] = -1)));
    expect(context.field).toBe('metadata.context_size');
    expect(context.message).toMatch(/\(got -1\)/);

    const notJson = await savedWith();
    await writeFile(path.join(notJson, 'cfg.json'), '{"d_in": 13,');
    expect((await loadError(notJson)).message).toMatch(/cfg\.json: not valid JSON/);
  });
});

describe('writeFileAtomic', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'monosemantic-atomic-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('replaces a file and leaves no temporary file behind', async () => {
    const target = path.join(root, 'a.txt');
    await writeFileAtomic(target, 'first');
    await writeFileAtomic(target, Buffer.from('second'));
    expect(await readFile(target, 'utf8')).toBe('second');
    expect(await readdir(root)).toEqual(['a.txt']);
  });

  it('removes its temporary file when the rename fails', async () => {
    const dir = path.join(root, 'fails');
    const target = path.join(dir, 'occupied');
    await mkdir(target, { recursive: true }); // a non-empty directory cannot be replaced by a file
    await writeFile(path.join(target, 'keep'), 'x');
    await expect(writeFileAtomic(target, 'data')).rejects.toThrow();
    expect(await readdir(dir)).toEqual(['occupied']);
  });
});
