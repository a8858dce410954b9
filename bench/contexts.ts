/**
 * Text corpus → contexts: tokens/s of the context stream (lib/data/contexts.ts) with the documents
 * tokenised on the calling thread (0) and on 1, 2, … worker threads, read in batches of 128
 * contexts as a harvest reads them. This is the rate at which a text corpus can feed the model;
 * token shards skip it.
 *
 *   node dist/bench/contexts.js [--corpus PATHS] [--threads 0,1,2,4,8] [--context 256]
 *        [--sample-out FILE] [--json FILE]
 *
 * Default corpus: the shipped training sample (4M tokens) decoded back to text (its
 * documents as JSONL): e-mail headers, HTML, base64 and prose. --sample-out keeps that JSONL (for
 * bench/pipeline.js --corpus).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';

import { Command } from 'commander';

import { openContextStream } from '../lib/data/contexts.js';
import { openTokenShard } from '../lib/data/token-shards.js';
import { TokenizerPool } from '../lib/data/tokenizer-pool.js';
import { Tokenizer } from '../lib/lm/tokenizer.js';
import { packageRoot } from '../lib/native/load.js';

const program = new Command('contexts')
  .option('--corpus <paths>', 'text, JSONL or Parquet files (comma-separated); default: the shipped sample decoded')
  .option('--threads <list>', 'tokenizer worker threads to time, comma-separated', '0,1,2,4,8')
  .option('--context <n>', 'tokens per context', '256')
  .option('--sample-out <file>', 'keep the decoded sample corpus (JSONL) here')
  .option('--json <file>', 'also write the rows as JSON')
  .parse();
const o = program.opts<{ corpus?: string; threads: string; context: string; sampleOut?: string; json?: string }>();
// Ascending: a pool only grows, so each count is timed on exactly that many workers.
const threadCounts = o.threads.split(',').map(Number).sort((a, b) => a - b);
const contextLength = Number(o.context);
if (!threadCounts.every((t) => Number.isSafeInteger(t) && t >= 0)) throw new RangeError(`--threads: non-negative integers, got '${o.threads}'`);
if (!Number.isSafeInteger(contextLength) || contextLength < 2) throw new RangeError(`--context: an integer of at least 2, got '${o.context}'`);

const tokenizer = await Tokenizer.load(path.join(packageRoot(), 'models/a'));
const scratch = mkdtempSync(path.join(tmpdir(), 'ms-contexts-'));
try {
  let paths: string[];
  if (o.corpus) {
    paths = o.corpus.split(',');
  } else {
    const shard = await openTokenShard(path.join(packageRoot(), 'corpus/train-sample.tokens'));
    const ids = await shard.read(0, shard.info.tokens);
    await shard.close();
    const documents = tokenizer.decode(ids).split('<|endoftext|>').filter((text) => text.length > 0);
    paths = [o.sampleOut ?? path.join(scratch, 'sample.jsonl')];
    writeFileSync(paths[0]!, documents.map((text) => JSON.stringify({ text })).join('\n') + '\n');
  }
  console.log(`corpus ${o.corpus ?? 'the shipped sample, decoded'}; contexts of ${contextLength}; ${availableParallelism()} cores`);
  console.log('| tokenizer threads | contexts | ms | tokens/s | vs calling thread |');
  console.log('| ---: | ---: | ---: | ---: | ---: |');
  const rows: { threads: number; contexts: number; ms: number; tokensPerSecond: number }[] = [];
  for (const threads of threadCounts) {
    if (threads > 0) await TokenizerPool.shared(tokenizer, threads).encode(['warm-up']); // workers started and loaded
    const stream = await openContextStream({ paths }, { tokenizer, contextLength, seed: 1, tokenizerThreads: threads });
    const t0 = performance.now();
    let contexts = 0;
    for (let batch = await stream.next(128); batch !== null; batch = await stream.next(128)) contexts += batch.length / contextLength;
    const ms = performance.now() - t0;
    const row = { threads, contexts, ms, tokensPerSecond: (contexts * contextLength) / (ms / 1000) };
    rows.push(row);
    const base = rows.find((r) => r.threads === 0)?.tokensPerSecond;
    console.log(
      `| ${threads} | ${contexts.toLocaleString('en-US')} | ${ms.toFixed(0)} | ${Math.round(row.tokensPerSecond).toLocaleString('en-US')} | ${base ? `${(row.tokensPerSecond / base).toFixed(2)}×` : '—'} |`,
    );
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ corpus: o.corpus ?? null, contextLength, cores: availableParallelism(), rows }, null, 2));
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
