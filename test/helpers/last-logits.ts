/**
 * forward(..., { logits: 'last' }) against the full forward's logits, shared by the CPU and CUDA
 * tests: the same ids, once with the final layer norm's hook looked at and once without.
 */
import { expect } from 'vitest';

import type { Gpt2Model } from '../../lib/lm/model.js';
import { relFloor1, worst } from './data.js';

/** max over v of |got − want| / max(1, |want|); Infinity where got is not finite. */
export function worstRel(got: Float32Array, want: Float32Array): number {
  return worst(got, want, relFloor1(want));
}

export interface LastLogitsCase {
  capture: string[];
  /** The 'last' forward's logits [batch, V]. */
  got: Float32Array;
  /** worstRel of each sequence's row of `got` against row b·T + T − 1 of the full logits. */
  perSequence: number[];
}

/** The 'last' forward of ids [batch, T], unhooked and hooked, each against the full forward's last rows. */
export async function lastLogitsAgainstFull(model: Gpt2Model, ids: Int32Array, batch: number): Promise<LastLogitsCase[]> {
  const V = model.config.vocabSize;
  const T = ids.length / batch;
  const full = await model.forward(ids, batch, { logits: true });
  const all = full.logits!.toArray() as Float32Array;
  full.logits!.dispose();
  const cases: LastLogitsCase[] = [];
  for (const capture of [[], ['ln_final.hook_normalized']]) {
    const last = await model.forward(ids, batch, { logits: 'last', capture });
    expect(last.logits!.shape).toEqual([batch, V]);
    const got = last.logits!.toArray() as Float32Array;
    last.logits!.dispose();
    for (const t of Object.values(last.captured)) t.dispose();
    const perSequence = Array.from({ length: batch }, (_, b) =>
      worstRel(got.subarray(b * V, (b + 1) * V), all.subarray((b * T + T - 1) * V, (b * T + T) * V)), // row b·T + T − 1 of [batch·T, V]
    );
    cases.push({ capture, got, perSequence });
  }
  return cases;
}
