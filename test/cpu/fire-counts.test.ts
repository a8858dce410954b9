/**
 * Firing counts saturate at INT32_MAX instead of wrapping negative, on the CPU's dense and sparse
 * products and at both precisions (test/helpers/fire-count-saturation.ts: the counts start 3 below
 * INT32_MAX and a batch of 37 rows fires every even feature on every row).
 */
import { afterEach, describe, expect, it } from 'vitest';

import { countsAfterOneBatch, expectedSaturatedCounts } from '../helpers/fire-count-saturation.js';

const SPARSE = 'MONOSEMANTIC_CPU_SAE_SPARSE';

describe('firing counts near INT32_MAX (CPU)', () => {
  afterEach(() => {
    delete process.env[SPARSE];
  });

  for (const precision of ['f32', 'bf16'] as const) {
    for (const mode of ['never', 'always'] as const) {
      it(`${precision}, products ${mode === 'never' ? 'dense' : 'over the active features'}: saturate`, async () => {
        process.env[SPARSE] = mode;
        expect(Array.from(await countsAfterOneBatch('cpu', precision))).toEqual(Array.from(expectedSaturatedCounts()));
      });
    }
  }
});
