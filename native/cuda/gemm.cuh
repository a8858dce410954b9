/*
 * gemm.cuh — a simple, correct tiled shared-memory GEMM for the SAE products:
 *   C[M, N] = alpha * op(A) * op(B) + beta * C      (row-major, fp32 C)
 * op(A) is A [M, K] (lda >= K) or, with trans_a, A stored as [K, M] (lda >= M); likewise
 * op(B) is B [K, N] (ldb >= N) or, with trans_b, B stored as [N, K] (ldb >= K).
 * T is the operand type (float or __nv_bfloat16); products accumulate in fp32. M, N, K are
 * arbitrary (edges are bounds-checked); beta == 0 never reads C, so C may hold NaN.
 * For bf16 operands gemm() runs the tensor-core kernel of gemm_tensor.cuh unless
 * MONOSEMANTIC_CUDA_KERNELS=simple; the simple kernel here is its reference, and the fp32 path.
 */
#ifndef MONOSEMANTIC_CUDA_GEMM_CUH
#define MONOSEMANTIC_CUDA_GEMM_CUH

#include "common.cuh"

namespace ms::cuda {

// The argument checks of every GEMM (this one and gemm_tensor.cuh's): no negative size, leading
// dimensions at least each operand's storage row, no null operand that is read. MS_OK or
// MS_ERR_INVALID naming the problem.
int check_gemm_args(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const void* A, int lda,
                    const void* B, int ldb, const void* C, int ldc);

// Queues the product on op.stream. Instantiated for float and __nv_bfloat16.
template <typename T>
int gemm(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A,
         int lda, const T* B, int ldb, float beta, float* C, int ldc);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_GEMM_CUH
