/*
 * resample.cuh — dead-feature resampling on the GPU (backend.h: ms_resample_candidates_args,
 * ms_sae_resample_args).
 */
#ifndef MONOSEMANTIC_CUDA_RESAMPLE_CUH
#define MONOSEMANTIC_CUDA_RESAMPLE_CUH

#include "backend.h"

namespace ms::cuda {

int resample_candidates(const ms_resample_candidates_args* args, ms_error* err);
int sae_resample(const ms_sae_resample_args* args, ms_sae_resample_stats* stats_host, ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_RESAMPLE_CUH
