/**
 * Whole-model gradients for the tests: the mean next-token cross-entropy of ids [batch, T] and
 * its gradient with respect to every parameter, from the library's Gpt2Training, keyed by the
 * parameter names of HF GPT2LMHeadModel (as scripts/fixtures/make_gpt2_grad_fixtures.py writes
 * them; with tied embeddings the unembedding's gradient is part of transformer.wte.weight's).
 */
import type { BackendName } from '../../lib/backend.js';
import type { Gpt2Config } from '../../lib/lm/config.js';
import type { MatmulPrecision } from '../../lib/lm/ops.js';
import { nextTokenTargets } from '../../lib/lm/tokens.js';
import { Gpt2Training } from '../../lib/lm/training-model.js';
import type { Gpt2Weights } from '../../lib/lm/weights.js';

const LAYER_NAMES: Record<string, string> = {
  ln1W: 'ln_1.weight',
  ln1B: 'ln_1.bias',
  attnW: 'attn.c_attn.weight',
  attnB: 'attn.c_attn.bias',
  projW: 'attn.c_proj.weight',
  projB: 'attn.c_proj.bias',
  ln2W: 'ln_2.weight',
  ln2B: 'ln_2.bias',
  fcW: 'mlp.c_fc.weight',
  fcB: 'mlp.c_fc.bias',
  fcProjW: 'mlp.c_proj.weight',
  fcProjB: 'mlp.c_proj.bias',
};
const TOP_NAMES: Record<string, string> = {
  wte: 'transformer.wte.weight',
  wpe: 'transformer.wpe.weight',
  lnFW: 'transformer.ln_f.weight',
  lnFB: 'transformer.ln_f.bias',
  lmHead: 'lm_head.weight',
};

/** Gpt2Training's parameter name → GPT2LMHeadModel's. */
export function hfParameterName(name: string): string {
  const layer = /^h\.(\d+)\.(\w+)$/.exec(name);
  if (layer) return `transformer.h.${layer[1]}.${LAYER_NAMES[layer[2]!]}`;
  const top = TOP_NAMES[name];
  if (!top) throw new RangeError(`no HF name for ${name}`);
  return top;
}


/** The mean loss over the batch × (T − 1) positions with a target, and every parameter's gradient. */
export async function gpt2LossAndGrads(
  config: Gpt2Config,
  weights: Gpt2Weights,
  ids: Int32Array,
  batch: number,
  backend: BackendName,
  precision: MatmulPrecision,
): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
  const T = ids.length / batch;
  using trainer = new Gpt2Training(config, weights, { batch, T, backend, precision });
  const loss = await trainer.forwardBackward(ids, nextTokenTargets(ids, batch, T));
  const grads: Record<string, Float32Array> = {};
  for (const name of trainer.parameterNames) grads[hfParameterName(name)] = trainer.gradient(name).toArray() as Float32Array;
  return { loss, grads };
}
