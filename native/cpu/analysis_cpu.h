/*
 * analysis_cpu.h — the feature-analysis ops of the CPU backend (backend.h, ABI 6): a batch of
 * activations as sparse rows, and per-column sums.
 */
#ifndef MONOSEMANTIC_CPU_ANALYSIS_CPU_H
#define MONOSEMANTIC_CPU_ANALYSIS_CPU_H

#include <cstddef>
#include <cstdint>

#include "backend.h"

namespace ms::cpu {

int sparse_rows(int rows, int n, const float* x, float threshold, int64_t* row_ptr_host, size_t capacity,
                int32_t* cols_host, float* vals_host, ms_error* err);
int column_stats(int rows, int n, const float* x, double* sum_host, double* sumsq_host, double* nonzero_host,
                 ms_error* err);

}  // namespace ms::cpu

#endif
