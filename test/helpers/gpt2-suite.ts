/**
 * The GPT-2 forward pass on one backend against HF transformers fixtures
 * (scripts/fixtures/make_gpt2_fixtures.py: random models, float64 references): logits, the
 * next-token loss and every hook; early stopping; splicing and ablation; KV-cache generation.
 * test/cpu/gpt2.test.ts runs it on the CPU backend, test/gpu/cuda-gpt2.test.ts on CUDA.
 */
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import type { BackendName } from '../../lib/backend.js';
import { readSafetensors, tensorToFloat32 } from '../../lib/io/safetensors.js';
import { generate } from '../../lib/lm/generate.js';
import { addDirection, meanAblate, replaceWith, saeSplice, zeroAblate } from '../../lib/lm/interventions.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { loadGpt2Config } from '../../lib/lm/config.js';
import { loadGpt2Weights } from '../../lib/lm/weights.js';
import { packageRoot } from '../../lib/native/load.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';
import { relError, roundArrayBf16 } from './data.js';
import { expectSameValues } from './same-values.js';

const fixtures = path.join(packageRoot(), 'test/fixtures/gpt2');

async function reference(name: string) {
  const { tensors } = await readSafetensors(path.join(fixtures, name, 'reference.safetensors'));
  const f32 = (key: string) => tensorToFloat32(tensors[key]!, key);
  const idsTensor = tensors.input_ids!;
  const ids = new Int32Array(idsTensor.bytes.slice().buffer);
  const [batch, T] = idsTensor.shape as [number, number];
  return { tensors, f32, ids, batch, T, has: (key: string) => key in tensors };
}

/** The reference hook value as [B·T, width] (hook_pos_embed is stored once for all sequences). */
function asRows(ref: Float32Array, batch: number, shape: number[]): Float32Array {
  if (shape[0] === 1 && batch > 1) {
    const out = new Float32Array(ref.length * batch);
    for (let b = 0; b < batch; b++) out.set(ref, b * ref.length);
    return out;
  }
  return ref;
}

/** Defines the suite for `backend` (call inside a describe that may skip it). */
export function defineGpt2FixtureTests(backend: BackendName): void {
  describe.each(['tiny-gelu-new-tied', 'tiny-relu-untied', 'tiny-gelu-bf16'])('%s', (name) => {
    it('matches HF transformers: logits within 1e-4 relative, loss and every hook', async () => {
      const ref = await reference(name);
      using model = await Gpt2Model.load(path.join(fixtures, name), { backend, precision: 'f32' });
      const result = await model.forward(ref.ids, ref.batch, { logits: true, loss: true, capture: model.hooks.map((h) => h.name) });
      using logits = result.logits!;
      expect(relError(logits.toArray() as Float32Array, ref.f32('logits'))).toBeLessThan(1e-4);
      expect(relError(result.loss!.perToken, ref.f32('loss'))).toBeLessThan(1e-4);
      for (const hook of model.hooks) {
        const got = result.captured[hook.name]!;
        expect(got.shape).toEqual([ref.batch * ref.T, hook.width]);
        const want = asRows(ref.f32(hook.name), ref.batch, ref.tensors[hook.name]!.shape);
        expect(relError(got.toArray() as Float32Array, want), hook.name).toBeLessThan(1e-4);
        got.dispose();
      }
    });

    it('in bf16 matmul precision stays within 2e-2 of the logits', async () => {
      const ref = await reference(name);
      using model = await Gpt2Model.load(path.join(fixtures, name), { backend, precision: 'bf16' });
      const { logits } = await model.forward(ref.ids, ref.batch, { logits: true });
      using l = logits!;
      expect(relError(l.toArray() as Float32Array, ref.f32('logits'))).toBeLessThan(2e-2);
      // Nothing looks inside the MLP there, so its activations went from product to product in
      // bf16; with mlp.hook_post captured they stay f32 until the second product rounds them: the
      // same values (on CUDA, the activation fused into the product's epilogue against its own pass).
      const hook = 'blocks.0.mlp.hook_post';
      const looked = await model.forward(ref.ids, ref.batch, { logits: true, capture: [hook] });
      looked.captured[hook]!.dispose();
      using l2 = looked.logits!;
      const [a, b] = [l.toArray() as Float32Array, l2.toArray() as Float32Array];
      if (backend === 'cpu') expect(Array.from(a)).toEqual(Array.from(b));
      else expect(relError(a, b)).toBeLessThan(1e-6);
    });

    it("in bf16 precision returns bf16 logits on request (logitsDType), the f32 ones rounded, and the loss over them", async () => {
      const ref = await reference(name);
      using model = await Gpt2Model.load(path.join(fixtures, name), { backend, precision: 'bf16' });
      const full = await model.forward(ref.ids, ref.batch, { logits: true, loss: true });
      using l = full.logits!;
      const half = await model.forward(ref.ids, ref.batch, { logits: true, loss: true, logitsDType: 'bf16' });
      using h = half.logits!;
      expect(h.dtype).toBe('bf16');
      expect(Array.from(h.toFloat32())).toEqual(Array.from(roundArrayBf16(l.toArray() as Float32Array)));
      // The loss from the rounded logits, whether they are returned or kept in scratch.
      const lossOnly = await model.forward(ref.ids, ref.batch, { loss: true, logitsDType: 'bf16' });
      expect(Array.from(lossOnly.loss!.perToken)).toEqual(Array.from(half.loss!.perToken));
      expect(relError(half.loss!.perToken, full.loss!.perToken)).toBeLessThan(1e-2);
      expect(half.loss!.perToken).not.toEqual(full.loss!.perToken);
      const last = await model.forward(ref.ids, ref.batch, { logits: 'last', logitsDType: 'bf16' });
      using lastLogits = last.logits!;
      expect(lastLogits.dtype).toBe('bf16');
      await expect(model.forward(ref.ids, ref.batch, { loss: true, logitsDType: 'f16' as 'bf16' })).rejects.toThrow(/logitsDType must be 'f32' or 'bf16' \(got f16\)/);
      using exact = await Gpt2Model.load(path.join(fixtures, name), { backend, precision: 'f32' });
      await expect(exact.forward(ref.ids, ref.batch, { loss: true, logitsDType: 'bf16' })).rejects.toThrow(/logitsDType 'bf16' needs the model's precision 'bf16' \(it is 'f32'\)/);
    });
  });

  describe('hooks and interventions', () => {
    const dir = path.join(fixtures, 'tiny-gelu-new-tied');

    it('stops after the last captured hook, with the same values as a full forward', async () => {
      const ref = await reference('tiny-gelu-new-tied');
      // fp32 matmuls for the 1e-4 comparison with HF (CUDA's default precision is bf16).
      using model = await Gpt2Model.load(dir, { backend, precision: 'f32' });
      const early = await model.forward(ref.ids, ref.batch, { capture: ['blocks.0.mlp.hook_post'] });
      expect(early.logits).toBeNull();
      using post = early.captured['blocks.0.mlp.hook_post']!;
      expect(relError(post.toArray() as Float32Array, ref.f32('blocks.0.mlp.hook_post'))).toBeLessThan(1e-4);
      const full = await model.forward(ref.ids, ref.batch, { logits: true, capture: ['blocks.0.mlp.hook_post'] });
      full.logits!.dispose();
      using fullPost = full.captured['blocks.0.mlp.hook_post']!;
      expect(post.toArray()).toEqual(fullPost.toArray());
      // A captured activation is the caller's: later forwards (which stop at the same hook, or
      // pass it and capture an earlier one) leave it as it was.
      const first = post.toArray();
      const other = await model.forward(ref.ids.slice().reverse(), ref.batch, { capture: ['blocks.0.mlp.hook_post', 'blocks.0.hook_resid_pre'] });
      using otherPost = other.captured['blocks.0.mlp.hook_post']!;
      using otherPre = other.captured['blocks.0.hook_resid_pre']!;
      const otherPreValues = otherPre.toArray();
      const again = await model.forward(ref.ids, ref.batch, { capture: ['blocks.0.mlp.hook_post'] });
      using againPost = again.captured['blocks.0.mlp.hook_post']!;
      expect(post.toArray()).toEqual(first);
      expect(againPost.toArray()).toEqual(first);
      expect(otherPost.toArray()).not.toEqual(first);
      expect(otherPre.toArray()).toEqual(otherPreValues); // a copy: the residual stream is rewritten by each forward
      await expect(model.forward(ref.ids, ref.batch, { capture: ['blocks.7.hook_resid_pre'] })).rejects.toThrow(/unknown hook 'blocks\.7\.hook_resid_pre'/);
      await expect(model.forward(Int32Array.of(1, 2, 999), 1, { logits: true })).rejects.toThrow(/ids\[2\] = 999 is outside the vocabulary/);
    });

    // Where no one looks at a block's hook_attn_out or hook_mlp_out, the branch's product adds itself
    // to the residual stream (linear's accumulate); looked at, it goes through the hook and add():
    // the same fp32 sums. Where no one looks at attn.hook_z, at bf16 the attention writes it in bf16,
    // the operand the output product rounds it to. So the same logits to the bit, at both precisions.
    it('capturing attn.hook_z and the branches (hook_attn_out, hook_mlp_out) leaves the logits the same to the bit', async () => {
      const ref = await reference('tiny-gelu-new-tied');
      for (const precision of ['f32', 'bf16'] as const) {
        using model = await Gpt2Model.load(dir, { backend, precision });
        const plain = await model.forward(ref.ids, ref.batch, { logits: true });
        using plainLogits = plain.logits!;
        const hooks = model.hooks.map((h) => h.name).filter((n) => n.endsWith('attn.hook_z') || n.endsWith('hook_attn_out') || n.endsWith('hook_mlp_out'));
        expect(hooks.length).toBe(3 * model.config.nLayer);
        const looked = await model.forward(ref.ids, ref.batch, { logits: true, capture: hooks });
        using lookedLogits = looked.logits!;
        for (const h of hooks) looked.captured[h]!.dispose();
        expectSameValues(lookedLogits.toArray() as Float32Array, plainLogits.toArray() as Float32Array, `logits at ${precision}`);
      }
    });

    it('replacing mlp.hook_post with itself leaves the loss unchanged', async () => {
      const ref = await reference('tiny-gelu-new-tied');
      using model = await Gpt2Model.load(dir, { backend });
      const clean = await model.forward(ref.ids, ref.batch, { loss: true });
      const spliced = await model.forward(ref.ids, ref.batch, {
        loss: true,
        interventions: {
          'blocks.0.mlp.hook_post': replaceWith((x) => {
            const copy = Tensor.empty(x.shape, { backend });
            copy.copyFrom(x);
            return copy;
          }),
        },
      });
      expect(spliced.loss!.mean).toBe(clean.loss!.mean);
    });

    it('zero-ablating mlp.hook_post equals zeroing the MLP output weights', async () => {
      const ref = await reference('tiny-gelu-new-tied');
      const config = await loadGpt2Config(dir);
      const weights = await loadGpt2Weights(dir, config);
      using model = Gpt2Model.fromWeights(config, weights, { backend });
      const ablated = await model.forward(ref.ids, ref.batch, { logits: true, interventions: { 'blocks.1.mlp.hook_post': zeroAblate() } });
      weights.layers[1]!.fcProjW.fill(0);
      using zeroed = Gpt2Model.fromWeights(config, weights, { backend });
      const reference_ = await zeroed.forward(ref.ids, ref.batch, { logits: true });
      using a = ablated.logits!;
      using b = reference_.logits!;
      expect(relError(a.toArray() as Float32Array, b.toArray() as Float32Array)).toBeLessThan(1e-6);
    });

    it('mean-ablation writes the mean into every row; steering adds the direction', async () => {
      const ref = await reference('tiny-gelu-new-tied');
      using model = await Gpt2Model.load(dir, { backend });
      const mean = Float32Array.from({ length: 36 }, (_, i) => i / 10);
      const r = await model.forward(ref.ids, ref.batch, { capture: ['blocks.0.hook_resid_mid'], interventions: { 'blocks.0.hook_resid_mid': meanAblate(mean) } });
      using mid = r.captured['blocks.0.hook_resid_mid']!;
      const rows = mid.toArray() as Float32Array;
      for (let i = 0; i < rows.length; i++) expect(rows[i]).toBe(mean[i % 36]);
      const dir2 = Float32Array.from({ length: 36 }, (_, i) => (i % 3) - 1);
      const s = await model.forward(ref.ids, ref.batch, { capture: ['blocks.0.hook_resid_pre'], interventions: { 'blocks.0.hook_resid_pre': addDirection(dir2, 2.5) } });
      using pre = s.captured['blocks.0.hook_resid_pre']!;
      const got = pre.toArray() as Float32Array;
      const base = ref.f32('blocks.0.hook_resid_pre');
      for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - (base[i]! + 2.5 * dir2[i % 36]!))).toBeLessThan(1e-5);
    });

    it('splices an SAE: reconstruction without the error term; clamping a feature adds (v − f) W_dec[i]', async () => {
      const ref = await reference('tiny-gelu-new-tied');
      using model = await Gpt2Model.load(dir, { backend });
      using sae = SparseAutoencoder.create({ dIn: 76, dSae: 40, seed: 2, backend });
      const hook = 'blocks.0.mlp.hook_post';
      const base = await model.forward(ref.ids, ref.batch, { capture: [hook] });
      using x = base.captured[hook]!;
      using f = await sae.encode(x);
      using xhat = await sae.decode(f);
      const recon = await model.forward(ref.ids, ref.batch, { capture: [hook], interventions: { [hook]: saeSplice(sae) } });
      using r = recon.captured[hook]!;
      expect(r.toArray()).toEqual(xhat.toArray());
      const feature = 7;
      const clamped = await model.forward(ref.ids, ref.batch, { capture: [hook], interventions: { [hook]: saeSplice(sae, { keepError: true, clamp: { [feature]: 3 } }) } });
      using c = clamped.captured[hook]!;
      const fv = f.toArray() as Float32Array;
      const W = sae.readParameters().W_dec;
      const xv = x.toArray() as Float32Array;
      const cv = c.toArray() as Float32Array;
      for (let row = 0; row < ref.batch * ref.T; row++) {
        for (let j = 0; j < 76; j++) {
          const want = xv[row * 76 + j]! + (3 - fv[row * 40 + feature]!) * W[feature * 76 + j]!;
          expect(Math.abs(cv[row * 76 + j]! - want)).toBeLessThan(1e-5);
        }
      }
    });
  });

  describe('generation', () => {
    const dir = path.join(fixtures, 'tiny-gelu-new-tied');

    it('KV-cache greedy generation equals the no-cache forward’s greedy continuation', async () => {
      using model = await Gpt2Model.load(dir, { backend });
      const prompt = Int32Array.of(5, 17, 200, 3);
      const cached = await generate(model, prompt, { maxNewTokens: 12, greedy: true });
      let seq = Array.from(prompt);
      const V = model.config.vocabSize;
      for (let i = 0; i < 12; i++) {
        const { logits } = await model.forward(Int32Array.from(seq), 1, { logits: true });
        using l = logits!;
        const last = l.readRange((seq.length - 1) * V, V) as Float32Array;
        let best = 0;
        for (let v = 1; v < V; v++) if (last[v]! > last[best]!) best = v;
        seq = [...seq, best];
      }
      expect(Array.from(cached)).toEqual(seq.slice(prompt.length));
    });

    it('a forward in two cached parts gives the logits of one pass', async () => {
      using model = await Gpt2Model.load(dir, { backend });
      const ids = Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 37) % 301);
      const whole = await model.forward(ids, 2, { logits: true });
      using cache = model.createCache(2, 9);
      const part1 = ids.filter((_, i) => i % 9 < 5);
      const part2 = ids.filter((_, i) => i % 9 >= 5);
      const a = await model.forward(part1, 2, { cache, logits: true });
      const b = await model.forward(part2, 2, { cache, logits: true });
      expect(cache.length).toBe(9);
      using w = whole.logits!;
      using la = a.logits!;
      using lb = b.logits!;
      const V = 301;
      const wv = w.toArray() as Float32Array;
      const av = la.toArray() as Float32Array;
      const bv = lb.toArray() as Float32Array;
      for (let s = 0; s < 2; s++) {
        for (let t = 0; t < 9; t++) {
          const got = t < 5 ? av.subarray((s * 5 + t) * V, (s * 5 + t + 1) * V) : bv.subarray((s * 4 + t - 5) * V, (s * 4 + t - 4) * V);
          expect(relError(got, wv.subarray((s * 9 + t) * V, (s * 9 + t + 1) * V))).toBeLessThan(1e-5);
        }
      }
    });

    it('sampling is seeded, honours top-k, and rejects bad options', async () => {
      using model = await Gpt2Model.load(dir, { backend });
      const prompt = Int32Array.of(1, 2, 3);
      const a = await generate(model, prompt, { maxNewTokens: 8, temperature: 1.3, topP: 0.9, seed: 4 });
      const b = await generate(model, prompt, { maxNewTokens: 8, temperature: 1.3, topP: 0.9, seed: 4 });
      expect(Array.from(a)).toEqual(Array.from(b));
      const greedy = await generate(model, prompt, { maxNewTokens: 8, greedy: true });
      const top1 = await generate(model, prompt, { maxNewTokens: 8, topK: 1, seed: 9 });
      expect(Array.from(top1)).toEqual(Array.from(greedy));
      // The last new token is not fed back: 3 + 22 − 1 = 24 positions fit, one more does not.
      expect((await generate(model, prompt, { maxNewTokens: 22, greedy: true })).length).toBe(22);
      await expect(generate(model, prompt, { maxNewTokens: 23 })).rejects.toThrow(/exceed the model's n_positions 24/);
      await expect(generate(model, prompt, { maxNewTokens: 2, topP: 0 })).rejects.toThrow(RangeError);
    });
  });
}
