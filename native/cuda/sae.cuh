/*
 * sae.cuh — the SAE ops of the CUDA backend (backend.h "SAE ops"): workspace sizing, encode,
 * decode, and the fused loss-and-gradients pass. The math is the CPU backend's (sae_cpu.cpp),
 * equal up to summation order; see sae.cu for the step list and the workspace layout.
 */
#ifndef MONOSEMANTIC_CUDA_SAE_CUH
#define MONOSEMANTIC_CUDA_SAE_CUH

#include <cstddef>

#include "backend.h"

namespace ms::cuda {

size_t sae_workspace_bytes(int batch, int d, int n, int precision);
int sae_encode(int batch, int d, int n, int precision, const float* x, const float* W_enc,
               const float* b_enc, const float* b_dec, float* f, ms_error* err);
int sae_decode(int batch, int d, int n, int precision, const float* f, const float* W_dec,
               const float* b_dec, float* xhat, ms_error* err);
int sae_grads(const ms_sae_grads_args* args, ms_sae_stats* stats_host, ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_SAE_CUH
