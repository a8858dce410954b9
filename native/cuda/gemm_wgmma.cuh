/*
 * gemm_wgmma.cuh — the Hopper bf16 GEMM: warpgroup MMA (wgmma.m64n256k16, sm_90a) fed by the
 * tensor-memory accelerator (TMA), in gemm_tensor's storage orders and with its epilogues,
 *
 *   acc[M, N] = op(A) op(B),  trans_a: A stored [K, M] (else [M, K]); trans_b: B stored [N, K]
 *   (else [K, N]),
 *
 * each operand read from shared memory in the order it is stored (K-major, or MN-major through
 * wgmma's transposed operands), so no order needs a transposing copy. Compiled for the orders
 * gemm_tensor compiles: store NN, NT, TN; bias-activation NN; feature gradient NT.
 *
 * gemm_tensor (gemm_tensor.cuh) sends its products here when wgmma_ready() and wgmma_fits() say
 * so. wgmma_runs(): this build holds the kernel for sm_90a, the device is a compute 9.0 GPU, and
 * the driver exports cuTensorMapEncodeTiled; wgmma_ready() adds the choice, MONOSEMANTIC_CUDA_GEMM=
 * wgmma (read at each call; "mma" or unset keeps the mma.sync kernel). wgmma_fits(): TMA's rules,
 * 16-byte aligned bases and leading dimensions that are multiples of 8 elements. Ragged M, N and K
 * are fine (TMA fills outside the matrix with zeros; stores are bounds-checked).
 */
#ifndef MONOSEMANTIC_CUDA_GEMM_WGMMA_CUH
#define MONOSEMANTIC_CUDA_GEMM_WGMMA_CUH

#include "common.cuh"
#include "gemm_tensor.cuh"

namespace ms::cuda {

// True when the device runs the Hopper GEMM. The first call per process launches a one-thread
// probe on the default stream and waits for it.
bool wgmma_runs();

// wgmma_runs() and MONOSEMANTIC_CUDA_GEMM=wgmma asks for it.
bool wgmma_ready();

// True when the product's operands meet the kernel's requirements.
bool wgmma_fits(bool trans_a, bool trans_b, int M, int N, int K, const void* A, int lda, const void* B, int ldb);

// Queue acc = op(A) op(B) with the epilogue on op.stream (the store epilogue splits K when the
// output has too few tiles to fill the GPU). Operands that do not fit, or an order not compiled
// for the epilogue, are MS_ERR_UNSUPPORTED errors.
int gemm_wgmma(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const __nv_bfloat16* A, int lda,
               const __nv_bfloat16* B, int ldb, const EpilogueStore& epilogue);
int gemm_wgmma(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const __nv_bfloat16* A, int lda,
               const __nv_bfloat16* B, int ldb, const EpilogueBiasAct& epilogue);
int gemm_wgmma(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const __nv_bfloat16* A, int lda,
               const __nv_bfloat16* B, int ldb, const EpilogueFeatureGrad& epilogue);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_GEMM_WGMMA_CUH
