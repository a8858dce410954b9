/** The MONOSEMANTIC_* variables: accepted values, typos, and the table against what the code reads. */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { ENVIRONMENT_SETTINGS, checkEnvironment } from '../../lib/environment.js';
import { packageRoot } from '../../lib/native/load.js';

describe('checkEnvironment', () => {
  it('accepts every documented value, and empty values as unset', () => {
    for (const s of ENVIRONMENT_SETTINGS) {
      for (const value of s.values ?? []) expect(checkEnvironment({ [s.name]: value }), `${s.name}=${value}`).toEqual({ errors: [], unknown: [] });
      expect(checkEnvironment({ [s.name]: '' })).toEqual({ errors: [], unknown: [] });
    }
    expect(checkEnvironment({ MONOSEMANTIC_THREADS: '12', MONOSEMANTIC_CUDA_LIBRARY: '/x/lib.so', MONOSEMANTIC_BACKEND: ' CUDA ' })).toEqual({ errors: [], unknown: [] });
  });

  it('names the accepted values of a variable set to another one', () => {
    const { errors } = checkEnvironment({
      MONOSEMANTIC_SIMD: 'AVX2',
      MONOSEMANTIC_CUDA_GEMM: 'wgmm',
      MONOSEMANTIC_THREADS: '0',
      MONOSEMANTIC_CPU_SAE_SPARSE: 'yes',
      MONOSEMANTIC_CUDA: 'maybe', // build time: not the running package's business
    });
    expect(errors).toEqual([
      "MONOSEMANTIC_SIMD must be 'avx512', 'avx2' or 'scalar' (got 'AVX2')",
      "MONOSEMANTIC_CUDA_GEMM must be 'auto', 'mma' or 'wgmma' (got 'wgmm')",
      "MONOSEMANTIC_THREADS must be a positive whole number of CPU threads (got '0')",
      "MONOSEMANTIC_CPU_SAE_SPARSE must be 'auto', 'always' or 'never' (got 'yes')",
    ]);
    expect(checkEnvironment({ MONOSEMANTIC_THREADS: '2.5' }).errors).toHaveLength(1);
  });

  it('suggests the closest known name for an unknown MONOSEMANTIC_* variable, and ignores other variables', () => {
    const { errors, unknown } = checkEnvironment({ MONOSEMANTIC_THREAD: '4', MONOSEMANTIC_ZZZZZZZZZZZZ: '1', PATH: '/bin', CUDA_VISIBLE_DEVICES: '0' });
    expect(errors).toEqual([]);
    expect(unknown[0]).toBe('MONOSEMANTIC_THREAD is not a monosemantic setting and is ignored (did you mean MONOSEMANTIC_THREADS?)');
    expect(unknown[1]).toMatch(/^MONOSEMANTIC_ZZZZZZZZZZZZ is not a monosemantic setting and is ignored \(known ones: MONOSEMANTIC_BACKEND, /);
  });

  it('lists every variable the native code and the TypeScript layer read, and the README documents each', () => {
    const root = packageRoot();
    const read = new Set<string>();
    const scan = (dir: string, pattern: RegExp) => {
      for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
        if (!entry.isFile()) continue;
        const text = readFileSync(path.join(entry.parentPath, entry.name), 'utf8');
        for (const m of text.matchAll(pattern)) read.add(m[1]!);
      }
    };
    scan(path.join(root, 'native'), /getenv\("(MONOSEMANTIC_[A-Z_]+)"\)/g);
    scan(path.join(root, 'lib'), /process\.env\.(MONOSEMANTIC_[A-Z_]+)/g);
    scan(path.join(root, 'scripts'), /process\.env\.(MONOSEMANTIC_[A-Z_]+)/g);
    expect(read.size).toBeGreaterThan(8);
    const known = ENVIRONMENT_SETTINGS.map((s) => s.name);
    expect([...read].filter((name) => !known.includes(name))).toEqual([]);
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    expect(known.filter((name) => !readme.includes(`\`${name}`))).toEqual([]);
  });
});
