/*
 * transformer_grad_cpu.cpp — the GPT-2 backward ops on the CPU (transformer_grad_cpu.h; math in
 * backend.h, ABI 5).
 *
 * Every output element is written by one thread with a fixed summation order, so results do not
 * depend on the thread count:
 *   - sums over rows into a parameter gradient (layer-norm weight/bias, linear bias, embedding
 *     tables) run in parallel over column chunks, each chunk walking the rows in order, in double;
 *   - linear backwards are sgemm calls (gemm.h) with bf16-rounded operand copies in MS_PREC_BF16
 *     mode, as the forward;
 *   - cross-entropy and activations are passes over rows / elements; softmax denominators sum fp32
 *     exponentials in blocks of 256, the blocks in double, as the forward cross_entropy.
 * Index checks (token ids, targets) run before anything is written.
 */
#include "transformer_grad_cpu.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "clip.h"
#include "convert.h"
#include "exp_rows.h"
#include "gemm.h"
#include "kernel_common.h"
#include "status.h"
#include "thread_pool.h"
#include "transformer_cpu.h"

namespace ms::cpu {
namespace {


// Columns per chunk of a column-parallel pass: 16 floats, one cache line per row.
constexpr size_t kColumnGrain = 16;

// out[j] += sum_r a[r, j] for a [rows, cols], j < cols: column chunks in parallel, rows in order, in double.
void add_column_sums(size_t rows, size_t cols, const float* a, float* out) {
  parallel_for(cols, kColumnGrain, [&](size_t c0, size_t c1) {
    std::vector<double> acc(c1 - c0, 0.0);
    for (size_t r = 0; r < rows; ++r) {
      const float* ar = a + r * cols;  // a[r, :]
      for (size_t j = c0; j < c1; ++j) acc[j - c0] += ar[j];
    }
    for (size_t j = c0; j < c1; ++j) out[j] = float(double(out[j]) + acc[j - c0]);
  });
}

}  // namespace

int layernorm_backward(int rows, int C, const float* dout, const float* x, const float* weight, const float* mean,
                       const float* rstd, float* dx, float* dweight, float* dbias, int accumulate, ms_error* err) {
  const char* op = "layernorm_backward";
  if (rows <= 0 || C <= 0) return fail(err, MS_ERR_INVALID, op, "bad shape [%d, %d]", rows, C);
  if (!dout || !x || !weight || !mean || !rstd || !dx || !dweight || !dbias)
    return fail(err, MS_ERR_INVALID, op, "a pointer is null");
  const size_t R = size_t(rows), D = size_t(C);
  try {
    // n = (x - mean) rstd as the forward made it: x minus the row's mean in double, then rounded
    // (the saved fp32 mean would lose the deviations of a row whose mean is large against its spread).
    std::vector<double> row_mean(R);
    parallel_for(R, row_grain(D), [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        const float* xr = x + r * D;  // x[r, :]
        double s = 0.0;
        for (size_t j = 0; j < D; ++j) s += xr[j];
        row_mean[r] = s / double(D);
      }
    });
    (void)mean;  // the forward's fp32 copy of row_mean
    // dweight[j] += sum_r dout[r, j] n[r, j], dbias[j] += sum_r dout[r, j].
    parallel_for(D, kColumnGrain, [&](size_t c0, size_t c1) {
      std::vector<double> acc_w(c1 - c0, 0.0), acc_b(c1 - c0, 0.0);
      for (size_t r = 0; r < R; ++r) {
        const float* xr = x + r * D;     // x[r, :]
        const float* gr = dout + r * D;  // dout[r, :]
        const double m = row_mean[r];
        const float rs = rstd[r];
        for (size_t j = c0; j < c1; ++j) {
          const float n = float(double(xr[j]) - m) * rs;
          acc_w[j - c0] += double(gr[j]) * double(n);
          acc_b[j - c0] += gr[j];
        }
      }
      for (size_t j = c0; j < c1; ++j) {
        dweight[j] = float(double(dweight[j]) + acc_w[j - c0]);
        dbias[j] = float(double(dbias[j]) + acc_b[j - c0]);
      }
    });
    // dx[r, j] = rstd (g_j - mean(g) - n_j mean(g n)), g = dout * weight; row means in double.
    parallel_for(R, row_grain(3 * D), [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        const float* xr = x + r * D;     // x[r, :]
        const float* gr = dout + r * D;  // dout[r, :]
        float* dxr = dx + r * D;         // dx[r, :]
        const double m = row_mean[r];
        const float rs = rstd[r];
        double sg = 0.0, sgn = 0.0;
        for (size_t j = 0; j < D; ++j) {
          const float g = gr[j] * weight[j];
          sg += g;
          sgn += double(g) * double(float(double(xr[j]) - m) * rs);
        }
        const float mg = float(sg / double(D)), mgn = float(sgn / double(D));
        for (size_t j = 0; j < D; ++j) {
          const float n = float(double(xr[j]) - m) * rs;
          const float val = (gr[j] * weight[j] - mg - n * mgn) * rs;
          dxr[j] = accumulate ? dxr[j] + val : val;
        }
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int linear_backward(int rows, int n_in, int n_out, int trans_w, int precision, const float* dout, const float* x,
                    const uint16_t* x_bf16, const float* W, float* dx, float* dW, float* dbias, int accumulate,
                    const uint16_t* dout_bf16, ms_error* err) {
  const char* op = "linear_backward";
  if (rows <= 0 || n_in <= 0 || n_out <= 0)
    return fail(err, MS_ERR_INVALID, op, "bad shape: rows %d, n_in %d, n_out %d", rows, n_in, n_out);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16)
    return fail(err, MS_ERR_INVALID, op, "unknown precision %d", precision);
  if ((dout_bf16 || x_bf16) && precision != MS_PREC_BF16)
    return fail(err, MS_ERR_INVALID, op, "a bf16 dout or x needs BF16 precision");
  if (dout_bf16 && dbias) return fail(err, MS_ERR_INVALID, op, "dbias needs the fp32 dout");
  if (!dout && !dout_bf16) return fail(err, MS_ERR_INVALID, op, "dout is null");
  if (dx && !W) return fail(err, MS_ERR_INVALID, op, "W is null");
  if (dW && !x && !x_bf16) return fail(err, MS_ERR_INVALID, op, "x is null");
  const size_t R = size_t(rows), K = size_t(n_in), N = size_t(n_out);
  const bool bf16 = precision == MS_PREC_BF16;
  try {
    std::vector<float> dout_r, x_r, W_r;
    const float *dout_op = dout, *x_op = x, *W_op = W;
    if (bf16 && (dx || dW)) {
      dout_r.resize(R * N);
      if (dout_bf16) {
        widen_bf16(dout_bf16, R * N, dout_r.data());
      } else {
        round_copy_bf16(dout, dout_r.data(), R * N);
      }
      dout_op = dout_r.data();
      if (dx) {
        W_r.resize(K * N);
        round_copy_bf16(W, W_r.data(), K * N);
        W_op = W_r.data();
      }
      if (dW) {
        x_r.resize(R * K);
        if (x_bf16) {
          widen_bf16(x_bf16, R * K, x_r.data());
        } else {
          round_copy_bf16(x, x_r.data(), R * K);
        }
        x_op = x_r.data();
      }
    }
    if (dx) {
      // dx[R, K] = dout[R, N] op(W)^T: W [K, N] used transposed (ldb = N), or W [N, K] as is (ldb = K).
      sgemm(false, trans_w == 0, rows, n_in, n_out, 1.0f, dout_op, n_out, W_op, trans_w ? n_in : n_out,
            accumulate ? 1.0f : 0.0f, dx, n_in);
    }
    if (dW) {
      if (trans_w) {
        // dW[N, K] += dout^T x: dout stored [R, N] = [k, m] (lda = N), x [R, K] = [k, n] (ldb = K).
        sgemm(true, false, n_out, n_in, rows, 1.0f, dout_op, n_out, x_op, n_in, 1.0f, dW, n_in);
      } else {
        // dW[K, N] += x^T dout: x stored [R, K] = [k, m] (lda = K), dout [R, N] = [k, n] (ldb = N).
        sgemm(true, false, n_in, n_out, rows, 1.0f, x_op, n_in, dout_op, n_out, 1.0f, dW, n_out);
      }
    }
    if (dbias) add_column_sums(R, N, dout, dbias);  // dbias[j] += sum_r dout[r, j], fp32 dout
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int activation_backward(int kind, size_t count, const float* dpost, const float* pre_f32, const uint16_t* pre_bf16,
                        float* dpre, ms_error* err) {
  const char* op = "activation_backward";
  if (kind != MS_ACT_GELU_TANH && kind != MS_ACT_GELU_ERF && kind != MS_ACT_RELU)
    return fail(err, MS_ERR_INVALID, op, "unknown activation %d", kind);
  if (count && (!dpost || !(pre_f32 || pre_bf16) || !dpre)) return fail(err, MS_ERR_INVALID, op, "dpost, pre or dpre is null");
  try {
    parallel_for(count, 1 << 14, [&](size_t i0, size_t i1) {
      // pre[i - base] is pre's element i, for i in [i0, i1): the f32 values (base 0), or the bf16
      // ones widened into a chunk of their own (base i0).
      std::vector<float> widened(pre_bf16 ? i1 - i0 : 0);
      const float* pre = pre_bf16 ? widen_bf16(pre_bf16 + i0, i1 - i0, widened.data()) : pre_f32;
      const size_t base = pre_bf16 ? i0 : 0;
      switch (kind) {
        case MS_ACT_GELU_TANH:
          // d/dx 0.5 x (1 + tanh(u)), u = s (x + c x^3): 0.5 (1 + tanh u) + 0.5 x sech^2(u) s (1 + 3 c x^2).
          for (size_t i = i0; i < i1; ++i) {
            const float x = pre[i - base];
            const float th = std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x));
            const float sech2 = 1.0f - th * th;
            // sech2 == 0 (|u| large): the second term is 0, also where x^2 would overflow.
            const float tail = sech2 == 0.0f ? 0.0f : 0.5f * x * sech2 * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
            dpre[i] = dpost[i] * (0.5f * (1.0f + th) + tail);
          }
          break;
        case MS_ACT_GELU_ERF:
          // d/dx 0.5 x (1 + erf(x / sqrt 2)) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi).
          for (size_t i = i0; i < i1; ++i) {
            const float x = pre[i - base];
            // ±inf: the limits 1 and 0, not inf * 0 = NaN.
            const float slope = std::isinf(x) ? (x > 0.0f ? 1.0f : 0.0f) : 0.5f * (1.0f + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
            dpre[i] = dpost[i] * slope;
          }
          break;
        default:
          for (size_t i = i0; i < i1; ++i) dpre[i] = pre[i - base] > 0.0f ? dpost[i] : 0.0f;
          break;
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int relu_linear_backward(int rows, int n_in, int n_out, int trans_w, const float* dout, const uint16_t* dout_bf16,
                         const uint16_t* x_bf16, const float* W, float* dW, float* dbias, uint16_t* dpre_bf16,
                         float* dpre_bias, ms_error* err) {
  const char* op = "relu_linear_backward";
  if (rows <= 0 || n_in <= 0 || n_out <= 0)
    return fail(err, MS_ERR_INVALID, op, "bad shape: rows %d, n_in %d, n_out %d", rows, n_in, n_out);
  if (!x_bf16 || !W || !dpre_bf16) return fail(err, MS_ERR_INVALID, op, "x, W or dpre is null");
  const size_t R = size_t(rows), K = size_t(n_in);
  try {
    // dpre [R, K] = dout op(W)^T in fp32 (with dW and dbias), then the ReLU's mask in place.
    std::vector<float> dpre(R * K);
    int rc = linear_backward(rows, n_in, n_out, trans_w, MS_PREC_BF16, dout, nullptr, x_bf16, W, dpre.data(), dW, dbias,
                             0, dout_bf16, err);
    if (rc == MS_OK) rc = activation_backward(MS_ACT_RELU, R * K, dpre.data(), nullptr, x_bf16, dpre.data(), err);
    if (rc != MS_OK) {
      std::snprintf(err->op, sizeof err->op, "%s", op);  // the error is this op's
      return rc;
    }
    if (dpre_bias) add_column_sums(R, K, dpre.data(), dpre_bias);
    parallel_for(R * K, 1 << 16, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) dpre_bf16[i] = float_to_bf16(dpre[i]);
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int cross_entropy_backward(int rows, int V, float* logits, uint16_t* logits_bf16, const int32_t* targets,
                           float* losses, float scale, uint16_t* grad_bf16, int /*indices_checked*/, ms_error* err) {
  const char* op = "cross_entropy_backward";
  if (rows <= 0 || V <= 0) return fail(err, MS_ERR_INVALID, op, "bad shape [%d, %d]", rows, V);
  if (!(logits || logits_bf16) || !targets || !losses)
    return fail(err, MS_ERR_INVALID, op, "logits, targets or losses is null");
  if (logits_bf16 && !grad_bf16) grad_bf16 = logits_bf16;  // in place
  const size_t R = size_t(rows), N = size_t(V);
  for (size_t r = 0; r < R; ++r)
    if (targets[r] >= V)
      return fail(err, MS_ERR_INVALID, op, "targets[%zu] = %d is outside the vocabulary [0, %d)", r,
                  int(targets[r]), V);
  try {
    parallel_for(R, row_grain(N), [&](size_t r0, size_t r1) {
      // With grad_bf16 the gradient is formed in a copy of the row (the same arithmetic), then rounded.
      std::vector<float> row(grad_bf16 ? N : 0);
      for (size_t r = r0; r < r1; ++r) {
        // logits[r, :] as the arithmetic runs on it: widened from bf16, a copy of the fp32 row (for
        // grad_bf16), or the fp32 row itself, overwritten by its gradient.
        float* lr = row.data();
        if (logits_bf16) widen_bf16(logits_bf16 + r * N, N, lr);
        else if (grad_bf16) std::copy_n(logits + r * N, N, lr);
        else lr = logits + r * N;
        const int32_t target = targets[r];
        if (target < 0) {  // ignored position
          losses[r] = 0.0f;
          std::fill_n(lr, N, 0.0f);
        } else {
          const float m = row_max(lr, N);
          const double s = exp_sum(lr, N, m);  // sum_v exp(l_v - m)
          losses[r] = float(double(m) + std::log(s) - double(lr[target]));
          exp_scale(lr, N, m, float(scale / s));  // softmax_v * scale
          lr[target] -= scale;                    // (softmax_target - 1) * scale
        }
        if (grad_bf16)
          for (size_t v = 0; v < N; ++v) grad_bf16[r * N + v] = float_to_bf16(lr[v]);  // [rows, V]
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int embed_backward(int batch, int T, int C, int V, int n_positions, const int32_t* ids, const float* dtok,
                   const float* dpos, float* dwte, float* dwpe, int /*indices_checked*/, ms_error* err) {
  const char* op = "embed_backward";
  if (batch <= 0 || T <= 0 || C <= 0 || V <= 0 || n_positions <= 0)
    return fail(err, MS_ERR_INVALID, op, "bad shape: batch %d, T %d, C %d, V %d, n_positions %d", batch, T, C,
                V, n_positions);
  if (T > n_positions) return fail(err, MS_ERR_INVALID, op, "T %d exceeds n_positions %d", T, n_positions);
  if (!ids || !dtok || !dpos || !dwte || !dwpe) return fail(err, MS_ERR_INVALID, op, "a pointer is null");
  const size_t rows = size_t(batch) * size_t(T), D = size_t(C), Tn = size_t(T);
  for (size_t r = 0; r < rows; ++r)
    if (ids[r] < 0 || ids[r] >= V)
      return fail(err, MS_ERR_INVALID, op, "ids[%zu] = %d is outside the vocabulary [0, %d)", r, int(ids[r]), V);
  try {
    // Column chunks in parallel, rows in order: a fixed summation order for every table entry.
    parallel_for(D, kColumnGrain, [&](size_t c0, size_t c1) {
      for (size_t r = 0; r < rows; ++r) {
        const size_t t = r % Tn;                        // r = b*T + t
        float* tok = dwte + size_t(ids[r]) * D;         // dwte[ids[r], :]
        float* pos = dwpe + t * D;                      // dwpe[t, :]
        const float* gt = dtok + r * D;                 // dtok[r, :]
        const float* gp = dpos + r * D;                 // dpos[r, :]
        for (size_t j = c0; j < c1; ++j) {
          tok[j] += gt[j];
          pos[j] += gp[j];
        }
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int adamw_update(size_t count, float* param, const float* grad, float* m, float* v, const ms_adam_hparams* hp,
                 float decay, const float* clip_sum_sq, float clip_norm, ms_error* err) {
  const char* op = "adamw_update";
  if (!hp) return fail(err, MS_ERR_INVALID, op, "hp is null");
  if (count && (!param || !grad || !m || !v)) return fail(err, MS_ERR_INVALID, op, "param, grad, m or v is null");
  const float b1 = hp->beta1, b2 = hp->beta2, lr = hp->lr, eps = hp->eps;
  const float inv_bias1 = 1.0f / hp->bias1, inv_bias2 = 1.0f / hp->bias2;
  const float grad_scale = hp->grad_scale * (clip_sum_sq ? clip_factor(*clip_sum_sq, clip_norm) : 1.0f);
  try {
    parallel_for(count, 1 << 14, [&](size_t k0, size_t k1) {
      for (size_t k = k0; k < k1; ++k) {
        const float g = grad[k] * grad_scale;
        const float mk = b1 * m[k] + (1.0f - b1) * g;
        const float vk = b2 * v[k] + (1.0f - b2) * g * g;
        m[k] = mk;
        v[k] = vk;
        const float p = param[k] * decay;  // decoupled weight decay first, on the old parameter
        param[k] = p - lr * (mk * inv_bias1) / (std::sqrt(vk * inv_bias2) + eps);
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

}  // namespace ms::cpu
