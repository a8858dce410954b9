/*
 * analysis_cpu.cpp — sparse_rows and column_stats on the CPU (analysis_cpu.h).
 *
 * sparse_rows counts each row's entries above the threshold in parallel, turns the counts into
 * row offsets, and (when they fit) fills each row's columns and values in a second parallel pass;
 * rows are independent, so the output does not depend on the number of threads.
 * column_stats gives each thread a contiguous range of columns and walks every row over that
 * range, so each column is summed in row order by one thread: deterministic whatever the threads.
 */
#include "analysis_cpu.h"

#include <vector>

#include "status.h"
#include "thread_pool.h"

namespace ms::cpu {

int sparse_rows(int rows, int n, const float* x, float threshold, int64_t* row_ptr_host, size_t capacity,
                int32_t* cols_host, float* vals_host, ms_error* err) {
  const char* op = "sparse_rows";
  if (rows < 0 || n <= 0) return fail(err, MS_ERR_INVALID, op, "bad shape [%d, %d]", rows, n);
  if (!row_ptr_host) return fail(err, MS_ERR_INVALID, op, "row_ptr is null");
  if (rows && !x) return fail(err, MS_ERR_INVALID, op, "x is null");
  const size_t R = size_t(rows), N = size_t(n);
  const size_t grain = N >= 4096 ? 1 : 4096 / N;
  std::vector<int64_t> count(R);  // count[r] = #{j : x[r, j] > threshold}
  parallel_for(R, grain, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * N;  // x[r, :]
      int64_t c = 0;
      for (size_t j = 0; j < N; ++j) c += xr[j] > threshold;
      count[r] = c;
    }
  });
  row_ptr_host[0] = 0;
  for (size_t r = 0; r < R; ++r) row_ptr_host[r + 1] = row_ptr_host[r] + count[r];
  if (size_t(row_ptr_host[R]) > capacity) return MS_OK;
  if (row_ptr_host[R] > 0 && (!cols_host || !vals_host)) return fail(err, MS_ERR_INVALID, op, "cols or vals is null");
  parallel_for(R, grain, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * N;  // x[r, :]
      int64_t k = row_ptr_host[r];
      for (size_t j = 0; j < N; ++j) {
        if (xr[j] > threshold) {
          cols_host[k] = int32_t(j);
          vals_host[k] = xr[j];
          ++k;
        }
      }
    }
  });
  return MS_OK;
}

int column_stats(int rows, int n, const float* x, double* sum_host, double* sumsq_host, double* nonzero_host,
                 ms_error* err) {
  const char* op = "column_stats";
  if (rows < 0 || n <= 0) return fail(err, MS_ERR_INVALID, op, "bad shape [%d, %d]", rows, n);
  if (rows && !x) return fail(err, MS_ERR_INVALID, op, "x is null");
  const size_t R = size_t(rows), N = size_t(n);
  parallel_for(N, 64, [&](size_t j0, size_t j1) {
    const size_t w = j1 - j0;
    std::vector<double> sum(w, 0.0), sumsq(w, 0.0), nonzero(w, 0.0);  // columns j0 .. j1 - 1
    for (size_t r = 0; r < R; ++r) {
      const float* xr = x + r * N + j0;  // x[r, j0 : j1]
      for (size_t j = 0; j < w; ++j) {
        const double v = xr[j];
        sum[j] += v;
        sumsq[j] += v * v;
        nonzero[j] += v != 0.0;
      }
    }
    for (size_t j = 0; j < w; ++j) {
      if (sum_host) sum_host[j0 + j] = sum[j];
      if (sumsq_host) sumsq_host[j0 + j] = sumsq[j];
      if (nonzero_host) nonzero_host[j0 + j] = nonzero[j];
    }
  });
  return MS_OK;
}

}  // namespace ms::cpu
