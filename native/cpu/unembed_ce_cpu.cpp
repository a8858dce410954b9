/*
 * unembed_ce_cpu.cpp — the unembedding product fused with the softmax cross-entropy on the CPU
 * (unembed_ce_cpu.h; math in backend.h, ABI 14).
 *
 * The logits are formed a block of rows at a time (at most 64 rows, at most 16 MiB), the blocks
 * spread over the threads, each into its thread's fp32 buffer, and reduced there; the [rows, V]
 * matrix never exists. A block's logits are linear's product with trans_w = 1 (sgemm on the same
 * operands: at BF16, x and W rounded to bf16, fp32 accumulation), left unrounded. The softmax
 * arithmetic is cross_entropy's and cross_entropy_backward's (exp_rows.h): row maximum, fp32
 * exponentials summed in blocks of 256 and the blocks in double, the log-sum-exp and the loss in
 * double; the gradient is exp(l - lse) * scale. Each row is handled by one thread in a fixed order
 * (and sgemm's sums do not depend on its threads), so results do not depend on the thread count.
 * Targets are checked before anything is written.
 */
#include "unembed_ce_cpu.h"

#include <algorithm>
#include <cmath>
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

// Rows of logits one thread forms at a time for a vocabulary of V: 64, fewer where 64 rows would
// pass 2^22 floats (16 MiB), at least 1. Depends on V alone, so the blocks do not vary with threads.
size_t rows_per_block(size_t V) { return std::max<size_t>(1, std::min<size_t>(64, (size_t(1) << 22) / V)); }

// The checks both ops make, targets included (before anything is written): MS_OK or the failure.
int check_operands(const char* op, int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                   const float* W, const int32_t* targets, ms_error* err) {
  if (rows <= 0 || V <= 0 || C <= 0) return fail(err, MS_ERR_INVALID, op, "bad shape: rows %d, V %d, C %d", rows, V, C);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16)
    return fail(err, MS_ERR_INVALID, op, "unknown precision %d", precision);
  if (!(x || x_bf16) || !W || !targets) return fail(err, MS_ERR_INVALID, op, "x, W or targets is null");
  for (size_t r = 0; r < size_t(rows); ++r)
    if (targets[r] >= V)
      return fail(err, MS_ERR_INVALID, op, "targets[%zu] = %d is outside the vocabulary [0, %d)", r,
                  int(targets[r]), V);
  return MS_OK;
}

// Calls fn(r0, rb, logits) for every block of rows r0 .. r0 + rb - 1, the blocks spread over the
// threads, with logits [rb, V] = x[r0 .., :] W^T (fp32, the block's own buffer: fn may overwrite it).
template <typename Fn>
void for_each_logits_block(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                           const float* W, const Fn& fn) {
  const size_t R = size_t(rows), N = size_t(V), K = size_t(C);
  const bool bf16 = precision == MS_PREC_BF16;
  // W's operand: at BF16 rounded to bf16 once, for every block.
  std::vector<float> W_r(bf16 ? N * K : 0);
  if (bf16) round_copy_bf16(W, W_r.data(), N * K);
  const float* W_op = bf16 ? W_r.data() : W;
  const size_t block = rows_per_block(N);
  parallel_for((R + block - 1) / block, 1, [&](size_t b0, size_t b1) {
    std::vector<float> logits(block * N);
    // x's operand for a block where it is not x's own rows: widened from x_bf16, or rounded to bf16.
    std::vector<float> x_op(x_bf16 || bf16 ? block * K : 0);
    for (size_t b = b0; b < b1; ++b) {
      const size_t r0 = b * block, rb = std::min(block, R - r0);
      // xb = x[r0 .., :] [rb, C] as the product reads it
      const float* xb = x_op.data();
      if (x_bf16) {
        widen_bf16(x_bf16 + r0 * K, rb * K, x_op.data());
      } else if (bf16) {
        for (size_t i = 0; i < rb * K; ++i) x_op[i] = round_to_bf16(x[r0 * K + i]);
      } else {
        xb = x + r0 * K;
      }
      // logits[rb, V] = xb[rb, C] W^T with W [V, C] used transposed (ldb = C): linear's product, trans_w = 1.
      // (On this thread where the blocks run in parallel; a single block's sgemm takes every thread.)
      sgemm(false, true, int(rb), V, C, 1.0f, xb, C, W_op, C, 0.0f, logits.data(), V);
      fn(r0, rb, logits.data());
    }
  });
}

}  // namespace

int unembed_cross_entropy(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                          const float* W, const int32_t* targets, float* lse, float* losses, int /*indices_checked*/,
                          ms_error* err) {
  const char* op = "unembed_cross_entropy";
  int rc = check_operands(op, rows, V, C, precision, x, x_bf16, W, targets, err);
  if (rc != MS_OK) return rc;
  if (!lse || !losses) return fail(err, MS_ERR_INVALID, op, "lse or losses is null");
  const size_t N = size_t(V);
  try {
    for_each_logits_block(rows, V, C, precision, x, x_bf16, W, [&](size_t r0, size_t rb, float* logits) {
      for (size_t i = 0; i < rb; ++i) {
        const size_t r = r0 + i;
        const float* lr = logits + i * N;  // logits[r, :]
        const float m = row_max(lr, N);
        const double l = double(m) + std::log(exp_sum(lr, N, m));  // logsumexp_v l_v
        lse[r] = float(l);
        const int32_t target = targets[r];
        losses[r] = target < 0 ? 0.0f : float(l - double(lr[target]));  // 0: an ignored position
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

int unembed_cross_entropy_backward(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                                   const float* W, const int32_t* targets, const float* lse, float scale,
                                   uint16_t* dlogits_bf16, int /*indices_checked*/, ms_error* err) {
  const char* op = "unembed_cross_entropy_backward";
  int rc = check_operands(op, rows, V, C, precision, x, x_bf16, W, targets, err);
  if (rc != MS_OK) return rc;
  if (!lse || !dlogits_bf16) return fail(err, MS_ERR_INVALID, op, "lse or dlogits is null");
  const size_t N = size_t(V);
  try {
    for_each_logits_block(rows, V, C, precision, x, x_bf16, W, [&](size_t r0, size_t rb, float* logits) {
      for (size_t i = 0; i < rb; ++i) {
        const size_t r = r0 + i;
        uint16_t* gr = dlogits_bf16 + r * N;  // dlogits[r, :]
        const int32_t target = targets[r];
        if (target < 0) {  // ignored position: bf16 zeros
          std::fill_n(gr, N, uint16_t(0));
          continue;
        }
        float* lr = logits + i * N;  // logits[r, :], overwritten by its gradient
        exp_scale(lr, N, lse[r], scale);  // softmax_v * scale
        lr[target] -= scale;              // (softmax_target - 1) * scale
        for (size_t v = 0; v < N; ++v) gr[v] = float_to_bf16(lr[v]);
      }
    });
  } catch (const std::bad_alloc&) {
    return oom(err, op);
  }
  return MS_OK;
}

}  // namespace ms::cpu
