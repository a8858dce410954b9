/*
 * gemm_kernel_avx512.cpp — AVX-512 microkernel of sgemm (gemm.h): 14 rows x 32 columns of C.
 *
 * Compiled with -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma; gemm.cpp calls into it only
 * when active_simd() is AVX512. Panels are packed by pack_avx2 (gemm_kernel_avx2.cpp).
 *
 * The tile lives in 28 ZMM accumulators; per k step the kernel loads two 16-float vectors of
 * packed B and broadcasts 14 packed A values, for 28 FMAs. 28 + 2 B vectors + 1 broadcast = 31 of
 * the 32 ZMM registers. Zen 4 runs a 512-bit FMA as two 256-bit halves, so its peak equals AVX2's,
 * but in-cache the 14x32 ZMM kernel reaches ~98% of that peak against 83-97% for 12x16 and 8x24
 * YMM tiles (halving the instruction count matters), and it matched or beat the 12x32, 8x48, 6x64 and 4x64
 * ZMM tiles in the full sgemm (bench/kernels/NOTES-cpu-sgemm.md). Blocking kc = 512, mc = 168:
 * the A block (168 x 512 floats, 336 KiB) sits in the 1 MiB L2; the 64 KiB B panel streams from
 * L2; fewer, longer k passes halve the C read-modify-write traffic of kc = 256.
 */
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "gemm.h"

namespace ms::cpu::gemm_detail {
namespace {

constexpr int kMR = 14;
constexpr int kNV = 2;          // 16-float vectors per tile row
constexpr int kNR = 16 * kNV;   // 32

// C[0:kMR, 0:kNR] = alpha * Ap^T Bp + beta * C (see MicroKernel in gemm.h). The unroll pragmas
// make GCC keep the accumulator array in registers (checked in the assembly: no spills).
void micro_14x32(int kc, const float* ap, const float* bp, float* c, std::ptrdiff_t ldc, float alpha,
                 float beta) {
  __m512 acc[kMR][kNV];
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < kNV; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int k = 0; k < kc; ++k) {
    __m512 b[kNV];
#pragma GCC unroll 2
    for (int j = 0; j < kNV; ++j) b[j] = _mm512_load_ps(bp + k * kNR + 16 * j);  // B[k, 16j:16j+16]
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[k * kMR + i]);  // A[i, k]
#pragma GCC unroll 2
      for (int j = 0; j < kNV; ++j) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 2
      for (int j = 0; j < kNV; ++j)  // C[i, 16j:16j+16] at c + i*ldc + 16j
        _mm512_storeu_ps(c + i * ldc + 16 * j, _mm512_mul_ps(va, acc[i][j]));
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 2
      for (int j = 0; j < kNV; ++j) {
        float* p = c + i * ldc + 16 * j;
        _mm512_storeu_ps(p, _mm512_fmadd_ps(vb, _mm512_loadu_ps(p), _mm512_mul_ps(va, acc[i][j])));
      }
  }
}

}  // namespace

const KernelSet& avx512_kernel_set() {
  static const KernelSet set{"avx512 14x32", kMR, kNR, 168, 512, 4096, micro_14x32, pack_avx2};
  return set;
}

}  // namespace ms::cpu::gemm_detail

#endif
