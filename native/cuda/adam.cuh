/*
 * adam.cuh — Adam (backend.h adam_update) on the GPU: the element update shared by every kernel
 * that applies it (adam.cu, and the fused decoder row update of sae_update.cu), its launcher, and
 * the public entry point.
 *
 * The arithmetic is the CPU backend's, operation for operation: the reciprocals of the bias
 * corrections are taken once on the host in fp32, and the moment updates use __fmul_rn /
 * __fadd_rn so nvcc does not contract them into FMAs (the CPU code is compiled without FMA).
 * sqrtf and '/' are IEEE-rounded (nvcc's defaults, -prec-sqrt=true -prec-div=true).
 */
#ifndef MONOSEMANTIC_CUDA_ADAM_CUH
#define MONOSEMANTIC_CUDA_ADAM_CUH

#include <cstddef>

#include "common.cuh"

namespace ms::cuda {

struct AdamConsts {
  float lr, b1, b2, eps, inv_bias1, inv_bias2, grad_scale;
};

inline AdamConsts adam_consts(const ms_adam_hparams& hp) {
  return AdamConsts{hp.lr, hp.beta1, hp.beta2, hp.eps, 1.0f / hp.bias1, 1.0f / hp.bias2, hp.grad_scale};
}

// g = grad_scale grad;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g g;
// returns p - lr (m / bias1) / (sqrt(v / bias2) + eps).
__device__ __forceinline__ float adam_element(float p, float grad, float& m, float& v, const AdamConsts& c) {
  const float g = __fmul_rn(grad, c.grad_scale);
  m = __fadd_rn(__fmul_rn(c.b1, m), __fmul_rn(1.0f - c.b1, g));
  v = __fadd_rn(__fmul_rn(c.b2, v), __fmul_rn(__fmul_rn(1.0f - c.b2, g), g));
  const float step = __fmul_rn(c.lr, __fmul_rn(m, c.inv_bias1)) / (sqrtf(__fmul_rn(v, c.inv_bias2)) + c.eps);
  return __fsub_rn(p, step);
}

// Queues the update of count elements on op.stream.
int launch_adam(const Op& op, size_t count, float* param, const float* grad, float* m, float* v,
                const AdamConsts& c);

int adam_update(size_t count, float* param, const float* grad, float* m, float* v,
                const ms_adam_hparams* hp, ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_ADAM_CUH
