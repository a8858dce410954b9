#!/usr/bin/env node
/**
 * Tokenises the built corpus (scripts/corpus/build-corpus.mjs) with corpus/tokenizer.json into
 * token shards, by running `monosemantic tokenize` (the built CLI, dist/lib/cli/main.js), then
 * verifies every shard and prints their token counts and sizes:
 *
 *   corpus/build/train.tokens    every training document (not shipped)
 *   corpus/val.tokens            every validation document (shipped; must stay <= 2 MB)
 *   corpus/train-sample.tokens   the first training documents, whole, up to SAMPLE_MAX_TOKENS
 *                                tokens (shipped; <= 8,000,000 bytes). train.jsonl is in hash
 *                                order, so its first documents are a fixed sample of all sources.
 *
 *   npm run build:ts && node scripts/corpus/build-shards.mjs
 *
 * Deterministic: the same corpus and tokenizer give the same shards, byte for byte.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const SHARDS_MODULE = path.join(ROOT, 'dist/lib/data/token-shards.js');
const TOKENIZER = path.join(ROOT, 'corpus/tokenizer.json');
const BUILD = path.join(ROOT, 'corpus/build');

/** Tokens of the shipped training sample: 2-byte tokens and the 64-byte header stay within 8,000,000 bytes. */
const SAMPLE_MAX_TOKENS = 3_999_000;
const SHIPPED_VAL_MAX_BYTES = 2_000_000;

const SHARDS = [
  { out: path.join(BUILD, 'train.tokens'), corpus: path.join(BUILD, 'train.jsonl') },
  { out: path.join(ROOT, 'corpus/val.tokens'), corpus: path.join(BUILD, 'val.jsonl'), maxBytes: SHIPPED_VAL_MAX_BYTES },
  { out: path.join(ROOT, 'corpus/train-sample.tokens'), corpus: path.join(BUILD, 'train.jsonl'), maxTokens: SAMPLE_MAX_TOKENS },
];

function fail(message) {
  process.stderr.write(`build-shards: ${message}\n`);
  process.exit(1);
}

for (const [file, hint] of [
  [CLI, 'run `npm run build:ts` first'],
  [TOKENIZER, 'run scripts/corpus/train-tokenizer.py first'],
  [path.join(BUILD, 'train.jsonl'), 'run scripts/corpus/build-corpus.mjs first'],
]) {
  if (!existsSync(file)) fail(`${path.relative(ROOT, file)} is missing: ${hint}`);
}

const { verifyTokenShard } = await import(pathToFileURL(SHARDS_MODULE).href);

for (const shard of SHARDS) {
  const args = [CLI, 'tokenize', '--tokenizer', TOKENIZER, '--corpus', shard.corpus, '--out', shard.out];
  if (shard.maxTokens !== undefined) args.push('--max-tokens', String(shard.maxTokens));
  process.stderr.write(`$ node ${args.map((arg) => path.relative(ROOT, arg) || arg).join(' ')}\n`);
  const run = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (run.status !== 0) fail(`tokenize failed for ${path.relative(ROOT, shard.out)} (exit ${run.status ?? run.signal})`);
}

for (const shard of SHARDS) {
  const info = await verifyTokenShard(shard.out);
  const bytes = 64 + info.tokens * info.tokenBytes;
  process.stdout.write(`${path.relative(ROOT, shard.out)}: ${info.tokens} tokens, ${bytes} bytes, sha256 ${info.sha256} (verified)\n`);
  if (shard.maxBytes !== undefined && bytes > shard.maxBytes) {
    fail(`${path.relative(ROOT, shard.out)} is ${bytes} bytes, over the ${shard.maxBytes} bytes allowed for a shipped file: ship a smaller validation sample`);
  }
}
