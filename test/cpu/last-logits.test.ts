/**
 * forward(..., { logits: 'last' }): each sequence's last-position logits, equal to those rows of the
 * full logits, at f32 and bf16, with the final layer norm's hook looked at or not; refused with the loss.
 */
import path from 'node:path';

import { expect, it } from 'vitest';

import { Gpt2Model } from '../../lib/lm/model.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';

const fixture = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');

it('gives the full logits\' last rows', async () => {
  for (const precision of ['f32', 'bf16'] as const) {
    using model = await Gpt2Model.load(fixture, { backend: 'cpu', precision });
    const V = model.config.vocabSize;
    const [batch, T] = [3, 7];
    const rng = new Rng(2);
    const ids = Int32Array.from({ length: batch * T }, () => rng.int(V));
    const full = await model.forward(ids, batch, { logits: true });
    const all = full.logits!.toArray() as Float32Array;
    full.logits!.dispose();
    for (const capture of [[], ['ln_final.hook_normalized']]) {
      const last = await model.forward(ids, batch, { logits: 'last', capture });
      expect(last.logits!.shape).toEqual([batch, V]);
      const got = last.logits!.toArray() as Float32Array;
      last.logits!.dispose();
      for (const t of Object.values(last.captured)) t.dispose();
      for (let b = 0; b < batch; b++) {
        const want = all.subarray((b * T + T - 1) * V, (b * T + T) * V); // row b·T + T − 1 of [batch·T, V]
        for (let v = 0; v < V; v++) expect(Math.abs(got[b * V + v]! - want[v]!)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want[v]!)));
      }
    }
    await expect(model.forward(ids, batch, { logits: 'last', loss: true })).rejects.toThrow(/logits: 'last' leaves out the logits the loss needs/);
  }
});
