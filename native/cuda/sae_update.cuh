/*
 * sae_update.cuh — the SAE's whole update after sae_grads in one entry point (backend.h
 * sae_update): decoder constraint, Adam on the four tensors, renormalisation; see sae_update.cu.
 */
#ifndef MONOSEMANTIC_CUDA_SAE_UPDATE_CUH
#define MONOSEMANTIC_CUDA_SAE_UPDATE_CUH

#include "backend.h"

namespace ms::cuda {

int sae_update(const ms_sae_update_args* args, ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_SAE_UPDATE_CUH
