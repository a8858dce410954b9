/** Training on a planted sparse dictionary recovers it (CPU backend). */
import { expect, it } from 'vitest';

import { trainOnPlanted } from '../helpers/planted.js';

it.each(['f32', 'bf16'] as const)('recovers a planted dictionary (%s) of 256 atoms in 64 dimensions (mean best cosine >= 0.95)', async (precision) => {
  const result = await trainOnPlanted('cpu', precision, 3000);
  console.log(`cpu ${precision} planted-dictionary recovery: ${JSON.stringify(result)}`);
  expect(result.lastLoss).toBeLessThan(result.firstLoss);
  expect(result.recovery).toBeGreaterThanOrEqual(0.95);
});
