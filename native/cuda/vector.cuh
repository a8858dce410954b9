/*
 * vector.cuh — small reductions and elementwise ops of the CUDA backend (backend.h): sum of
 * squares, in-place scaling, per-row squared distances; plus the deterministic device-side sum
 * that the resampling code shares.
 */
#ifndef MONOSEMANTIC_CUDA_VECTOR_CUH
#define MONOSEMANTIC_CUDA_VECTOR_CUH

#include <cstddef>

#include "backend.h"
#include "common.cuh"

namespace ms::cuda {

int sum_squares(size_t count, const float* x, double* out_host, ms_error* err);
int reduce_sum_into(size_t count, const float* x, int square, double scale, float* out, int accumulate, ms_error* err);
int scale(size_t count, float* x, float alpha, ms_error* err);
int row_sq_dist(int rows, int d, const float* a, const float* b, float* out, ms_error* err);
int gather_rows(int count, int d, const float* src, int src_rows, const int32_t* idx, float* dst, int indices_checked,
                ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_VECTOR_CUH
