/*
 * analysis.cuh — the feature-analysis ops of the CUDA backend (backend.h, ABI 6): a batch of
 * activations compacted to sparse rows on the device, and per-column sums.
 */
#ifndef MONOSEMANTIC_CUDA_ANALYSIS_CUH
#define MONOSEMANTIC_CUDA_ANALYSIS_CUH

#include <cstddef>
#include <cstdint>

#include "backend.h"
#include "common.cuh"

namespace ms::cuda {

int sparse_rows(int rows, int n, const float* x, float threshold, int64_t* row_ptr_host, size_t capacity,
                int32_t* cols_host, float* vals_host, ms_error* err);
int column_stats(int rows, int n, const float* x, double* sum_host, double* sumsq_host, double* nonzero_host,
                 ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_ANALYSIS_CUH
