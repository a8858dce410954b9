/*
 * exp_kernel_avx2.cpp — AVX2 + FMA row exponentials for exp_rows.h.
 *
 * exp(x) = 2^n * exp(r) with n = round(x / ln 2) and r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 split
 * in two parts so n ln 2 is subtracted exactly), exp(r) by Cephes' degree-7 minimax polynomial
 * (1 + r + r^2 (p0 + ...)), 2^n built in the exponent bits, for x in [-87, 88] (2^n stays a
 * normal float). Outside: below -87 the result is 0 (exp(-87) = 1.6e-38 is the smallest normal
 * result: an absolute error under 2e-38, and exp(-inf) = 0 exactly, so masked entries weigh
 * nothing); from 88 to log(FLT_MAX) it stays exp(88), and above that it is +inf; NaN stays NaN,
 * as std::exp gives. Max relative error about 2e-7 over [-87, 88].
 *
 * Compiled with -mavx2 -mfma only; exp_rows.cpp calls in only when active_simd() >= AVX2.
 */
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "exp_rows.h"

namespace ms::cpu::exp_detail {
namespace {

inline __m256 exp8(__m256 input) {
  const __m256 x = _mm256_min_ps(_mm256_max_ps(input, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  // n = round(x * log2(e))
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2, with ln2 = 0.693359375 - 2.12194440e-4 (the first part exact in 9 bits)
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));  // exp(r)
  // 2^n: (n + 127) in the exponent field; n in [-126, 127] after the clamp
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  // The ends: 0 below -87 (and for -inf), +inf past log(FLT_MAX), NaN kept (ordered compares are
  // false for NaN, so only the last blend touches it).
  e = _mm256_andnot_ps(_mm256_cmp_ps(input, _mm256_set1_ps(-87.0f), _CMP_LT_OQ), e);
  e = _mm256_blendv_ps(e, _mm256_set1_ps(__builtin_huge_valf()), _mm256_cmp_ps(input, _mm256_set1_ps(88.72284f), _CMP_GE_OQ));
  return _mm256_blendv_ps(e, input, _mm256_cmp_ps(input, input, _CMP_UNORD_Q));
}

// Mask selecting the first n (0..8) lanes, for maskload / maskstore.
inline __m256i first_lanes(size_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace

float block_exp_sum_avx2(const float* x, size_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();  // two chains hide FMA latency
  size_t v = 0;
  for (; v + 16 <= n; v += 16) {
    acc0 = _mm256_add_ps(acc0, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + v), s)));
    acc1 = _mm256_add_ps(acc1, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + v + 8), s)));
  }
  for (; v < n; v += 8) {
    const size_t lanes = n - v < 8 ? n - v : 8;
    const __m256i mask = first_lanes(lanes);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + v, mask), s));
    acc0 = _mm256_add_ps(acc0, _mm256_and_ps(e, _mm256_castsi256_ps(mask)));  // masked-off lanes add 0
  }
  // horizontal sum of acc0 + acc1
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

void exp_scale_avx2(float* x, size_t n, float shift, float scale) {
  const __m256 s = _mm256_set1_ps(shift), k = _mm256_set1_ps(scale);
  size_t v = 0;
  for (; v + 8 <= n; v += 8) _mm256_storeu_ps(x + v, _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_loadu_ps(x + v), s)), k));
  if (v < n) {
    const __m256i mask = first_lanes(n - v);
    _mm256_maskstore_ps(x + v, mask, _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + v, mask), s)), k));
  }
}

}  // namespace ms::cpu::exp_detail

#endif
