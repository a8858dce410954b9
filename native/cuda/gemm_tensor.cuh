/*
 * gemm_tensor.cuh — the tensor-core bf16 GEMM (mma.sync m16n8k16, fp32 accumulation; sm_80 and
 * newer, which is every architecture this library is built for) and the epilogues that fuse the
 * SAE step's elementwise passes into it.
 *
 *   acc[M, N] = op(A) * op(B),  A and B bf16 in the storage orders of gemm.cuh (trans_a: A stored
 *   [K, M]; trans_b: B stored [N, K]); M, N, K arbitrary (ragged edges are zero-filled in shared
 *   memory, stores are bounds-checked). Each output's k-order of accumulation is fixed, so results
 *   are deterministic run to run.
 *
 * The epilogue decides what becomes of acc:
 *   EpilogueStore      C = beta * C + (alpha * acc (+ bias[col] when given)) (fp32 C, or bf16 C_bf
 *                      with beta 0; beta == 0 never reads C) — gemm<bf16>, linear's bias add, and
 *                      linear's bf16 output (the LM's logits)
 *   EpilogueBiasAct    f = act(acc + bias[col]) as fp32 and/or bf16 (ReLU or gelu_new) — the SAE
 *                      encoder and the LM's MLP: the pre-activations never reach memory
 *   EpilogueFeatureGrad gp = f > 0 ? acc + l1_scale * c[col] : 0 (c null: c = 1) as fp32 and/or
 *                      bf16 — the SAE backward through the ReLU with the L1 term
 * The two SAE epilogues can also reduce their output over rows: per 128-row tile, the column
 * sums in double (col_partial; summing its rows in order gives the column sum, deterministically)
 * and, for f, the count of positive entries per column (col_fired, integer atomics). The SAE step
 * then needs no other pass over f or gp: only their bf16 copies reach memory.
 *
 * On Hopper, the store epilogue's products with a long K and many outputs go to the wgmma + TMA
 * kernel (gemm_wgmma.cuh: wgmma_chosen); MONOSEMANTIC_CUDA_GEMM=wgmma sends every product that
 * fits there, with the same epilogues and storage orders, and =mma none.
 *
 * MONOSEMANTIC_CUDA_KERNELS=simple (read at each call) makes the callers use the simple SIMT
 * kernels of gemm.cuh and separate elementwise passes instead: the reference path for tests and
 * for comparing training runs.
 */
#ifndef MONOSEMANTIC_CUDA_GEMM_TENSOR_CUH
#define MONOSEMANTIC_CUDA_GEMM_TENSOR_CUH

#include "common.cuh"

namespace ms::cuda {

// Rows per tile of the column partials (col_partial has ceil(M / kTensorTileRows) rows).
constexpr int kTensorTileRows = 128;

// True unless MONOSEMANTIC_CUDA_KERNELS=simple.
bool use_tensor_kernels();

struct EpilogueStore {
  float alpha;
  float beta;
  float* C;  // [M, ldc]
  int ldc;
  const float* bias = nullptr;  // [N], added to every row after alpha, before beta's term; or null
  // [M, ldc]: when set, the result goes here rounded to bf16 instead, and C is unused (beta 0).
  __nv_bfloat16* C_bf = nullptr;
  // Where the result goes (for the argument checks).
  const void* out() const { return C_bf ? static_cast<const void*>(C_bf) : C; }
};

struct EpilogueBiasAct {
  const float* bias;      // [N]
  float* f;               // [M, ld]  act(acc + bias) in fp32, or null
  __nv_bfloat16* f_bf;    // [M, ld]  the same in bf16, or null (at least one of the two)
  int ld;
  double* col_partial;    // [ceil(M / kTensorTileRows), N]  sum of f over each row tile, or null
  int32_t* col_fired;     // [N]  += #{rows : f > 0}, or null
  int act = MS_ACT_RELU;  // ms_activation (activation.cuh): RELU or GELU_TANH (epilogue_activation)
};

// linear_qkv's store: column col of the product [rows, 3C], its bias added as linear's store adds
// it, goes to q (col < C) or to the key or value cache (col - C, col - 2C) as split_qkv puts it:
// row r = b*T + t of q [rows, C], row b*Tmax + offset + t of a cache [B, Tmax, C].
struct EpilogueSplitQkv {
  const float* bias;  // [3C], or null
  float* q;           // [rows, C]
  float* k_cache;     // [B, Tmax, C]
  float* v_cache;     // [B, Tmax, C]
  int C, T, Tmax, offset;
};

// The activations EpilogueBiasAct is compiled for (others: a pass of their own after the product).
inline bool epilogue_activation(int act) { return act == MS_ACT_RELU || act == MS_ACT_GELU_TANH; }

struct EpilogueFeatureGrad {
  const __nv_bfloat16* f_bf;  // [M, ld]  the activations (f > 0 is the ReLU mask); may alias gp_bf
  const float* c;             // [N]      per-feature penalty weights, or null for 1
  float l1_scale;             //          lambda / B
  float* gp;                  // [M, ld]  fp32, or null
  __nv_bfloat16* gp_bf;       // [M, ld]  bf16, or null (at least one of the two)
  int ld;
  double* col_partial;        // [ceil(M / kTensorTileRows), N]  sum of gp over each row tile, or null
};

// Queue acc = op(A) op(B) on op.stream followed by the epilogue (the store epilogue splits K over
// scratch memory when the output has too few tiles for the GPU). Checks dimensions and leading
// dimensions like gemm() (gemm.cuh); lda/ldb as there. Storage orders compiled (N: as stored,
// T: transposed): store NN, NT, TN (gemm() sends TT to the simple kernel); bias-activation NN (the
// encoder); feature gradient NT (g W_dec^T). Others return MS_ERR_UNSUPPORTED.
int gemm_tensor(const Op& op, bool trans_a, bool trans_b, int M, int N, int K,
                const __nv_bfloat16* A, int lda, const __nv_bfloat16* B, int ldb,
                const EpilogueStore& epilogue);
int gemm_tensor(const Op& op, bool trans_a, bool trans_b, int M, int N, int K,
                const __nv_bfloat16* A, int lda, const __nv_bfloat16* B, int ldb,
                const EpilogueBiasAct& epilogue);
int gemm_tensor(const Op& op, bool trans_a, bool trans_b, int M, int N, int K,
                const __nv_bfloat16* A, int lda, const __nv_bfloat16* B, int ldb,
                const EpilogueFeatureGrad& epilogue);
// The q/k/v split store: NN, N = 3C, on the mma.sync kernel in one pass (the caller checks
// store_on_general_kernel first, so that the sums are those of the store epilogue).
int gemm_tensor(const Op& op, bool trans_a, bool trans_b, int M, int N, int K,
                const __nv_bfloat16* A, int lda, const __nv_bfloat16* B, int ldb,
                const EpilogueSplitQkv& epilogue);
// Whether the store epilogue runs this product on the mma.sync kernel in one pass (not on wgmma or
// the short-K kernel, K not split): where another epilogue on that kernel makes the same sums.
bool store_on_general_kernel(bool trans_a, bool trans_b, int M, int N, int K, const __nv_bfloat16* A, int lda,
                             const __nv_bfloat16* B, int ldb);

// Split K's last pass, for both tensor-core kernels: C = alpha * (P[0] + ... + P[splits - 1]) (+ bias)
// (+ beta * C), the partial products P [splits, M, N] summed in order (deterministic).
int sum_split_partials(const Op& op, int M, int N, int splits, const float* P, const EpilogueStore& epilogue);

// The multiprocessors of the backend's device (cached).
int device_multiprocessors();

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_GEMM_TENSOR_CUH
