/**
 * Hook points of a GPT-2-family forward pass, with TransformerLens's names, in the order the
 * forward pass reaches them. Every hook's activation is a [batch × T, width] f32 tensor.
 * The model's LayerNorms are not folded into the next weights, so `ln_final.hook_normalized` is the
 * LayerNorm's output after its weight and bias, as in TransformerLens's unfolded LayerNorm (and
 * HF's last hidden state).
 */
import type { Gpt2Config } from './config.js';

export interface HookPoint {
  name: string;
  /** Position in the forward pass (0 = first). */
  order: number;
  /** Columns of the activation. */
  width: number;
  /** The block it belongs to, or -1 (embeddings) / nLayer (final LayerNorm). */
  layer: number;
}

const BLOCK_HOOKS = [
  'hook_resid_pre',
  'attn.hook_z',
  'hook_attn_out',
  'hook_resid_mid',
  'mlp.hook_pre',
  'mlp.hook_post',
  'hook_mlp_out',
  'hook_resid_post',
] as const;

/** Every hook point of a model, in forward order. */
export function hookPoints(config: Gpt2Config): HookPoint[] {
  const out: HookPoint[] = [];
  const push = (name: string, width: number, layer: number) => out.push({ name, order: out.length, width, layer });
  push('hook_embed', config.dModel, -1);
  push('hook_pos_embed', config.dModel, -1);
  for (let L = 0; L < config.nLayer; L++) {
    for (const hook of BLOCK_HOOKS) push(`blocks.${L}.${hook}`, hook.startsWith('mlp.') ? config.dMlp : config.dModel, L);
  }
  push('ln_final.hook_normalized', config.dModel, config.nLayer);
  return out;
}

/** The hook point called `name`, or a RangeError listing what exists. */
export function hookPoint(config: Gpt2Config, name: string): HookPoint {
  const points = hookPoints(config);
  const found = points.find((p) => p.name === name);
  if (!found) {
    const blocks = config.nLayer === 1 ? 'blocks.0' : `blocks.{0..${config.nLayer - 1}}`;
    throw new RangeError(`unknown hook '${name}': this model (${config.nLayer} layer${config.nLayer === 1 ? '' : 's'}) has hook_embed, hook_pos_embed, ${blocks}.{${BLOCK_HOOKS.join(', ')}} and ln_final.hook_normalized`);
  }
  return found;
}
