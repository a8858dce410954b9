/** The `monosemantic` command line, run as users run it (the compiled bin). */

import { describe, expect, it } from 'vitest';

import { runCli } from '../helpers/cli.js';


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
    expect(r.stderr).toMatch(/monosemantic: MONOSEMANTIC_BACKEND=cuda, but CUDA cannot be used: .*not found/);
  });
});
