/**
 * Float64 references for the GPT-2 forward ops of lib/lm/ops.ts. Plain loops, written to be read
 * against the maths; attention is the textbook two-pass softmax (a full score row per query), so
 * it checks the backends' online softmax independently. Inputs may be float32 (widened as read);
 * every output is a Float64Array (Int32Array for argmax).
 */

export type FloatArray = Float32Array | Float64Array;

/** out[r, j] = (x[r, j] − mean_r) / √(var_r + eps) · weight[j] + bias[j]; var biased. Also mean, rstd [rows]. */
export function layerNormRef(x: FloatArray, weight: FloatArray, bias: FloatArray, rows: number, C: number, eps: number) {
  const out = new Float64Array(rows * C);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < C; j++) s += x[r * C + j]!; // x[r, j]
    const m = s / C;
    let v = 0;
    for (let j = 0; j < C; j++) v += (x[r * C + j]! - m) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    for (let j = 0; j < C; j++) out[r * C + j] = (x[r * C + j]! - m) * rs * weight[j]! + bias[j]!;
    mean[r] = m;
    rstd[r] = rs;
  }
  return { out, mean, rstd };
}

/**
 * out [rows, nOut] = x [rows, nIn] W + bias; W [nIn, nOut], or with transW W [nOut, nIn] used
 * transposed. bias [nOut] or null.
 */
export function linearRef(x: FloatArray, W: FloatArray, bias: FloatArray | null, rows: number, nIn: number, nOut: number, transW: boolean): Float64Array {
  const out = new Float64Array(rows * nOut);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < nOut; o++) {
      let s = bias ? bias[o]! : 0;
      for (let k = 0; k < nIn; k++) s += x[r * nIn + k]! * (transW ? W[o * nIn + k]! : W[k * nOut + o]!); // x[r, k] · W[k, o] (or W[o, k])
      out[r * nOut + o] = s;
    }
  }
  return out;
}

export function geluNewRef(v: number): number {
  return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
}

/** erf in float64: its Maclaurin series for |x| < 3, the continued fraction of erfc beyond (error below 1e-13). */
export function erfRef(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  // erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))), evaluated from the tail
  let f = ax;
  for (let k = 60; k >= 1; k--) f = ax + k / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

export function geluErfRef(v: number): number {
  return 0.5 * v * (1 + erfRef(v / Math.SQRT2));
}

export function reluRef(v: number): number {
  return v > 0 ? v : 0;
}

/** tok[r] = wte[ids[r]], pos[r] = wpe[posOffset + t] for r = b·T + t. */
export function embedRef(ids: Int32Array, batch: number, T: number, wte: FloatArray, wpe: FloatArray, C: number, posOffset: number) {
  const tok = new Float64Array(batch * T * C);
  const pos = new Float64Array(batch * T * C);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      const r = b * T + t;
      for (let c = 0; c < C; c++) {
        tok[r * C + c] = wte[ids[r]! * C + c]!; // wte[ids[r], c]
        pos[r * C + c] = wpe[(posOffset + t) * C + c]!; // wpe[posOffset + t, c]
      }
    }
  }
  return { tok, pos };
}

/**
 * The q/k/v split: returns q [B·T, C] and the caches [B, Tmax, C] after writing rows
 * offset .. offset+T−1 into copies of kCache, vCache.
 */
export function splitQkvRef(qkv: FloatArray, batch: number, T: number, C: number, kCache: FloatArray, vCache: FloatArray, Tmax: number, offset: number) {
  const q = new Float64Array(batch * T * C);
  const k = Float64Array.from(kCache);
  const v = Float64Array.from(vCache);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      const r = b * T + t;
      const cache = (b * Tmax + offset + t) * C; // cache[b, offset + t, 0]
      for (let c = 0; c < C; c++) {
        q[r * C + c] = qkv[r * 3 * C + c]!; // qkv[r, c]
        k[cache + c] = qkv[r * 3 * C + C + c]!; // qkv[r, C + c]
        v[cache + c] = qkv[r * 3 * C + 2 * C + c]!; // qkv[r, 2C + c]
      }
    }
  }
  return { q, k, v };
}

/**
 * Causal attention over a cache: for row r = b·T + t at position p = offset + t and head h,
 * out[r, h·hd + d] = Σ_{j <= p} softmax_j(q[r, h]·k[b, j, h] / √hd) v[b, j, h·hd + d].
 */
export function attentionRef(q: FloatArray, k: FloatArray, v: FloatArray, batch: number, T: number, Tmax: number, offset: number, C: number, nHead: number): Float64Array {
  const hd = C / nHead;
  const out = new Float64Array(batch * T * C);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      const r = b * T + t;
      const p = offset + t;
      for (let h = 0; h < nHead; h++) {
        const scores = new Float64Array(p + 1);
        let max = -Infinity;
        for (let j = 0; j <= p; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[r * C + h * hd + d]! * k[(b * Tmax + j) * C + h * hd + d]!; // q[r, h, d] · k[b, j, h, d]
          scores[j] = s / Math.sqrt(hd);
          max = Math.max(max, scores[j]!);
        }
        let sum = 0;
        for (let j = 0; j <= p; j++) sum += Math.exp(scores[j]! - max);
        for (let d = 0; d < hd; d++) {
          let acc = 0;
          for (let j = 0; j <= p; j++) acc += (Math.exp(scores[j]! - max) / sum) * v[(b * Tmax + j) * C + h * hd + d]!;
          out[r * C + h * hd + d] = acc;
        }
      }
    }
  }
  return out;
}

/** out[r] = logsumexp(logits[r]) − logits[r, targets[r]]; 0 where targets[r] < 0. */
export function crossEntropyRef(logits: FloatArray, targets: Int32Array, rows: number, V: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const target = targets[r]!;
    if (target < 0) continue;
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[r * V + i]!);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[r * V + i]! - max);
    out[r] = max + Math.log(sum) - logits[r * V + target]!;
  }
  return out;
}

/** out[r] = KL(softmax(p[r]) ‖ softmax(q[r])) = Σ_v P_v (log P_v − log Q_v), from explicit log-probabilities. */
export function klRowsRef(p: FloatArray, q: FloatArray, rows: number, V: number): Float64Array {
  const logSoftmax = (x: FloatArray, r: number): Float64Array => {
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, x[r * V + i]!);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(x[r * V + i]! - max);
    const lse = max + Math.log(sum);
    return Float64Array.from({ length: V }, (_, i) => x[r * V + i]! - lse); // log softmax(x[r])_i
  };
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const lp = logSoftmax(p, r);
    const lq = logSoftmax(q, r);
    for (let i = 0; i < V; i++) out[r]! += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
  }
  return out;
}

/** out[r] = the first index of the largest logits[r, :] (NaN counts as largest). */
export function argmaxRowsRef(logits: FloatArray, rows: number, V: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let i = 1; i < V; i++) {
      const a = logits[r * V + i]!;
      const b = logits[r * V + best]!;
      if ((Number.isNaN(a) && !Number.isNaN(b)) || a > b) best = i;
    }
    out[r] = best;
  }
  return out;
}
