/**
 * How a language model takes its loss: from logits formed in memory by the unembedding product
 * (logits), or with the unembedding product fused into the cross-entropy and its gradient, the
 * logits never formed (fused: lib/lm/grad-ops.ts unembedCrossEntropy). Chosen by an option or
 * MONOSEMANTIC_CROSS_ENTROPY, and resolved to what the backend can run.
 */
import { type BackendName } from '../backend.js';
import { type MatmulPrecision } from './ops.js';

export type CrossEntropyMode = 'logits' | 'fused';

/** The model widths (d_model) the CUDA backend's fused unembedding cross-entropy has kernels for. */
const CUDA_FUSED_WIDTHS: ReadonlySet<number> = new Set([32, 64, 128]);

/**
 * The mode a model runs: `requested` (default: MONOSEMANTIC_CROSS_ENTROPY, else logits), or logits
 * where it cannot fuse. Fused needs bf16 precision on every backend: its gradient is bf16, which
 * the unembedding's backward products take only at bf16 (at f32 they would need an f32 copy of the
 * whole gradient, or run at bf16 themselves). CUDA also needs a d_model it has kernels for.
 */
export function resolveCrossEntropy(requested: CrossEntropyMode | undefined, backend: BackendName, precision: MatmulPrecision, dModel: number): CrossEntropyMode {
  if (requested !== undefined && requested !== 'logits' && requested !== 'fused') {
    throw new TypeError(`crossEntropy must be 'logits' or 'fused' (got ${JSON.stringify(requested)})`);
  }
  const mode = requested ?? (process.env.MONOSEMANTIC_CROSS_ENTROPY === 'fused' ? 'fused' : 'logits');
  const fuses = precision === 'bf16' && (backend !== 'cuda' || CUDA_FUSED_WIDTHS.has(dModel));
  return mode === 'fused' && fuses ? 'fused' : 'logits';
}
