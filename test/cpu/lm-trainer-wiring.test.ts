/**
 * What `trainLm` (lib/lm/lm-trainer.ts) hands to each step and to validation, on a tiny model over
 * small token shards written here (a training stream of 23 token ids, so that three steps already
 * move the model away from uniform):
 *   - every metrics record's lr is lmLearningRateAt of the step it was taken at;
 *   - training.weightDecay and training.clipGradNorm reach the optimizer: turning either on changes
 *     the weights after 3 steps, decay shrinks the embedding, and a tight clip shrinks the update;
 *   - the validation loss over a set that is not a multiple of the batch (the last batch padded)
 *     is the mean per-token loss of the exported model's forward over exactly those contexts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { openShardContextStream } from '../../lib/data/shard-contexts.js';
import { writeTokenShard } from '../../lib/data/token-shards.js';
import { decodeSafetensors, tensorToFloat32 } from '../../lib/io/safetensors.js';
import { lmModelConfig, trainLm, type LmTrainSummary } from '../../lib/lm/lm-trainer.js';
import { initGpt2Weights } from '../../lib/lm/init.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { type LmTrainConfigInput, lmLearningRateAt, lmTotalSteps, parseLmTrainConfig } from '../../lib/lm/train-config.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';
import { readMetrics } from '../../lib/sae/metrics-log.js';
import { tempDir } from '../helpers/run-fixtures.js';

const T = 11; // tokens per context, BOS included
const B = 4;
const VAL_CONTEXTS = 7; // not a multiple of B: the second validation batch holds 3 contexts and 1 padding row
let root = '';
let train = '';
let val = '';

beforeAll(async () => {
  root = tempDir('lm-wiring');
  const rng = new Rng(17);
  const ids = Array.from({ length: 23 }, (_, i) => 100 + 37 * i); // a small vocabulary the model can learn
  const draw = (count: number) => Int32Array.from({ length: count }, () => ids[Math.floor(rng.uniform() * ids.length)]!);
  train = path.join(root, 'train.tokens');
  val = path.join(root, 'val.tokens');
  await writeTokenShard(train, draw(3000), 8192);
  // Each context holds T − 1 tokens of the stream after its BOS; 5 spare tokens make no context.
  await writeTokenShard(val, draw(VAL_CONTEXTS * (T - 1) + 5), 8192);
});

function config(name: string, training: Partial<NonNullable<LmTrainConfigInput['training']>> = {}, rest: Partial<LmTrainConfigInput> = {}) {
  return parseLmTrainConfig({
    outDir: path.join(root, name),
    backend: 'cpu',
    seed: 5,
    model: { nLayer: 1, nHead: 2, dModel: 16, dMlp: 24, contextLength: T },
    data: { train: [train], val: [val] },
    training: { batchSize: B, totalSteps: 3, lr: 1e-2, warmupSteps: 0, weightDecay: 0, clipGradNorm: 0, ...training },
    eval: { every: 0, maxBatches: null },
    logging: { every: 1 },
    checkpoints: { every: 0, keep: 1 },
    export: { dtype: 'f32', name: 'wiring' },
    ...rest,
  });
}

/** The final checkpoint's float32 weights, by name. */
function weights(s: LmTrainSummary): Record<string, Float32Array> {
  const { tensors } = decodeSafetensors(readFileSync(path.join(s.checkpoint!, 'weights.safetensors')), 'weights.safetensors');
  return Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, tensorToFloat32(t, k)]));
}

function distance(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s);
}

describe('trainLm wiring', () => {
  it('logs at each step the learning rate lmLearningRateAt gives for that step', async () => {
    const c = config('lr', { totalSteps: 9, warmupSteps: 3, minLrFraction: 0.2 });
    const summary = await trainLm(c);
    const records = (await readMetrics(path.join(summary.outDir, 'metrics.jsonl'))).filter((r) => r.lr !== undefined);
    expect(records.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // Record `step` is written after steps 0 … step − 1: its lr is the one step − 1 ran with.
    for (const r of records) expect(r.lr, `step ${r.step}`).toBe(lmLearningRateAt(c.training, r.step - 1, lmTotalSteps(c)));
  });

  describe('weight decay and clipping reach the optimizer', () => {
    let plain: Record<string, Float32Array>;
    let wte0: Float32Array;
    let wteName = '';
    beforeAll(async () => {
      const c = config('plain');
      plain = weights(await trainLm(c));
      const tokenizer = await Tokenizer.load(path.join(packageRoot(), 'corpus'));
      wte0 = initGpt2Weights(lmModelConfig(c, tokenizer), c.seed, c.model.initStd).wte;
      wteName = Object.keys(plain).find((k) => plain[k]!.length === wte0.length)!;
      expect(wteName).toBeDefined();
    });

    it('weightDecay 0.1 gives other weights than 0, and a smaller token embedding', async () => {
      const decayed = weights(await trainLm(config('decay', { weightDecay: 0.1 })));
      expect(distance(decayed[wteName]!, plain[wteName]!)).toBeGreaterThan(0);
      const sq = (a: Float32Array) => a.reduce((s, v) => s + v * v, 0);
      // Three steps of w ← w − lr·0.1·w at lr 1e-2: about 0.6% off the sum of squares.
      expect(sq(decayed[wteName]!)).toBeLessThan(sq(plain[wteName]!) * (1 - 1e-3));
    });

    it('clipGradNorm 1e-3 gives other weights than 0 (no clipping), and a smaller update', async () => {
      // eps 1e-4 is above the clipped gradients' elements (the whole gradient has norm 1e-3), so
      // Adam's steps shrink with them; unclipped ones are far larger and take steps of about lr.
      const clipped = weights(await trainLm(config('clip', { clipGradNorm: 1e-3, eps: 1e-4 })));
      const unclipped = weights(await trainLm(config('noclip', { clipGradNorm: 0, eps: 1e-4 })));
      expect(distance(clipped[wteName]!, unclipped[wteName]!)).toBeGreaterThan(0);
      expect(distance(clipped[wteName]!, wte0)).toBeLessThan(0.5 * distance(unclipped[wteName]!, wte0));
    });
  });

  it('the validation loss over 7 contexts in batches of 4 is the mean per-token loss of the exported model on those 7', async () => {
    const c = config('val');
    const summary = await trainLm(c);
    using model = await Gpt2Model.load(summary.modelDir!, { backend: 'cpu' });
    const tokenizer = await Tokenizer.load(path.join(packageRoot(), 'corpus'));
    const stream = await openShardContextStream({ paths: [val], contextLength: T, seed: c.seed, bosTokenId: tokenizer.bosTokenId, eosTokenId: tokenizer.eosTokenId, epochs: 1 });
    let sum = 0;
    let count = 0;
    let contexts = 0;
    for (let ids = await stream.next(B); ids; ids = await stream.next(B)) {
      const rows = ids.length / T;
      const { loss } = await model.forward(ids, rows, { loss: true });
      for (const v of loss!.perToken) sum += v;
      count += loss!.perToken.length;
      contexts += rows;
    }
    await stream.close();
    expect(contexts).toBe(VAL_CONTEXTS);
    // Both sides run an fp32 forward of the same weights (here they agree to the bit); 1e-5
    // relative leaves room for fp32 accumulation over 8192 logits in another order. Counting the
    // padding row's 10 targets (BOS after BOS) moves the mean by 2e-3 relative here.
    const want = sum / count;
    expect(Math.abs(summary.valLoss! - want)).toBeLessThan(1e-5 * want);
  });
});
