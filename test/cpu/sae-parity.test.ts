/**
 * CPU backend against the float64 reference, for every SIMD level this CPU supports and for one
 * and several threads (the kernels split work differently in each case); then with the step's
 * sparse products forced (MONOSEMANTIC_CPU_SAE_SPARSE=always: the batches here have about half
 * the features active, where the step would take sgemm).
 */
import { afterAll, beforeAll, describe } from 'vitest';

import { nativeAddon } from '../../lib/backend.js';
import { defineSaeParityTests } from '../helpers/sae-parity.js';

const addon = nativeAddon();
const detected = addon.cpuInfo().simdDetected;
const levels = (['scalar', 'avx2', 'avx512'] as const).filter((level, i) => i <= ['scalar', 'avx2', 'avx512'].indexOf(detected));
const defaultThreads = addon.cpuInfo().threads;

for (const simd of levels) {
  for (const threads of [1, 3]) {
    describe(`cpu backend, simd ${simd}, ${threads} thread(s)`, () => {
      beforeAll(() => {
        addon.setSimdCap(simd);
        addon.setThreads(threads);
      });
      afterAll(() => {
        addon.setSimdCap(detected as 'scalar' | 'avx2' | 'avx512');
        addon.setThreads(defaultThreads);
      });
      defineSaeParityTests('cpu');
    });
  }
}

for (const threads of [1, 3]) {
  describe(`cpu backend, sparse products forced, ${threads} thread(s)`, () => {
    const mode = process.env.MONOSEMANTIC_CPU_SAE_SPARSE;
    beforeAll(() => {
      process.env.MONOSEMANTIC_CPU_SAE_SPARSE = 'always';
      addon.setThreads(threads);
    });
    afterAll(() => {
      if (mode === undefined) delete process.env.MONOSEMANTIC_CPU_SAE_SPARSE;
      else process.env.MONOSEMANTIC_CPU_SAE_SPARSE = mode;
      addon.setThreads(defaultThreads);
    });
    defineSaeParityTests('cpu');
  });
}
