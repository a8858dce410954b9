/*
 * adam.cuh — one Adam step over a parameter array (backend.h ms_adam_hparams; PyTorch semantics,
 * no weight decay).
 */
#ifndef MONOSEMANTIC_CUDA_ADAM_CUH
#define MONOSEMANTIC_CUDA_ADAM_CUH

#include <cstddef>

#include "backend.h"

namespace ms::cuda {

int adam_update(size_t count, float* param, const float* grad, float* m, float* v,
                const ms_adam_hparams* hp, ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_ADAM_CUH
