/**
 * Initial SAE parameters, drawn on the host from a seeded generator so that every backend starts
 * from exactly the same weights.
 *
 * Decoder rows W_dec[i] are Kaiming-uniform draws rescaled to a fixed norm (1 for the unit-norm
 * decoder, `decoderInitNorm` otherwise). The encoder is either W_decᵀ ('transpose', as in the
 * April 2024 update and SAELens) or an independent Kaiming-uniform draw ('kaiming'). Biases are 0;
 * b_dec is usually set afterwards to the geometric median of a data sample.
 */
import { Rng } from '../random.js';
import type { ResolvedOptions } from './config.js';

export interface SaeParameterArrays {
  W_enc: Float32Array; // [d, n]
  b_enc: Float32Array; // [n]
  W_dec: Float32Array; // [n, d]
  b_dec: Float32Array; // [d]
}

export function initialParameters(o: ResolvedOptions): SaeParameterArrays {
  const d = o.dIn;
  const n = o.dSae;
  const rng = new Rng(o.seed);
  // Kaiming-uniform (gain √2, fan-in d): U(-√(6/d), √(6/d)).
  const bound = Math.sqrt(6 / d);
  const W_dec = rng.fillUniform(new Float32Array(n * d), -bound, bound);
  const rowNorm = o.constrainDecoder ? 1 : o.decoderInitNorm;
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += W_dec[i * d + j]! ** 2; // W_dec[i, j]
    const scale = rowNorm / Math.sqrt(ss);
    for (let j = 0; j < d; j++) W_dec[i * d + j]! *= scale;
  }
  let W_enc: Float32Array;
  if (o.init === 'transpose') {
    W_enc = new Float32Array(d * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) W_enc[j * n + i] = W_dec[i * d + j]!; // W_enc[j, i] = W_dec[i, j]
  } else {
    W_enc = rng.fillUniform(new Float32Array(d * n), -bound, bound);
  }
  return { W_enc, b_enc: new Float32Array(n), W_dec, b_dec: new Float32Array(d) };
}
