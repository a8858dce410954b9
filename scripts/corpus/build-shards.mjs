#!/usr/bin/env node
/**
 * Tokenises the built corpus (scripts/corpus/build-corpus.mjs) with corpus/tokenizer.json into
 * token shards, by running `monosemantic tokenize` (the built CLI, dist/lib/cli/main.js), then
 * verifies every shard and prints their token counts and sizes, then writes the notices of the
 * shipped shards (scripts/corpus/build-notices.mjs):
 *
 *   corpus/build/train.tokens    every training document (not shipped)
 *   corpus/val.tokens            every validation document (shipped; must stay <= 2 MB)
 *   corpus/train-sample.tokens   the first training documents, whole, up to SAMPLE_MAX_TOKENS
 *                                tokens (shipped; <= 8,000,000 bytes). train.jsonl is in hash
 *                                order, so its first documents are a fixed sample of all sources.
 *   corpus/NOTICES               the copyright notices and licence texts of every package with a
 *                                document in val.tokens or train-sample.tokens (shipped)
 *
 *   npm run build:ts && node scripts/corpus/build-shards.mjs [--build corpus/build] [--out corpus] [--tokenizer corpus/tokenizer.json]
 *
 * --build: the folder of build-corpus.mjs's output (train.jsonl, val.jsonl, packages.json), where
 * train.tokens is written too; --out: where the shipped files are written (to rebuild elsewhere
 * and compare with the committed ones).
 *
 * Deterministic: the same corpus and tokenizer give the same shards, byte for byte.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { defaultShards, endOfTextToken, writeNotices } from './build-notices.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function fail(message) {
  process.stderr.write(`build-shards: ${message}\n`);
  process.exit(1);
}

const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const SHARDS_MODULE = path.join(ROOT, 'dist/lib/data/token-shards.js');

function parseArgs(argv) {
  const options = { build: path.join(ROOT, 'corpus/build'), out: path.join(ROOT, 'corpus'), tokenizer: path.join(ROOT, 'corpus/tokenizer.json') };
  const flags = { '--build': 'build', '--out': 'out', '--tokenizer': 'tokenizer' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = flags[argv[i]];
    if (key === undefined || argv[i + 1] === undefined) fail(`unknown or incomplete argument ${argv[i]} (usage: build-shards.mjs [--build DIR] [--out DIR] [--tokenizer FILE])`);
    options[key] = path.resolve(argv[i + 1]);
  }
  return options;
}

const options = parseArgs(process.argv.slice(2));
const TOKENIZER = options.tokenizer;
const BUILD = options.build;
const OUT = options.out;

/** Tokens of the shipped training sample: 2-byte tokens and the 64-byte header stay within 8,000,000 bytes. */
const SAMPLE_MAX_TOKENS = 3_999_000;
const SHIPPED_VAL_MAX_BYTES = 2_000_000;

const SHARDS = [
  { out: path.join(BUILD, 'train.tokens'), corpus: path.join(BUILD, 'train.jsonl') },
  { out: path.join(OUT, 'val.tokens'), corpus: path.join(BUILD, 'val.jsonl'), maxBytes: SHIPPED_VAL_MAX_BYTES },
  { out: path.join(OUT, 'train-sample.tokens'), corpus: path.join(BUILD, 'train.jsonl'), maxTokens: SAMPLE_MAX_TOKENS },
];

for (const [file, hint] of [
  [CLI, 'run `npm run build:ts` first'],
  [TOKENIZER, 'run scripts/corpus/train-tokenizer.py first'],
  [path.join(BUILD, 'train.jsonl'), 'run scripts/corpus/build-corpus.mjs first'],
  [path.join(BUILD, 'packages.json'), 'run scripts/corpus/build-corpus.mjs first (this version writes it, for NOTICES)'],
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

// The shipped shards hold copies of the documents: their packages' notices ship with them.
const noticesPath = path.join(OUT, 'NOTICES');
const notices = await writeNotices(
  { shards: defaultShards(BUILD, OUT), packagesFile: path.join(BUILD, 'packages.json'), endOfText: endOfTextToken(TOKENIZER) },
  noticesPath,
);
process.stdout.write(
  `${path.relative(ROOT, noticesPath)}: ${notices.packages.length} packages (${notices.shards.map(({ name, documents }) => `${documents} documents of ${name}`).join(', ')}), ${Buffer.byteLength(notices.text)} bytes\n`,
);
