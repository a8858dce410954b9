/*
 * vector_cpu.cpp — sum_squares, reduce_sum_into, scale and row_sq_dist on the CPU (vector_cpu.h).
 *
 * gather_rows checks every index before copying, so a bad index leaves dst untouched.
 * sum_squares and reduce_sum_into split the array into fixed blocks of kBlock elements whose double
 * partial sums are added in block order, so the result does not depend on the number of threads.
 */
#include "vector_cpu.h"

#include <cstring>
#include <new>
#include <vector>

#include "kernel_common.h"
#include "status.h"
#include "thread_pool.h"

namespace ms::cpu {
namespace {
constexpr size_t kBlock = size_t(1) << 16;
}

namespace {
// sum_i x[i] (or x[i]^2) in double, in fixed blocks added in block order.
double block_sum(size_t count, const float* x, bool square) {
  const size_t blocks = (count + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks, 0.0);  // partial[b] = sum over x[b*kBlock, (b+1)*kBlock)
  parallel_for(blocks, 1, [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      const size_t end = (b + 1) * kBlock < count ? (b + 1) * kBlock : count;
      double s = 0.0;
      for (size_t i = b * kBlock; i < end; ++i) s += square ? double(x[i]) * double(x[i]) : double(x[i]);
      partial[b] = s;
    }
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}
}  // namespace

int sum_squares(size_t count, const float* x, double* out_host, ms_error* err) {
  if (!out_host) return fail(err, MS_ERR_INVALID, "sum_squares", "out is null");
  if (count && !x) return fail(err, MS_ERR_INVALID, "sum_squares", "x is null");
  try {
    *out_host = block_sum(count, x, true);
  } catch (const std::bad_alloc&) {
    return oom(err, "sum_squares");
  }
  return MS_OK;
}

int reduce_sum_into(size_t count, const float* x, int square, double scale, float* out, int accumulate, ms_error* err) {
  if (!out) return fail(err, MS_ERR_INVALID, "reduce_sum_into", "out is null");
  if (count && !x) return fail(err, MS_ERR_INVALID, "reduce_sum_into", "x is null");
  try {
    const double sum = block_sum(count, x, square != 0);
    out[0] = float((accumulate ? double(out[0]) : 0.0) + scale * sum);
  } catch (const std::bad_alloc&) {
    return oom(err, "reduce_sum_into");
  }
  return MS_OK;
}

int scale(size_t count, float* x, float alpha, ms_error* err) {
  if (count && !x) return fail(err, MS_ERR_INVALID, "scale", "x is null");
  parallel_for(count, 1 << 15, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) x[i] *= alpha;
  });
  return MS_OK;
}

int row_sq_dist(int rows, int d, const float* a, const float* b, float* out, ms_error* err) {
  if (rows < 0 || d <= 0) return fail(err, MS_ERR_INVALID, "row_sq_dist", "bad shape [%d, %d]", rows, d);
  if (rows && (!a || !out)) return fail(err, MS_ERR_INVALID, "row_sq_dist", "a or out is null");
  const size_t D = size_t(d);
  parallel_for(size_t(rows), 64, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* ar = a + r * D;  // a[r, :]
      double s = 0.0;
      if (b) {
        const float* br = b + r * D;  // b[r, :]
        for (size_t j = 0; j < D; ++j) {
          const double diff = double(ar[j]) - double(br[j]);
          s += diff * diff;
        }
      } else {
        for (size_t j = 0; j < D; ++j) s += double(ar[j]) * double(ar[j]);
      }
      out[r] = float(s);
    }
  });
  return MS_OK;
}

int gather_rows(int count, int d, const float* src, int src_rows, const int32_t* idx, float* dst,
                int /*indices_checked*/, ms_error* err) {
  const char* op = "gather_rows";
  if (count < 0 || d <= 0 || src_rows < 0) return fail(err, MS_ERR_INVALID, op, "bad sizes count %d, d %d, src_rows %d", count, d, src_rows);
  if (count == 0) return MS_OK;
  if (!src || !idx || !dst) return fail(err, MS_ERR_INVALID, op, "a pointer is null");
  for (int i = 0; i < count; ++i)
    if (idx[i] < 0 || idx[i] >= src_rows)
      return fail(err, MS_ERR_INVALID, op, "idx[%d] = %d is outside the %d source rows", i, int(idx[i]), src_rows);
  const size_t D = size_t(d);
  parallel_for(size_t(count), row_grain(D), [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) std::memcpy(dst + i * D, src + size_t(idx[i]) * D, D * sizeof(float));  // dst[i, :] = src[idx[i], :]
  });
  return MS_OK;
}

}  // namespace ms::cpu
