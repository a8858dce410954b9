/*
 * transformer_cpu.cpp — the GPT-2 forward ops on the CPU (transformer_cpu.h; math in backend.h).
 *
 * Linear layers go to sgemm (gemm.h); in MS_PREC_BF16 mode both operands are first rounded to
 * bf16 copies, exactly as sae_cpu.cpp does (a bf16 x bf16 product is exact in fp32, matching
 * tensor-core arithmetic), and the bias is added in fp32 afterwards. Everything else is a threaded
 * pass over rows or elements. Layer-norm statistics and softmax denominators accumulate in
 * double (logsumexp: fp32 exponentials summed in fp32 blocks, the blocks in double); activations
 * use float tanhf/erff. Attention is in attention_cpu.cpp. Index checks (token ids, targets) run
 * sequentially before anything is written, so a failing call leaves its outputs untouched and names
 * the first bad index. kl_rows (evaluation) takes its exponentials vectorised, in fp32, and
 * accumulates fp32 blocks of 256 in double.
 */
#include "transformer_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "convert.h"
#include "exp_rows.h"
#include "gemm.h"
#include "kernel_common.h"
#include "status.h"
#include "thread_pool.h"

namespace ms::cpu {
namespace {

// NaN counts as larger than every number (torch.argmax); otherwise the usual order.
inline bool beats(float a, float b) { return (std::isnan(a) && !std::isnan(b)) || a > b; }

}  // namespace

int layernorm(int rows, int C, float eps, const float* x, const float* weight, const float* bias,
              float* out, uint16_t* out_bf16, float* mean, float* rstd, ms_error* err) {
  const char* op = "layernorm";
  if (rows <= 0 || C <= 0) return fail(err, MS_ERR_INVALID, op, "bad shape [%d, %d]", rows, C);
  if (!x || !weight || !bias || !(out || out_bf16)) return fail(err, MS_ERR_INVALID, op, "x, weight, bias or out is null");
  if (!(eps >= 0.0f)) return fail(err, MS_ERR_INVALID, op, "eps must be >= 0 (got %g)", double(eps));
  const size_t R = size_t(rows), D = size_t(C);
  try {
    parallel_for(R, row_grain(D), [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        const float* xr = x + r * D;  // x[r, :]
        double s = 0.0;
        for (size_t j = 0; j < D; ++j) s += xr[j];
        const double m = s / double(D);
        double ss = 0.0;
        for (size_t j = 0; j < D; ++j) {
          const double dv = double(xr[j]) - m;
          ss += dv * dv;
        }
        const float mf = float(m);
        const float rs = float(1.0 / std::sqrt(ss / double(D) + double(eps)));
        // x - mean in double, then rounded: a row whose mean is large against its spread keeps its
        // deviations (subtracting the fp32-rounded mean would lose them). The backward does the same.
        // (The CUDA kernels work in fp32 throughout, as PyTorch's do.)
        if (out_bf16) {
          uint16_t* yr = out_bf16 + r * D;  // out_bf16[r, :]
          for (size_t j = 0; j < D; ++j) yr[j] = float_to_bf16(float(double(xr[j]) - m) * rs * weight[j] + bias[j]);
        } else {
          float* yr = out + r * D;  // out[r, :] (may be xr)
          for (size_t j = 0; j < D; ++j) yr[j] = float(double(xr[j]) - m) * rs * weight[j] + bias[j];
        }
        if (mean) mean[r] = mf;
        if (rstd) rstd[r] = rs;
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int linear(int rows, int n_in, int n_out, int trans_w, int precision, const float* x, const uint16_t* x_bf16,
           const float* W, const float* bias, float* out, uint16_t* out_bf16, int act, int accumulate,
           ms_error* err) {
  const char* op = "linear";
  if (rows <= 0 || n_in <= 0 || n_out <= 0)
    return fail(err, MS_ERR_INVALID, op, "bad shape: rows %d, n_in %d, n_out %d", rows, n_in, n_out);
  if (act != MS_ACT_NONE && act != MS_ACT_GELU_TANH && act != MS_ACT_GELU_ERF && act != MS_ACT_RELU)
    return fail(err, MS_ERR_INVALID, op, "unknown activation %d", act);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16)
    return fail(err, MS_ERR_INVALID, op, "unknown precision %d", precision);
  if ((out_bf16 || x_bf16) && precision != MS_PREC_BF16)
    return fail(err, MS_ERR_INVALID, op, "a bf16 input or output needs BF16 precision");
  if (!(x || x_bf16) || !W || !(out || out_bf16)) return fail(err, MS_ERR_INVALID, op, "x, W or out is null");
  if (accumulate && (out_bf16 || !out || act != MS_ACT_NONE))
    return fail(err, MS_ERR_INVALID, op, "accumulate needs an fp32 out and no activation");
  const size_t R = size_t(rows), K = size_t(n_in), N = size_t(n_out);
  const bool bf16 = precision == MS_PREC_BF16;
  try {
    // At BF16 the operands as bf16 values in fp32: x rounded (or widened from x_bf16), W rounded.
    std::vector<float> x_r(bf16 ? R * K : 0), W_r(bf16 ? K * N : 0);
    if (bf16) {
      if (x_bf16) {
        parallel_for(R * K, 1 << 15, [&](size_t i0, size_t i1) { widen_bf16(x_bf16 + i0, i1 - i0, x_r.data() + i0); });
      } else {
        round_copy_bf16(x, x_r.data(), R * K);
      }
      round_copy_bf16(W, W_r.data(), K * N);
    }
    // A bf16 output is formed in fp32, `block` rows at a time, then rounded into out_bf16 (an
    // accumulated one likewise, then added to out); an fp32 one in place, in one block.
    const bool via_stage = out_bf16 || accumulate;
    const size_t block = via_stage ? std::min(R, std::max<size_t>(1, (size_t(1) << 22) / N)) : R;
    std::vector<float> staged(via_stage ? block * N : 0);
    for (size_t b0 = 0; b0 < R; b0 += block) {
      const size_t rb = std::min(block, R - b0);
      float* y = via_stage ? staged.data() : out;  // rows b0 .. b0 + rb - 1 of the result, [rb, N]
      // y[rb, N] = x[b0 .., K] op(W)[K, N]; op(W) = W [K, N] (ldb = N) or W^T with W [N, K] (ldb = K)
      sgemm(false, trans_w != 0, int(rb), n_out, n_in, 1.0f, (bf16 ? x_r.data() : x) + b0 * K, n_in,
            bf16 ? W_r.data() : W, trans_w ? n_in : n_out, 0.0f, y, n_out);
      if (bias) {
        parallel_for(rb, row_grain(N), [&](size_t r0, size_t r1) {
          for (size_t r = r0; r < r1; ++r)
            for (size_t j = 0; j < N; ++j) y[r * N + j] += bias[j];  // y[r, j]
        });
      }
      if (act != MS_ACT_NONE) {
        const int rc = activation(act, rb * N, y, y, err);
        if (rc != MS_OK) return rc;
      }
      if (accumulate) {
        float* dst = out + b0 * N;  // out[b0 + r, j] at dst[r*N + j]
        parallel_for(rb * N, 1 << 16, [&](size_t i0, size_t i1) {
          for (size_t i = i0; i < i1; ++i) dst[i] += y[i];
        });
      }
      if (out_bf16) {
        uint16_t* dst = out_bf16 + b0 * N;  // out_bf16[b0 + r, j] at dst[r*N + j]
        parallel_for(rb * N, 1 << 16, [&](size_t i0, size_t i1) {
          for (size_t i = i0; i < i1; ++i) dst[i] = float_to_bf16(y[i]);
        });
      }
    }
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int activation(int kind, size_t count, const float* x, float* out, ms_error* err) {
  const char* op = "activation";
  if (kind != MS_ACT_GELU_TANH && kind != MS_ACT_GELU_ERF && kind != MS_ACT_RELU)
    return fail(err, MS_ERR_INVALID, op, "unknown activation %d", kind);
  if (count && (!x || !out)) return fail(err, MS_ERR_INVALID, op, "x or out is null");
  try {
    parallel_for(count, 1 << 14, [&](size_t i0, size_t i1) {
      switch (kind) {
        case MS_ACT_GELU_TANH:
          for (size_t i = i0; i < i1; ++i) {
            const float v = x[i];
            // ±inf: the limits (inf, 0), not inf * 0 = NaN.
            out[i] = std::isinf(v) ? (v > 0.0f ? v : 0.0f) : 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + kGeluCubic * v * v * v)));
          }
          break;
        case MS_ACT_GELU_ERF:
          for (size_t i = i0; i < i1; ++i) {
            const float v = x[i];
            out[i] = std::isinf(v) ? (v > 0.0f ? v : 0.0f) : 0.5f * v * (1.0f + std::erf(v * kInvSqrt2));
          }
          break;
        default:
          for (size_t i = i0; i < i1; ++i) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
          break;
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int add(size_t count, const float* a, const float* b, float* out, ms_error* err) {
  const char* op = "add";
  if (count && (!a || !b || !out)) return fail(err, MS_ERR_INVALID, op, "a, b or out is null");
  try {
    parallel_for(count, 1 << 15, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) out[i] = a[i] + b[i];
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int embed(int batch, int T, int C, int V, int n_positions, int pos_offset, const int32_t* ids,
          const float* wte, const float* wpe, float* tok_out, float* pos_out, int /*indices_checked*/,
          ms_error* err) {
  const char* op = "embed";
  if (batch <= 0 || T <= 0 || C <= 0 || V <= 0 || n_positions <= 0)
    return fail(err, MS_ERR_INVALID, op, "bad shape: batch %d, T %d, C %d, V %d, n_positions %d", batch, T, C,
                V, n_positions);
  if (pos_offset < 0 || int64_t(pos_offset) + T > n_positions)
    return fail(err, MS_ERR_INVALID, op, "positions %d .. %lld are outside [0, %d)", pos_offset,
                (long long)pos_offset + T - 1, n_positions);
  if (!ids || !wte || !wpe || !tok_out) return fail(err, MS_ERR_INVALID, op, "a pointer is null");
  const size_t rows = size_t(batch) * size_t(T), D = size_t(C), Tn = size_t(T);
  for (size_t r = 0; r < rows; ++r)
    if (ids[r] < 0 || ids[r] >= V)
      return fail(err, MS_ERR_INVALID, op, "ids[%zu] = %d is outside the vocabulary [0, %d)", r, int(ids[r]), V);
  try {
    parallel_for(rows, row_grain(2 * D), [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        const size_t t = r % Tn;                                      // r = b*T + t
        const float* tok = wte + size_t(ids[r]) * D;                  // wte[ids[r], :]
        const float* pos = wpe + (size_t(pos_offset) + t) * D;       // wpe[pos_offset + t, :]
        if (pos_out) {
          std::memcpy(tok_out + r * D, tok, D * 4);
          std::memcpy(pos_out + r * D, pos, D * 4);
        } else {  // their sum only
          for (size_t c = 0; c < D; ++c) tok_out[r * D + c] = tok[c] + pos[c];
        }
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int linear_qkv(int batch, int T, int C, int Tmax, int offset, int precision, const float* x, const uint16_t* x_bf16,
               const float* W, const float* bias, float* q, float* k_cache, float* v_cache, ms_error* err) {
  const char* op = "linear_qkv";
  if (batch <= 0 || T <= 0 || C <= 0 || Tmax <= 0)
    return fail(err, MS_ERR_INVALID, op, "bad shape: batch %d, T %d, C %d, Tmax %d", batch, T, C, Tmax);
  if (offset < 0 || int64_t(offset) + T > Tmax)
    return fail(err, MS_ERR_INVALID, op, "offset %d + T %d exceeds Tmax %d", offset, T, Tmax);
  if (int64_t(batch) * T > INT32_MAX || int64_t(C) * 3 > INT32_MAX)
    return fail(err, MS_ERR_INVALID, op, "batch %d * T %d rows or 3 * C %d columns overflow", batch, T, C);
  if (!q || !k_cache || !v_cache) return fail(err, MS_ERR_INVALID, op, "q or a cache is null");
  const int rows = batch * T;
  try {
    std::vector<float> qkv(size_t(rows) * 3 * size_t(C));  // linear's result [rows, 3C], then split
    int rc = linear(rows, C, 3 * C, 0, precision, x, x_bf16, W, bias, qkv.data(), nullptr, MS_ACT_NONE, 0, err);
    if (rc != MS_OK) return rc;
    return split_qkv(batch, T, C, Tmax, offset, qkv.data(), q, k_cache, v_cache, err);
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
}

int split_qkv(int batch, int T, int C, int Tmax, int offset, const float* qkv, float* q, float* k_cache,
              float* v_cache, ms_error* err) {
  const char* op = "split_qkv";
  if (batch <= 0 || T <= 0 || C <= 0 || Tmax <= 0)
    return fail(err, MS_ERR_INVALID, op, "bad shape: batch %d, T %d, C %d, Tmax %d", batch, T, C, Tmax);
  if (offset < 0 || int64_t(offset) + T > Tmax)
    return fail(err, MS_ERR_INVALID, op, "offset %d + T %d exceeds Tmax %d", offset, T, Tmax);
  if (!qkv || !q || !k_cache || !v_cache) return fail(err, MS_ERR_INVALID, op, "a pointer is null");
  const size_t rows = size_t(batch) * size_t(T), D = size_t(C), Tn = size_t(T), Tm = size_t(Tmax);
  try {
    parallel_for(rows, row_grain(3 * D), [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        const size_t b = r / Tn, t = r % Tn;                  // r = b*T + t
        const float* src = qkv + r * 3 * D;                   // qkv[r, :] = q | k | v
        const size_t cache_row = (b * Tm + size_t(offset) + t) * D;  // cache[b, offset + t, :]
        std::memcpy(q + r * D, src, D * 4);
        std::memcpy(k_cache + cache_row, src + D, D * 4);
        std::memcpy(v_cache + cache_row, src + 2 * D, D * 4);
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int cross_entropy(int rows, int V, const float* logits, const uint16_t* logits_bf16, const int32_t* targets,
                  float* out, int /*indices_checked*/, ms_error* err) {
  const char* op = "cross_entropy";
  if (rows <= 0 || V <= 0) return fail(err, MS_ERR_INVALID, op, "bad shape [%d, %d]", rows, V);
  if (!(logits || logits_bf16) || !targets || !out) return fail(err, MS_ERR_INVALID, op, "logits, targets or out is null");
  const size_t R = size_t(rows), N = size_t(V);
  for (size_t r = 0; r < R; ++r)
    if (targets[r] >= V)
      return fail(err, MS_ERR_INVALID, op, "targets[%zu] = %d is outside the vocabulary [0, %d)", r,
                  int(targets[r]), V);
  try {
    parallel_for(R, row_grain(N), [&](size_t r0, size_t r1) {
      std::vector<float> row(logits_bf16 ? N : 0);  // a bf16 row, widened
      for (size_t r = r0; r < r1; ++r) {
        const int32_t target = targets[r];
        if (target < 0) {
          out[r] = 0.0f;  // ignored position
          continue;
        }
        const float* lr = logits_bf16 ? widen_bf16(logits_bf16 + r * N, N, row.data()) : logits + r * N;  // logits[r, :]
        const float m = row_max(lr, N);
        const double s = exp_sum(lr, N, m);  // sum_v exp(l_v - m)
        out[r] = float(double(m) + std::log(s) - double(lr[target]));
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int argmax_rows(int rows, int V, const float* logits, int32_t* out, ms_error* err) {
  const char* op = "argmax_rows";
  if (rows <= 0 || V <= 0) return fail(err, MS_ERR_INVALID, op, "bad shape [%d, %d]", rows, V);
  if (!logits || !out) return fail(err, MS_ERR_INVALID, op, "logits or out is null");
  const size_t R = size_t(rows), N = size_t(V);
  try {
    parallel_for(R, row_grain(N), [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        const float* lr = logits + r * N;  // logits[r, :]
        size_t best = 0;
        for (size_t v = 1; v < N; ++v)
          if (beats(lr[v], lr[best])) best = v;  // strict: the first of equal values stays
        out[r] = int32_t(best);
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int kl_rows(int rows, int V, const float* p_logits, const float* q_logits, float* out, ms_error* err) {
  const char* op = "kl_rows";
  if (rows <= 0 || V <= 0) return fail(err, MS_ERR_INVALID, op, "bad shape [%d, %d]", rows, V);
  if (!p_logits || !q_logits || !out) return fail(err, MS_ERR_INVALID, op, "p_logits, q_logits or out is null");
  const size_t R = size_t(rows), N = size_t(V);
  constexpr size_t kBlock = 256;  // fp32 partial sums over this many entries, the blocks summed in double
  try {
    parallel_for(R, row_grain(N), [&](size_t r0, size_t r1) {
      std::vector<float> ep(N), eq(N);  // this chunk's rows of exp(p - max p) and exp(q - max q)
      for (size_t r = r0; r < r1; ++r) {
        const float* p = p_logits + r * N;  // p[r, :]
        const float* q = q_logits + r * N;  // q[r, :]
        const float mp = row_max(p, N), mq = row_max(q, N);
        // With a_v = p_v - mp, b_v = q_v - mq, e_v = exp(a_v), sp = sum e_v, sq = sum exp(b_v):
        // KL = sum_v (e_v / sp) (a_v - b_v) - log sp + log sq. Both rows' exponentials are the same
        // vectorised function, summed alike, so equal rows give exactly 0.
        std::memcpy(ep.data(), p, N * sizeof(float));
        std::memcpy(eq.data(), q, N * sizeof(float));
        exp_scale(ep.data(), N, mp, 1.0f);
        exp_scale(eq.data(), N, mq, 1.0f);
        double sp = 0.0, sq = 0.0, weighted = 0.0;
        for (size_t v0 = 0; v0 < N; v0 += kBlock) {
          const size_t v1 = std::min(N, v0 + kBlock);
          float bp = 0.0f, bq = 0.0f, bw = 0.0f;
          for (size_t v = v0; v < v1; ++v) {
            bp += ep[v];
            bq += eq[v];
            // An entry of P's softmax that is exactly 0 (a -inf logit, a masked one) adds nothing,
            // whatever Q's logit there (0 * -inf would be NaN).
            bw += ep[v] == 0.0f ? 0.0f : ep[v] * ((p[v] - mp) - (q[v] - mq));
          }
          sp += bp;
          sq += bq;
          weighted += bw;
        }
        out[r] = float(weighted / sp - std::log(sp) + std::log(sq));
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

}  // namespace ms::cpu
