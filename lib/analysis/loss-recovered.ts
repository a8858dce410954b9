/**
 * The fraction of next-token loss recovered when an SAE's reconstruction replaces a hook's
 * activation, as "Towards Monosemanticity" defines it:
 *   (L_zero − L_spliced) / (L_zero − L_clean),
 * with L_clean the model's loss, L_spliced the loss with the SAE's reconstruction spliced in (no
 * error term) and L_zero the loss with the activation zero-ablated. 1 is perfect, 0 is no better
 * than ablating the whole activation.
 */
import { saeSplice, zeroAblate } from '../lm/interventions.js';
import type { Gpt2Model } from '../lm/model.js';
import type { SparseAutoencoder } from '../sae/sae.js';

export interface LossRecovered {
  clean: number;
  spliced: number;
  zeroAblated: number;
  fractionRecovered: number;
  /** Tokens whose loss was averaged. */
  tokens: number;
}

/** Over `contexts` [count, T] of token ids, `batch` contexts per forward. */
export async function lossRecovered(model: Gpt2Model, sae: SparseAutoencoder, hook: string, contexts: Int32Array, T: number, batch = 8): Promise<LossRecovered> {
  if (!Number.isSafeInteger(T) || T < 2 || contexts.length % T !== 0 || contexts.length === 0) {
    throw new RangeError(`contexts must hold whole contexts of T >= 2 tokens (got ${contexts.length} tokens, T ${T})`);
  }
  const count = contexts.length / T;
  const sums = { clean: 0, spliced: 0, zeroAblated: 0 };
  let tokens = 0;
  for (let c0 = 0; c0 < count; c0 += batch) {
    const n = Math.min(batch, count - c0);
    const ids = contexts.subarray(c0 * T, (c0 + n) * T);
    const run = async (interventions = {}) => (await model.forward(ids, n, { loss: true, interventions })).loss!;
    const clean = await run();
    const spliced = await run({ [hook]: saeSplice(sae) });
    const zero = await run({ [hook]: zeroAblate() });
    const k = clean.perToken.length;
    sums.clean += clean.mean * k;
    sums.spliced += spliced.mean * k;
    sums.zeroAblated += zero.mean * k;
    tokens += k;
  }
  const clean = sums.clean / tokens;
  const spliced = sums.spliced / tokens;
  const zeroAblated = sums.zeroAblated / tokens;
  return { clean, spliced, zeroAblated, fractionRecovered: (zeroAblated - spliced) / (zeroAblated - clean), tokens };
}
