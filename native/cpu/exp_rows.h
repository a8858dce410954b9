/*
 * exp_rows.h — the exponentials of softmax and cross-entropy rows: sum_v exp(x_v - shift) and
 * x_v <- exp(x_v - shift) * scale over one row.
 *
 * Over a vocabulary-wide row these exponentials, not the matrix products, bound the CPU
 * cross-entropy when done one std::exp call at a time; with AVX2 they run 8 lanes at a time through
 * a polynomial exp (exp_kernel_avx2.cpp, max relative error about 2e-7 against std::exp). Which
 * path runs depends on active_simd(), as for sgemm.
 */
#ifndef MONOSEMANTIC_CPU_EXP_ROWS_H
#define MONOSEMANTIC_CPU_EXP_ROWS_H

#include <cstddef>

namespace ms::cpu {

// max_v x[v] over n >= 1 floats; NaN if any of them is NaN.
float row_max(const float* x, size_t n);

// sum_v exp(x[v] - shift), each exponential in fp32, summed in fp32 over blocks of 256 and the
// blocks in double, so the sum stays accurate for any n. Meant for shift = row_max(x, n).
double exp_sum(const float* x, size_t n, float shift);

// x[v] = exp(x[v] - shift) * scale, in place.
void exp_scale(float* x, size_t n, float shift, float scale);

namespace exp_detail {
#if defined(__x86_64__) || defined(_M_X64)
// exp_kernel_avx2.cpp; call only when active_simd() >= AVX2. Arguments as above.
float block_exp_sum_avx2(const float* x, size_t n, float shift);  // n <= 256
void exp_scale_avx2(float* x, size_t n, float shift, float scale);
#endif
}  // namespace exp_detail

}  // namespace ms::cpu

#endif
