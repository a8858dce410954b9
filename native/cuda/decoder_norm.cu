/*
 * decoder_norm.cu — decoder_remove_parallel_grad and decoder_renormalize (decoder_norm.cuh).
 *
 * One 256-thread block per decoder row i (W_dec is [n, d] row-major; rows are contiguous). Row
 * dot products and squared norms accumulate in double with a fixed reduction tree, like the CPU
 * backend's double sums; the per-element updates then use the same fp32 expressions as the CPU
 * backend, written with __fmul_rn / __fsub_rn so nvcc does not contract them into an FMA (the
 * CPU code is compiled without FMA), keeping the elementwise rounding identical.
 */
#include "decoder_norm.cuh"

#include "common.cuh"

namespace ms::cuda {

// dW_dec[i, :] -= (dW_dec[i, :] . W_dec[i, :]) / ||W_dec[i, :]||^2 * W_dec[i, :]; block i = row i.
static __global__ void __launch_bounds__(kThreads)
    remove_parallel_kernel(int n, int d, const float* __restrict__ W_dec, float* __restrict__ dW_dec) {
  __shared__ double scratch[33];
  const int i = blockIdx.x;
  if (i >= n) return;
  const float* w = W_dec + size_t(i) * d;  // W_dec[i, :] at W_dec[i*d]
  float* g = dW_dec + size_t(i) * d;       // dW_dec[i, :] at dW_dec[i*d]
  double dot = 0.0, ss = 0.0;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const double wj = w[j];
    dot += double(g[j]) * wj;
    ss += wj * wj;
  }
  dot = block_sum(dot, scratch);
  ss = block_sum(ss, scratch);
  if (ss == 0.0) return;  // zero row: untouched (the whole block agrees)
  const float k = float(dot / ss);
  for (int j = threadIdx.x; j < d; j += blockDim.x) g[j] = remove_parallel_element(g[j], k, w[j]);
}

// W_dec[i, :] *= 1 / ||W_dec[i, :]|| for nonzero rows; block i = row i.
static __global__ void __launch_bounds__(kThreads) renormalize_kernel(int n, int d, float* __restrict__ W_dec) {
  __shared__ double scratch[33];
  const int i = blockIdx.x;
  if (i >= n) return;
  float* w = W_dec + size_t(i) * d;  // W_dec[i, :] at W_dec[i*d]
  double ss = 0.0;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const double wj = w[j];
    ss += wj * wj;
  }
  ss = block_sum(ss, scratch);
  if (ss == 0.0) return;  // zero row: untouched
  const float inv = renormalize_factor(ss);
  for (int j = threadIdx.x; j < d; j += blockDim.x) w[j] = __fmul_rn(w[j], inv);
}

int launch_remove_parallel(const Op& op, int n, int d, const float* W_dec, float* dW_dec) {
  remove_parallel_kernel<<<static_cast<unsigned int>(n), kThreads, 0, op.stream>>>(n, d, W_dec, dW_dec);
  return check_launch(op, "remove_parallel_kernel");
}

int launch_renormalize(const Op& op, int n, int d, float* W_dec) {
  renormalize_kernel<<<static_cast<unsigned int>(n), kThreads, 0, op.stream>>>(n, d, W_dec);
  return check_launch(op, "renormalize_kernel");
}

int decoder_remove_parallel_grad(int n, int d, const float* W_dec, float* dW_dec, ms_error* err) {
  const char* name = "decoder_remove_parallel_grad";
  if (n <= 0 || d <= 0) return invalid(err, name, "n and d must be positive (got n %d, d %d)", n, d);
  if (!W_dec) return invalid(err, name, "W_dec is null");
  if (!dW_dec) return invalid(err, name, "dW_dec is null");
  Op op;
  MS_TRY(begin(op, err, name));
  MS_TRY(launch_remove_parallel(op, n, d, W_dec, dW_dec));
  return finish(op);
}

int decoder_renormalize(int n, int d, float* W_dec, ms_error* err) {
  const char* name = "decoder_renormalize";
  if (n <= 0 || d <= 0) return invalid(err, name, "n and d must be positive (got n %d, d %d)", n, d);
  if (!W_dec) return invalid(err, name, "W_dec is null");
  Op op;
  MS_TRY(begin(op, err, name));
  MS_TRY(launch_renormalize(op, n, d, W_dec));
  return finish(op);
}

}  // namespace ms::cuda
