// Run by test/gpu/cuda-async.test.ts in a child process (CUDA's operation mode is read when the
// backend starts): a few bf16 SAE steps, a GPT-2 forward and a model forward through the tiled
// attention, with tensors disposed right after the operations that read them are queued. Prints
// one JSON line: the mode the backend reports and SHA-256 digests of every result.
// PROBE_BACKEND=cpu runs it on the CPU backend (a check of the script itself).
import { createHash } from 'node:crypto';
import path from 'node:path';

import { nativeAddon, synchronize } from '../../dist/lib/backend.js';
import { initGpt2Weights } from '../../dist/lib/lm/init.js';
import { Gpt2Model } from '../../dist/lib/lm/model.js';
import { Gpt2Training } from '../../dist/lib/lm/training-model.js';
import { packageRoot } from '../../dist/lib/native/load.js';
import { Rng } from '../../dist/lib/random.js';
import { SparseAutoencoder } from '../../dist/lib/sae/sae.js';
import { Tensor } from '../../dist/lib/tensor.js';

const digest = (arrays) => {
  const h = createHash('sha256');
  for (const a of arrays) h.update(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  return h.digest('hex');
};
const backend = process.env.PROBE_BACKEND ?? 'cuda';
const rng = new Rng(11);

// SAE: five steps; each batch is uploaded into a fresh tensor and disposed once the step is queued.
const sae = SparseAutoencoder.create({ dIn: 96, dSae: 1000, backend, precision: 'bf16', seed: 3, lr: 1e-3 });
const losses = [];
for (let s = 0; s < 5; s++) {
  const x = Tensor.from(rng.fillNormal(new Float32Array(257 * 96)), [257, 96], { backend });
  const stats = await sae.step(x);
  x.dispose();
  losses.push(stats.loss);
}
const p = sae.readParameters();
const saeDigest = digest([p.W_enc, p.b_enc, p.W_dec, p.b_dec, Float64Array.from(losses)]);
sae.dispose();

// GPT-2 forward with logits (warp-per-query attention: head size 9) and a 1-layer model with
// 32-wide heads through the tiled attention (no cache beyond the sequences).
const fixture = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');
const model = await Gpt2Model.load(fixture, { backend });
const ids = Int32Array.from({ length: 3 * 20 }, (_, i) => (i * 37) % model.config.vocabSize);
const r = await model.forward(ids, 3, { logits: true, loss: true, capture: ['blocks.0.mlp.hook_post'] });
const logits = r.logits.toFloat32();
const post = r.captured['blocks.0.mlp.hook_post'].toFloat32();
r.logits.dispose();
r.captured['blocks.0.mlp.hook_post'].dispose();
model.dispose();

const small = { nLayer: 1, nHead: 2, dModel: 64, dMlp: 128, nPositions: 150, vocabSize: 300, activation: 'relu', layerNormEps: 1e-5, tiedEmbeddings: true, scaleAttnWeights: true, bosTokenId: 0, eosTokenId: 0 };
const tokens = Int32Array.from({ length: 2 * 150 }, (_, i) => (i * 53 + 7) % 300);
const tiled = Gpt2Model.fromWeights(small, initGpt2Weights(small, 4), { backend });
const t = await tiled.forward(tokens, 2, { logits: true });
const tiledLogits = t.logits.toFloat32();
t.logits.dispose();
tiled.dispose();
// Two training steps of the same model (the tiled attention backward).
const trainer = new Gpt2Training(small, initGpt2Weights(small, 4), { batch: 2, T: 150, backend });
const targets = Int32Array.from(tokens, (_, i) => ((i + 1) % 150 === 0 ? -1 : tokens[i + 1]));
const settings = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipGradNorm: 1 };
const trainLosses = [];
for (let s = 0; s < 2; s++) trainLosses.push((await trainer.step(tokens, targets, settings)).loss);
trainer.dispose();

synchronize(backend);
console.log(
  JSON.stringify({
    asyncOps: nativeAddon().backendInfo(backend).asyncOps,
    sae: saeDigest,
    losses,
    logits: digest([logits]),
    hook: digest([post]),
    loss: r.loss.mean,
    tiledLogits: digest([tiledLogits]),
    trainLosses,
  }),
);
