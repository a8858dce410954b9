/*
 * vector.cu — sum_squares, reduce_sum_into, scale and row_sq_dist (vector.cuh).
 *
 * sum_squares (and reduce_sum_into, which leaves its result on the device) is two passes with a fixed shape — a grid of at most kSumBlocks blocks writes one
 * double partial each, then one block adds the partials with a fixed tree — so the result is
 * deterministic for a given count (it may differ from the CPU's block order in the last bits).
 * row_sq_dist: one block per row, double accumulation, as the CPU backend.
 * gather_rows: the indices are checked on the device first (find_out_of_range, common.cuh; skipped
 * when the caller vouches for them, indices_checked), then one block per destination row copies it.
 */
#include "vector.cuh"

namespace ms::cuda {
namespace {

constexpr unsigned int kSumBlocks = 1024;

// partial[blockIdx.x] = sum of x[i]^2 (or x[i]) over this block's grid-stride share of [0, count).
__global__ void __launch_bounds__(kThreads)
    sum_squares_partial_kernel(size_t count, const float* __restrict__ x, double* __restrict__ partial,
                               bool square = true) {
  __shared__ double scratch[33];
  double s = 0.0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) {
    const double v = x[i];
    s += square ? v * v : v;
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[0] = (accumulate ? out[0] : 0) + scale * (sum of partial[0, count)), one block; Out double
// (scale 1, no accumulation: the plain total) or float (rounded once).
template <typename Out>
__global__ void __launch_bounds__(kThreads) sum_partials_kernel(unsigned int count, const double* __restrict__ partial,
                                                                 double scale, Out* __restrict__ out, bool accumulate) {
  __shared__ double scratch[33];
  double s = 0.0;
  for (unsigned int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) out[0] = Out((accumulate ? double(out[0]) : 0.0) + scale * s);
}

__global__ void scale_kernel(size_t count, float* __restrict__ x, float alpha) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    x[i] = __fmul_rn(x[i], alpha);
}

// out[r] = sum_j (a[r, j] - b[r, j])^2 (b null: sum_j a[r, j]^2); block r = row r.
__global__ void __launch_bounds__(kThreads) row_sq_dist_kernel(int d, const float* __restrict__ a,
                                                                const float* __restrict__ b, float* __restrict__ out) {
  __shared__ double scratch[33];
  const size_t r = blockIdx.x;
  const float* ar = a + r * d;  // a[r, :]
  double s = 0.0;
  if (b) {
    const float* br = b + r * d;  // b[r, :]
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
      const double diff = double(ar[j]) - double(br[j]);
      s += diff * diff;
    }
  } else {
    for (int j = threadIdx.x; j < d; j += blockDim.x) s += double(ar[j]) * double(ar[j]);
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) out[r] = float(s);
}

// dst[i, :] = src[idx[i], :]; block i (grid-stride over rows) copies row i.
__global__ void gather_rows_kernel(int count, int d, const float* __restrict__ src, const int32_t* __restrict__ idx,
                                   float* __restrict__ dst) {
  for (int i = blockIdx.x; i < count; i += gridDim.x) {
    const float* from = src + size_t(idx[i]) * d;  // src[idx[i], :]
    float* to = dst + size_t(i) * d;               // dst[i, :]
    for (int c = threadIdx.x; c < d; c += blockDim.x) to[c] = from[c];
  }
}

}  // namespace

int gather_rows(int count, int d, const float* src, int src_rows, const int32_t* idx, float* dst, int indices_checked,
                ms_error* err) {
  const char* name = "gather_rows";
  if (count < 0 || d <= 0 || src_rows < 0) return invalid(err, name, "bad sizes count %d, d %d, src_rows %d", count, d, src_rows);
  if (count == 0) return MS_OK;
  if (!src || !idx || !dst) return invalid(err, name, "a pointer is null");
  Op op;
  MS_TRY(begin(op, err, name));
  // The index check waits for the device; the caller may have checked the indices on the host.
  if (!indices_checked) {
    long long bad = -1;
    int32_t value = 0;
    MS_TRY(find_out_of_range(op, idx, size_t(count), 0, src_rows, &bad, &value));
    if (bad >= 0) return invalid(err, name, "idx[%lld] = %d is outside the %d source rows", bad, int(value), src_rows);
  }
  const unsigned int blocks = count < 65535 ? static_cast<unsigned int>(count) : 65535u;
  gather_rows_kernel<<<blocks, kThreads, 0, op.stream>>>(count, d, src, idx, dst);
  MS_TRY(check_launch(op, "gather_rows_kernel"));
  return finish(op);
}

int sum_squares(size_t count, const float* x, double* out_host, ms_error* err) {
  const char* name = "sum_squares";
  if (!out_host) return invalid(err, name, "out is null");
  if (count == 0) {
    *out_host = 0.0;
    return MS_OK;
  }
  if (!x) return invalid(err, name, "x is null");
  Op op;
  MS_TRY(begin(op, err, name));
  const unsigned int blocks = grid_stride_blocks(count) < kSumBlocks ? grid_stride_blocks(count) : kSumBlocks;
  DeviceScratch scratch;  // partial[blocks], then the total
  MS_TRY(scratch.allocate(op, (blocks + 1) * sizeof(double)));
  double* partial = static_cast<double*>(scratch.get());
  sum_squares_partial_kernel<<<blocks, kThreads, 0, op.stream>>>(count, x, partial);
  MS_TRY(check_launch(op, "sum_squares_partial_kernel"));
  sum_partials_kernel<double><<<1, kThreads, 0, op.stream>>>(blocks, partial, 1.0, partial + blocks, false);
  MS_TRY(check_launch(op, "sum_partials_kernel"));
  double total = 0.0;
  MS_TRY(check(op, cudaMemcpyAsync(&total, partial + blocks, sizeof total, cudaMemcpyDeviceToHost, op.stream),
               "cudaMemcpyAsync"));
  MS_TRY(wait_host(op));
  *out_host = total;
  return scratch.release(op);
}

int reduce_sum_into(size_t count, const float* x, int square, double scale, float* out, int accumulate, ms_error* err) {
  const char* name = "reduce_sum_into";
  if (!out) return invalid(err, name, "out is null");
  if (count && !x) return invalid(err, name, "x is null");
  Op op;
  MS_TRY(begin(op, err, name));
  const unsigned int grid = count ? grid_stride_blocks(count) : 1;
  const unsigned int blocks = grid < kSumBlocks ? grid : kSumBlocks;
  DeviceScratch scratch;  // partial[blocks]
  MS_TRY(scratch.allocate(op, blocks * sizeof(double)));
  double* partial = static_cast<double*>(scratch.get());
  sum_squares_partial_kernel<<<blocks, kThreads, 0, op.stream>>>(count, x, partial, square != 0);
  MS_TRY(check_launch(op, "sum_squares_partial_kernel"));
  sum_partials_kernel<float><<<1, kThreads, 0, op.stream>>>(blocks, partial, scale, out, accumulate != 0);
  MS_TRY(check_launch(op, "sum_partials_kernel"));
  MS_TRY(scratch.release(op));
  return finish(op);
}

int scale(size_t count, float* x, float alpha, ms_error* err) {
  const char* name = "scale";
  if (count == 0) return MS_OK;
  if (!x) return invalid(err, name, "x is null");
  Op op;
  MS_TRY(begin(op, err, name));
  scale_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(count, x, alpha);
  MS_TRY(check_launch(op, "scale_kernel"));
  return finish(op);
}

int row_sq_dist(int rows, int d, const float* a, const float* b, float* out, ms_error* err) {
  const char* name = "row_sq_dist";
  if (rows < 0 || d <= 0) return invalid(err, name, "bad shape [%d, %d]", rows, d);
  if (rows == 0) return MS_OK;
  if (!a || !out) return invalid(err, name, "a or out is null");
  Op op;
  MS_TRY(begin(op, err, name));
  row_sq_dist_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, op.stream>>>(d, a, b, out);
  MS_TRY(check_launch(op, "row_sq_dist_kernel"));
  return finish(op);
}

}  // namespace ms::cuda
