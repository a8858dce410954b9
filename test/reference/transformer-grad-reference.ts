/**
 * Float64 references for the GPT-2 backward ops of lib/lm/grad-ops.ts, written from the maths with
 * plain loops and independently of the native algorithms: attention's backward forms every
 * probability row and differentiates softmax through its Jacobian (no log-sum-exp, no D trick),
 * layer norm's backward applies the explicit Jacobian of the normalisation, and cross-entropy
 * forms the softmax. Inputs may be float32 (widened as read); every output is a Float64Array.
 * The forward references they pair with are in transformer-reference.ts; the tests check each
 * backward here against central differences of its forward.
 */
import { type FloatArray, attentionRef, erfRef } from './transformer-reference.js';

/**
 * Training attention (offset 0, Tmax = T): out [B·T, C] as attentionRef, and
 * lse[(b·nHead + h)·T + t] = log Σ_{j <= t} exp(q_t·k_j / √hd) for head h.
 */
export function attentionForwardTrainRef(q: FloatArray, k: FloatArray, v: FloatArray, batch: number, T: number, C: number, nHead: number) {
  const hd = C / nHead;
  const out = attentionRef(q, k, v, batch, T, T, 0, C, nHead);
  const lse = new Float64Array(batch * nHead * T);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < nHead; h++) {
      for (let t = 0; t < T; t++) {
        const s = scoresRef(q, k, b, h, t, T, C, hd);
        const max = Math.max(...s);
        lse[(b * nHead + h) * T + t] = max + Math.log(s.reduce((acc, x) => acc + Math.exp(x - max), 0));
      }
    }
  }
  return { out, lse };
}

/** s_j = q[b·T + t, head h] · k[b·T + j, head h] / √hd for j <= t. */
function scoresRef(q: FloatArray, k: FloatArray, b: number, h: number, t: number, T: number, C: number, hd: number): Float64Array {
  const s = new Float64Array(t + 1);
  for (let j = 0; j <= t; j++) {
    let acc = 0;
    for (let d = 0; d < hd; d++) acc += q[(b * T + t) * C + h * hd + d]! * k[(b * T + j) * C + h * hd + d]!; // q[b,t,h,d] · k[b,j,h,d]
    s[j] = acc / Math.sqrt(hd);
  }
  return s;
}

/**
 * The gradient of L = Σ dout ⊙ attention(q, k, v) (training attention, causal): with
 * P_t = softmax(s_t) over j <= t and dP_tj = dout_t · v_j, the softmax Jacobian
 * ∂P_ti/∂s_tj = P_ti (δ_ij − P_tj) gives dS_tj = Σ_i dP_ti P_ti (δ_ij − P_tj); then
 * dq_t = Σ_j dS_tj k_j / √hd, dk_j = Σ_t dS_tj q_t / √hd, dv_j = Σ_t P_tj dout_t.
 */
export function attentionBackwardRef(dout: FloatArray, q: FloatArray, k: FloatArray, v: FloatArray, batch: number, T: number, C: number, nHead: number) {
  const hd = C / nHead;
  const dq = new Float64Array(batch * T * C);
  const dk = new Float64Array(batch * T * C);
  const dv = new Float64Array(batch * T * C);
  const at = (b: number, t: number, h: number, d: number) => (b * T + t) * C + h * hd + d; // [b·T + t, h·hd + d]
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < nHead; h++) {
      for (let t = 0; t < T; t++) {
        const s = scoresRef(q, k, b, h, t, T, C, hd);
        const max = Math.max(...s);
        const e = s.map((x) => Math.exp(x - max));
        const sum = e.reduce((acc, x) => acc + x, 0);
        const P = e.map((x) => x / sum);
        const dP = new Float64Array(t + 1);
        for (let j = 0; j <= t; j++) {
          for (let d = 0; d < hd; d++) dP[j] = dP[j]! + dout[at(b, t, h, d)]! * v[at(b, j, h, d)]!;
        }
        for (let j = 0; j <= t; j++) {
          let dS = 0;
          for (let i = 0; i <= t; i++) dS += dP[i]! * P[i]! * ((i === j ? 1 : 0) - P[j]!);
          for (let d = 0; d < hd; d++) {
            dq[at(b, t, h, d)] = dq[at(b, t, h, d)]! + (dS * k[at(b, j, h, d)]!) / Math.sqrt(hd);
            dk[at(b, j, h, d)] = dk[at(b, j, h, d)]! + (dS * q[at(b, t, h, d)]!) / Math.sqrt(hd);
            dv[at(b, j, h, d)] = dv[at(b, j, h, d)]! + P[j]! * dout[at(b, t, h, d)]!;
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}

/** qkv [rows, 3C] = q | k | v along the last dim. */
export function mergeQkvRef(q: FloatArray, k: FloatArray, v: FloatArray, rows: number, C: number): Float64Array {
  const qkv = new Float64Array(rows * 3 * C);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < C; c++) {
      qkv[r * 3 * C + c] = q[r * C + c]!; // qkv[r, c]
      qkv[r * 3 * C + C + c] = k[r * C + c]!; // qkv[r, C + c]
      qkv[r * 3 * C + 2 * C + c] = v[r * C + c]!; // qkv[r, 2C + c]
    }
  }
  return qkv;
}

/**
 * The gradient of L = Σ dout ⊙ layerNorm(x) given the row statistics mean, rstd [rows]: with
 * n_j = (x_j − mean)·rstd and y_j = n_j·w_j + b_j, the Jacobian of the normalisation is
 * ∂n_j/∂x_k = rstd·(δ_jk − 1/C − n_j·n_k/C), so dx_k = Σ_j dout_j·w_j·∂n_j/∂x_k;
 * dweight_j = Σ_rows dout_j·n_j; dbias_j = Σ_rows dout_j.
 */
export function layerNormBackwardRef(dout: FloatArray, x: FloatArray, weight: FloatArray, mean: FloatArray, rstd: FloatArray, rows: number, C: number) {
  const dx = new Float64Array(rows * C);
  const dweight = new Float64Array(C);
  const dbias = new Float64Array(C);
  for (let r = 0; r < rows; r++) {
    const n = new Float64Array(C);
    for (let j = 0; j < C; j++) n[j] = (x[r * C + j]! - mean[r]!) * rstd[r]!; // n[r, j]
    for (let k = 0; k < C; k++) {
      let acc = 0;
      for (let j = 0; j < C; j++) {
        const jac = rstd[r]! * ((j === k ? 1 : 0) - 1 / C - (n[j]! * n[k]!) / C); // ∂n_j / ∂x_k
        acc += dout[r * C + j]! * weight[j]! * jac;
      }
      dx[r * C + k] = acc;
    }
    for (let j = 0; j < C; j++) {
      dweight[j] = dweight[j]! + dout[r * C + j]! * n[j]!;
      dbias[j] = dbias[j]! + dout[r * C + j]!;
    }
  }
  return { dx, dweight, dbias };
}

/**
 * The gradient of L = Σ dout ⊙ (x op(W) + b) for x [rows, nIn]: op(W) = W [nIn, nOut], or with
 * transW W [nOut, nIn] used transposed. dx = dout op(W)ᵀ [rows, nIn]; dW (W's layout) =
 * xᵀ dout or doutᵀ x; db [nOut] = Σ_rows dout.
 */
export function linearBackwardRef(dout: FloatArray, x: FloatArray, W: FloatArray, rows: number, nIn: number, nOut: number, transW: boolean) {
  const dx = new Float64Array(rows * nIn);
  const dW = new Float64Array(nIn * nOut);
  const db = new Float64Array(nOut);
  const wAt = (i: number, o: number) => (transW ? o * nIn + i : i * nOut + o); // W[i, o] or W[o, i]
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < nOut; o++) {
      const g = dout[r * nOut + o]!; // dout[r, o]
      db[o] = db[o]! + g;
      for (let i = 0; i < nIn; i++) {
        dx[r * nIn + i] = dx[r * nIn + i]! + g * W[wAt(i, o)]!;
        dW[wAt(i, o)] = dW[wAt(i, o)]! + x[r * nIn + i]! * g;
      }
    }
  }
  return { dx, dW, db };
}

/** d/dx gelu_new(x) = 0.5(1 + tanh u) + 0.5·x·(1 − tanh² u)·√(2/π)(1 + 3·0.044715·x²), u = √(2/π)(x + 0.044715x³). */
export function geluNewGradRef(x: number): number {
  const s = Math.sqrt(2 / Math.PI);
  const th = Math.tanh(s * (x + 0.044715 * x ** 3));
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * s * (1 + 3 * 0.044715 * x * x);
}

/** d/dx gelu(x) = Φ(x) + x·φ(x) = 0.5(1 + erf(x/√2)) + x·exp(−x²/2)/√(2π). */
export function geluErfGradRef(x: number): number {
  return 0.5 * (1 + erfRef(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

/** d/dx relu(x): 1 for x > 0, else 0. */
export function reluGradRef(x: number): number {
  return x > 0 ? 1 : 0;
}

/**
 * Softmax cross-entropy and its gradient: losses[r] = logsumexp(logits[r]) − logits[r, target]
 * and dlogits[r] = (softmax(logits[r]) − onehot(target))·scale; both 0 where target < 0.
 */
export function crossEntropyBackwardRef(logits: FloatArray, targets: Int32Array, rows: number, V: number, scale: number) {
  const losses = new Float64Array(rows);
  const dlogits = new Float64Array(rows * V);
  for (let r = 0; r < rows; r++) {
    const target = targets[r]!;
    if (target < 0) continue;
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[r * V + i]!);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[r * V + i]! - max);
    losses[r] = max + Math.log(sum) - logits[r * V + target]!;
    for (let i = 0; i < V; i++) dlogits[r * V + i] = (Math.exp(logits[r * V + i]! - max) / sum - (i === target ? 1 : 0)) * scale;
  }
  return { losses, dlogits };
}

/** dwte [V, C] = Σ_{r: ids[r] = v} dtok[r]; dwpe [nPositions, C] = Σ_b dpos[b·T + t] at row t. */
export function embedBackwardRef(ids: Int32Array, batch: number, T: number, dtok: FloatArray, dpos: FloatArray, V: number, nPositions: number, C: number) {
  const dwte = new Float64Array(V * C);
  const dwpe = new Float64Array(nPositions * C);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      const r = b * T + t;
      for (let c = 0; c < C; c++) {
        dwte[ids[r]! * C + c] = dwte[ids[r]! * C + c]! + dtok[r * C + c]!; // dwte[ids[r], c]
        dwpe[t * C + c] = dwpe[t * C + c]! + dpos[r * C + c]!; // dwpe[t, c]
      }
    }
  }
  return { dwte, dwpe };
}

export interface AdamWRefHyperparams {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
  gradScale: number;
}

/**
 * One AdamW step as torch.optim.AdamW (decoupled weight decay): p ← p·(1 − lr·wd);
 * g = gradScale·grad; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
 * p ← p − lr·(m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + eps). Returns the new param, m, v.
 */
export function adamWRef(param: FloatArray, grad: FloatArray, m: FloatArray, v: FloatArray, hp: AdamWRefHyperparams) {
  const n = param.length;
  const p2 = new Float64Array(n);
  const m2 = new Float64Array(n);
  const v2 = new Float64Array(n);
  const bias1 = 1 - hp.beta1 ** hp.step;
  const bias2 = 1 - hp.beta2 ** hp.step;
  for (let i = 0; i < n; i++) {
    const g = hp.gradScale * grad[i]!;
    m2[i] = hp.beta1 * m[i]! + (1 - hp.beta1) * g;
    v2[i] = hp.beta2 * v[i]! + (1 - hp.beta2) * g * g;
    const decayed = param[i]! * (1 - hp.lr * hp.weightDecay);
    p2[i] = decayed - (hp.lr * (m2[i]! / bias1)) / (Math.sqrt(v2[i]! / bias2) + hp.eps);
  }
  return { param: p2, m: m2, v: v2 };
}
