/*
 * decoder_norm.cuh — the decoder-row constraints of the 2023 SAE recipe (backend.h):
 * remove from each dW_dec row its component parallel to the W_dec row (so the step keeps rows
 * on the unit sphere to first order), and renormalise W_dec rows to unit norm after the step.
 */
#ifndef MONOSEMANTIC_CUDA_DECODER_NORM_CUH
#define MONOSEMANTIC_CUDA_DECODER_NORM_CUH

#include "common.cuh"

namespace ms::cuda {

// The per-element expressions of the two kernels, shared with the fused update (sae_update.cu).
// Removal: g -= k w with k = float(dot / ss); renormalisation: w *= float(1 / sqrt(ss)).
__device__ __forceinline__ float remove_parallel_element(float g, float k, float w) {
  return __fsub_rn(g, __fmul_rn(k, w));
}
__device__ __forceinline__ float renormalize_factor(double ss) { return float(1.0 / sqrt(ss)); }

// Queue the kernels on op.stream (one 256-thread block per row).
int launch_remove_parallel(const Op& op, int n, int d, const float* W_dec, float* dW_dec);
int launch_renormalize(const Op& op, int n, int d, float* W_dec);

int decoder_remove_parallel_grad(int n, int d, const float* W_dec, float* dW_dec, ms_error* err);
int decoder_renormalize(int n, int d, float* W_dec, ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_DECODER_NORM_CUH
