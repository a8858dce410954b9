/**
 * Float64 reference for the sparse autoencoder of "Towards Monosemanticity" (Bricken et al., 2023)
 * and its April 2024 update. Plain loops, no tiling, no threads: slow on purpose, and written to
 * be read against the maths. Every backend's kernels are tested against this file, and this file
 * is tested against central finite differences (test/unit/sae-reference.test.ts).
 *
 * Layouts are row-major, names follow SAELens (d = d_in, n = d_sae, B = batch rows):
 *   W_enc [d, n]   b_enc [n]   W_dec [n, d]   b_dec [d]   x [B, d]   f [B, n]
 *
 *   encode:   xc = x − b_dec;  pre = xc·W_enc + b_enc;  f = ReLU(pre)
 *   decode:   xhat = f·W_dec + b_dec
 *   penalty:  c_i = 1 ('l1', 2023)  or  c_i = ‖W_dec[i,:]‖₂ ('l1_decnorm', April 2024)
 *   mse      = (1/B) Σ_b Σ_j (x_bj − xhat_bj)²
 *   sparsity = (1/B) Σ_b Σ_i f_bi·c_i
 *   l0       = (1/B) #{(b, i) : f_bi > 0}
 *   loss     = mse + λ·sparsity
 *
 * Gradients (exact; r = xhat − x, g = (2/B)·r is ∂loss/∂xhat):
 *   dW_dec[i, j] = Σ_b f_bi g_bj                  (+ λ/B·(Σ_b f_bi)·W_dec[i, j]/‖W_dec[i]‖ for l1_decnorm)
 *   df_bi        = Σ_j g_bj W_dec[i, j] + (λ/B)·c_i
 *   dpre_bi      = df_bi · [pre_bi > 0]
 *   dW_enc[k, i] = Σ_b xc_bk dpre_bi
 *   db_enc[i]    = Σ_b dpre_bi
 *   db_dec[k]    = Σ_b g_bk − Σ_i W_enc[k, i] db_enc[i]   (b_dec enters through xhat and through xc)
 *
 * Inputs may be Float32Array (converted to float64 on read); everything computed is Float64Array.
 */

export type Penalty = 'l1' | 'l1_decnorm';

/** Read-only array inputs: float32 values are widened to float64 as they are read. */
export type FloatArray = Float32Array | Float64Array;

export interface SaeParams64 {
  d: number;
  n: number;
  W_enc: Float64Array; // [d, n]
  b_enc: Float64Array; // [n]
  W_dec: Float64Array; // [n, d]
  b_dec: Float64Array; // [d]
}

export interface LossOptions64 {
  l1Coeff: number;
  penalty: Penalty;
}

export interface LossAndGrads64 {
  loss: number;
  mse: number;
  sparsity: number;
  l0: number;
  /** #{b : f_bi > 0} for each feature i, [n]. */
  fireCounts: Int32Array;
  dW_enc: Float64Array; // [d, n]
  db_enc: Float64Array; // [n]
  dW_dec: Float64Array; // [n, d]
  db_dec: Float64Array; // [d]
}

export interface AdamHyper64 {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** 1-based step number used for bias correction. */
  t: number;
}

export type ParamName = 'W_enc' | 'b_enc' | 'W_dec' | 'b_dec';
export const PARAM_NAMES: readonly ParamName[] = ['W_enc', 'b_enc', 'W_dec', 'b_dec'];

export interface AdamState64 {
  /** Number of Adam steps taken so far (0 before the first). */
  t: number;
  m: Record<ParamName, Float64Array>;
  v: Record<ParamName, Float64Array>;
}

export interface StepConfig64 extends LossOptions64 {
  /** Standard SAE: unit-norm decoder rows (remove the parallel gradient, renormalise after Adam). */
  constrainDecoder: boolean;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
}

export interface StepStats64 {
  loss: number;
  mse: number;
  sparsity: number;
  l0: number;
  fireCounts: Int32Array;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function toF64(a: FloatArray): Float64Array {
  return a instanceof Float64Array ? a : Float64Array.from(a);
}

function checkLength(name: string, a: ArrayLike<number>, expected: number): void {
  if (a.length !== expected) throw new RangeError(`${name}: length ${a.length}, expected ${expected}`);
}

function checkParams(p: SaeParams64): void {
  checkLength('W_enc', p.W_enc, p.d * p.n);
  checkLength('b_enc', p.b_enc, p.n);
  checkLength('W_dec', p.W_dec, p.n * p.d);
  checkLength('b_dec', p.b_dec, p.d);
}

/** Float64 copies of float32 (or float64) parameters. */
export function toParams64(
  p: { W_enc: FloatArray; b_enc: FloatArray; W_dec: FloatArray; b_dec: FloatArray },
  d: number,
  n: number,
): SaeParams64 {
  const out: SaeParams64 = {
    d,
    n,
    W_enc: Float64Array.from(p.W_enc),
    b_enc: Float64Array.from(p.b_enc),
    W_dec: Float64Array.from(p.W_dec),
    b_dec: Float64Array.from(p.b_dec),
  };
  checkParams(out);
  return out;
}

/** ‖W_dec[i, :]‖₂ for every row, [n]. */
export function decoderRowNorms64(W_dec: FloatArray, n: number, d: number): Float64Array {
  checkLength('W_dec', W_dec, n * d);
  const norms = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += W_dec[i * d + j]! ** 2; // W_dec[i, j] at i*d + j
    norms[i] = Math.sqrt(ss);
  }
  return norms;
}

// ---------------------------------------------------------------------------------------------
// Forward

/** The pre-activations and centred input: xc [B, d] and pre [B, n]. */
function forwardPre(p: SaeParams64, x: Float64Array, B: number): { xc: Float64Array; pre: Float64Array } {
  const { d, n } = p;
  const xc = new Float64Array(B * d);
  for (let b = 0; b < B; b++)
    for (let k = 0; k < d; k++) xc[b * d + k] = x[b * d + k]! - p.b_dec[k]!; // xc[b, k], x[b, k] at b*d + k
  const pre = new Float64Array(B * n);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) {
      let s = p.b_enc[i]!;
      for (let k = 0; k < d; k++) s += xc[b * d + k]! * p.W_enc[k * n + i]!; // xc[b, k] at b*d + k; W_enc[k, i] at k*n + i
      pre[b * n + i] = s; // pre[b, i] at b*n + i
    }
  }
  return { xc, pre };
}

/** f = ReLU((x − b_dec)·W_enc + b_enc), [B, n]. */
export function encode64(p: SaeParams64, x: FloatArray, B: number): Float64Array {
  checkParams(p);
  checkLength('x', x, B * p.d);
  const { pre } = forwardPre(p, toF64(x), B);
  for (let e = 0; e < pre.length; e++) pre[e] = Math.max(pre[e]!, 0); // pre[b, i] -> f[b, i], same layout
  return pre;
}

/** xhat = f·W_dec + b_dec, [B, d]. */
export function decode64(p: SaeParams64, f: FloatArray, B: number): Float64Array {
  checkParams(p);
  checkLength('f', f, B * p.n);
  const { d, n } = p;
  const xhat = new Float64Array(B * d);
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < d; j++) {
      let s = p.b_dec[j]!;
      for (let i = 0; i < n; i++) s += f[b * n + i]! * p.W_dec[i * d + j]!; // f[b, i] at b*n + i; W_dec[i, j] at i*d + j
      xhat[b * d + j] = s; // xhat[b, j] at b*d + j
    }
  }
  return xhat;
}

// ---------------------------------------------------------------------------------------------
// Loss and gradients

export function lossAndGrads64(p: SaeParams64, xIn: FloatArray, B: number, opts: LossOptions64): LossAndGrads64 {
  checkParams(p);
  checkLength('x', xIn, B * p.d);
  if (!(B > 0)) throw new RangeError(`batch must be positive (got ${B})`);
  const { d, n } = p;
  const lambda = opts.l1Coeff;
  const x = toF64(xIn);

  // Forward.
  const { xc, pre } = forwardPre(p, x, B);
  const f = new Float64Array(B * n); // [B, n]
  for (let e = 0; e < pre.length; e++) f[e] = Math.max(pre[e]!, 0); // f[b, i] at b*n + i
  const xhat = decode64(p, f, B); // [B, d]

  // Penalty weights c_i, [n].
  const norms = decoderRowNorms64(p.W_dec, n, d);
  const c = opts.penalty === 'l1_decnorm' ? norms : new Float64Array(n).fill(1);

  // Statistics.
  let sq = 0;
  for (let e = 0; e < B * d; e++) sq += (x[e]! - xhat[e]!) ** 2; // x[b, j], xhat[b, j] at b*d + j
  let weighted = 0;
  let active = 0;
  const fireCounts = new Int32Array(n);
  const fSum = new Float64Array(n); // Σ_b f_bi, [n]
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) {
      const v = f[b * n + i]!; // f[b, i] at b*n + i
      weighted += v * c[i]!;
      fSum[i] = fSum[i]! + v;
      if (v > 0) {
        active++;
        fireCounts[i] = fireCounts[i]! + 1;
      }
    }
  }
  const mse = sq / B;
  const sparsity = weighted / B;
  const l0 = active / B;
  const loss = mse + lambda * sparsity;

  // g = ∂loss/∂xhat = (2/B)(xhat − x), [B, d].
  const g = new Float64Array(B * d);
  for (let e = 0; e < B * d; e++) g[e] = (2 / B) * (xhat[e]! - x[e]!); // g[b, j] at b*d + j

  // dW_dec[i, j] = Σ_b f_bi g_bj, [n, d].
  const dW_dec = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let b = 0; b < B; b++) s += f[b * n + i]! * g[b * d + j]!; // f[b, i] at b*n + i; g[b, j] at b*d + j
      dW_dec[i * d + j] = s; // dW_dec[i, j] at i*d + j
    }
  }
  // l1_decnorm: ∂/∂W_dec[i] of (λ/B) Σ_b f_bi ‖W_dec[i]‖ = (λ/B)(Σ_b f_bi) W_dec[i]/‖W_dec[i]‖ (0 for a zero row).
  if (opts.penalty === 'l1_decnorm') {
    for (let i = 0; i < n; i++) {
      if (norms[i]! === 0) continue;
      const scale = ((lambda / B) * fSum[i]!) / norms[i]!;
      for (let j = 0; j < d; j++) dW_dec[i * d + j] = dW_dec[i * d + j]! + scale * p.W_dec[i * d + j]!; // [i, j] at i*d + j
    }
  }

  // db_dec, decoder path: Σ_b g_bk, [d].
  const db_dec = new Float64Array(d);
  for (let b = 0; b < B; b++)
    for (let k = 0; k < d; k++) db_dec[k] = db_dec[k]! + g[b * d + k]!; // g[b, k] at b*d + k

  // dpre_bi = (Σ_j g_bj W_dec[i, j] + (λ/B) c_i)·[pre_bi > 0], [B, n].
  const dpre = new Float64Array(B * n);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) {
      if (!(pre[b * n + i]! > 0)) continue; // pre[b, i] at b*n + i; ReLU'(0) = 0
      let s = (lambda / B) * c[i]!;
      for (let j = 0; j < d; j++) s += g[b * d + j]! * p.W_dec[i * d + j]!; // g[b, j] at b*d + j; W_dec[i, j] at i*d + j
      dpre[b * n + i] = s; // dpre[b, i] at b*n + i
    }
  }

  // dW_enc[k, i] = Σ_b xc_bk dpre_bi, [d, n];  db_enc[i] = Σ_b dpre_bi, [n].
  const dW_enc = new Float64Array(d * n);
  for (let k = 0; k < d; k++) {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let b = 0; b < B; b++) s += xc[b * d + k]! * dpre[b * n + i]!; // xc[b, k] at b*d + k; dpre[b, i] at b*n + i
      dW_enc[k * n + i] = s; // dW_enc[k, i] at k*n + i
    }
  }
  const db_enc = new Float64Array(n);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < n; i++) db_enc[i] = db_enc[i]! + dpre[b * n + i]!; // dpre[b, i] at b*n + i

  // db_dec, encoder path: xc = x − b_dec, so ∂loss/∂b_dec[k] −= Σ_b Σ_i dpre_bi W_enc[k, i] = Σ_i W_enc[k, i] db_enc[i].
  for (let k = 0; k < d; k++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += p.W_enc[k * n + i]! * db_enc[i]!; // W_enc[k, i] at k*n + i
    db_dec[k] = db_dec[k]! - s;
  }

  return { loss, mse, sparsity, l0, fireCounts, dW_enc, db_enc, dW_dec, db_dec };
}

// ---------------------------------------------------------------------------------------------
// Decoder constraint

/**
 * In place: dW_dec[i] −= (dW_dec[i]·W_dec[i]) / ‖W_dec[i]‖² · W_dec[i] for every nonzero row i, so
 * the update is tangent to the sphere of unit-norm rows. Zero rows are left untouched.
 */
export function decoderRemoveParallelGrad64(W_dec: FloatArray, dW_dec: Float64Array, n: number, d: number): void {
  checkLength('W_dec', W_dec, n * d);
  checkLength('dW_dec', dW_dec, n * d);
  for (let i = 0; i < n; i++) {
    let dot = 0;
    let ss = 0;
    for (let j = 0; j < d; j++) {
      const w = W_dec[i * d + j]!; // W_dec[i, j] at i*d + j
      dot += dW_dec[i * d + j]! * w; // dW_dec[i, j] at i*d + j
      ss += w * w;
    }
    if (ss === 0) continue;
    const coef = dot / ss;
    for (let j = 0; j < d; j++) dW_dec[i * d + j] = dW_dec[i * d + j]! - coef * W_dec[i * d + j]!; // [i, j] at i*d + j
  }
}

/** In place: W_dec[i] /= ‖W_dec[i]‖ for every nonzero row i. */
export function decoderRenormalize64(W_dec: Float64Array, n: number, d: number): void {
  const norms = decoderRowNorms64(W_dec, n, d);
  for (let i = 0; i < n; i++) {
    if (norms[i]! === 0) continue;
    for (let j = 0; j < d; j++) W_dec[i * d + j] = W_dec[i * d + j]! / norms[i]!; // W_dec[i, j] at i*d + j
  }
}

// ---------------------------------------------------------------------------------------------
// Adam

/**
 * In place, PyTorch's Adam without weight decay (elementwise, any shape):
 *   m = β1 m + (1 − β1) g;  v = β2 v + (1 − β2) g²;  p −= lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
 */
export function adamUpdate64(p: Float64Array, g: FloatArray, m: Float64Array, v: Float64Array, hp: AdamHyper64): void {
  checkLength('g', g, p.length);
  checkLength('m', m, p.length);
  checkLength('v', v, p.length);
  if (!(hp.t >= 1)) throw new RangeError(`Adam step t must be >= 1 (got ${hp.t})`);
  const bc1 = 1 - hp.beta1 ** hp.t;
  const bc2 = 1 - hp.beta2 ** hp.t;
  for (let e = 0; e < p.length; e++) {
    const ge = g[e]!;
    const me = hp.beta1 * m[e]! + (1 - hp.beta1) * ge;
    const ve = hp.beta2 * v[e]! + (1 - hp.beta2) * ge * ge;
    m[e] = me;
    v[e] = ve;
    p[e] = p[e]! - (hp.lr * (me / bc1)) / (Math.sqrt(ve / bc2) + hp.eps);
  }
}

/** Zeroed Adam moments shaped like the parameters, t = 0. */
export function createAdamState64(p: SaeParams64): AdamState64 {
  const zeros = (): Record<ParamName, Float64Array> => ({
    W_enc: new Float64Array(p.d * p.n),
    b_enc: new Float64Array(p.n),
    W_dec: new Float64Array(p.n * p.d),
    b_dec: new Float64Array(p.d),
  });
  return { t: 0, m: zeros(), v: zeros() };
}

// ---------------------------------------------------------------------------------------------
// One training step

/**
 * One training step, in place on `p` and `state`: gradients → (constrained decoder: remove the
 * parallel component of dW_dec) → Adam on all four parameters with t = state.t + 1 →
 * (constrained decoder: renormalise the rows of W_dec). Returns the statistics of the batch before
 * the update and the per-feature firing counts of this batch.
 */
export function step64(p: SaeParams64, state: AdamState64, x: FloatArray, B: number, cfg: StepConfig64): StepStats64 {
  const r = lossAndGrads64(p, x, B, cfg);
  if (cfg.constrainDecoder) decoderRemoveParallelGrad64(p.W_dec, r.dW_dec, p.n, p.d);
  const t = state.t + 1;
  const hp: AdamHyper64 = { lr: cfg.lr, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, t };
  const grads: Record<ParamName, Float64Array> = { W_enc: r.dW_enc, b_enc: r.db_enc, W_dec: r.dW_dec, b_dec: r.db_dec };
  for (const k of PARAM_NAMES) adamUpdate64(p[k], grads[k], state.m[k], state.v[k], hp);
  state.t = t;
  if (cfg.constrainDecoder) decoderRenormalize64(p.W_dec, p.n, p.d);
  return { loss: r.loss, mse: r.mse, sparsity: r.sparsity, l0: r.l0, fireCounts: r.fireCounts };
}
