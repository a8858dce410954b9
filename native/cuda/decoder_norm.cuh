/*
 * decoder_norm.cuh — the decoder-row constraints of the 2023 SAE recipe (backend.h):
 * remove from each dW_dec row its component parallel to the W_dec row (so the step keeps rows
 * on the unit sphere to first order), and renormalise W_dec rows to unit norm after the step.
 */
#ifndef MONOSEMANTIC_CUDA_DECODER_NORM_CUH
#define MONOSEMANTIC_CUDA_DECODER_NORM_CUH

#include "backend.h"

namespace ms::cuda {

int decoder_remove_parallel_grad(int n, int d, const float* W_dec, float* dW_dec, ms_error* err);
int decoder_renormalize(int n, int d, float* W_dec, ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_DECODER_NORM_CUH
