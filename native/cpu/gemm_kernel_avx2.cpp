/*
 * gemm_kernel_avx2.cpp — AVX2 + FMA pieces of sgemm (gemm.h): the 6x16 register-blocked
 * microkernel and the panel packer that both x86 kernel sets use.
 *
 * Compiled with -mavx2 -mfma only; gemm.cpp calls into it only when active_simd() >= AVX2.
 * Microkernel: 6 rows x 16 columns of C live in 12 YMM accumulators; per k step it loads two
 * 8-float vectors of packed B and broadcasts 6 packed A values, for 12 FMAs (Zen 4 and Intel
 * cores retire 2 FMAs per cycle, latency 4: 12 independent chains keep both pipes busy). 12 + 2 B
 * vectors + 1 broadcast fit the 16 YMM registers without spills. Blocking kc = 512, mc = 120:
 * the A block (120 x 512 floats, 240 KiB) stays in L2 (tuned on Zen 4, 1 MiB L2; kc = 256 measured
 * a few percent slower there).
 *
 * Packer: k-major sources are copied row by row (sequential reads; the first version went panel
 * by panel, striding through memory, and packing cost ~2.5x more); the others are transposed in 8x8
 * register blocks. Partial vectors are stored with plain 16/8/4-byte stores.
 */
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <algorithm>

#include "gemm.h"

namespace ms::cpu::gemm_detail {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;

// Mask selecting the first n (0..8) lanes, for maskload.
inline __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Stores the first `lanes` (1..8) floats of v to d. Plain 16/8/4-byte stores rather than
// vmaskmovps, whose store form is microcoded and slow on AMD cores.
inline void store_lanes(float* d, __m256 v, int lanes) {
  if (lanes == 8) {
    _mm256_storeu_ps(d, v);
    return;
  }
  __m128 x = _mm256_castps256_ps128(v);  // lanes 0..3
  if (lanes & 4) {
    _mm_storeu_ps(d, x);
    d += 4;
    x = _mm256_extractf128_ps(v, 1);  // lanes 4..7
  }
  if (lanes & 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(d), x);
    d += 2;
    x = _mm_movehl_ps(x, x);
  }
  if (lanes & 1) _mm_store_ss(d, x);
}

// In-register transpose: on return r[i] holds lane i of the 8 inputs, i.e. r'[i][j] = r[j][i].
inline void transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Panels from a k-major source: element (k, w) at src[k*ld + w], w < width. Goes row by row
// (k outer) so the source is read sequentially; panel p gets dst[p*kc*W + k*W + w'] for
// w' < W (zero past width).
void pack_k_major(const float* src, std::ptrdiff_t ld, int width, int kc, int W, float* dst) {
  const std::ptrdiff_t panel_stride = std::ptrdiff_t(kc) * W;
  for (int k = 0; k < kc; ++k) {
    const float* s = src + k * ld;  // source row k: lines 0..width-1
    float* d = dst + k * W;         // packed row k of panel 0
    for (int p0 = 0; p0 < width; p0 += W, s += W, d += panel_stride) {
      const int lines = std::min(W, width - p0);
      for (int w = 0; w < W; w += 8) {
        const int valid = std::clamp(lines - w, 0, 8);
        const __m256 v = valid == 8   ? _mm256_loadu_ps(s + w)
                         : valid > 0 ? _mm256_maskload_ps(s + w, first_lanes(valid))
                                     : _mm256_setzero_ps();
        store_lanes(d + w, v, std::min(8, W - w));
      }
    }
  }
}

// One panel, transposing: element (k, w) at src[w*ld + k], w < lines <= W. Works on 8 lines x 8
// k steps at a time (8 row loads, an 8x8 transpose, 8 row stores).
void pack_panel_transposed(const float* src, std::ptrdiff_t ld, int lines, int kc, int W, float* dst) {
  const int kc8 = kc / 8 * 8;
  for (int k0 = 0; k0 < kc8; k0 += 8) {
    for (int w0 = 0; w0 < W; w0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i)  // r[i] = source line w0+i, k steps k0..k0+7
        r[i] = w0 + i < lines ? _mm256_loadu_ps(src + (w0 + i) * ld + k0) : _mm256_setzero_ps();
      transpose8x8(r);             // r[kk] = lines w0..w0+7 at k step k0+kk
      const int lanes = std::min(8, W - w0);
      for (int kk = 0; kk < 8; ++kk) store_lanes(dst + (k0 + kk) * W + w0, r[kk], lanes);
    }
  }
  for (int k = kc8; k < kc; ++k)
    for (int w = 0; w < W; ++w) dst[k * W + w] = w < lines ? src[w * ld + k] : 0.0f;
}

// C[0:kMR, 0:kNR] = alpha * Ap^T Bp + beta * C (see MicroKernel in gemm.h). Every loop over
// the accumulators is fully unrolled so that GCC keeps them in registers (without the pragmas
// it keeps the array in memory and stores it every k step).
void micro_6x16(int kc, const float* ap, const float* bp, float* c, std::ptrdiff_t ldc, float alpha,
                float beta) {
  __m256 acc[kMR][2];
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(bp + k * kNR);      // B[k, 0:8]
    const __m256 b1 = _mm256_load_ps(bp + k * kNR + 8);  // B[k, 8:16]
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + k * kMR + i);  // A[i, k]
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {  // C[i, 0:16] at c + i*ldc
      _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc[i][0]));
      _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      float* ci = c + i * ldc;
      _mm256_storeu_ps(ci, _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), _mm256_mul_ps(va, acc[i][0])));
      _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), _mm256_mul_ps(va, acc[i][1])));
    }
  }
}

}  // namespace

void pack_avx2(const float* src, std::ptrdiff_t ld, bool k_major, int width, int kc, int W, float* dst) {
  if (k_major) {
    pack_k_major(src, ld, width, kc, W, dst);
    return;
  }
  for (int p0 = 0; p0 < width; p0 += W, dst += std::ptrdiff_t(kc) * W)  // line p0 at src[p0*ld]
    pack_panel_transposed(src + p0 * ld, ld, std::min(W, width - p0), kc, W, dst);
}

const KernelSet& avx2_kernel_set() {
  static const KernelSet set{"avx2 6x16", kMR, kNR, 120, 512, 4096, micro_6x16, pack_avx2};
  return set;
}

}  // namespace ms::cpu::gemm_detail

#endif
