/*
 * adam.cu — adam_update (adam.cuh): a grid-stride loop over count elements (size_t: arrays of
 * more than 2^31 elements are fine), one thread per element per pass.
 *
 * The arithmetic is the CPU backend's, operation for operation: the reciprocals of the bias
 * corrections are taken once on the host in fp32, and the moment updates use __fmul_rn /
 * __fadd_rn so nvcc does not contract them into FMAs (the CPU code is compiled without FMA).
 * sqrtf and '/' are IEEE-rounded (nvcc's defaults, -prec-sqrt=true -prec-div=true).
 */
#include "adam.cuh"

#include "common.cuh"

namespace ms::cuda {

// g = grad_scale grad;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g g;  p -= lr (m / bias1) / (sqrt(v / bias2) + eps)
static __global__ void adam_kernel(size_t count, float* __restrict__ param, const float* __restrict__ grad,
                                   float* __restrict__ m, float* __restrict__ v, float lr, float b1,
                                   float b2, float eps, float inv_bias1, float inv_bias2,
                                   float grad_scale) {
  const float one_minus_b1 = 1.0f - b1;
  const float one_minus_b2 = 1.0f - b2;
  for (size_t k = size_t(blockIdx.x) * blockDim.x + threadIdx.x; k < count;
       k += size_t(gridDim.x) * blockDim.x) {
    const float g = __fmul_rn(grad[k], grad_scale);
    const float mk = __fadd_rn(__fmul_rn(b1, m[k]), __fmul_rn(one_minus_b1, g));
    const float vk = __fadd_rn(__fmul_rn(b2, v[k]), __fmul_rn(__fmul_rn(one_minus_b2, g), g));
    m[k] = mk;
    v[k] = vk;
    const float step = __fmul_rn(lr, __fmul_rn(mk, inv_bias1)) / (sqrtf(__fmul_rn(vk, inv_bias2)) + eps);
    param[k] = __fsub_rn(param[k], step);
  }
}

int adam_update(size_t count, float* param, const float* grad, float* m, float* v,
                const ms_adam_hparams* hp, ms_error* err) {
  const char* name = "adam_update";
  if (!hp) return invalid(err, name, "hp is null");
  if (count == 0) return MS_OK;
  if (!param) return invalid(err, name, "param is null");
  if (!grad) return invalid(err, name, "grad is null");
  if (!m) return invalid(err, name, "m is null");
  if (!v) return invalid(err, name, "v is null");
  Op op;
  MS_TRY(begin(op, err, name));
  const float inv_bias1 = 1.0f / hp->bias1;  // as the CPU backend: fp32 reciprocals, taken once
  const float inv_bias2 = 1.0f / hp->bias2;
  adam_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(
      count, param, grad, m, v, hp->lr, hp->beta1, hp->beta2, hp->eps, inv_bias1, inv_bias2,
      hp->grad_scale);
  MS_TRY(check_launch(op, "adam_kernel"));
  return finish(op);
}

}  // namespace ms::cuda
