/**
 * An SAE's feature activations over a set of contexts, a few contexts at a time: the model runs to
 * the hook (stopping there), the SAE encodes on the device, and each batch's activations are
 * handed to the caller as a host array.
 */
import type { Gpt2Model } from '../lm/model.js';
import type { SparseAutoencoder } from '../sae/sae.js';

/** Calls `each(f, ids, c0)` for batches of contexts [count, T]: f [m·T, dSae] for ids [m, T], the contexts from c0. */
export async function forEachFeatureBatch(
  model: Gpt2Model, sae: SparseAutoencoder, hook: string, contexts: Int32Array, T: number,
  each: (f: Float32Array, ids: Int32Array, c0: number) => void, batch = 8,
): Promise<void> {
  const count = contexts.length / T;
  for (let c0 = 0; c0 < count; c0 += batch) {
    const m = Math.min(batch, count - c0);
    const ids = contexts.subarray(c0 * T, (c0 + m) * T);
    const { captured } = await model.forward(ids, m, { capture: [hook] });
    using x = captured[hook]!;
    using f = await sae.encode(x);
    each(f.toArray() as Float32Array, ids, c0);
  }
}
