/**
 * CPU backend against the float64 reference, for every SIMD level this CPU supports and for one
 * and several threads (the kernels split work differently in each case).
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
