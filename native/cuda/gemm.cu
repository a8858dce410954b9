/*
 * gemm.cu — the simple tiled GEMM of gemm.cuh: C[M, N] = alpha * op(A) * op(B) + beta * C.
 *
 * Each 256-thread block computes a 64 x 64 tile of C, 4 x 4 outputs per thread (thread (ty, tx)
 * owns rows ty + 16 i and columns tx + 16 j). The K dimension is walked 16 at a time through
 * shared-memory tiles that hold op(A) and op(B) already converted to fp32 (a bf16 -> fp32
 * conversion is exact), with zeros outside the matrices so edges need no special case in the
 * inner loop. Every output is one fp32 fmaf chain over k = 0, 1, ..., K-1 in order, so results
 * are deterministic. Loads walk the operand's contiguous dimension across threads (coalesced)
 * for every transpose combination; the transpose flags are template parameters.
 */
#include "gemm.cuh"

#include <type_traits>

#include "gemm_tensor.cuh"

namespace ms::cuda {

constexpr int kBM = 64;            // tile rows (M)
constexpr int kBN = 64;            // tile columns (N)
constexpr int kBK = 16;            // tile depth (K)
constexpr int kGemmThreads = 256;  // 16 x 16 threads
constexpr int kTM = kBM / 16;      // outputs per thread along M
constexpr int kTN = kBN / 16;      // outputs per thread along N
constexpr unsigned int kMaxGridY = 65535;
static_assert(kBM * kBK % kGemmThreads == 0 && kBN * kBK % kGemmThreads == 0, "tile loads");

// grid.x walks the N tiles; grid.y (capped at 65535) walks the tiles_m M tiles in a loop.
template <typename T, bool TA, bool TB>
static __global__ void __launch_bounds__(kGemmThreads)
    gemm_kernel(int M, int N, int K, float alpha, const T* __restrict__ A, int lda,
                const T* __restrict__ B, int ldb, float beta, float* __restrict__ C, int ldc,
                int tiles_m) {
  __shared__ float As[kBK][kBM + 1];  // As[k][m] = op(A)[m0 + m, k0 + k]   (+1: fewer bank conflicts)
  __shared__ float Bs[kBK][kBN + 1];  // Bs[k][n] = op(B)[k0 + k, n0 + n]
  const int tid = threadIdx.x;
  const int tx = tid % 16;
  const int ty = tid / 16;
  const int n0 = blockIdx.x * kBN;
  if (n0 >= N) return;  // guard; the grid is exact so this is never taken (uniform per block)

  for (int tile_m = blockIdx.y; tile_m < tiles_m; tile_m += gridDim.y) {
    const int m0 = tile_m * kBM;
    float acc[kTM][kTN];
#pragma unroll
    for (int i = 0; i < kTM; ++i)
#pragma unroll
      for (int j = 0; j < kTN; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += kBK) {
      // op(A) tile, 64 x 16: consecutive threads take consecutive addresses of A's storage.
#pragma unroll
      for (int r = 0; r < kBM * kBK / kGemmThreads; ++r) {
        const int e = tid + r * kGemmThreads;
        const int m = TA ? e % kBM : e / kBK;
        const int k = TA ? e / kBM : e % kBK;
        const int gm = m0 + m;
        const int gk = k0 + k;
        float v = 0.0f;
        if (gm < M && gk < K)
          v = to_float(TA ? A[size_t(gk) * lda + gm]    // A stored [K, M]: op(A)[gm, gk] at A[gk*lda + gm]
                          : A[size_t(gm) * lda + gk]);  // A stored [M, K]: op(A)[gm, gk] at A[gm*lda + gk]
        As[k][m] = v;
      }
      // op(B) tile, 16 x 64.
#pragma unroll
      for (int r = 0; r < kBN * kBK / kGemmThreads; ++r) {
        const int e = tid + r * kGemmThreads;
        const int n = TB ? e / kBK : e % kBN;
        const int k = TB ? e % kBK : e / kBN;
        const int gn = n0 + n;
        const int gk = k0 + k;
        float v = 0.0f;
        if (gn < N && gk < K)
          v = to_float(TB ? B[size_t(gn) * ldb + gk]    // B stored [N, K]: op(B)[gk, gn] at B[gn*ldb + gk]
                          : B[size_t(gk) * ldb + gn]);  // B stored [K, N]: op(B)[gk, gn] at B[gk*ldb + gn]
        Bs[k][n] = v;
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < kBK; ++k) {
        float a[kTM], b[kTN];
#pragma unroll
        for (int i = 0; i < kTM; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < kTN; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < kTM; ++i)
#pragma unroll
          for (int j = 0; j < kTN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      __syncthreads();  // the tiles are overwritten by the next k0
    }

#pragma unroll
    for (int i = 0; i < kTM; ++i) {
      const int gm = m0 + ty + 16 * i;
      if (gm >= M) continue;
#pragma unroll
      for (int j = 0; j < kTN; ++j) {
        const int gn = n0 + tx + 16 * j;
        if (gn >= N) continue;
        float* c = C + size_t(gm) * ldc + gn;  // C[gm, gn] at C[gm*ldc + gn]
        const float ab = alpha * acc[i][j];
        if (beta == 0.0f)
          *c = ab;  // C is not read: it may hold NaN
        else
          *c = fmaf(beta, *c, ab);
      }
    }
  }
}

template <typename T, bool TA, bool TB>
static int launch_gemm(const Op& op, int M, int N, int K, float alpha, const T* A, int lda,
                       const T* B, int ldb, float beta, float* C, int ldc) {
  const size_t tiles_n = (size_t(N) + kBN - 1) / kBN;  // <= 2^25 since N <= INT_MAX
  const size_t tiles_m = (size_t(M) + kBM - 1) / kBM;
  const dim3 grid(static_cast<unsigned int>(tiles_n),
                  static_cast<unsigned int>(tiles_m < kMaxGridY ? tiles_m : kMaxGridY));
  gemm_kernel<T, TA, TB><<<grid, kGemmThreads, 0, op.stream>>>(M, N, K, alpha, A, lda, B, ldb, beta,
                                                                C, ldc, static_cast<int>(tiles_m));
  return check_launch(op, "gemm_kernel");
}

int check_gemm_args(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const void* A, int lda,
                    const void* B, int ldb, const void* C, int ldc) {
  if (M < 0 || N < 0 || K < 0)
    return invalid(op.err, op.name, "gemm: negative dimension (M %d, N %d, K %d)", M, N, K);
  // Leading dimensions: the row length of each operand's storage.
  const int a_cols = trans_a ? M : K;
  const int b_cols = trans_b ? K : N;
  if (lda < a_cols || ldb < b_cols || ldc < N)
    return invalid(op.err, op.name, "gemm: leading dimension too small (lda %d, ldb %d, ldc %d)", lda,
                   ldb, ldc);
  if (!C || (K > 0 && (!A || !B))) return invalid(op.err, op.name, "gemm: null operand");
  return MS_OK;
}

template <typename T>
int gemm(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A,
         int lda, const T* B, int ldb, float beta, float* C, int ldc) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if (use_tensor_kernels() && !(trans_a && trans_b))  // T x T: no product uses it; simple kernel
      return gemm_tensor(op, trans_a, trans_b, M, N, K, A, lda, B, ldb, EpilogueStore{alpha, beta, C, ldc});
  }
  MS_TRY(check_gemm_args(op, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc));
  if (M == 0 || N == 0) return MS_OK;
  if (!trans_a && !trans_b) return launch_gemm<T, false, false>(op, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (!trans_a && trans_b) return launch_gemm<T, false, true>(op, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (trans_a && !trans_b) return launch_gemm<T, true, false>(op, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  return launch_gemm<T, true, true>(op, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template int gemm<float>(const Op&, bool, bool, int, int, int, float, const float*, int,
                         const float*, int, float, float*, int);
template int gemm<__nv_bfloat16>(const Op&, bool, bool, int, int, int, float, const __nv_bfloat16*,
                                 int, const __nv_bfloat16*, int, float, float*, int);

}  // namespace ms::cuda
