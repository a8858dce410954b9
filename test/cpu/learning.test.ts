/** Training on a planted sparse dictionary recovers it (CPU backend). */
import { expect, it } from 'vitest';

import { trainOnPlanted } from '../helpers/planted.js';

it('recovers a planted dictionary of 256 atoms in 64 dimensions (mean best cosine >= 0.95)', async () => {
  const result = await trainOnPlanted('cpu', 'f32', 3000);
  console.log(`cpu planted-dictionary recovery: ${JSON.stringify(result)}`);
  expect(result.lastLoss).toBeLessThan(result.firstLoss);
  expect(result.recovery).toBeGreaterThanOrEqual(0.95);
});
