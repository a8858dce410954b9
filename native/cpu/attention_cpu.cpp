/*
 * attention_cpu.cpp — causal attention on the CPU in blocks of query rows (attention_cpu.h).
 *
 * Why blocks: taken one query at a time, every score is a dot product of head-size length and a
 * scalar exponential, and the backward adds three head-size vectors per key; that runs at about a
 * tenth of the machine's sgemm rate. A block of kQueryRows queries against every key it may see
 * turns the products into sgemm calls (gemm.h) and the exponentials into vectorised row passes
 * (exp_rows.h): FlashAttention-2's order of work, without splitting the keys, since a block's
 * scores (kQueryRows x keys floats) stay in a core's L2 at the contexts GPT-2 models use.
 *
 * Work split and determinism: the forward runs in parallel over (sequence, head, query block); the
 * backward over (sequence, head), which owns its columns of dq, dk and dv, walking the query blocks
 * in order. The sgemm calls nested in a task run on its thread (thread_pool.h), so every sum has a
 * fixed order whatever the thread count. The backward recomputes a block's scores with the same
 * sgemm call as the training forward, so exp(s - lse) is the forward's probability.
 */
#include "attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
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

// Query rows per block: enough to amortise packing the keys in sgemm, few enough that a block's
// scores and their gradient (2 x 64 x T floats) fit in L2 at T = 1024.
constexpr size_t kQueryRows = 64;

int check_shape(const char* op, int batch, int T, int Tmax, int offset, int C, int n_head, ms_error* err) {
  if (batch <= 0 || T <= 0 || Tmax <= 0 || C <= 0 || n_head <= 0)
    return fail(err, MS_ERR_INVALID, op, "bad shape: batch %d, T %d, Tmax %d, C %d, n_head %d", batch, T, Tmax,
                C, n_head);
  if (C % n_head != 0) return fail(err, MS_ERR_INVALID, op, "C %d is not a multiple of n_head %d", C, n_head);
  if (offset < 0 || int64_t(offset) + T > Tmax)
    return fail(err, MS_ERR_INVALID, op, "offset %d + T %d exceeds Tmax %d", offset, T, Tmax);
  return MS_OK;
}

// The forward of both attention and attention_train: lse is written when not null.
int attention_forward(const char* op, int batch, int T, int Tmax, int offset, int C, int n_head, const float* q,
                      const float* k_cache, const float* v_cache, float* out, float* lse, ms_error* err) {
  if (check_shape(op, batch, T, Tmax, offset, C, n_head, err) != MS_OK) return err->code;
  if (!q || !k_cache || !v_cache || !out) return fail(err, MS_ERR_INVALID, op, "a pointer is null");
  const size_t Tn = size_t(T), Tm = size_t(Tmax), D = size_t(C), H = size_t(n_head), off = size_t(offset);
  const size_t hd = D / H;
  const size_t blocks = (Tn + kQueryRows - 1) / kQueryRows;
  const size_t tasks = size_t(batch) * H * blocks;  // task = (b*H + h)*blocks + block
  const float scale = float(1.0 / std::sqrt(double(hd)));
  try {
    parallel_for(tasks, 1, [&](size_t i0, size_t i1) {
      std::vector<float> s(std::min(kQueryRows, Tn) * (off + Tn));  // a block's scores, then probabilities: [rows, keys]
      for (size_t i = i0; i < i1; ++i) {
        const size_t bh = i / blocks, h = bh % H, b = bh / H;
        const size_t t0 = (i % blocks) * kQueryRows;                // first query of the block
        const size_t rows = std::min(kQueryRows, Tn - t0);
        const size_t keys = off + t0 + rows;                         // the block's last query sees keys [0, keys)
        const float* qb = q + (b * Tn + t0) * D + h * hd;            // q[b*T + t0, h*hd]; query row r at + r*D
        const float* kb = k_cache + b * Tm * D + h * hd;             // k_cache[b, 0, h*hd]; key j at + j*D
        const float* vb = v_cache + b * Tm * D + h * hd;             // v_cache[b, 0, h*hd]; value j at + j*D
        float* ob = out + (b * Tn + t0) * D + h * hd;                // out[b*T + t0, h*hd]; row r at + r*D
        // s[r, j] = q_r . k_j / sqrt(hd)   ([rows, keys], row stride keys)
        sgemm(false, true, int(rows), int(keys), int(hd), scale, qb, int(D), kb, int(D), 0.0f, s.data(), int(keys));
        for (size_t r = 0; r < rows; ++r) {
          float* sr = s.data() + r * keys;  // s[r, :]
          const size_t seen = off + t0 + r + 1;  // query r sits at position off + t0 + r and sees keys [0, seen)
          const float m = row_max(sr, seen);
          const double l = exp_sum(sr, seen, m);
          exp_scale(sr, seen, m, float(1.0 / l));  // p[r, j] = exp(s - m) / l
          std::fill(sr + seen, sr + keys, 0.0f);   // the causal mask
          if (lse) lse[bh * Tn + t0 + r] = float(double(m) + std::log(l));  // lse[b, h, t0 + r]
        }
        // out[block rows, head h] = p v   ([rows, keys] x [keys, hd])
        sgemm(false, false, int(rows), int(hd), int(keys), 1.0f, s.data(), int(keys), vb, int(D), 0.0f, ob, int(D));
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

}  // namespace

int attention(int batch, int T, int Tmax, int offset, int C, int n_head, int precision, const float* q,
              const float* k_cache, const float* v_cache, float* out, uint16_t* out_bf16, ms_error* err) {
  const char* op = "attention";
  if (!out_bf16) return attention_forward(op, batch, T, Tmax, offset, C, n_head, q, k_cache, v_cache, out, nullptr, err);
  // A bf16 out: the fp32 result (fp32 at either precision) rounded to nearest even.
  if (precision != MS_PREC_BF16) return fail(err, MS_ERR_INVALID, op, "a bf16 output needs BF16 precision");
  if (check_shape(op, batch, T, Tmax, offset, C, n_head, err) != MS_OK) return err->code;
  try {
    const size_t n = size_t(batch) * size_t(T) * size_t(C);
    std::vector<float> y(n);
    const int rc = attention_forward(op, batch, T, Tmax, offset, C, n_head, q, k_cache, v_cache, y.data(), nullptr, err);
    if (rc != MS_OK) return rc;
    parallel_for(n, 1 << 16, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) out_bf16[i] = float_to_bf16(y[i]);
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int attention_train(int batch, int T, int C, int n_head, int /*precision: fp32 either way*/, const float* q,
                    const float* k, const float* v, float* out, float* lse, ms_error* err) {
  const char* op = "attention_train";
  if (!lse) return fail(err, MS_ERR_INVALID, op, "lse is null");
  // Keys and values [B*T, C] are a cache [B, Tmax = T, C] filled from offset 0.
  return attention_forward(op, batch, T, T, 0, C, n_head, q, k, v, out, lse, err);
}

int attention_backward(int batch, int T, int C, int n_head, int /*precision: fp32 either way*/, const float* dout,
                       const float* q, const float* k, const float* v, const float* out, const float* lse, float* dq,
                       float* dk, float* dv, int ld_grad, ms_error* err) {
  const char* op = "attention_backward";
  if (check_shape(op, batch, T, T, 0, C, n_head, err) != MS_OK) return err->code;
  if (!dout || !q || !k || !v || !out || !lse || !dq || !dk || !dv)
    return fail(err, MS_ERR_INVALID, op, "a pointer is null");
  if (ld_grad < C) return fail(err, MS_ERR_INVALID, op, "ld_grad %d is less than C %d", ld_grad, C);
  const size_t Tn = size_t(T), D = size_t(C), H = size_t(n_head), G = size_t(ld_grad);
  const size_t hd = D / H;
  const size_t tasks = size_t(batch) * H;  // task = b*H + h
  const float scale = float(1.0 / std::sqrt(double(hd)));
  try {
    parallel_for(tasks, 1, [&](size_t i0, size_t i1) {
      const size_t most = std::min(kQueryRows, Tn) * Tn;  // rows x keys of the largest block
      std::vector<float> p(most);                          // a block's probabilities [rows, keys]
      std::vector<float> ds(most);                         // dP, then dS = P (dP - D), [rows, keys]
      for (size_t i = i0; i < i1; ++i) {
        const size_t h = i % H, b = i / H;
        const size_t base = b * Tn * D + h * hd;   // [b*T, h*hd] in a [B*T, C] input; row t at + t*D
        const size_t gbase = b * Tn * G + h * hd;  // the same in the gradients' rows of G; row t at + t*G
        const float* lse_bh = lse + i * Tn;        // lse[b, h, :] ([B, H, T], i = b*H + h)
        for (size_t t = 0; t < Tn; ++t) {
          std::fill_n(dk + gbase + t * G, hd, 0.0f);
          std::fill_n(dv + gbase + t * G, hd, 0.0f);
        }
        for (size_t t0 = 0; t0 < Tn; t0 += kQueryRows) {
          const size_t rows = std::min(kQueryRows, Tn - t0);
          const size_t keys = t0 + rows;           // the block's last query sees keys [0, keys)
          const size_t first = base + t0 * D;      // [b*T + t0, h*hd]: the block's first row of head h
          // p[r, j] = s[r, j] as the training forward computed it, then exp(s - lse)
          sgemm(false, true, int(rows), int(keys), int(hd), scale, q + first, int(D), k + base, int(D), 0.0f, p.data(),
                int(keys));
          // ds[r, j] = dout_r . v_j   (dP)
          sgemm(false, true, int(rows), int(keys), int(hd), 1.0f, dout + first, int(D), v + base, int(D), 0.0f,
                ds.data(), int(keys));
          for (size_t r = 0; r < rows; ++r) {
            float* pr = p.data() + r * keys;    // p[r, :]
            float* dsr = ds.data() + r * keys;  // ds[r, :]
            const size_t seen = t0 + r + 1;     // query t0 + r sees keys [0, seen)
            exp_scale(pr, seen, lse_bh[t0 + r], 1.0f);
            const float d_t = dot(dout + first + r * D, out + first + r * D, hd);  // D_t = dout_t . out_t
            for (size_t j = 0; j < seen; ++j) dsr[j] = pr[j] * (dsr[j] - d_t);     // dS = P (dP - D_t)
            std::fill(pr + seen, pr + keys, 0.0f);  // the causal mask
            std::fill(dsr + seen, dsr + keys, 0.0f);
          }
          // dq[block rows] = dS k / sqrt(hd)   ([rows, keys] x [keys, hd]; dq's rows t0 .. at gbase + t0*G)
          sgemm(false, false, int(rows), int(hd), int(keys), scale, ds.data(), int(keys), k + base, int(D), 0.0f,
                dq + gbase + t0 * G, int(G));
          // dk[0, keys) += dSᵀ q[block rows] / sqrt(hd);  dv[0, keys) += Pᵀ dout[block rows]   ([keys, rows] x [rows, hd])
          sgemm(true, false, int(keys), int(hd), int(rows), scale, ds.data(), int(keys), q + first, int(D), 1.0f,
                dk + gbase, int(G));
          sgemm(true, false, int(keys), int(hd), int(rows), 1.0f, p.data(), int(keys), dout + first, int(D), 1.0f,
                dv + gbase, int(G));
        }
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

}  // namespace ms::cpu
