/**
 * exceptFirstPosition: the wrapped intervention changes every row but those of absolute position 0
 * (the BOS token), in each sequence of the batch; a forward that starts later (generation with a
 * KV cache) has no such rows and is changed everywhere.
 */
import { expect, it } from 'vitest';

import { addDirection, exceptFirstPosition } from '../../lib/lm/interventions.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';

it('leaves position 0 of each sequence as it was, and only when the forward starts there', async () => {
  const rng = new Rng(3);
  const [batch, T, width] = [3, 5, 7];
  const before = rng.fillNormal(new Float32Array(batch * T * width), 1);
  const direction = rng.fillNormal(new Float32Array(width), 1);
  const steer = exceptFirstPosition(addDirection(direction, 2));
  for (const positionOffset of [0, 4]) {
    using x = Tensor.from(before, [batch * T, width], { backend: 'cpu' });
    await steer(x, { hook: 'blocks.0.mlp.hook_post', batch, T, positionOffset });
    const after = x.toArray() as Float32Array;
    for (let r = 0; r < batch * T; r++) {
      const untouched = positionOffset === 0 && r % T === 0; // row b·T + t is position offset + t of sequence b
      for (let j = 0; j < width; j++) {
        const want = untouched ? before[r * width + j]! : Math.fround(before[r * width + j]! + Math.fround(2 * direction[j]!));
        expect(after[r * width + j]).toBe(want);
      }
    }
  }
});
