/**
 * The CUDA backend's pinned staging ring for uploads (native/cuda/staging_ring.h), checked without
 * a GPU: test/native/staging_ring_test.cpp hands out regions for random upload sizes against a
 * simulated device that finishes copies in order behind the host, and checks that no region
 * overlaps a copy still in flight, that regions stay inside the ring and aligned, and that every
 * event is released once. Needs a C++17 compiler; skipped, saying so, without one.
 */
import { expect, it } from 'vitest';

import { hasCompiler, runNativeProgram, warnIfNoCompiler } from '../helpers/native-program.js';

warnIfNoCompiler('test/unit/staging-ring');

it.skipIf(!hasCompiler)('the staging ring never hands out memory a queued copy still reads', () => {
  const lines = runNativeProgram('staging_ring_test.cpp');
  expect(lines.filter((l) => l.startsWith('ok   capacity')).length).toBe(3);
  // The device far behind makes the ring wait; close behind, it never does.
  expect(lines[0]).toMatch(/, 0 waits$/);
  expect(Number(/(\d+) waits$/.exec(lines[1]!)?.[1])).toBeGreaterThan(1000);
});
