/** The `monosemantic` command line, run as users run it (the compiled bin). */

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { packageRoot } from '../../lib/native/load.js';
import { runCli } from '../helpers/cli.js';
import { tempDir, writePlantedActivations } from '../helpers/run-fixtures.js';


const cli = runCli;

describe('monosemantic doctor', () => {
  it('prints the CPU, the backend and why CUDA is not in use', () => {
    const r = cli(['doctor'], { MONOSEMANTIC_BACKEND: 'cpu' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/cpu simd\s+(scalar|avx2|avx512)/);
    expect(r.stdout).toMatch(/cpu threads\s+\d+/);
    expect(r.stdout).toMatch(/why not cuda\s+MONOSEMANTIC_BACKEND=cpu/);
  });

  it('--json gives the same facts for scripts', () => {
    const r = cli(['doctor', '--json'], { MONOSEMANTIC_BACKEND: 'cpu', MONOSEMANTIC_THREADS: '3' });
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.backend).toEqual({ requested: 'cpu', active: 'cpu' });
    expect(report.cpu.threads).toBe(3);
    expect(report.cuda.loaded).toBe(false);
    expect(report.cuda.reason).toBe('MONOSEMANTIC_BACKEND=cpu');
  });

  it('exits with a clear message when forced onto an unavailable CUDA backend', () => {
    const r = cli(['doctor'], { MONOSEMANTIC_BACKEND: 'cuda', MONOSEMANTIC_CUDA_LIBRARY: '/nonexistent/lib.so' });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/backend\s+none: MONOSEMANTIC_BACKEND=cuda, but CUDA cannot be used: .*not found/);
  });
});

describe('errors from the file system', () => {
  const dir = tempDir('cli-errors');
  const file = path.join(dir, 'a-file');
  writeFileSync(file, '');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('tokenize refuses an --out it cannot write before reading the corpus, in one line', () => {
    const corpus = path.join(packageRoot(), 'corpus');
    const r = cli(['tokenize', '--tokenizer', corpus, '--corpus', path.join(corpus, 'no-such-file.txt'), '-o', path.join(file, 'out.tokens')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^monosemantic: --out .*a-file\/out\.tokens: cannot write in .*a-file \(a file stands where a folder is needed\)\n$/);
  });

  it("Node's system errors print as one line naming the path, without a stack trace", () => {
    const data = path.join(dir, 'data');
    mkdirSync(data);
    writePlantedActivations(data, { atoms: 8, d: 4, files: 1, rowsPerFile: 64, seed: 1 });
    const r = cli(['train', '--data', data, '--d-sae', '8', '--steps', '1', '-o', path.join(file, 'run'), '--no-progress'], { MONOSEMANTIC_BACKEND: 'cpu' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^monosemantic: ENOTDIR: not a directory, \w+ '.*a-file\/run.*'\n$/);
  });
});
