/**
 * The host C++ programs of test/native (emulations of CUDA kernels, the staging ring's test):
 * compiled with the compiler that builds the addon, run, and their output checked to end in "ok".
 * Tests skip, saying so, where there is no compiler (`hasCompiler`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { expect } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const cxx = process.env.CXX ?? 'c++';

export const hasCompiler = spawnSync(cxx, ['--version']).status === 0;

/** Warns once per test file that its programs are skipped (no compiler). */
export function warnIfNoCompiler(file: string): void {
  if (!hasCompiler) console.warn(`${file}: SKIPPED — no C++ compiler (${cxx})`);
}

/**
 * Compiles test/native/<source> (with native/ on the include path, and `flags` before the default
 * -std=c++17 -O2 when given: e.g. ['-std=c++20', '-O2', '-pthread']), runs it (`timeout` ms: a
 * program that hangs fails), expects exit status 0 and a last line "ok", and returns its lines.
 */
export function runNativeProgram(source: string, options: { flags?: string[]; timeout?: number } = {}): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'ms-native-program-'));
  try {
    const exe = path.join(dir, 'program');
    const flags = options.flags ?? ['-std=c++17', '-O2'];
    const build = spawnSync(cxx, [...flags, '-I', path.join(root, 'native'), path.join(root, 'test/native', source), '-o', exe], { encoding: 'utf8' });
    expect(build.status, build.stderr).toBe(0);
    const run = spawnSync(exe, { encoding: 'utf8', ...(options.timeout ? { timeout: options.timeout } : {}) });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('ok');
    return lines;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
