/**
 * tokenizeCorpus puts the EOS token between documents only: a document longer than the corpus
 * reader's piece size arrives in pieces, which are joined without one. And the JSONL reader counts
 * a repaired document only when the invalid bytes were in its text.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, expect, it } from 'vitest';

import { tokenizeCorpus } from '../../lib/cli/tokenize.js';
import { readCorpus, type CorpusReport } from '../../lib/data/corpus.js';
import { openTokenShard } from '../../lib/data/token-shards.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';

const dir = mkdtempSync(path.join(tmpdir(), 'ms-tokenize-pieces-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tokenizerDir = path.join(packageRoot(), 'corpus');

it('joins the pieces of a cut document without EOS, and separates documents with one', async () => {
  const words = Array.from({ length: 400 }, (_, i) => `word${i % 37}`).join(' '); // 3,000-odd characters
  writeFileSync(path.join(dir, 'a.txt'), words);
  writeFileSync(path.join(dir, 'b.txt'), 'a short second document');
  const out = path.join(dir, 'out.tokens');
  const result = await tokenizeCorpus({ tokenizer: tokenizerDir, corpus: [path.join(dir, 'a.txt'), path.join(dir, 'b.txt')], out, threads: 0, maxDocumentChars: 500 });
  expect(result.report.documents).toBeGreaterThan(6); // a.txt arrived in pieces
  expect(result.documents).toBe(2);
  const shard = await openTokenShard(out);
  const ids = await shard.read(0, shard.info.tokens);
  await shard.close();
  const tokenizer = await Tokenizer.load(tokenizerDir);
  const eos = tokenizer.eosTokenId!;
  expect(Array.from(ids).filter((id) => id === eos).length).toBe(1);
  expect(tokenizer.decode(ids)).toBe(`${words}<|endoftext|>a short second document`);
});

it('counts a JSONL document as repaired only when its text held the invalid bytes', async () => {
  const file = path.join(dir, 'docs.jsonl');
  const bad = Buffer.from([0xff]);
  writeFileSync(file, Buffer.concat([Buffer.from('{"text":"clean","meta":"'), bad, Buffer.from('"}\n{"text":"dirty '), bad, Buffer.from('"}\n')]));
  const report: CorpusReport = { files: 0, documents: 0, skipped: [] };
  const texts: string[] = [];
  for await (const d of readCorpus({ paths: [file] }, report)) texts.push(d.text);
  expect(texts).toEqual(['clean', 'dirty \uFFFD']);
  expect(report.skipped.map((s) => s.count)).toEqual([1]);
});

it('keeps whole documents under --max-tokens, dropping the kept pieces of one that does not fit', async () => {
  const words = Array.from({ length: 400 }, (_, i) => `word${i % 37}`).join(' ');
  writeFileSync(path.join(dir, 'first.txt'), 'a short first document');
  writeFileSync(path.join(dir, 'second.txt'), words);
  const paths = [path.join(dir, 'first.txt'), path.join(dir, 'second.txt')];
  const whole = await tokenizeCorpus({ tokenizer: tokenizerDir, corpus: paths, out: path.join(dir, 'whole.tokens'), threads: 0, maxDocumentChars: 500 });
  const out = path.join(dir, 'cut.tokens');
  const result = await tokenizeCorpus({ tokenizer: tokenizerDir, corpus: paths, out, threads: 0, maxDocumentChars: 500, maxTokens: whole.shard.tokens - 50 });
  expect(result.truncated).toBe(true);
  expect(result.documents).toBe(1);
  const shard = await openTokenShard(out);
  const ids = await shard.read(0, shard.info.tokens);
  await shard.close();
  expect((await Tokenizer.load(tokenizerDir)).decode(ids)).toBe('a short first document');
});
