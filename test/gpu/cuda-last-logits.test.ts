/**
 * forward(..., { logits: 'last' }) on the CUDA backend (lib/lm/model.ts: the last rows gathered by
 * gatherRows before the final layer norm, or after it when its hook is looked at, then the
 * unembedding of [batch, C] only): each sequence's last row of the full logits, at f32 and bf16,
 * hooked or not, with a KV cache, and against the CPU backend. Skipped, with the reason printed,
 * where the CUDA backend is not available.
 */
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { backendStatus } from '../../lib/backend.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';
import { lastLogitsAgainstFull, worstRel } from '../helpers/last-logits.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

const fixture = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');

describe.skipIf(!hasCuda)('cuda logits: last', () => {
  for (const precision of ['f32', 'bf16'] as const) {
    it(`gives the full logits' last rows (${precision}), hooked or not, and the CPU's`, async () => {
      using model = await Gpt2Model.load(fixture, { backend: 'cuda', precision });
      using cpu = await Gpt2Model.load(fixture, { backend: 'cpu', precision });
      const V = model.config.vocabSize;
      const [batch, T] = [5, 9]; // 45 rows: the gathered rows are 8, 17, 26, 35, 44
      const rng = new Rng(3);
      const ids = Int32Array.from({ length: batch * T }, () => rng.int(V));
      const cpuLast = await cpu.forward(ids, batch, { logits: 'last' });
      const cpuGot = cpuLast.logits!.toArray() as Float32Array;
      cpuLast.logits!.dispose();
      for (const { capture, got, perSequence } of await lastLogitsAgainstFull(model, ids, batch)) {
        for (const [b, worst] of perSequence.entries()) expect(worst, `sequence ${b}, capture ${capture.join()}`).toBeLessThanOrEqual(1e-5);
        expect(worstRel(got, cpuGot), `against the CPU, capture ${capture.join()}`).toBeLessThan(precision === 'f32' ? 1e-4 : 2e-2);
      }
    });
  }

  it('with a KV cache: the last rows of a continued forward', async () => {
    using model = await Gpt2Model.load(fixture, { backend: 'cuda', precision: 'f32' });
    const V = model.config.vocabSize;
    const [batch, T1, T2] = [2, 6, 3];
    const rng = new Rng(4);
    const seq = Int32Array.from({ length: batch * (T1 + T2) }, () => rng.int(V));
    const part = (from: number, to: number) => Int32Array.from({ length: batch * (to - from) }, (_, i) => seq[Math.floor(i / (to - from)) * (T1 + T2) + from + (i % (to - from))]!);
    const whole = await model.forward(seq, batch, { logits: true });
    const all = whole.logits!.toArray() as Float32Array;
    whole.logits!.dispose();
    using cache = model.createCache(batch, T1 + T2);
    (await model.forward(part(0, T1), batch, { cache, logits: 'last' })).logits!.dispose();
    const second = await model.forward(part(T1, T1 + T2), batch, { cache, logits: 'last' });
    const got = second.logits!.toArray() as Float32Array;
    second.logits!.dispose();
    for (let b = 0; b < batch; b++) {
      const row = b * (T1 + T2) + T1 + T2 - 1;
      expect(worstRel(got.subarray(b * V, (b + 1) * V), all.subarray(row * V, (row + 1) * V)), `sequence ${b}`).toBeLessThan(1e-4);
    }
  });
});
