/** `monosemantic doctor` reports the machine even when MONOSEMANTIC_BACKEND names no usable backend (or no addon loads), and lists the settings. */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { runCli } from '../helpers/cli.js';

describe('monosemantic doctor with an unusable MONOSEMANTIC_BACKEND', () => {
  it('--json prints the whole report, the backend error as a field', () => {
    const cases: { env: Record<string, string>; error: RegExp }[] = [
      { env: { MONOSEMANTIC_BACKEND: 'cuda', MONOSEMANTIC_CUDA_LIBRARY: '/nonexistent/lib.so' }, error: /^MONOSEMANTIC_BACKEND=cuda, but CUDA cannot be used: .*\/nonexistent\/lib\.so/ },
      { env: { MONOSEMANTIC_BACKEND: 'bogus' }, error: /^MONOSEMANTIC_BACKEND must be 'auto', 'cpu' or 'cuda' \(got 'bogus'\)$/ },
    ];
    for (const { env, error } of cases) {
      const r = runCli(['doctor', '--json'], env);
      expect(r.status).toBe(1); // no backend can be used
      expect(r.stderr).toBe('');
      const report = JSON.parse(r.stdout);
      expect(report.backend).toMatchObject({ requested: env.MONOSEMANTIC_BACKEND, active: null });
      expect(report.backend.error).toMatch(error);
      expect(report.cpu.simd).toMatch(/^(scalar|avx2|avx512)$/);
      expect(report.cuda).toMatchObject({ loaded: false, reason: report.backend.error });
      expect(report.cuda.libraryPath).toBeTypeOf('string');
    }
  });

  it('prints the report with the error on its backend line', () => {
    const r = runCli(['doctor'], { MONOSEMANTIC_BACKEND: 'bogus' });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^ {2}backend {7}none: MONOSEMANTIC_BACKEND must be 'auto', 'cpu' or 'cuda' \(got 'bogus'\)$/m);
    expect(r.stdout).toMatch(/cpu simd\s+(scalar|avx2|avx512)/);
    expect(r.stdout).toMatch(/cuda library\s+not in use \(/);
  });

  it('lists the MONOSEMANTIC_* settings and warns about an unknown one', () => {
    const r = runCli(['doctor'], { MONOSEMANTIC_BACKEND: 'cpu', MONOSEMANTIC_THREAD: '1' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ {2}settings {6}.*MONOSEMANTIC_BACKEND=cpu .*MONOSEMANTIC_THREAD=1( |$)/m);
    expect(r.stdout).toMatch(/^ {2}warning {7}MONOSEMANTIC_THREAD is not a monosemantic setting and is ignored \(did you mean MONOSEMANTIC_THREADS\?\)$/m);
    const json = runCli(['doctor', '--json'], { MONOSEMANTIC_BACKEND: 'cpu', MONOSEMANTIC_THREAD: '1' });
    const report = JSON.parse(json.stdout);
    expect(report.settings).toEqual(expect.arrayContaining(['MONOSEMANTIC_BACKEND=cpu', 'MONOSEMANTIC_THREAD=1']));
    expect(report.unknownSettings).toContainEqual(expect.stringMatching(/^MONOSEMANTIC_THREAD is not/));
  });
});

describe('doctor without an addon', () => {
  it('--json still prints JSON, with the loader error as the backend error', () => {
    // A copy of the package with no build/ and no prebuilds/: nothing fits.
    const root = mkdtempSync(path.join(tmpdir(), 'ms-no-addon-'));
    try {
      cpSync(path.resolve('dist'), path.join(root, 'dist'), { recursive: true });
      cpSync(path.resolve('package.json'), path.join(root, 'package.json'));
      symlinkSync(path.resolve('node_modules'), path.join(root, 'node_modules'));
      const r = spawnSync(process.execPath, [path.join(root, 'dist/lib/cli/main.js'), 'doctor', '--json'], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      const report = JSON.parse(r.stdout);
      expect(report.addonPath).toBeNull();
      expect(report.backend).toMatchObject({ active: null, error: expect.stringMatching(/^no monosemantic native addon fits this machine/) });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
