/**
 * forward(..., { logits: 'last' }): each sequence's last-position logits, equal to those rows of the
 * full logits, at f32 and bf16, with the final layer norm's hook looked at or not; refused with the loss.
 */
import path from 'node:path';

import { expect, it } from 'vitest';

import { Gpt2Model } from '../../lib/lm/model.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';
import { lastLogitsAgainstFull } from '../helpers/last-logits.js';

const fixture = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');

it('gives the full logits\' last rows', async () => {
  for (const precision of ['f32', 'bf16'] as const) {
    using model = await Gpt2Model.load(fixture, { backend: 'cpu', precision });
    const V = model.config.vocabSize;
    const [batch, T] = [3, 7];
    const rng = new Rng(2);
    const ids = Int32Array.from({ length: batch * T }, () => rng.int(V));
    for (const { capture, perSequence } of await lastLogitsAgainstFull(model, ids, batch)) {
      for (const [b, worst] of perSequence.entries()) expect(worst, `sequence ${b}, capture ${capture.join()}`).toBeLessThanOrEqual(1e-5);
    }
    await expect(model.forward(ids, batch, { logits: 'last', loss: true })).rejects.toThrow(/logits: 'last' leaves out the logits the loss needs/);
  }
});
