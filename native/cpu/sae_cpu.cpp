/*
 * sae_cpu.cpp — standard SAE encode / decode / loss-and-gradients on the CPU.
 *
 * Shapes (row-major): x [B, d], W_enc [d, n], b_enc [n], W_dec [n, d], b_dec [d], f [B, n].
 * The five matrix products (2·B·d·n FLOP each) go to sgemm; everything else is a threaded pass.
 * In MS_PREC_BF16 mode the operands of each product are rounded to bf16 first (a product of two
 * bf16 values is exact in fp32, so this matches tensor cores' bf16 x bf16 -> fp32 arithmetic);
 * elementwise math and reductions stay fp32/double.
 */
#include "sae_cpu.h"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <vector>

#include "convert.h"
#include "gemm.h"
#include "kernel_common.h"
#include "sae_sparse_cpu.h"
#include "status.h"
#include "thread_pool.h"

namespace ms::cpu {
namespace {

constexpr size_t kAlign = 64;
size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Workspace carve-up, in this order: xc [B, d], f [B, n], g [B, d], gp [B, n],
// and in bf16 mode f_r [B, n], W_enc_r [d, n], W_dec_r [n, d].
struct Workspace {
  float* xc;
  float* f;
  float* g;
  float* gp;
  float* f_r;
  float* W_enc_r;
  float* W_dec_r;
};

Workspace carve(void* base, size_t B, size_t d, size_t n, bool bf16) {
  char* p = static_cast<char*>(base);
  auto take = [&p](size_t floats) {
    float* out = reinterpret_cast<float*>(p);
    p += aligned(floats * sizeof(float));
    return out;
  };
  Workspace ws{};
  ws.xc = take(B * d);
  ws.f = take(B * n);
  ws.g = take(B * d);
  ws.gp = take(B * n);
  if (bf16) {
    ws.f_r = take(B * n);
    ws.W_enc_r = take(d * n);
    ws.W_dec_r = take(n * d);
  }
  return ws;
}

// xc[b, j] = x[b, j] - b_dec[j]  (rounded to bf16 when it is a bf16 operand)
void center(size_t B, size_t d, const float* x, const float* b_dec, float* xc, bool bf16) {
  parallel_for(B, row_grain(d), [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      const float* xr = x + b * d;  // x[b, :]
      float* out = xc + b * d;      // xc[b, :]
      for (size_t j = 0; j < d; ++j) {
        const float v = xr[j] - b_dec[j];
        out[j] = bf16 ? round_to_bf16(v) : v;
      }
    }
  });
}

// f[B, n] = ReLU(xc W_enc + b_enc); xc already centred (and rounded in bf16 mode). When
// active_per_row is given, (*active_per_row)[b] = #{i : f[b, i] > 0}, counted in the same pass.
void encode_centered(size_t B, size_t d, size_t n, const float* xc, const float* W_enc_op,
                     const float* b_enc, float* f, std::vector<size_t>* active_per_row = nullptr) {
  sgemm(false, false, int(B), int(n), int(d), 1.0f, xc, int(d), W_enc_op, int(n), 0.0f, f, int(n));
  if (active_per_row) active_per_row->assign(B, 0);
  parallel_for(B, row_grain(n), [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      float* row = f + b * n;  // f[b, :]
      size_t active = 0;
      for (size_t i = 0; i < n; ++i) {
        const float v = row[i] + b_enc[i];
        row[i] = v > 0.0f ? v : 0.0f;
        active += v > 0.0f ? 1 : 0;
      }
      if (active_per_row) (*active_per_row)[b] = active;
    }
  });
}

// c[i] = ||W_dec[i, :]||
void decoder_row_norms(size_t n, size_t d, const float* W_dec, float* c) {
  parallel_for(n, row_grain(d), [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const float* w = W_dec + i * d;  // W_dec[i, :]
      double ss = 0.0;
      for (size_t j = 0; j < d; ++j) ss += double(w[j]) * w[j];
      c[i] = float(std::sqrt(ss));
    }
  });
}

// Products 3-5 of the step on sgemm, with the column pass between them (sae_sparse_cpu.h has the
// same over the active entries only):
//   dW_dec = f_opᵀ g; gp = (g W_dec_opᵀ + l1_scale c) masked by f > 0 (in the workspace's gp, then
//   bf16-rounded in bf16 mode); dW_enc = xcᵀ gp; per feature sum_b f, #active and sum_b gp.
void feature_grads_dense(size_t B, size_t D, size_t N, const float* f, const float* f_op, const float* g,
                         const float* W_dec_op, const float* xc, const float* c, float l1_scale, bool bf16, float* gp,
                         float* dW_dec, float* dW_enc, double* f_colsum, int32_t* fired, double* gp_colsum) {
  const int b_i = int(B), d_i = int(D), n_i = int(N);
  // 3. dW_dec[n, d] = f^T g   (the decoder-norm penalty term is added by the caller)
  sgemm(true, false, n_i, d_i, b_i, 1.0f, f_op, n_i, g, d_i, 0.0f, dW_dec, d_i);

  // 4. gp = (g W_dec^T + lambda/B c) masked by f > 0     [B, n]
  sgemm(false, true, b_i, n_i, d_i, 1.0f, g, d_i, W_dec_op, d_i, 0.0f, gp, n_i);

  // One pass over columns of f and gp: apply the ReLU mask and the penalty's gradient to gp, and
  // take per-feature sums: sum_b f[b, i], #{b : f[b, i] > 0}, and db_enc[i] = sum_b gp[b, i].
  parallel_for(N, 256, [&](size_t i0, size_t i1) {
    for (size_t b = 0; b < B; ++b) {
      const float* fr = f + b * N;  // f[b, :]
      float* gr = gp + b * N;       // gp[b, :]
      for (size_t i = i0; i < i1; ++i) {
        const bool active = fr[i] > 0.0f;
        const float gv = active ? gr[i] + l1_scale * c[i] : 0.0f;
        gr[i] = gv;
        f_colsum[i] += fr[i];
        fired[i] += active ? 1 : 0;
        gp_colsum[i] += gv;
      }
    }
  });
  if (bf16) round_copy_bf16(gp, gp, B * N);

  // 5. dW_enc[d, n] = xc^T gp
  sgemm(true, false, d_i, n_i, b_i, 1.0f, xc, d_i, gp, n_i, 0.0f, dW_enc, n_i);
}

int check_dims(int batch, int d, int n, int precision, ms_error* err, const char* op) {
  if (batch <= 0 || d <= 0 || n <= 0)
    return fail(err, MS_ERR_INVALID, op, "batch, d and n must be positive (got %d, %d, %d)", batch,
                d, n);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16)
    return fail(err, MS_ERR_INVALID, op, "unknown precision %d", precision);
  return MS_OK;
}

}  // namespace

size_t sae_workspace_bytes(int batch, int d, int n, int precision) {
  const size_t B = size_t(batch), D = size_t(d), N = size_t(n);
  size_t bytes = 2 * aligned(B * D * 4) + 2 * aligned(B * N * 4);
  if (precision == MS_PREC_BF16) bytes += aligned(B * N * 4) + 2 * aligned(D * N * 4);
  return bytes;
}

int sae_encode(int batch, int d, int n, int precision, const float* x, const float* W_enc,
               const float* b_enc, const float* b_dec, float* f, ms_error* err) {
  if (int rc = check_dims(batch, d, n, precision, err, "sae_encode")) return rc;
  const size_t B = size_t(batch), D = size_t(d), N = size_t(n);
  const bool bf16 = precision == MS_PREC_BF16;
  std::vector<float> xc(B * D);
  std::vector<float> W_enc_r(bf16 ? D * N : 0);
  center(B, D, x, b_dec, xc.data(), bf16);
  if (bf16) round_copy_bf16(W_enc, W_enc_r.data(), D * N);
  encode_centered(B, D, N, xc.data(), bf16 ? W_enc_r.data() : W_enc, b_enc, f);
  return MS_OK;
}

int sae_decode(int batch, int d, int n, int precision, const float* f, const float* W_dec,
               const float* b_dec, float* xhat, ms_error* err) {
  if (int rc = check_dims(batch, d, n, precision, err, "sae_decode")) return rc;
  const size_t B = size_t(batch), D = size_t(d), N = size_t(n);
  const bool bf16 = precision == MS_PREC_BF16;
  std::vector<float> f_r(bf16 ? B * N : 0), W_dec_r(bf16 ? N * D : 0);
  if (bf16) {
    round_copy_bf16(f, f_r.data(), B * N);
    round_copy_bf16(W_dec, W_dec_r.data(), N * D);
  }
  // xhat[B, d] = f[B, n] W_dec[n, d] + b_dec
  sgemm(false, false, batch, d, n, 1.0f, bf16 ? f_r.data() : f, n, bf16 ? W_dec_r.data() : W_dec, d,
        0.0f, xhat, d);
  parallel_for(B, row_grain(D), [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b)
      for (size_t j = 0; j < D; ++j) xhat[b * D + j] += b_dec[j];  // xhat[b, j]
  });
  return MS_OK;
}

// sae_grads without its guard: may throw std::bad_alloc.
static int compute_grads(const ms_sae_grads_args* a, ms_sae_stats* stats, ms_error* err) {
  if (int rc = check_dims(a->batch, a->d, a->n, a->precision, err, "sae_grads")) return rc;
  if (a->penalty != MS_PENALTY_L1 && a->penalty != MS_PENALTY_L1_DECNORM)
    return fail(err, MS_ERR_INVALID, "sae_grads", "unknown penalty %d", a->penalty);
  const size_t B = size_t(a->batch), D = size_t(a->d), N = size_t(a->n);
  const int b_i = a->batch, d_i = a->d, n_i = a->n;
  const bool bf16 = a->precision == MS_PREC_BF16;
  const bool decnorm = a->penalty == MS_PENALTY_L1_DECNORM;
  const float lambda = a->l1_coeff;
  const Workspace ws = carve(a->workspace, B, D, N, bf16);

  // Per-feature penalty weight c[i] (1, or ||W_dec[i]|| for the decoder-norm penalty).
  std::vector<float> c(N, 1.0f);
  if (decnorm) decoder_row_norms(N, D, a->W_dec, c.data());

  // 1. xc = x - b_dec; f = ReLU(xc W_enc + b_enc)
  const float* W_enc_op = a->W_enc;
  const float* W_dec_op = a->W_dec;
  if (bf16) {
    round_copy_bf16(a->W_enc, ws.W_enc_r, D * N);
    round_copy_bf16(a->W_dec, ws.W_dec_r, N * D);
    W_enc_op = ws.W_enc_r;
    W_dec_op = ws.W_dec_r;
  }
  center(B, D, a->x, a->b_dec, ws.xc, bf16);
  std::vector<size_t> active_per_row;  // #{i : f[b, i] > 0} per row
  encode_centered(B, D, N, ws.xc, W_enc_op, a->b_enc, ws.f, &active_per_row);
  // Once few features fire, the products after the encoder run over the active entries of f only
  // (sae_sparse_cpu.h): the same sums in another order.
  size_t active = 0;
  for (size_t k : active_per_row) active += k;
  const bool sparse = use_sparse_products(active, B, N);
  ActiveEntries entries;
  const float* f_op = ws.f;
  if (sparse) {
    entries = gather_active(B, N, ws.f, bf16, active_per_row);
  } else if (bf16) {
    round_copy_bf16(ws.f, ws.f_r, B * N);
    f_op = ws.f_r;
  }

  // 2. g = f W_dec (then + b_dec - x, the residual e, scaled by 2/B); squared error per row.
  if (sparse) decode_active(entries, B, D, W_dec_op, ws.g);
  else sgemm(false, false, b_i, d_i, n_i, 1.0f, f_op, n_i, W_dec_op, d_i, 0.0f, ws.g, d_i);
  std::vector<double> row_sse(B);
  const float g_scale = 2.0f / float(B);
  parallel_for(B, row_grain(D), [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      float* gr = ws.g + b * D;        // g[b, :]
      const float* xr = a->x + b * D;  // x[b, :]
      double sse = 0.0;
      for (size_t j = 0; j < D; ++j) {
        const float e = gr[j] + a->b_dec[j] - xr[j];  // xhat - x
        sse += double(e) * e;
        gr[j] = g_scale * e;
      }
      row_sse[b] = sse;
    }
  });

  // Column sums of g (first term of db_dec), taken before g is rounded for the products.
  std::vector<double> g_colsum(D, 0.0);
  parallel_for(D, 64, [&](size_t j0, size_t j1) {
    for (size_t b = 0; b < B; ++b)
      for (size_t j = j0; j < j1; ++j) g_colsum[j] += ws.g[b * D + j];  // g[b, j]
  });
  if (bf16) round_copy_bf16(ws.g, ws.g, B * D);

  std::vector<double> f_colsum(N, 0.0), gp_colsum(N, 0.0);
  std::vector<int32_t> fired(N, 0);
  const float l1_scale = lambda / float(B);
  if (sparse) {
    // 3-5 over the active entries: dW_dec, gp, dW_enc and the per-feature sums.
    feature_grads_active(entries, D, N, ws.g, W_dec_op, ws.xc, c.data(), l1_scale, bf16, a->dW_dec, a->dW_enc,
                         f_colsum.data(), fired.data(), gp_colsum.data());
  } else {
    feature_grads_dense(B, D, N, ws.f, f_op, ws.g, W_dec_op, ws.xc, c.data(), l1_scale, bf16, ws.gp, a->dW_dec,
                        a->dW_enc, f_colsum.data(), fired.data(), gp_colsum.data());
  }
  for (size_t i = 0; i < N; ++i) a->db_enc[i] = float(gp_colsum[i]);
  if (a->fire_counts)
    for (size_t i = 0; i < N; ++i)  // saturating at INT32_MAX rather than wrapping (counts and fired are >= 0)
      a->fire_counts[i] = fired[i] > INT32_MAX - a->fire_counts[i] ? INT32_MAX : a->fire_counts[i] + fired[i];

  // Statistics, summed in a fixed order (independent of the thread count).
  double sse = 0.0, sparsity = 0.0, l0 = 0.0;
  for (size_t b = 0; b < B; ++b) sse += row_sse[b];
  for (size_t i = 0; i < N; ++i) {
    sparsity += f_colsum[i] * c[i];
    l0 += fired[i];
  }
  if (stats) {  // NULL: the caller does not read them
    stats->mse = sse / double(B);
    stats->sparsity = sparsity / double(B);
    stats->l0 = l0 / double(B);
    stats->loss = stats->mse + double(lambda) * stats->sparsity;
  }

  // Decoder-norm penalty: dW_dec[i, :] += lambda/B * (sum_b f[b, i]) * W_dec[i, :] / ||W_dec[i, :]||
  if (decnorm) {
    const double scale = double(lambda) / double(B);
    parallel_for(N, row_grain(D), [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        if (c[i] == 0.0f) continue;
        const float k = float(scale * f_colsum[i] / c[i]);
        const float* w = a->W_dec + i * D;  // W_dec[i, :]
        float* dw = a->dW_dec + i * D;      // dW_dec[i, :]
        for (size_t j = 0; j < D; ++j) dw[j] += k * w[j];
      }
    });
  }

  // 6. db_dec = sum_b g[b, :] - W_enc db_enc   (b_dec enters both xhat and xc = x - b_dec)
  parallel_for(D, 16, [&](size_t j0, size_t j1) {
    for (size_t j = j0; j < j1; ++j) {
      const float* w = a->W_enc + j * N;  // W_enc[j, :]
      double acc = 0.0;
      for (size_t i = 0; i < N; ++i) acc += double(w[i]) * gp_colsum[i];
      a->db_dec[j] = float(g_colsum[j] - acc);
    }
  });
  return MS_OK;
}

int sae_grads(const ms_sae_grads_args* a, ms_sae_stats* stats, ms_error* err) {
  try {
    return compute_grads(a, stats, err);
  } catch (const std::bad_alloc&) {
    return oom(err, "sae_grads");
  }
}

// ---- decoder constraint and Adam ------------------------------------------------------------------
// Per-row and per-element pieces shared by the separate ops and by sae_update, so the fused update
// does exactly the same arithmetic.

// g -= (g . w) / ||w||^2 * w for one row (untouched when w is zero).
static void remove_parallel_row(size_t D, const float* w, float* g) {
  double dot = 0.0, ss = 0.0;
  for (size_t j = 0; j < D; ++j) {
    dot += double(g[j]) * w[j];
    ss += double(w[j]) * w[j];
  }
  if (ss == 0.0) return;
  const float k = float(dot / ss);
  for (size_t j = 0; j < D; ++j) g[j] -= k * w[j];
}

// w /= ||w|| for one row (untouched when w is zero).
static void renormalize_row(size_t D, float* w) {
  double ss = 0.0;
  for (size_t j = 0; j < D; ++j) ss += double(w[j]) * w[j];
  if (ss == 0.0) return;
  const float inv = float(1.0 / std::sqrt(ss));
  for (size_t j = 0; j < D; ++j) w[j] *= inv;
}

struct AdamConsts {
  float b1, b2, lr, eps, inv_bias1, inv_bias2, grad_scale;
  explicit AdamConsts(const ms_adam_hparams& hp)
      : b1(hp.beta1), b2(hp.beta2), lr(hp.lr), eps(hp.eps), inv_bias1(1.0f / hp.bias1),
        inv_bias2(1.0f / hp.bias2), grad_scale(hp.grad_scale) {}
};

// Adam on elements [k0, k1) of one tensor.
static void adam_range(size_t k0, size_t k1, float* __restrict__ param, const float* __restrict__ grad,
                       float* __restrict__ m, float* __restrict__ v,
                       const AdamConsts& c) {
  for (size_t k = k0; k < k1; ++k) {
    const float g = grad[k] * c.grad_scale;
    const float mk = c.b1 * m[k] + (1.0f - c.b1) * g;
    const float vk = c.b2 * v[k] + (1.0f - c.b2) * g * g;
    m[k] = mk;
    v[k] = vk;
    param[k] -= c.lr * (mk * c.inv_bias1) / (std::sqrt(vk * c.inv_bias2) + c.eps);
  }
}

int decoder_remove_parallel_grad(int n, int d, const float* W_dec, float* dW_dec, ms_error* err) {
  if (n <= 0 || d <= 0)
    return fail(err, MS_ERR_INVALID, "decoder_remove_parallel_grad", "n and d must be positive");
  const size_t N = size_t(n), D = size_t(d);
  parallel_for(N, row_grain(D), [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) remove_parallel_row(D, W_dec + i * D, dW_dec + i * D);  // row i
  });
  return MS_OK;
}

int decoder_renormalize(int n, int d, float* W_dec, ms_error* err) {
  if (n <= 0 || d <= 0)
    return fail(err, MS_ERR_INVALID, "decoder_renormalize", "n and d must be positive");
  const size_t N = size_t(n), D = size_t(d);
  parallel_for(N, row_grain(D), [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) renormalize_row(D, W_dec + i * D);  // W_dec[i, :]
  });
  return MS_OK;
}

int adam_update(size_t count, float* param, const float* grad, float* m, float* v,
                const ms_adam_hparams* hp, ms_error*) {
  const AdamConsts c(*hp);
  parallel_for(count, 1 << 14, [&](size_t k0, size_t k1) { adam_range(k0, k1, param, grad, m, v, c); });
  return MS_OK;
}

// With the decoder constraint, each W_dec row goes through removal, Adam and renormalisation
// while it is in cache (one pass instead of three).
int sae_update(const ms_sae_update_args* a, ms_error* err) {
  if (!a) return fail(err, MS_ERR_INVALID, "sae_update", "args is null");
  if (a->n <= 0 || a->d <= 0) return fail(err, MS_ERR_INVALID, "sae_update", "n and d must be positive");
  const size_t N = size_t(a->n), D = size_t(a->d);
  if (a->W_enc.count != D * N || a->b_enc.count != N || a->W_dec.count != N * D || a->b_dec.count != D)
    return fail(err, MS_ERR_INVALID, "sae_update", "slot counts do not match n and d");
  for (const ms_adam_slot* s : {&a->W_enc, &a->b_enc, &a->W_dec, &a->b_dec})
    if (!s->param || !s->grad || !s->m || !s->v) return fail(err, MS_ERR_INVALID, "sae_update", "null slot pointer");
  const ms_adam_slot& w = a->W_dec;
  for (const ms_adam_slot* s : {&a->W_enc, &a->b_enc, &a->b_dec})
    if (int rc = adam_update(s->count, s->param, s->grad, s->m, s->v, &a->hp, err)) return rc;
  if (!a->constrain_decoder) return adam_update(w.count, w.param, w.grad, w.m, w.v, &a->hp, err);
  const AdamConsts c(a->hp);
  parallel_for(N, row_grain(D), [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const size_t at = i * D;  // row i of W_dec [n, d] and of its gradient and moments
      remove_parallel_row(D, w.param + at, w.grad + at);
      adam_range(at, at + D, w.param, w.grad, w.m, w.v, c);
      renormalize_row(D, w.param + at);
    }
  });
  return MS_OK;
}

}  // namespace ms::cpu
