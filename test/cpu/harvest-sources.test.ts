/** `monosemantic harvest` over token shards, over text with input it skips (printed as found), and over a corpus too small for its rows. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { expect, it } from 'vitest';

import { verifyActivationCache } from '../../lib/data/activation-cache.js';
import { packageRoot } from '../../lib/native/load.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/run-fixtures.js';

const cli = (args: string[]) => runCli(args, { MONOSEMANTIC_BACKEND: 'cpu' });
const common = ['--hook', 'blocks.0.mlp.hook_post', '--rows', '300', '--context', '32', '--positions', '8', '--window', '16', '--batch', '8'];

it('harvests from token shards', async () => {
  const root = tempDir('harvest-shards');
  const out = path.join(root, 'cache');
  const r = cli(['harvest', '--corpus', path.join(packageRoot(), 'corpus', 'val.tokens'), ...common, '--out', out]);
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/cached 300 rows of blocks\.0\.mlp\.hook_post/);
  expect(await verifyActivationCache(out)).toEqual({ shards: 1, rows: 300 });
  expect(r.stderr).not.toMatch(/read \d+ times over/); // far from the end of the corpus
});

it('refuses a corrupt token shard before caching anything from it', () => {
  const root = tempDir('harvest-corrupt-shard');
  const shard = path.join(root, 'val.tokens');
  const bytes = readFileSync(path.join(packageRoot(), 'corpus', 'val.tokens'));
  bytes[bytes.length - 101]! ^= 1; // a token's low bit: still inside the vocabulary
  writeFileSync(shard, bytes);
  const r = cli(['harvest', '--corpus', shard, ...common, '--out', path.join(root, 'cache')]);
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/val\.tokens.*checksum mismatch/);
});

it('says when a corpus too small for --rows was read over and over', () => {
  const root = tempDir('harvest-passes');
  const corpus = path.join(root, 'small.txt');
  writeFileSync(corpus, 'A short corpus about foxes and dogs, repeated a little. '.repeat(40));
  const r = cli(['harvest', '--corpus', corpus, ...common, '--out', path.join(root, 'cache')]);
  expect(r.status, r.stderr).toBe(0);
  const passes = Number(/it was read (\d+) times over, so the cache repeats its positions/.exec(r.stderr)?.[1]);
  expect(passes).toBeGreaterThan(1);
});

it('prints what the text reader skips, and says why a corpus gives no context', () => {
  const root = tempDir('harvest-skips');
  const corpus = path.join(root, 'corpus');
  mkdirSync(corpus);
  writeFileSync(path.join(corpus, 'good.jsonl'), Array.from({ length: 60 }, (_, i) => JSON.stringify({ text: `document ${i}: the quick brown fox jumps over the lazy dog, again and again.` })).join('\n'));
  writeFileSync(path.join(corpus, 'other.jsonl'), '{"body": "no text field here"}\n');
  writeFileSync(path.join(corpus, 'latin1.txt'), Buffer.from('caf\xe9 au lait, a document in Latin-1 bytes', 'latin1'));
  const r = cli(['harvest', '--corpus', corpus, ...common, '--out', path.join(root, 'cache')]);
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr).toMatch(/skipped .*other\.jsonl: no string "text" field/);
  expect(r.stderr).toMatch(/repaired .*latin1\.txt: invalid UTF-8 \(replaced\)/); // kept, with U+FFFD
  const empty = cli(['harvest', '--corpus', path.join(corpus, 'other.jsonl'), ...common, '--out', path.join(root, 'none')]);
  expect(empty.status).toBe(1);
  expect(empty.stderr).toMatch(/other\.jsonl: no whole context of 32 tokens \(1 file and 0 documents read; skipped .*no string "text" field/);
});
