/**
 * An SAE's feature activations over a set of contexts, a few contexts at a time: the model runs to
 * the hook (stopping there), the SAE encodes on the device, and the batch's firing entries (> 0)
 * are compacted there too, so the host receives and walks only what fired.
 */
import { hookPoint } from '../lm/hooks.js';
import type { Gpt2Model } from '../lm/model.js';
import { type SparseRows, sparseRows } from '../ops.js';
import type { SparseAutoencoder } from '../sae/sae.js';

/** Throws unless `hook` is one of the model's and its activations are as wide as the SAE's input. */
export function checkSaeFitsHook(model: Gpt2Model, sae: SparseAutoencoder, hook: string): void {
  const width = hookPoint(model.config, hook).width;
  if (width !== sae.dIn) throw new RangeError(`the SAE reads ${sae.dIn}-wide activations but ${hook} is ${width} wide`);
}

/** Calls `each(f, ids, c0)` for batches of contexts [count, T]: f [m·T, dSae] as sparse rows for ids [m, T], the contexts from c0. */
export async function forEachFeatureBatch(
  model: Gpt2Model, sae: SparseAutoencoder, hook: string, contexts: Int32Array, T: number,
  each: (f: SparseRows, ids: Int32Array, c0: number) => void, batch = 8,
): Promise<void> {
  checkSaeFitsHook(model, sae, hook);
  const count = contexts.length / T;
  let capacity: number | undefined; // the last batch's entry count, with room to spare
  for (let c0 = 0; c0 < count; c0 += batch) {
    const m = Math.min(batch, count - c0);
    const ids = contexts.subarray(c0 * T, (c0 + m) * T);
    const { captured } = await model.forward(ids, m, { capture: [hook] });
    using x = captured[hook]!;
    using f = await sae.encode(x);
    const rows = await sparseRows(f, capacity === undefined ? {} : { capacity });
    capacity = Math.ceil(rows.values.length * 1.25) + 1024;
    each(rows, ids, c0);
  }
}
