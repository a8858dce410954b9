/**
 * Operands and a float64 reference for reluLinearBackward (lib/lm/grad-ops.ts), the backward of
 * out = x W + b through the ReLU that made x, shared by the CPU and CUDA suites.
 */
import { Rng } from '../../lib/random.js';
import { normalArray, roundArrayBf16 } from './data.js';

export interface ReluLinearOperands {
  rows: number;
  nIn: number;
  nOut: number;
  /** x = relu(pre) rounded to bf16 [rows, nIn]: about half exactly 0, a few tiny positives. */
  x: Float32Array;
  /** dout [rows, nOut]. */
  dout: Float32Array;
  /** W [nIn, nOut] (transW false) or [nOut, nIn] (true). */
  W: Float32Array;
}

export function reluLinearOperands(seed: number, rows: number, nIn: number, nOut: number): ReluLinearOperands {
  const rng = new Rng(seed);
  const pre = normalArray(rng, rows * nIn);
  // Some entries just above 0 (kept by the mask) and some -0 (dropped), beside the ReLU's zeros.
  for (let i = 0; i < pre.length; i += 11) pre[i] = i % 2 === 0 ? 1e-30 : -0;
  const x = roundArrayBf16(pre.map((v) => (v > 0 ? v : 0)));
  return { rows, nIn, nOut, x, dout: normalArray(rng, rows * nOut), W: normalArray(rng, nIn * nOut, 1 / Math.sqrt(nOut)) };
}

/**
 * In float64, from the operands the products read (dout, x and W rounded to bf16; doutBf16: dout is
 * given in bf16), with W [nIn, nOut] or (transW) [nOut, nIn]:
 *   dpre [rows, nIn] = x > 0 ? (dout Wᵀ) : 0 (before its rounding), dpreBias = Σ_rows dpre (from the
 *   products of the bf16 operands, as the op's sums are taken before rounding dpre);
 *   dW = xᵀ dout ([nIn, nOut]; transW: its transpose), dbias = Σ_rows dout (fp32 dout).
 */
export function reluLinearReference(o: ReluLinearOperands, transW = false) {
  const { rows, nIn, nOut } = o;
  const d = roundArrayBf16(o.dout);
  const W = roundArrayBf16(o.W);
  const w = (j: number, k: number) => (transW ? W[k * nIn + j]! : W[j * nOut + k]!); // the weight from input j to output k
  const dpre = new Float64Array(rows * nIn);
  const dpreBias = new Float64Array(nIn);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < nIn; j++) {
      if (!(o.x[r * nIn + j]! > 0)) continue;
      let s = 0;
      for (let k = 0; k < nOut; k++) s += d[r * nOut + k]! * w(j, k); // dout[r, k] W[j, k]
      dpre[r * nIn + j] = s;
      dpreBias[j] = dpreBias[j]! + s;
    }
  }
  const dW = new Float64Array(nIn * nOut);
  const dbias = new Float64Array(nOut);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < nOut; k++) {
      const g = d[r * nOut + k]!;
      dbias[k] = dbias[k]! + o.dout[r * nOut + k]!;
      for (let j = 0; j < nIn; j++) {
        const at = transW ? k * nIn + j : j * nOut + k; // dW[j, k], or [k, j]
        dW[at] = dW[at]! + o.x[r * nIn + j]! * g; // x[r, j] dout[r, k]
      }
    }
  }
  return { dpre, dpreBias, dW, dbias };
}
