/**
 * The CUDA backend's pinned staging ring for uploads (native/cuda/staging_ring.h), checked without
 * a GPU: test/native/staging_ring_test.cpp hands out regions for random upload sizes against a
 * simulated device that finishes copies in order behind the host, and checks that no region
 * overlaps a copy still in flight, that regions stay inside the ring and aligned, and that every
 * event is released once. Needs a C++17 compiler; skipped, saying so, without one.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const cxx = process.env.CXX ?? 'c++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
if (!hasCompiler) console.warn(`test/unit/staging-ring: SKIPPED — no C++ compiler (${cxx})`);

it.skipIf(!hasCompiler)('the staging ring never hands out memory a queued copy still reads', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ms-staging-ring-'));
  try {
    const exe = path.join(dir, 'ring');
    const build = spawnSync(cxx, ['-std=c++17', '-O2', '-I', path.join(root, 'native'), path.join(root, 'test/native/staging_ring_test.cpp'), '-o', exe], { encoding: 'utf8' });
    expect(build.status, build.stderr).toBe(0);
    const run = spawnSync(exe, { encoding: 'utf8' });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('ok');
    expect(lines.filter((l) => l.startsWith('ok   capacity')).length).toBe(3);
    // The device far behind makes the ring wait; close behind, it never does.
    expect(lines[0]).toMatch(/, 0 waits$/);
    expect(Number(/(\d+) waits$/.exec(lines[1]!)?.[1])).toBeGreaterThan(1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
