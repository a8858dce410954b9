/*
 * exp_rows.cpp — dispatch of the row exponentials (exp_rows.h): AVX2 kernels when active_simd()
 * allows, std::exp otherwise.
 */
#include "exp_rows.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu_features.h"

namespace ms::cpu {

namespace {
constexpr size_t kBlock = 256;  // fp32 partial sums over this many exponentials

bool use_avx2() {
#if defined(__x86_64__) || defined(_M_X64)
  return active_simd() >= SimdLevel::AVX2;
#else
  return false;
#endif
}
}  // namespace

float row_max(const float* x, size_t n) {
  float m = x[0];
  bool nan = false;
  for (size_t v = 1; v < n; ++v) {
    m = x[v] > m ? x[v] : m;
    nan |= x[v] != x[v];
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;  // a NaN anywhere makes the row's softmax NaN
}

double exp_sum(const float* x, size_t n, float shift) {
  const bool simd = use_avx2();
  double s = 0.0;
  for (size_t v0 = 0; v0 < n; v0 += kBlock) {
    const size_t len = std::min(n - v0, kBlock);
#if defined(__x86_64__) || defined(_M_X64)
    if (simd) {
      s += exp_detail::block_exp_sum_avx2(x + v0, len, shift);
      continue;
    }
#endif
    float block = 0.0f;
    for (size_t v = v0; v < v0 + len; ++v) block += std::exp(x[v] - shift);
    s += block;
  }
  (void)simd;
  return s;
}

void exp_scale(float* x, size_t n, float shift, float scale) {
#if defined(__x86_64__) || defined(_M_X64)
  if (use_avx2()) {
    exp_detail::exp_scale_avx2(x, n, shift, scale);
    return;
  }
#endif
  for (size_t v = 0; v < n; ++v) x[v] = std::exp(x[v] - shift) * scale;
}

}  // namespace ms::cpu
