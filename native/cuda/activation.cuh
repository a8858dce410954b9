/*
 * activation.cuh — the elementwise activations of the transformer ops (backend.h ms_activation) as
 * one device function, shared by the activation kernel (transformer.cu) and the GEMM epilogue that
 * applies an activation with the bias (gemm_epilogue_ops.cuh), so that the fused activation gives
 * the bits of the separate pass. Every product and sum is rounded on its own (__fmul_rn,
 * __fadd_rn): the compiler cannot contract them into fused multiply-adds differently in the two
 * places it is inlined.
 */
#ifndef MONOSEMANTIC_CUDA_ACTIVATION_CUH
#define MONOSEMANTIC_CUDA_ACTIVATION_CUH

#include "backend.h"
#include "gelu_constants.h"

namespace ms::cuda {

// act(v) for kind = MS_ACT_GELU_TANH: 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)));
// MS_ACT_GELU_ERF: 0.5 v (1 + erf(v / sqrt 2)); otherwise (MS_ACT_RELU) max(v, 0), NaN -> 0.
// (The epilogue takes the kind as a template argument, activate(Kind, v): only its own branch is compiled.)
__device__ __forceinline__ float activate(int kind, float v) {
  if (kind != MS_ACT_RELU && isinf(v)) return v > 0.0f ? v : 0.0f;  // the GELUs' limits, not inf * 0 = NaN
  if (kind == MS_ACT_GELU_TANH) {
    const float cubic = __fmul_rn(__fmul_rn(__fmul_rn(kGeluCubic, v), v), v);
    const float u = __fmul_rn(kSqrt2OverPi, __fadd_rn(v, cubic));
    return __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, tanhf(u)));
  }
  if (kind == MS_ACT_GELU_ERF) return __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, erff(__fmul_rn(v, kInvSqrt2))));
  return v > 0.0f ? v : 0.0f;
}

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_ACTIVATION_CUH
