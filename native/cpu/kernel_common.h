/*
 * kernel_common.h — small pieces shared by the CPU kernels: the row grain of parallel passes,
 * bf16 operand copies, an fp32 dot product, the GELU constants (gelu_constants.h), and the OOM
 * error.
 */
#ifndef MONOSEMANTIC_CPU_KERNEL_COMMON_H
#define MONOSEMANTIC_CPU_KERNEL_COMMON_H

#include <cstddef>

#include "backend.h"
#include "convert.h"
#include "gelu_constants.h"
#include "status.h"
#include "thread_pool.h"

namespace ms::cpu {

// Rows per parallel chunk so that each chunk touches roughly 64 KiB.
inline size_t row_grain(size_t row_len) {
  const size_t rows = (16384 + row_len - 1) / (row_len ? row_len : 1);
  return rows ? rows : 1;
}

// dst[i] = bf16(src[i]) as float, for i < count (a bf16 matrix-product operand).
inline void round_copy_bf16(const float* src, float* dst, size_t count) {
  parallel_for(count, 1 << 15, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) dst[i] = round_to_bf16(src[i]);
  });
}

// dst[i] = the bf16 bits src[i] as float, for i < count (on the calling thread); returns dst.
inline float* widen_bf16(const uint16_t* src, size_t count, float* dst) {
  for (size_t i = 0; i < count; ++i) dst[i] = bf16_to_float(src[i]);
  return dst;
}

// a . b over n floats with 8 independent partial sums (the compiler vectorises them; a single
// running sum would be a serial dependency chain).
inline float dot(const float* a, const float* b, size_t n) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (size_t k = 0; k < 8; ++k) part[k] += a[i + k] * b[i + k];
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (size_t k = 0; k < 8; ++k) sum += part[k];
  return sum;
}

inline int oom(ms_error* err, const char* op) { return fail(err, MS_ERR_OOM, op, "out of host memory"); }

}  // namespace ms::cpu

#endif
