/** `monosemantic harvest` then `monosemantic train` on its cache: text to a trained SAE from the command line. */
import { mkdirSync, writeFileSync } from 'node:fs';
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
  const bad = cli([...args.slice(0, -2), '--dtype', 'f32']);
  expect(bad.status).toBe(1);
  expect(bad.stderr).toMatch(/is being built here; options ask for/);
  const t = cli(['train', '--data', path.join(cache, 'manifest.json'), '--d-sae', '48', '--steps', '20', '--out', path.join(root, 'run'), '--no-progress', '--set', 'training.batchSize=64', '--set', 'resampling.enabled=false']);
  expect(t.status, t.stderr).toBe(0);
  expect(t.stdout).toMatch(/finished after 20 of 20 steps/);
});
