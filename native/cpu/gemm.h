/*
 * gemm.h — single-precision matrix multiply for the CPU backend (BLIS/GotoBLAS-style blocking,
 * packed panels, register-blocked SIMD microkernels chosen at run time, threads from
 * thread_pool.h).
 *
 * The second half of this header is internal: the contract between the driver (gemm.cpp) and the
 * ISA-specific microkernel files (gemm_kernel_avx2.cpp, gemm_kernel_avx512.cpp), which are
 * compiled with their own -m flags and must only be called when active_simd() allows it.
 */
#ifndef MONOSEMANTIC_CPU_GEMM_H
#define MONOSEMANTIC_CPU_GEMM_H

#include <cstddef>

namespace ms::cpu {

// C[M,N] = alpha * op(A) * op(B) + beta * C   (row-major, fp32)
// op(A) is [M,K]: trans_a=false -> A is stored [M,K] with row stride lda; trans_a=true -> A is
// stored [K,M] (row stride lda) and used transposed.
// op(B) is [K,N]: trans_b=false -> B stored [K,N] (ldb); trans_b=true -> B stored [N,K] (ldb) and
// used transposed.
// When beta == 0, C is write-only: its previous contents (possibly NaN) are never read.
// M, N, K may be 0 (then only the beta scaling of C happens; K == 0 means C = beta*C); so does
// alpha == 0 (A and B are then not read).
// Uses parallel_for; uses the microkernel for active_simd(). No alignment is required of A, B, C.
// Each C element's sum runs over k in the same order whatever the thread count, so results do not
// depend on num_threads() (they do depend on the SIMD level). Throws only std::bad_alloc (the
// per-thread packing buffers grow on first use of a larger blocking).
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

namespace gemm_detail {

// Packed panel layout. A "panel" is W consecutive lines (rows of op(A) with W = MR, or columns
// of op(B) with W = NR) over kc steps of k, stored k-major: element (k, w) at panel[k*W + w].
// Lines past the matrix edge are zero, so microkernels always run full tiles.
//
// A PackFn packs ceil(width / W) panels of a source block with `width` lines and kc steps, panel
// p at dst + p*kc*W. Source element (k, w) is at src[k*ld + w] when k_major (op(A) with trans_a,
// op(B) without trans_b: lines contiguous per k) and at src[w*ld + k] otherwise (a transposing
// pack). dst is 64-byte aligned.
using PackFn = void (*)(const float* src, std::ptrdiff_t ld, bool k_major, int width, int kc, int W, float* dst);

// Full-tile microkernel: C[i, j] (at c[i*ldc + j], i < MR, j < NR) =
//   alpha * sum_{k < kc} ap[k*MR + i] * bp[k*NR + j] + beta * C[i, j];  beta == 0: C not read.
// ap and bp are 64-byte aligned packed panels; c has no alignment requirement. kc >= 1.
using MicroKernel = void (*)(int kc, const float* ap, const float* bp, float* c, std::ptrdiff_t ldc,
                             float alpha, float beta);

struct KernelSet {
  const char* name;  // e.g. "avx512 14x32"
  int mr, nr;        // register tile
  int mc, kc, nc;    // cache blocking: A block mc x kc (L2), B block kc x nc (L3); mc % mr == 0, nc % nr == 0
  MicroKernel micro;
  PackFn pack;       // for A panels (W = mr) and B panels (W = nr)
};

#if defined(__x86_64__) || defined(_M_X64)
// Defined in the ISA files (which compile to nothing elsewhere). Call only if active_simd() allows.
const KernelSet& avx2_kernel_set();
const KernelSet& avx512_kernel_set();
// The AVX2 packer, shared by both sets (detected_simd() reports AVX512 only for CPUs that also
// pass the AVX2 + FMA check).
void pack_avx2(const float* src, std::ptrdiff_t ld, bool k_major, int width, int kc, int W, float* dst);
#endif

// The set sgemm uses for active_simd() (for the benchmark's report).
const KernelSet& active_kernel_set();

}  // namespace gemm_detail
}  // namespace ms::cpu

#endif
