/**
 * Language-model training throughput (one full step: forward, fused softmax–cross-entropy,
 * backward, global-norm clipping, AdamW) on the active backend, for the paper's one-layer model
 * (d_model 128, d_mlp 512, 4 heads, ReLU, vocab 8192, tied embeddings), random init and tokens.
 *
 *   node dist/bench/lm-train.js [--backend cpu|cuda] [--precision f32|bf16] [--batch 16] [--ctx 256] [--iters 10] [--json FILE]
 *
 * Two figures: a step completed on its own (median of --iters, the loss read back after each, as
 * bench/reference/hf_train.py times HF transformers' GPT2LMHeadModel on the same step), and --iters
 * steps queued as `lm train` runs them (statistics read once at the end; the wall time over the
 * steps). FLOPs per token: 6 × (matrix-product parameters, the unembedding included) + causal
 * attention's 3 × 2·2·C·T/2 (forward and the two backward products); the fused cross-entropy
 * (MONOSEMANTIC_CROSS_ENTROPY=fused) recomputes the logits in its backward, which is not counted.
 */
import { writeFileSync } from 'node:fs';

import { Command } from 'commander';

import { resolveBackend, synchronize } from '../lib/backend.js';
import type { Gpt2Config } from '../lib/lm/config.js';
import { initGpt2Weights } from '../lib/lm/init.js';
import type { MatmulPrecision } from '../lib/lm/ops.js';
import { Gpt2Training } from '../lib/lm/training-model.js';
import { Rng } from '../lib/random.js';
import { median } from './median.js';

const program = new Command('lm-train')
  .option('--backend <name>', 'cpu or cuda (default: the active backend)')
  .option('--precision <p>', 'f32 or bf16 (default: bf16 on CUDA, f32 on the CPU)')
  .option('--batch <n>', 'contexts per step', '16')
  .option('--ctx <n>', 'tokens per context', '256')
  .option('--iters <n>', 'timed steps', '10')
  .option('--json <file>', 'also write the result as JSON')
  .parse();
const o = program.opts<{ backend?: 'cpu' | 'cuda'; precision?: MatmulPrecision; batch: string; ctx: string; iters: string; json?: string }>();
const backend = resolveBackend(o.backend);
const [B, T, iters] = [Number(o.batch), Number(o.ctx), Number(o.iters)];
const config: Gpt2Config = { nLayer: 1, nHead: 4, dModel: 128, dMlp: 512, nPositions: T, vocabSize: 8192, activation: 'relu', layerNormEps: 1e-5, tiedEmbeddings: true, scaleAttnWeights: true, bosTokenId: 8191, eosTokenId: 8191 };
const model = new Gpt2Training(config, initGpt2Weights(config, 1), { batch: B, T, backend, ...(o.precision ? { precision: o.precision } : {}) });
const rng = new Rng(2);
const ids = Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize));
const targets = Int32Array.from({ length: B * T }, (_, i) => ((i + 1) % T === 0 ? -1 : ids[i + 1]!));
const settings = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipGradNorm: 1 };
for (let i = 0; i < 2; i++) await model.step(ids, targets, settings); // warm-up
const times: number[] = [];
for (let i = 0; i < iters; i++) {
  const t0 = performance.now();
  await model.step(ids, targets, settings); // reads the loss back: the step is complete
  times.push(performance.now() - t0);
}
const q0 = performance.now();
for (let i = 0; i < iters; i++) await model.queueStep(ids, targets, settings);
const queuedLosses = model.readStats().losses;
synchronize(backend);
const queuedMs = (performance.now() - q0) / iters;
if (!queuedLosses.every(Number.isFinite)) throw new Error('a queued step gave a non-finite loss');
model.dispose();
const ms = median(times);
const C = config.dModel;
const matrixParams = config.nLayer * (4 * C * C + 2 * C * config.dMlp) + config.vocabSize * C;
const flopsPerToken = 6 * matrixParams + 3 * config.nLayer * 2 * 2 * C * (T / 2);
const tokens = B * T;
const result = {
  backend,
  precision: model.precision,
  crossEntropy: model.crossEntropy,
  batch: B,
  ctx: T,
  msPerStep: ms,
  tokensPerSec: (tokens * 1000) / ms,
  gflops: (flopsPerToken * tokens) / ms / 1e6,
  queuedMsPerStep: queuedMs,
  queuedTokensPerSec: (tokens * 1000) / queuedMs,
};
console.log(`monosemantic ${backend} ${result.precision}, cross-entropy ${result.crossEntropy}: ${ms.toFixed(1)} ms/step (median of ${iters}), ${Math.round(result.tokensPerSec).toLocaleString('en-US')} tokens/s, ${result.gflops.toFixed(1)} GFLOP/s`);
console.log(`monosemantic ${backend} ${result.precision}, cross-entropy ${result.crossEntropy}, ${iters} steps queued as lm train runs them: ${queuedMs.toFixed(1)} ms/step, ${Math.round(result.queuedTokensPerSec).toLocaleString('en-US')} tokens/s`);
if (o.json) writeFileSync(o.json, JSON.stringify(result, null, 2));
