/**
 * GPT-2-family forward pass throughput on the active backend, with random weights:
 *   - the paper's 1-layer model (d_model 128, d_mlp 512, 4 heads, ReLU): harvesting
 *     blocks.0.mlp.hook_post (the forward stops there; HF's reference runs its base model without
 *     the LM head), the full forward returning its logits (the "full forward"), and the
 *     full forward with the loss (cross-entropy over the logits, read back); at bf16 each of the
 *     last two also with bf16 logits (logitsDType, cases logits-bf16 and forward-bf16), as HF's
 *     bf16 model returns them;
 *   - GPT-2 small's shape (12 layers, d_model 768): the full forward, at bf16 also with bf16 logits
 *     (case gpt2-bf16).
 *
 *   node dist/bench/lm-forward.js [--backend cpu|cuda] [--precision f32|bf16] [--batch 8] [--ctx 256]
 *                                 [--gpt2-batch 1] [--gpt2-ctx 128] [--iters 5] [--json FILE]
 *
 * FLOPs per token are counted as 2 × (matrix-product parameters used) + causal attention's
 * 2·2·C·T/2 per layer (useful work: T/2 keys on average). Each row also gives the median time
 * until the forward had been queued: on CUDA, where operations settle once queued, the host's
 * part of the wall time (the rest is the device catching up). bench/reference/hf_forward.py times HF
 * transformers on the same shapes.
 */
import { writeFileSync } from 'node:fs';

import { Command } from 'commander';

import { resolveBackend, synchronize } from '../lib/backend.js';
import type { Gpt2Config } from '../lib/lm/config.js';
import { Gpt2Model } from '../lib/lm/model.js';
import type { MatmulPrecision } from '../lib/lm/ops.js';
import type { Gpt2Weights } from '../lib/lm/weights.js';
import { Rng } from '../lib/random.js';
import { median } from './median.js';

function randomWeights(c: Gpt2Config, seed: number): Gpt2Weights {
  const rng = new Rng(seed);
  const normal = (n: number, std = 0.02) => rng.fillNormal(new Float32Array(n), std);
  const ones = (n: number) => new Float32Array(n).fill(1);
  const C = c.dModel;
  const M = c.dMlp;
  return {
    wte: normal(c.vocabSize * C),
    wpe: normal(c.nPositions * C),
    layers: Array.from({ length: c.nLayer }, () => ({
      ln1W: ones(C), ln1B: normal(C), attnW: normal(C * 3 * C), attnB: normal(3 * C), projW: normal(C * C), projB: normal(C),
      ln2W: ones(C), ln2B: normal(C), fcW: normal(C * M), fcB: normal(M), fcProjW: normal(M * C), fcProjB: normal(C),
    })),
    lnFW: ones(C),
    lnFB: normal(C),
    lmHead: null,
    sourceDtype: 'F32',
  };
}

function config(nLayer: number, dModel: number, nHead: number, dMlp: number, vocabSize: number, nPositions: number, activation: Gpt2Config['activation']): Gpt2Config {
  return { nLayer, nHead, dModel, dMlp, nPositions, vocabSize, activation, layerNormEps: 1e-5, tiedEmbeddings: true, scaleAttnWeights: true, bosTokenId: null, eosTokenId: null };
}

/** Useful FLOPs per token of a full forward at context T (matrix products + causal attention). */
function flopsPerToken(c: Gpt2Config, T: number, withUnembedding: boolean, layers = c.nLayer): number {
  const C = c.dModel;
  const perLayer = 2 * (C * 3 * C + C * C + 2 * C * c.dMlp) + 2 * 2 * C * (T / 2);
  return layers * perLayer + (withUnembedding ? 2 * C * c.vocabSize : 0);
}

interface Row {
  name: string;
  tokens: number;
  medianMs: number;
  /** Median time until the forward had been queued (CUDA operations settle once queued): the host's part. */
  queuedMs: number;
  tokensPerSec: number;
  gflops: number;
}

async function time(label: string, model: Gpt2Model, batch: number, T: number, iters: number, run: (ids: Int32Array) => Promise<void>, flops: number): Promise<Row> {
  const rng = new Rng(7);
  const ids = Int32Array.from({ length: batch * T }, () => rng.int(model.config.vocabSize));
  await run(ids); // warm-up
  synchronize(model.backend); // finished before the first timed forward
  const times: number[] = [];
  const queued: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await run(ids);
    queued.push(performance.now() - t0);
    synchronize(model.backend);
    times.push(performance.now() - t0);
  }
  const ms = median(times);
  const tokens = batch * T;
  return { name: label, tokens, medianMs: ms, queuedMs: median(queued), tokensPerSec: (tokens * 1000) / ms, gflops: (flops * tokens) / ms / 1e6 };
}

const program = new Command('lm-forward')
  .option('--backend <name>', 'cpu or cuda')
  .option('--precision <p>', 'f32 or bf16 matrix products', 'f32')
  .option('--batch <n>', 'sequences for the 1-layer model', '8')
  .option('--ctx <n>', 'context for the 1-layer model', '256')
  .option('--gpt2-batch <n>', 'sequences for GPT-2 small', '1')
  .option('--gpt2-ctx <n>', 'context for GPT-2 small', '128')
  .option('--iters <n>', 'timed runs per case', '5')
  .option('--cases <list>', 'which cases: harvest, logits, logits-bf16, forward, forward-bf16, gpt2, gpt2-bf16 (those with bf16 at bf16 only; comma-separated)', 'harvest,logits,logits-bf16,forward,forward-bf16,gpt2,gpt2-bf16')
  .option('--json <file>', 'also write the rows as JSON')
  .parse();
const o = program.opts<{ backend?: 'cpu' | 'cuda'; precision: MatmulPrecision; batch: string; ctx: string; gpt2Batch: string; gpt2Ctx: string; iters: string; cases: string; json?: string }>();
const cases = new Set(o.cases.split(','));
const caseNames = ['harvest', 'logits', 'logits-bf16', 'forward', 'forward-bf16', 'gpt2', 'gpt2-bf16'];
for (const c of cases) if (!caseNames.includes(c)) throw new RangeError(`--cases: ${caseNames.join(', ')}; got '${c}'`);
const backend = resolveBackend(o.backend);
const iters = Number(o.iters);
const rows: Row[] = [];

const paper = config(1, 128, 4, 512, 4096, 1024, 'relu');
if (['harvest', 'logits', 'logits-bf16', 'forward', 'forward-bf16'].some((c) => cases.has(c))) {
  using model = Gpt2Model.fromWeights(paper, randomWeights(paper, 1), { backend, precision: o.precision });
  const [B, T] = [Number(o.batch), Number(o.ctx)];
  if (cases.has('harvest')) rows.push(await time(`1-layer d128: harvest mlp.hook_post (B ${B} × T ${T})`, model, B, T, iters, async (ids) => {
    const r = await model.forward(ids, B, { capture: ['blocks.0.mlp.hook_post'] });
    r.captured['blocks.0.mlp.hook_post']!.dispose();
  }, flopsPerToken(paper, T, false) - 2 * paper.dMlp * paper.dModel)); // stops before the MLP's output product and the unembedding
  if (cases.has('logits')) rows.push(await time(`1-layer d128: full forward + logits (B ${B} × T ${T})`, model, B, T, iters, async (ids) => {
    const r = await model.forward(ids, B, { logits: true });
    r.logits!.dispose();
  }, flopsPerToken(paper, T, true)));
  if (cases.has('forward')) rows.push(await time(`1-layer d128: full forward + loss (B ${B} × T ${T})`, model, B, T, iters, async (ids) => {
    await model.forward(ids, B, { loss: true });
  }, flopsPerToken(paper, T, true)));
  // At bf16, also with the logits in bf16 (logitsDType), as HF's bf16 model returns them.
  if (o.precision === 'bf16') {
    if (cases.has('logits-bf16')) rows.push(await time(`1-layer d128: full forward + bf16 logits (B ${B} × T ${T})`, model, B, T, iters, async (ids) => {
      const r = await model.forward(ids, B, { logits: true, logitsDType: 'bf16' });
      r.logits!.dispose();
    }, flopsPerToken(paper, T, true)));
    if (cases.has('forward-bf16')) rows.push(await time(`1-layer d128: full forward + loss over bf16 logits (B ${B} × T ${T})`, model, B, T, iters, async (ids) => {
      await model.forward(ids, B, { loss: true, logitsDType: 'bf16' });
    }, flopsPerToken(paper, T, true)));
  }
}
const gpt2 = config(12, 768, 12, 3072, 50257, 1024, 'gelu_new');
if (cases.has('gpt2') || (cases.has('gpt2-bf16') && o.precision === 'bf16')) {
  using model = Gpt2Model.fromWeights(gpt2, randomWeights(gpt2, 2), { backend, precision: o.precision });
  const [B, T] = [Number(o.gpt2Batch), Number(o.gpt2Ctx)];
  const gpt2Iters = Math.max(2, Math.ceil(iters / 2));
  if (cases.has('gpt2')) rows.push(await time(`GPT-2 small: full forward + logits (B ${B} × T ${T})`, model, B, T, gpt2Iters, async (ids) => {
    const r = await model.forward(ids, B, { logits: true });
    r.logits!.dispose();
  }, flopsPerToken(gpt2, T, true)));
  // With the logits in bf16, as HF's bf16 model returns them (half the 50,257-wide rows' bytes).
  if (cases.has('gpt2-bf16') && o.precision === 'bf16') rows.push(await time(`GPT-2 small: full forward + bf16 logits (B ${B} × T ${T})`, model, B, T, gpt2Iters, async (ids) => {
    const r = await model.forward(ids, B, { logits: true, logitsDType: 'bf16' });
    r.logits!.dispose();
  }, flopsPerToken(gpt2, T, true)));
}

console.log(`backend ${backend}, precision ${o.precision}`);
console.log('| case | tokens | median ms | of which queueing, ms | tokens/s | GFLOP/s |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) console.log(`| ${r.name} | ${r.tokens} | ${r.medianMs.toFixed(2)} | ${r.queuedMs.toFixed(2)} | ${Math.round(r.tokensPerSec).toLocaleString('en-US')} | ${r.gflops.toFixed(1)} |`);
if (o.json) writeFileSync(o.json, `${JSON.stringify({ backend, precision: o.precision, rows }, null, 2)}\n`);
