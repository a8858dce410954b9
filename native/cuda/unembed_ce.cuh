/*
 * unembed_ce.cuh — the unembedding product fused with the softmax cross-entropy (backend.h
 * unembed_cross_entropy and unembed_cross_entropy_backward, ABI 14): the logits are never formed in
 * memory. Tensor cores at BF16 for C in {32, 64, 128}; MS_ERR_UNSUPPORTED elsewhere.
 */
#ifndef MONOSEMANTIC_CUDA_UNEMBED_CE_CUH
#define MONOSEMANTIC_CUDA_UNEMBED_CE_CUH

#include <cstdint>

#include "backend.h"

namespace ms::cuda {

int unembed_cross_entropy(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                          const float* W, const int32_t* targets, float* lse, float* losses, int indices_checked,
                          ms_error* err);
int unembed_cross_entropy_backward(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                                   const float* W, const int32_t* targets, const float* lse, float scale,
                                   uint16_t* dlogits_bf16, int indices_checked, ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_UNEMBED_CE_CUH
