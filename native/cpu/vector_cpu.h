/*
 * vector_cpu.h — small reductions and elementwise ops of the CPU backend (backend.h):
 * sum of squares (gradient-norm clipping), in-place scaling (input normalisation), and per-row
 * squared distances (per-input reconstruction loss, row norms), and row gathers (sampling
 * activation rows into a shuffle window and batches out of it).
 */
#ifndef MONOSEMANTIC_CPU_VECTOR_H
#define MONOSEMANTIC_CPU_VECTOR_H

#include "backend.h"

namespace ms::cpu {

int sum_squares(size_t count, const float* x, double* out_host, ms_error* err);
int reduce_sum_into(size_t count, const float* x, int square, double scale, float* out, int accumulate, ms_error* err);
int scale(size_t count, float* x, float alpha, ms_error* err);
int row_sq_dist(int rows, int d, const float* a, const float* b, float* out, ms_error* err);
// The indices are always checked (cheap on the host): indices_checked changes nothing.
int gather_rows(int count, int d, const float* src, int src_rows, const int32_t* idx, float* dst, int indices_checked,
                ms_error* err);

}  // namespace ms::cpu

#endif
