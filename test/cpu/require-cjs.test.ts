/** The built library loads with require() from CommonJS (Node's require of an ES module without top-level await). */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { expect, it } from 'vitest';

const index = path.resolve('dist/lib/index.js');

it('loads through require', () => {
  if (!existsSync(index)) throw new Error(`${index} is missing: run \`npm run build:ts\` first (npm test does)`);
  const script = `const m = require(${JSON.stringify(index)}); console.log(typeof m.SparseAutoencoder, typeof m.Gpt2Model)`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.stdout.trim()).toBe('function function');
});
