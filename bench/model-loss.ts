/**
 * A model's next-token loss on the first contexts of a token shard, as monosemantic computes it
 * (CPU backend, fp32), with those contexts written as JSON for bench/reference/hf_model_loss.py,
 * which computes HF transformers' loss on the same ids: the check that a model trained here loads
 * in HF as the same function (the shipped models' README quotes it).
 *
 *   node dist/bench/model-loss.js [--model models/a] [--shard corpus/val.tokens] [--contexts 8] [--json ids.json]
 *
 * Contexts are formed as the trainer's validation forms them (openShardContextStream: the
 * tokenizer's BOS, then the shard's tokens, its model's n_positions long), seed 0.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { Command } from 'commander';

import { openShardContextStream } from '../lib/data/shard-contexts.js';
import { Gpt2Model } from '../lib/lm/model.js';
import { Tokenizer } from '../lib/lm/tokenizer.js';
import { packageRoot } from '../lib/native/load.js';

const program = new Command('model-loss')
  .option('--model <dir>', 'HF GPT-2 model folder', path.join(packageRoot(), 'models/a'))
  .option('--shard <file>', 'token shard', path.join(packageRoot(), 'corpus/val.tokens'))
  .option('--contexts <n>', 'contexts from the start of the shard', '8')
  .option('--json <file>', 'write {model, contexts: ids[][], loss: per-context mean[]} here')
  .parse();
const o = program.opts<{ model: string; shard: string; contexts: string; json?: string }>();
const n = Number(o.contexts);
if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`--contexts must be a positive whole number (got ${o.contexts})`);

using model = await Gpt2Model.load(o.model, { backend: 'cpu', precision: 'f32' });
const tokenizer = await Tokenizer.load(o.model);
const T = model.config.nPositions;
const stream = await openShardContextStream({ paths: [o.shard], contextLength: T, seed: 0, bosTokenId: tokenizer.bosTokenId, eosTokenId: tokenizer.eosTokenId });
const ids = await stream.next(n);
await stream.close();
if (!ids || ids.length !== n * T) throw new RangeError(`${o.shard} holds fewer than ${n} contexts of ${T} tokens`);
const { loss } = await model.forward(ids, n, { loss: true });
const perContext = Array.from({ length: n }, (_, b) => {
  const row = loss!.perToken.subarray(b * (T - 1), (b + 1) * (T - 1));
  return row.reduce((s, v) => s + v, 0) / (T - 1);
});
console.log(`monosemantic (cpu, fp32), ${o.model}: mean next-token loss ${loss!.mean.toFixed(7)} over ${n} contexts of ${T} tokens`);
if (o.json) {
  const contexts = Array.from({ length: n }, (_, b) => Array.from(ids.subarray(b * T, (b + 1) * T)));
  writeFileSync(o.json, `${JSON.stringify({ model: o.model, contexts, loss: perContext, mean: loss!.mean })}\n`);
}
