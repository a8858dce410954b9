/** `monosemantic harvest` then `monosemantic train` on its cache: text to a trained SAE from the command line. */
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { expect, it } from 'vitest';

import { verifyActivationCache } from '../../lib/data/activation-cache.js';
import { packageRoot } from '../../lib/native/load.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/run-fixtures.js';

const model = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');

const cli = (args: string[]) => runCli(args, { MONOSEMANTIC_BACKEND: 'cpu' });

it('harvests a hook over a corpus into a verified cache that train reads', async () => {
  const root = tempDir('harvest');
  const corpus = path.join(root, 'corpus');
  mkdirSync(corpus);
  for (let f = 0; f < 3; f++) writeFileSync(path.join(corpus, `${f}.jsonl`), Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: `line ${i} of file ${f}: <b>bold</b> and x = ${i * f}` })).join('\n'));
  const cache = path.join(root, 'cache');
  const args = ['harvest', '--model', model, '--corpus', corpus, '--hook', 'blocks.1.hook_resid_mid', '--rows', '700', '--out', cache, '--context', '16', '--positions', '6', '--window', '20', '--shard-rows', '256', '--dtype', 'bf16'];
  const r = cli(args);
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/cached 700 rows of blocks\.1\.hook_resid_mid in 3 shards/);
  expect(await verifyActivationCache(cache)).toEqual({ shards: 3, rows: 700 });
  const again = cli(args); // already complete: nothing to do
  expect(again.status, again.stderr).toBe(0);
  // The same cache from its own folder, with relative paths and another --batch (contexts per
  // forward do not change the rows): the same options.
  const relative = args.map((a) => (a === corpus ? 'corpus' : a === cache ? 'cache' : a));
  const elsewhere = runCli([...relative, '--batch', '3'], { MONOSEMANTIC_BACKEND: 'cpu' }, root);
  expect(elsewhere.status, elsewhere.stderr).toBe(0);
  expect(elsewhere.stdout).toMatch(/cached 700 rows/);
  // A cache-build.json of an older version (--batch recorded, the corpus as typed) is the same cache.
  const buildFile = path.join(cache, 'cache-build.json');
  const record = JSON.parse(readFileSync(buildFile, 'utf8'));
  writeFileSync(buildFile, JSON.stringify({ ...record, of: { ...record.of, corpus: ['corpus'], batch: 16 } }));
  const older = runCli(relative, { MONOSEMANTIC_BACKEND: 'cpu' }, root);
  expect(older.status, older.stderr).toBe(0);
  const bad = cli([...args.slice(0, -2), '--dtype', 'f32']);
  expect(bad.status).toBe(1);
  expect(bad.stderr).toMatch(/is being built here; options ask for/);
  const t = cli(['train', '--data', path.join(cache, 'manifest.json'), '--d-sae', '48', '--steps', '20', '--out', path.join(root, 'run'), '--no-progress', '--set', 'training.batchSize=64', '--set', 'resampling.enabled=false']);
  expect(t.status, t.stderr).toBe(0);
  expect(t.stdout).toMatch(/finished after 20 of 20 steps/);
  // The manifest says what the activations are of, and the SAE trained on them is exported with it
  // (so the analysis commands find its model and hook); a config's own export metadata wins.
  const describes = { modelName: 'tiny-gelu-new-tied', hookName: 'blocks.1.hook_resid_mid', contextSize: 16, datasetPath: corpus };
  expect(JSON.parse(readFileSync(path.join(cache, 'manifest.json'), 'utf8')).describes).toEqual(describes);
  const cfg = JSON.parse(readFileSync(path.join(root, 'run', 'sae', 'cfg.json'), 'utf8'));
  expect(cfg.metadata).toMatchObject({ model_name: 'tiny-gelu-new-tied', hook_name: 'blocks.1.hook_resid_mid', context_size: 16, dataset_path: corpus });
  const own = cli(['train', '--data', cache, '--d-sae', '8', '--steps', '2', '--out', path.join(root, 'own'), '--no-progress', '--set', 'training.batchSize=64', '--set', 'export.hookName=mine']);
  expect(own.status, own.stderr).toBe(0);
  expect(JSON.parse(readFileSync(path.join(root, 'own', 'sae', 'cfg.json'), 'utf8')).metadata).toMatchObject({ model_name: 'tiny-gelu-new-tied', hook_name: 'mine' });
});

it('refuses to resume a cache with another hook, builds a damaged cache again, and train names a corrupt shard', async () => {
  const root = tempDir('harvest');
  const corpus = path.join(root, 'corpus.jsonl');
  writeFileSync(corpus, Array.from({ length: 60 }, (_, i) => JSON.stringify({ text: `document ${i}: the cat sat on mat number ${i * 7}` })).join('\n'));
  const cache = path.join(root, 'cache');
  const args = (hook: string) => ['harvest', '--model', model, '--corpus', corpus, '--hook', hook, '--rows', '300', '--out', cache, '--context', '16', '--positions', '6', '--window', '10', '--shard-rows', '100'];
  expect(cli(args('blocks.0.hook_resid_post')).status).toBe(0);
  const shard = path.join(cache, 'acts-000001.bin');
  const intact = readFileSync(shard);

  const other = cli(args('blocks.1.hook_resid_post'));
  expect(other.status).toBe(1);
  expect(other.stderr.trim()).toBe(
    `monosemantic: ${path.join(cache, 'cache-build.json')}: the cache here is of other options: hook (saved blocks.0.hook_resid_post, now blocks.1.hook_resid_post); give the same options, or another folder`,
  );

  truncateSync(shard, 10);
  const again = cli(args('blocks.0.hook_resid_post'));
  expect(again.status, again.stderr).toBe(0);
  expect(again.stderr).toContain(`${shard}: holds 10 bytes; 100 rows of 36 f32 need 14400 (truncated?); building the cache again from it (row 100)`);
  expect(again.stdout).toMatch(/^cached 300 rows/);
  expect(readFileSync(shard).equals(intact)).toBe(true);

  const corrupt = Buffer.from(intact);
  corrupt.writeFloatLE(Number.NaN, 400);
  writeFileSync(shard, corrupt);
  const t = cli(['train', '--data', path.join(cache, 'manifest.json'), '--d-sae', '16', '--steps', '5', '--out', path.join(root, 'run'), '--no-progress', '--set', 'training.batchSize=32']);
  expect(t.status).toBe(1);
  expect(t.stderr).toMatch(new RegExp(`^monosemantic: ${shard}: fails its SHA-256 check \\(.*\\): the shard is corrupt\\n$`));
});
