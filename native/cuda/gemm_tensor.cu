/*
 * gemm_tensor.cu — the tensor-core bf16 GEMM of gemm_tensor.cuh.
 *
 * Tiling. A 256-thread block (8 warps) computes a 128 x 128 tile of the output; warp w owns the
 * 64 x 32 sub-tile at rows (w / 4) * 64, columns (w % 4) * 32, as 4 x 4 mma.sync m16n8k16
 * tiles (64 fp32 accumulators per thread). K is walked 32 at a time through a 3-stage cp.async
 * pipeline in shared memory.
 *
 * Shared memory holds each operand tile in its global storage order, so every copy is a straight
 * 16-byte cp.async of 8 contiguous elements:
 *   A, not transposed (A [M, K]):  As[m][k]  128 rows x (32 + 8) — ldmatrix
 *   A, transposed     (A [K, M]):  As[k][m]   32 rows x (128 + 8) — ldmatrix.trans
 *   B, transposed     (B [N, K]):  Bs[n][k]  128 rows x (32 + 8) — ldmatrix
 *   B, not transposed (B [K, N]):  Bs[k][n]   32 rows x (128 + 8) — ldmatrix.trans
 * The 8-element pad makes the row stride 80 or 272 bytes, so the 8 rows one ldmatrix phase reads
 * fall in distinct banks; both strides keep every row 16-byte aligned.
 *
 * Edges. A chunk of 8 elements is copied with cp.async when it lies inside the matrix and its
 * address is 16-byte aligned (the base is 16-byte aligned and ld % 8 == 0); otherwise it is
 * loaded element by element with zeros outside the matrix and stored to shared memory directly.
 * Zeros in the K tail add nothing; rows and columns outside M x N are never stored.
 *
 * Split K. A store product whose output tiles fill under half of the GPU's block slots (x̂ = f W_dec
 * has [4096, 512]: 128 tiles for 264 slots on an H100) runs with grid.z splits of K, whole k tiles
 * each (gemm_tensor_layout.h); split z writes its partial product to scratch, and one pass sums the
 * splits in order into C with alpha and beta. Deterministic; the sum differs from the unsplit
 * product by rounding.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16; g = lane / 4, t = lane % 4):
 *   A regs {a0a1, a2a3, a4a5, a6a7} = (row g, k 2t..2t+1), (row g+8, k 2t..), (row g, k 2t+8..),
 *                                     (row g+8, k 2t+8..)
 *   B regs {b0b1, b2b3}             = (k 2t..2t+1, col g), (k 2t+8.., col g)
 *   C     {c0, c1, c2, c3}          = (row g, col 2t), (row g, col 2t+1), (row g+8, col 2t), (row g+8, col 2t+1)
 * ldmatrix.x4 gives register i of every lane from the 8 x 8 matrix whose row addresses lanes
 * 8i..8i+7 supply; the address formulas (gemm_tensor_layout.h, shared with a host emulation that
 * tests them) pick those matrices in the order above.
 */
#include "gemm_tensor.cuh"
#include "gemm.cuh"
#include "gemm_epilogue_ops.cuh"
#include "gemm_tensor_layout.h"
#include "gemm_wgmma.cuh"

#include <cstdlib>
#include <cstring>

namespace ms::cuda {

using bf16 = __nv_bfloat16;

using namespace layout;  // tile shapes and every index computation (gemm_tensor_layout.h)

constexpr int kStages = 3;
static_assert(kTileM == kTensorTileRows, "col_partial rows are the block tiles' rows");
constexpr unsigned int kMaxGridY = 65535;

// Bytes of dynamic shared memory for one instantiation (A is k-contiguous unless transposed, B
// when transposed).
template <bool TA, bool TB>
constexpr size_t smem_bytes() {
  return size_t(kStages) * (tile_elems(!TA) + tile_elems(TB)) * sizeof(bf16);
}

bool use_tensor_kernels() {
  const char* v = std::getenv("MONOSEMANTIC_CUDA_KERNELS");
  return !(v && std::strcmp(v, "simple") == 0);
}

// ---- PTX wrappers ---------------------------------------------------------------------------------

__device__ __forceinline__ unsigned int smem_addr(const void* p) {
  return static_cast<unsigned int>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* dst_smem, const void* src_global) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst_smem)),
               "l"(src_global));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned int (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned int (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// d += a * b for one m16n8k16 tile.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const unsigned int (&a)[4], unsigned int b0,
                                         unsigned int b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- global -> shared copies -------------------------------------------------------------------

// Copies the Rows x Cols tile at (r0, c0) of a row-major matrix src [R, C] (leading dimension ld)
// into dst [Rows][Stride], zero-filled outside the matrix. Thread tid copies chunks
// q = tid + i * kBlockThreads (chunk_row / chunk_col of gemm_tensor_layout.h).
template <int Rows, int Cols, int Stride>
__device__ __forceinline__ void copy_tile(bf16* __restrict__ dst, const bf16* __restrict__ src, int ld,
                                          int R, int C, int r0, int c0, bool vec_ok) {
  constexpr int kChunks = Rows * (Cols / 8);
  static_assert(kChunks % kBlockThreads == 0, "whole chunks per thread");
  const unsigned short* src_u = reinterpret_cast<const unsigned short*>(src);
#pragma unroll
  for (int i = 0; i < kChunks / kBlockThreads; ++i) {
    const int q = threadIdx.x + i * kBlockThreads;
    const int r = chunk_row(q, Cols);
    const int c = chunk_col(q, Cols);
    const int gr = r0 + r;
    const int gc = c0 + c;
    bf16* d = dst + r * Stride + c;  // dst[r][c]
    if (vec_ok && gr < R && gc + 8 <= C) {
      cp_async16(d, src + size_t(gr) * ld + gc);  // src[gr, gc .. gc+7] at src[gr*ld + gc]
    } else {
      unsigned short v[8];
#pragma unroll
      for (int e = 0; e < 8; ++e)
        v[e] = (gr < R && gc + e < C) ? src_u[size_t(gr) * ld + gc + e] : 0;  // bf16 +0.0 is 0x0000
      uint4 packed;
      packed.x = v[0] | (unsigned int)(v[1]) << 16;
      packed.y = v[2] | (unsigned int)(v[3]) << 16;
      packed.z = v[4] | (unsigned int)(v[5]) << 16;
      packed.w = v[6] | (unsigned int)(v[7]) << 16;
      *reinterpret_cast<uint4*>(d) = packed;
    }
  }
}

// The column reduction of one block tile, after every thread has summed its own rows into
// sum[j][c] / count[j][c] (n8 tile j, column acc_col(lane, warp, j, c)). Lanes 4g + t (g = 0..7)
// hold the same columns: xor-shuffles over g fold them (a fixed tree, and each lane's additions
// commute with its partner's, so all eight end equal). Then warps w and w + 4 hold the same
// columns: the lower warp adds the upper one's totals from shared memory, in that order, and
// writes partial[tile_m, col]; counts go to fired[col] with integer atomics. Every thread of the
// block must call it.
__device__ __forceinline__ void reduce_columns(double (&sum)[4][2], int (&count)[4][2], int lane, int warp,
                                               int tile_m, int n0, int N, double* __restrict__ partial,
                                               int32_t* __restrict__ fired, double* col_buf, int* cnt_buf) {
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int c = 0; c < 2; ++c)
#pragma unroll
      for (int offset = 4; offset < 32; offset <<= 1) {
        sum[j][c] += __shfl_xor_sync(0xffffffffu, sum[j][c], offset);
        count[j][c] += __shfl_xor_sync(0xffffffffu, count[j][c], offset);
      }
  const bool upper = warp >= 4;
  if (upper && lane < 4) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int local = acc_col(lane, warp, j, c);  // column within the block tile
        col_buf[local] = sum[j][c];
        cnt_buf[local] = count[j][c];
      }
  }
  __syncthreads();
  if (!upper && lane < 4) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int local = acc_col(lane, warp, j, c);
        const int col = n0 + local;
        if (col >= N) continue;
        partial[size_t(tile_m) * N + col] = sum[j][c] + col_buf[local];  // partial[tile_m, col]
        const int n_fired = count[j][c] + cnt_buf[local];
        if (fired && n_fired) atomicAdd(fired + col, n_fired);
      }
  }
}

// ---- the kernel -----------------------------------------------------------------------------------

// f(i, h, j, row, col) for each of a thread's accumulator pairs (i, j, 2h), (i, j, 2h + 1) inside
// the M x N output: one row, columns col and col + 1 of the block tile at (m0, n0).
template <typename F>
__device__ __forceinline__ void for_each_pair(int lane, int warp, int m0, int n0, int M, int N, F&& f) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = m0 + acc_row(lane, warp, i, 2 * h);
      if (row >= M) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = n0 + acc_col(lane, warp, j, 2 * h);
        if (col >= N) continue;
        f(i, h, j, row, col);
      }
    }
}

// grid.x walks the N tiles; grid.y (capped at 65535) walks the tiles_m M tiles in a loop; grid.z
// splits K (store epilogue only: split z's product goes to its own partial output).
template <bool TA, bool TB, typename Epi>
static __global__ void __launch_bounds__(kBlockThreads, 2)
    gemm_tensor_kernel(int M, int N, int K, const bf16* __restrict__ A, int lda,
                       const bf16* __restrict__ B, int ldb, bool a_vec, bool b_vec, Epi epi,
                       int tiles_m) {
  if (gridDim.z > 1) {  // this split's K range: A's columns (rows when transposed), B's rows (columns)
    const int k_begin = split_k_begin(blockIdx.z, K, gridDim.z);
    K = split_k_count(blockIdx.z, K, gridDim.z);
    A += TA ? size_t(k_begin) * lda : size_t(k_begin);
    B += TB ? size_t(k_begin) : size_t(k_begin) * ldb;
  }
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int kAElems = tile_elems(!TA);  // A is k-contiguous unless transposed
  constexpr int kBElems = tile_elems(TB);   // B is k-contiguous when transposed
  bf16* As = reinterpret_cast<bf16*>(smem_raw);  // [kStages][kAElems]
  bf16* Bs = As + kStages * kAElems;             // [kStages][kBElems]

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int n0 = blockIdx.x * kTileN;
  const int k_tiles = (K + kTileK - 1) / kTileK;

  for (int tile_m = blockIdx.y; tile_m < tiles_m; tile_m += gridDim.y) {
    const int m0 = tile_m * kTileM;

    // Stage s of the pipeline <- the k tile starting at k0.
    auto load_stage = [&](int s, int k0) {
      bf16* as = As + s * kAElems;
      bf16* bs = Bs + s * kBElems;
      if constexpr (TA)  // A stored [K, M]: tile rows k0.., columns m0..
        copy_tile<kMNContigRows, kMNContigCols, kMNContigStride>(as, A, lda, K, M, k0, m0, a_vec);
      else     // A stored [M, K]: tile rows m0.., columns k0..
        copy_tile<kKContigRows, kTileK, kKContigStride>(as, A, lda, M, K, m0, k0, a_vec);
      if constexpr (TB)  // B stored [N, K]: tile rows n0.., columns k0..
        copy_tile<kKContigRows, kTileK, kKContigStride>(bs, B, ldb, N, K, n0, k0, b_vec);
      else     // B stored [K, N]: tile rows k0.., columns n0..
        copy_tile<kMNContigRows, kMNContigCols, kMNContigStride>(bs, B, ldb, K, N, k0, n0, b_vec);
    };

    float acc[4][4][4];  // [m16 tile][n8 tile][c0..c3]
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < k_tiles) load_stage(s, s * kTileK);
      cp_async_commit();  // one group per stage, empty or not, so the wait counts stay exact
    }

    // Bits mask_bit(i, h, j) and the next of `masks` are live() of the output pair the epilogue
    // gives accumulators (i, j, 2h), (i, j, 2h + 1) (kReadsMask). Read while the
    // pipeline's first copies are in flight, before the main loop, which carries only the bits.
    unsigned long long masks = 0;
    if constexpr (Epi::kReadsMask)
      for_each_pair(lane, warp, m0, n0, M, N, [&](int i, int h, int j, int row, int col) {
        masks |= static_cast<unsigned long long>(epi.live(row, col, col + 1 < N)) << mask_bit(i, h, j);
      });

    for (int kt = 0; kt < k_tiles; ++kt) {
      cp_async_wait<kStages - 2>();  // the group of k tile kt has landed (this thread's copies)
      __syncthreads();               // ... everyone's, and stage (kt - 1) % kStages is free
      const int next = kt + kStages - 1;
      if (next < k_tiles) load_stage(next % kStages, next * kTileK);
      cp_async_commit();

      const bf16* as = As + (kt % kStages) * kAElems;
      const bf16* bs = Bs + (kt % kStages) * kBElems;
#pragma unroll
      for (int kk = 0; kk < kTileK; kk += 16) {
        unsigned int a[4][4];  // a[i]: m16 tile i, registers {a0a1, a2a3, a4a5, a6a7}
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const bf16* p = as + a_fragment_offset(TA, lane, warp, i, kk);
          if constexpr (a_fragment_trans(TA)) ldmatrix_x4_trans(a[i], p);
          else ldmatrix_x4(a[i], p);
        }
        unsigned int b[2][4];  // b[p]: n8 tiles 2p and 2p + 1, registers {b0b1, b2b3} of each
#pragma unroll
        for (int pair = 0; pair < 2; ++pair) {
          const bf16* p = bs + b_fragment_offset(TB, lane, warp, pair, kk);
          if constexpr (b_fragment_trans(TB)) ldmatrix_x4_trans(b[pair], p);
          else ldmatrix_x4(b[pair], p);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j)
            mma_bf16(acc[i][j], a[i], b[j / 2][b_fragment_reg(j, 0)], b[j / 2][b_fragment_reg(j, 1)]);
      }
    }
    cp_async_wait<0>();

    // Epilogue: accumulators (i, j, 2h) and (i, j, 2h + 1) are columns col, col + 1 of one row.
    double col_sum[4][2] = {};  // this thread's rows of its columns (column reduction only)
    int col_count[4][2] = {};
    for_each_pair(lane, warp, m0, n0, M, N, [&](int i, int h, int j, int row, int col) {
      const unsigned mask = static_cast<unsigned>(masks >> mask_bit(i, h, j)) & 3u;
      const float2 out = epi(static_cast<int>(blockIdx.z), row, col, acc[i][j][2 * h], acc[i][j][2 * h + 1], col + 1 < N, mask);
      if constexpr (Epi::kColumnSums) {
        col_sum[j][0] += double(out.x);
        col_sum[j][1] += double(out.y);
        col_count[j][0] += out.x > 0.0f ? 1 : 0;
        col_count[j][1] += out.y > 0.0f ? 1 : 0;
      }
    });
    if constexpr (Epi::kColumnSums) {
      __shared__ double col_buf[kTileN];
      __shared__ int cnt_buf[kTileN];
      if (epi.columns())  // uniform over the block
        reduce_columns(col_sum, col_count, lane, warp, tile_m, n0, N, epi.partial(), epi.fired(), col_buf, cnt_buf);
    }
    __syncthreads();  // the next M tile's prologue overwrites the stages
  }
}

// ---- launch -------------------------------------------------------------------------------------


template <bool TA, bool TB, typename Epi>
static int launch(const Op& op, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb,
                  const Epi& epi, int splits = 1) {
  auto kernel = gemm_tensor_kernel<TA, TB, Epi>;
  constexpr size_t bytes = smem_bytes<TA, TB>();
  // Above the 48 KiB default: opt in (cheap, and per device, so done at every launch).
  MS_TRY(check(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
               "cudaFuncSetAttribute"));
  const size_t tiles_n = (size_t(N) + kTileN - 1) / kTileN;
  const size_t tiles_m = (size_t(M) + kTileM - 1) / kTileM;
  const dim3 grid(static_cast<unsigned int>(tiles_n),
                  static_cast<unsigned int>(tiles_m < kMaxGridY ? tiles_m : kMaxGridY), static_cast<unsigned int>(splits));
  const bool a_vec = aligned(A, 16) && lda % 8 == 0;
  const bool b_vec = aligned(B, 16) && ldb % 8 == 0;
  kernel<<<grid, kBlockThreads, bytes, op.stream>>>(M, N, K, A, lda, B, ldb, a_vec, b_vec, epi,
                                                     static_cast<int>(tiles_m));
  return check_launch(op, "gemm_tensor_kernel");
}

// ---- split K ----------------------------------------------------------------------------------------

int device_multiprocessors() {
  static int count = 0;
  if (count == 0) {
    int device = 0, value = 0;
    if (cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&value, cudaDevAttrMultiProcessorCount, device) == cudaSuccess)
      count = value;
    (void)cudaGetLastError();
  }
  return count;
}

// Splits of K for a store product: more than one only when its output tiles fill under half of
// the GPU's block slots (2 per SM) and every split keeps at least 8 k tiles; at most 8.
static int split_count(int M, int N, int K) {
  const long long tiles = ((long long)M + kTileM - 1) / kTileM * (((long long)N + kTileN - 1) / kTileN);
  const long long slots = 2LL * device_multiprocessors();
  if (slots == 0 || 2 * tiles > slots) return 1;
  long long s = slots / tiles;
  s = s < 8 ? s : 8;
  const long long by_k = K / (8 * kTileK);
  s = s < by_k ? s : by_k;
  return s > 1 ? int(s) : 1;
}

// C[r, c] = alpha * sum_z P[z][r, c] (+ beta * C[r, c] when beta != 0), the splits summed in order:
// P [splits, M, N] row-major, C with leading dimension ldc; into C_bf (rounded, same ldc) when set.
static __global__ void split_sum_kernel(int M, int N, int splits, const float* __restrict__ P, float alpha,
                                        float beta, float* __restrict__ C, int ldc, const float* __restrict__ bias,
                                        bf16* __restrict__ C_bf) {
  const size_t total = size_t(M) * N;
  for (size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    float s = P[idx];
    for (int z = 1; z < splits; ++z) s += P[size_t(z) * total + idx];
    const size_t at = idx / N * size_t(ldc) + idx % N;  // C[idx / N, idx % N]
    float c = beta != 0.0f ? fmaf(beta, C[at], alpha * s) : alpha * s;
    if (bias) c += bias[idx % N];
    if (C_bf) C_bf[at] = __float2bfloat16_rn(c);
    else C[at] = c;
  }
}

// The storage orders each epilogue is instantiated for (the products that use it); others are
// reported as unsupported rather than compiled for nothing.
static int unsupported(const Op& op, const char* epilogue, bool trans_a, bool trans_b) {
  return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "gemm_tensor: no %s%s variant of the %s epilogue",
                   trans_a ? "T" : "N", trans_b ? "T" : "N", epilogue);
}

int gemm_tensor(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda,
                const bf16* B, int ldb, const EpilogueStore& epilogue) {
  MS_TRY(check_gemm_args(op, trans_a, trans_b, M, N, K, A, lda, B, ldb, epilogue.out(), epilogue.ldc));
  if (epilogue.C_bf && epilogue.beta != 0.0f) return invalid(op.err, op.name, "gemm: a bf16 output takes beta 0");
  if (M == 0 || N == 0) return MS_OK;
  if (trans_a && trans_b) return unsupported(op, "store", trans_a, trans_b);
  if (wgmma_chosen(true, M, N, K) && wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb))
    return gemm_wgmma(op, trans_a, trans_b, M, N, K, A, lda, B, ldb, epilogue);
  const auto run = [&](const StoreOp& epi, int splits) {
    if (!trans_a && !trans_b) return launch<false, false>(op, M, N, K, A, lda, B, ldb, epi, splits);
    if (!trans_a) return launch<false, true>(op, M, N, K, A, lda, B, ldb, epi, splits);
    return launch<true, false>(op, M, N, K, A, lda, B, ldb, epi, splits);
  };
  // Too few output tiles for the GPU: K is split (split_count).
  return store_with_splits(op, M, N, split_count(M, N, K), epilogue, run);
}

int sum_split_partials(const Op& op, int M, int N, int splits, const float* P, const EpilogueStore& epilogue) {
  split_sum_kernel<<<grid_stride_blocks(size_t(M) * N), kThreads, 0, op.stream>>>(
      M, N, splits, P, epilogue.alpha, epilogue.beta, epilogue.C, epilogue.ldc, epilogue.bias, epilogue.C_bf);
  return check_launch(op, "split_sum_kernel");
}

int gemm_tensor(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda,
                const bf16* B, int ldb, const EpilogueBiasAct& epilogue) {
  const void* out = epilogue.f ? static_cast<const void*>(epilogue.f) : epilogue.f_bf;
  MS_TRY(check_gemm_args(op, trans_a, trans_b, M, N, K, A, lda, B, ldb, out, epilogue.ld));
  if (!epilogue.bias) return invalid(op.err, op.name, "gemm: null bias");
  if (!epilogue_activation(epilogue.act)) return unsupported(op, "bias-activation (this activation)", trans_a, trans_b);
  if (M == 0 || N == 0) return MS_OK;
  const bool pair_ok = aligned(epilogue.f, 8) && aligned(epilogue.f_bf, 4) && epilogue.ld % 2 == 0;
  if (!trans_a && !trans_b && wgmma_chosen(false, M, N, K) && wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb))
    return gemm_wgmma(op, trans_a, trans_b, M, N, K, A, lda, B, ldb, epilogue);
  if (trans_a || trans_b) return unsupported(op, "bias-activation", trans_a, trans_b);
  if (epilogue.act == MS_ACT_GELU_TANH)
    return launch<false, false>(op, M, N, K, A, lda, B, ldb, BiasActOp<MS_ACT_GELU_TANH>{epilogue, pair_ok});
  return launch<false, false>(op, M, N, K, A, lda, B, ldb, BiasActOp<MS_ACT_RELU>{epilogue, pair_ok});
}

int gemm_tensor(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda,
                const bf16* B, int ldb, const EpilogueFeatureGrad& epilogue) {
  const void* out = epilogue.gp ? static_cast<const void*>(epilogue.gp) : epilogue.gp_bf;
  MS_TRY(check_gemm_args(op, trans_a, trans_b, M, N, K, A, lda, B, ldb, out, epilogue.ld));
  if (!epilogue.f_bf) return invalid(op.err, op.name, "gemm: null activations");
  if (M == 0 || N == 0) return MS_OK;
  const bool pair_ok = aligned(epilogue.gp, 8) && aligned(epilogue.gp_bf, 4) && aligned(epilogue.f_bf, 4) &&
                       epilogue.ld % 2 == 0;
  const FeatureGradOp epi{epilogue, pair_ok};
  if (!trans_a && trans_b && wgmma_chosen(false, M, N, K) && wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb))
    return gemm_wgmma(op, trans_a, trans_b, M, N, K, A, lda, B, ldb, epilogue);
  if (!trans_a && trans_b) return launch<false, true>(op, M, N, K, A, lda, B, ldb, epi);
  return unsupported(op, "feature-gradient", trans_a, trans_b);
}

}  // namespace ms::cuda
