/*
 * gemm_wgmma.cuh — the Hopper bf16 GEMM: warpgroup MMA (wgmma.m64n256k16, sm_90a) fed by the
 * tensor-memory accelerator (TMA), for products whose operands are both K-major,
 *
 *   acc[M, N] = A B^T,  A stored [M, K] (leading dimension lda), B stored [N, K] (ldb),
 *
 * with the epilogues of gemm_tensor.cuh (the same functors, gemm_epilogue_ops.cuh), and the order
 * where both are MN-major (acc = A^T B, A stored [K, M], B stored [K, N]) with the store epilogue.
 * The SAE step puts all five of its products in one of the two: the encoder and x̂ = f W_dec
 * through transposed bf16 copies of W_enc and W_dec, ∂f = g W_dec^T as it is (K-major), and the
 * weight gradients f^T g and xc^T gp as they are (MN-major).
 *
 * wgmma_runs() says whether the kernel can run: this build holds it for sm_90a, the device is a
 * compute 9.0 GPU, and the driver exports cuTensorMapEncodeTiled. wgmma_ready() adds the choice:
 * MONOSEMANTIC_CUDA_GEMM=wgmma (read at each call; "mma" or unset keeps gemm_tensor's kernel). wgmma_fits() says
 * whether a product's operands meet TMA's rules: 16-byte aligned bases and leading dimensions that
 * are multiples of 8 elements. Ragged M, N and K are fine (TMA fills outside the matrix with zeros;
 * stores are bounds-checked).
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

// True when an NT product (A stored [M, K], B stored [N, K]) or a TN product (A stored [K, M], B
// stored [K, N]) of these operands meets the kernel's requirements.
bool wgmma_fits(int M, int N, int K, const void* A, int lda, const void* B, int ldb);
bool wgmma_fits_tn(int M, int N, int K, const void* A, int lda, const void* B, int ldb);

// Queue acc = A B^T with the epilogue on op.stream (the store epilogue splits K when the output has
// too few tiles to fill the GPU). Callers check wgmma_ready and wgmma_fits first; a product that
// does not fit is an MS_ERR_UNSUPPORTED error.
int gemm_wgmma_nt(const Op& op, int M, int N, int K, const __nv_bfloat16* A, int lda, const __nv_bfloat16* B,
                  int ldb, const EpilogueStore& epilogue);
int gemm_wgmma_nt(const Op& op, int M, int N, int K, const __nv_bfloat16* A, int lda, const __nv_bfloat16* B,
                  int ldb, const EpilogueBiasRelu& epilogue);
int gemm_wgmma_nt(const Op& op, int M, int N, int K, const __nv_bfloat16* A, int lda, const __nv_bfloat16* B,
                  int ldb, const EpilogueFeatureGrad& epilogue);

// acc[M, N] = A^T B with A stored [K, M] and B stored [K, N] (both MN-major: wgmma's transposed
// operands), store epilogue: the SAE step's weight gradients f^T g and xc^T gp.
int gemm_wgmma_tn(const Op& op, int M, int N, int K, const __nv_bfloat16* A, int lda, const __nv_bfloat16* B,
                  int ldb, const EpilogueStore& epilogue);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_GEMM_WGMMA_CUH
