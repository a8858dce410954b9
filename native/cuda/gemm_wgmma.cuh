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
 * gemm_tensor (gemm_tensor.cuh) sends its products here when wgmma_chosen() and wgmma_fits() say
 * so. wgmma_runs(): this build holds the kernel for sm_90a, the device is a compute 9.0 GPU, and
 * the driver exports cuTensorMapEncodeTiled; wgmma_chosen() adds the choice of products (below,
 * MONOSEMANTIC_CUDA_GEMM read at each call). wgmma_fits(): TMA's rules,
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

// Products with a long K and many outputs: those where this kernel measured faster than mma.sync
// on an H100 (bench/RESULTS.md: 1.5-2.5x for the SAE step's x̂, dW_dec and dW_enc at K 4,096 and
// 16,384; 0.65-0.75x for its K = 512 products, whose tiles spend more of their time filling the
// pipeline and storing than in wgmma).
constexpr int kWgmmaAutoMinK = 4096;
constexpr long long kWgmmaAutoMinOutputs = 1LL << 21;

// Whether a product goes to this kernel: wgmma_runs() and, by MONOSEMANTIC_CUDA_GEMM, "wgmma":
// every product; "mma": none; unset or "auto": a store epilogue's (store_epilogue) with K >=
// kWgmmaAutoMinK and M * N >= kWgmmaAutoMinOutputs (the fused epilogues measured slower here).
bool wgmma_chosen(bool store_epilogue, int M, int N, int K);

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
