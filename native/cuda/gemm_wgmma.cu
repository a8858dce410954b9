/*
 * gemm_wgmma.cu — the Hopper bf16 GEMM of gemm_wgmma.cuh: which products it takes, on which tile
 * (MONOSEMANTIC_CUDA_WGMMA_TILE), with which epilogue (gemm_epilogue_ops.cuh), and whether the
 * device runs it at all (a probe of the sm_90a build). The kernel, its design and its launch are in
 * gemm_wgmma_kernel.cuh.
 */
#include "gemm_wgmma.cuh"

#include <cstdlib>
#include <cstring>

#include "gemm_epilogue_ops.cuh"
#include "gemm_wgmma_kernel.cuh"
#include "gemm_wgmma_layout.h"

namespace ms::cuda {

using namespace wgmma_layout;

namespace {

// A one-thread kernel that says whether the device runs this file's sm_90a code.
__global__ void wgmma_probe_kernel(int* out) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

// ---- host ----------------------------------------------------------------------------------------

// The tile's columns, by MONOSEMANTIC_CUDA_WGMMA_TILE (read at each call): "128", square tiles
// two blocks per multiprocessor; otherwise ("256", the default) wide tiles.
int tile_columns() {
  const char* v = std::getenv("MONOSEMANTIC_CUDA_WGMMA_TILE");
  return v && std::strcmp(v, "128") == 0 ? kSquareBN : kBN;
}

enum class Choice { Auto, Always, Never };

Choice choice() {
  const char* v = std::getenv("MONOSEMANTIC_CUDA_GEMM");
  if (v && std::strcmp(v, "wgmma") == 0) return Choice::Always;
  if (v && std::strcmp(v, "mma") == 0) return Choice::Never;
  return Choice::Auto;
}

int unsupported(const Op& op, const char* what) {
  return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "gemm_wgmma: %s", what);
}

}  // namespace

bool wgmma_chosen(bool store_epilogue, int M, int N, int K) {
  switch (choice()) {
    case Choice::Never:
      return false;
    case Choice::Always:
      return wgmma_runs();
    case Choice::Auto:
      break;
  }
  return store_epilogue && K >= kWgmmaAutoMinK && (long long)M * N >= kWgmmaAutoMinOutputs && wgmma_runs();
}

bool wgmma_runs() {
  static int runs = -1;  // the probe's answer: 1, 0; -1 not yet asked
  if (runs < 0) {
    runs = 0;
    int device = 0, major = 0, minor = 0;
    if (encode_tiled() && cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess && major == 9 &&
        minor == 0) {
      int* flag = nullptr;
      int host = 0;
      if (cudaMalloc(&flag, sizeof(int)) == cudaSuccess) {
        // The flag starts at 0, so a kernel that did not run answers "no", whatever cudaMalloc returned.
        if (cudaMemset(flag, 0, sizeof(int)) == cudaSuccess) {
          wgmma_probe_kernel<<<1, 1>>>(flag);
          if (cudaGetLastError() == cudaSuccess && cudaMemcpy(&host, flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess)
            runs = host == 1 ? 1 : 0;
        }
        cudaFree(flag);
      }
    }
    (void)cudaGetLastError();  // a failed probe means "no", not an error for the next launch
  }
  return runs == 1;
}

bool wgmma_fits(bool trans_a, bool trans_b, int M, int N, int K, const void* A, int lda, const void* B, int ldb) {
  // trans_a: A stored [K, M] (MN-major); trans_b: B stored [N, K] (K-major).
  // One block per work item at most: the item count must fit a grid's x (up to 8 splits, the
  // square tiles' count).
  const bool shape = M >= 1 && N >= 1 && K >= 1 &&
                     (long long)((M + (long long)kBM - 1) / kBM) * ((N + (long long)kSquareBN - 1) / kSquareBN) * 8 <=
                         0x7fffffffLL;
  const bool lds = lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N);
  return shape && lds && lda % 8 == 0 && ldb % 8 == 0 && aligned(A, 16) && aligned(B, 16);
}

int gemm_wgmma(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B,
               int ldb, const EpilogueStore& epilogue) {
  if (M == 0 || N == 0) return MS_OK;
  if (!wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb)) return unsupported(op, "operands outside its requirements");
  if (trans_a && trans_b) return unsupported(op, "no TT order");
  const int bn = tile_columns();
  const auto run = [&](const StoreOp& epi, int splits) {
    if (!trans_a && trans_b) return launch_tile<false, false>(bn, op, M, N, K, A, lda, B, ldb, epi, splits);  // NT
    if (!trans_a) return launch_tile<false, true>(bn, op, M, N, K, A, lda, B, ldb, epi, splits);             // NN
    return launch_tile<true, true>(bn, op, M, N, K, A, lda, B, ldb, epi, splits);                            // TN
  };
  const long long tiles = (long long)((M + (long long)kBM - 1) / kBM) * ((N + (long long)bn - 1) / bn);
  // Too few output tiles for the GPU: K is split (split_count of gemm_wgmma_layout.h).
  return store_with_splits(op, M, N, split_count(tiles, int((K + (long long)kBK - 1) / kBK), slots(bn)), epilogue, run);
}

int gemm_wgmma(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B,
               int ldb, const EpilogueBiasAct& epilogue) {
  if (!epilogue.bias) return invalid(op.err, op.name, "gemm: null bias");
  if (M == 0 || N == 0) return MS_OK;
  if (!wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb)) return unsupported(op, "operands outside its requirements");
  if (trans_a || trans_b) return unsupported(op, "the bias-activation epilogue is compiled for NN only");
  if (!epilogue_activation(epilogue.act)) return unsupported(op, "no bias-activation epilogue for this activation");
  const bool pair_ok = aligned(epilogue.f, 8) && aligned(epilogue.f_bf, 4) && epilogue.ld % 2 == 0;
  const int bn = tile_columns();
  if (epilogue.act == MS_ACT_GELU_TANH)
    return launch_tile<false, true>(bn, op, M, N, K, A, lda, B, ldb, BiasActOp<MS_ACT_GELU_TANH>{epilogue, pair_ok}, 1);
  return launch_tile<false, true>(bn, op, M, N, K, A, lda, B, ldb, BiasActOp<MS_ACT_RELU>{epilogue, pair_ok}, 1);
}

int gemm_wgmma(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B,
               int ldb, const EpilogueFeatureGrad& epilogue) {
  if (!epilogue.f_bf) return invalid(op.err, op.name, "gemm: null activations");
  if (M == 0 || N == 0) return MS_OK;
  if (!wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb)) return unsupported(op, "operands outside its requirements");
  if (trans_a || !trans_b) return unsupported(op, "the feature-gradient epilogue is compiled for NT only");
  const bool pair_ok = aligned(epilogue.gp, 8) && aligned(epilogue.gp_bf, 4) && aligned(epilogue.f_bf, 4) &&
                       epilogue.ld % 2 == 0;
  return launch_tile<false, false>(tile_columns(), op, M, N, K, A, lda, B, ldb, FeatureGradOp{epilogue, pair_ok}, 1);
}

}  // namespace ms::cuda
