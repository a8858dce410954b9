#!/usr/bin/env node
/**
 * The baseline a language model trained on token shards is judged against: the cross-entropy of
 * validation tokens under a bigram model counted on training tokens, with add-one (Laplace)
 * smoothing. A transformer that does not beat it has learnt less than which token follows which.
 *
 *   npm run build:ts
 *   node scripts/corpus/bigram-entropy.mjs --train corpus/train-sample.tokens --val corpus/val.tokens [--json]
 *
 * --train may be repeated. With V the vocabulary size, c(a, b) the number of times token b follows
 * token a in the training shards (pairs never span two shards) and c(a) = sum over b of c(a, b):
 *   P(b | a) = (c(a, b) + 1) / (c(a) + V)
 *   H = -(1 / (N - 1)) * sum for i = 1 .. N-1 of ln P(x_i | x_{i-1})   over the validation stream
 * Every adjacent pair counts, EOS tokens (document separators) included, both as the token
 * predicted and as the one it is predicted from. Printed in nats per token (the unit of a
 * model's cross-entropy loss), bits per token and as a perplexity; the add-one unigram
 * cross-entropy is printed beside it.
 */
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { existsSync } from 'node:fs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHARDS_MODULE = path.join(ROOT, 'dist/lib/data/token-shards.js');
const CHUNK_TOKENS = 1 << 20;
/** Above this many (a, b) cells the counts go in a Map instead of a dense table. */
const DENSE_CELLS = 1 << 28;

function parseArgs(argv) {
  const options = { train: [], val: null, json: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--json') {
      options.json = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--train') options.train.push(value);
    else if (flag === '--val') options.val = value;
    else throw new Error(`unknown argument ${flag} (usage: bigram-entropy.mjs --train FILE [--train FILE ...] --val FILE [--json])`);
  }
  if (options.train.length === 0 || options.val === null) throw new Error('--train and --val are required');
  return options;
}

/** Calls `visit(tokens)` on consecutive chunks of a shard; returns its info. */
async function eachChunk(openTokenShard, file, visit) {
  const reader = await openTokenShard(file);
  try {
    for (let start = 0; start < reader.info.tokens; start += CHUNK_TOKENS) {
      visit(await reader.read(start, Math.min(CHUNK_TOKENS, reader.info.tokens - start)));
    }
    return reader.info;
  } finally {
    await reader.close();
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (!existsSync(SHARDS_MODULE)) throw new Error(`${path.relative(ROOT, SHARDS_MODULE)} is missing: run \`npm run build:ts\` first`);
  const { openTokenShard, verifyTokenShard } = await import(pathToFileURL(SHARDS_MODULE).href);

  const infos = [];
  for (const file of [...options.train, options.val]) infos.push(await verifyTokenShard(file));
  const vocab = infos[0].vocabSize;
  const other = infos.find((info) => info.vocabSize !== vocab);
  if (other !== undefined) throw new Error(`${other.path}: vocabulary ${other.vocabSize} differs from ${infos[0].path}'s ${vocab}`);

  const dense = vocab * vocab <= DENSE_CELLS ? new Uint32Array(vocab * vocab) : null;
  const sparse = dense === null ? new Map() : null;
  const successors = new Float64Array(vocab);
  const unigrams = new Float64Array(vocab);
  let trainTokens = 0;
  for (const file of options.train) {
    let previous = -1;
    const info = await eachChunk(openTokenShard, file, (tokens) => {
      for (let i = 0; i < tokens.length; i++) {
        const token = tokens[i];
        unigrams[token]++;
        if (previous >= 0) {
          const cell = previous * vocab + token;
          if (dense !== null) dense[cell]++;
          else sparse.set(cell, (sparse.get(cell) ?? 0) + 1);
          successors[previous]++;
        }
        previous = token;
      }
    });
    trainTokens += info.tokens;
  }

  let bigramNats = 0;
  let unigramNats = 0;
  let pairs = 0;
  let previous = -1;
  const valInfo = await eachChunk(openTokenShard, options.val, (tokens) => {
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i];
      if (previous >= 0) {
        const cell = previous * vocab + token;
        const count = dense !== null ? dense[cell] : (sparse.get(cell) ?? 0);
        bigramNats -= Math.log((count + 1) / (successors[previous] + vocab));
        unigramNats -= Math.log((unigrams[token] + 1) / (trainTokens + vocab));
        pairs++;
      }
      previous = token;
    }
  });
  if (pairs === 0) throw new Error(`${options.val}: fewer than two tokens`);

  const bigram = bigramNats / pairs;
  const unigram = unigramNats / pairs;
  const result = {
    train: options.train.map((file) => path.relative(process.cwd(), file)),
    trainTokens,
    val: path.relative(process.cwd(), options.val),
    valTokens: valInfo.tokens,
    vocabSize: vocab,
    pairs,
    bigramNatsPerToken: bigram,
    bigramBitsPerToken: bigram / Math.LN2,
    bigramPerplexity: Math.exp(bigram),
    unigramNatsPerToken: unigram,
    unigramBitsPerToken: unigram / Math.LN2,
  };
  if (options.json) {
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    `train ${result.train.join(', ')} (${trainTokens} tokens), val ${result.val} (${valInfo.tokens} tokens, ${pairs} pairs), vocabulary ${vocab}\n` +
      `bigram, add-one:  ${bigram.toFixed(4)} nats/token = ${(bigram / Math.LN2).toFixed(4)} bits/token (perplexity ${Math.exp(bigram).toFixed(1)})\n` +
      `unigram, add-one: ${unigram.toFixed(4)} nats/token = ${(unigram / Math.LN2).toFixed(4)} bits/token\n`,
  );
}

main().catch((error) => {
  process.stderr.write(`bigram-entropy: ${error.message}\n`);
  process.exitCode = 1;
});
