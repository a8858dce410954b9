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
 * Staged store (the plain store epilogue, StoreOp::kStaged). The results go through shared memory
 * (the pipeline's stages, free once the main loop is done), half the tile's rows at a time: the
 * warps of that half write their fragments' values (pairs, as the mma layout holds them), then
 * every thread writes 4 consecutive columns of a row, so a warp stores whole rows (512 bytes of
 * fp32, 256 of bf16) instead of 8 rows x 4 lanes of 8 or 4 bytes. On an H200 the K = 512 products
 * with fp32 outputs ran 7-12% faster at (512, 131072, 4096), the same at (512, 16384, 4096); the
 * fused epilogues store directly (staged, the SAE step was 3-5% slower). MONOSEMANTIC_CUDA_EPILOGUE
 * =direct stores every product from the fragments (for comparison).
 *
 * Short K. A store product A B^T with K <= 128 and a multiple of 8 (the logits product x W^T, K =
 * d_model) runs on gemm_short_k_kernel: a block keeps its 128 rows of A whole in shared memory and
 * walks a run of N tiles, loading the next tile's rows of B while it computes and stores the
 * current one; the kernel above would refill its pipeline for every 4-k-tile output tile. Same
 * fragments and sums (MONOSEMANTIC_CUDA_SHORT_K=off for the kernel above).
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

#include <algorithm>
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

// The staged store (see the header) unless MONOSEMANTIC_CUDA_EPILOGUE=direct (read at each call).
static bool staged_epilogue() {
  const char* v = std::getenv("MONOSEMANTIC_CUDA_EPILOGUE");
  return !(v && std::strcmp(v, "direct") == 0);
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

// Rows r0 .. r0 + kStageRows - 1 of the output (those < M), columns n0 .. n0 + kTileN - 1 (those
// < N), from stage [kStageRows][kStageStride] (row r0 + r at stage[r * kStageStride]) to out,
// with its beta term and bias (EpilogueOutputs): lane l of warp w takes columns n0 + 4l .. n0 +
// 4l + 3 of rows r0 + w, r0 + w + 8, ..., with one 16-byte fp32 and one 8-byte bf16 load or
// store where the 4 columns are in range and aligned.
__device__ __forceinline__ void store_staged(const float* stage, const EpilogueOutputs& out, int r0, int n0, int M, int N) {
  const int c = staged_col(threadIdx.x & 31);  // column within the tile
  const int col = n0 + c;
  if (col >= N) return;
  const bool full = col + 4 <= N;
  const bool f_vec = full && reinterpret_cast<uintptr_t>(out.f) % 16 == 0 && out.ld % 4 == 0;
  const bool h_vec = full && reinterpret_cast<uintptr_t>(out.h) % 8 == 0 && out.ld % 4 == 0;
  float bias[4] = {};
  if (out.bias)
#pragma unroll
    for (int e = 0; e < 4; ++e) bias[e] = col + e < N ? out.bias[col + e] : 0.0f;
  for (int r = staged_first_row(threadIdx.x >> 5); r < kStageRows && r0 + r < M; r += kStagedRowStep) {
    float4 v = *reinterpret_cast<const float4*>(stage + stage_offset(r, c));  // stage[r][c .. c + 3]
    const size_t at = size_t(r0 + r) * out.ld + col;  // out[r0 + r, col]
    if (out.bias) v = make_float4(v.x + bias[0], v.y + bias[1], v.z + bias[2], v.w + bias[3]);
    if (out.beta != 0.0f) {  // f's old values (beta 0: not read, they may be NaN)
      float4 old = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (f_vec) {
        old = *reinterpret_cast<const float4*>(out.f + at);
      } else {
        old.x = out.f[at];
        if (col + 1 < N) old.y = out.f[at + 1];
        if (col + 2 < N) old.z = out.f[at + 2];
        if (col + 3 < N) old.w = out.f[at + 3];
      }
      v = make_float4(fmaf(out.beta, old.x, v.x), fmaf(out.beta, old.y, v.y), fmaf(out.beta, old.z, v.z), fmaf(out.beta, old.w, v.w));
    }
    const float vals[4] = {v.x, v.y, v.z, v.w};
    if (out.f) {
      if (f_vec) {
        *reinterpret_cast<float4*>(out.f + at) = v;
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (col + e < N) out.f[at + e] = vals[e];
      }
    }
    if (out.h) {
      if (h_vec) {
        uint2 packed;
        *reinterpret_cast<__nv_bfloat162*>(&packed.x) = __floats2bfloat162_rn(v.x, v.y);
        *reinterpret_cast<__nv_bfloat162*>(&packed.y) = __floats2bfloat162_rn(v.z, v.w);
        *reinterpret_cast<uint2*>(out.h + at) = packed;
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (col + e < N) out.h[at + e] = __float2bfloat16_rn(vals[e]);
      }
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
                       int tiles_m, bool staged) {
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
    const auto add_to_columns = [&](int j, float2 out) {
      if constexpr (Epi::kColumnSums) {
        col_sum[j][0] += double(out.x);
        col_sum[j][1] += double(out.y);
        col_count[j][0] += out.x > 0.0f ? 1 : 0;
        col_count[j][1] += out.y > 0.0f ? 1 : 0;
      }
    };
    const int z = static_cast<int>(blockIdx.z);
    const auto store_direct = [&] {
      for_each_pair(lane, warp, m0, n0, M, N, [&](int i, int h, int j, int row, int col) {
        const unsigned mask = static_cast<unsigned>(masks >> mask_bit(i, h, j)) & 3u;
        add_to_columns(j, epi(z, row, col, acc[i][j][2 * h], acc[i][j][2 * h + 1], col + 1 < N, mask));
      });
    };
    if constexpr (Epi::kStaged) {
      if (staged) {  // uniform over the grid
        float* stage = reinterpret_cast<float*>(smem_raw);  // [kStageRows][kStageStride]
        __syncthreads();  // every warp is done reading the stages
#pragma unroll 1
        for (int half = 0; half < 2; ++half) {
          const int r0 = half * kStageRows;  // the rows of the block tile staged now
          if (warp_row(warp) == r0)
            for_each_pair(lane, warp, m0, n0, M, N, [&](int i, int h, int j, int row, int col) {
              const unsigned mask = static_cast<unsigned>(masks >> mask_bit(i, h, j)) & 3u;
              const float2 v = epi.staged_value(z, row, col, acc[i][j][2 * h], acc[i][j][2 * h + 1], col + 1 < N, mask);
              add_to_columns(j, v);
              *reinterpret_cast<float2*>(stage + stage_offset(row - m0 - r0, col - n0)) = v;  // stage[row - m0 - r0][col - n0 ..]
            });
          __syncthreads();
          store_staged(stage, epi.outputs(z), m0 + r0, n0, M, N);
          __syncthreads();  // the buffer is read before the next half (or M tile) overwrites it
        }
      } else {
        store_direct();
      }
    } else {
      store_direct();
    }
    if constexpr (Epi::kColumnSums) {
      __shared__ double col_buf[kTileN];
      __shared__ int cnt_buf[kTileN];
      if (epi.columns())  // uniform over the block
        reduce_columns(col_sum, col_count, lane, warp, tile_m, n0, N, epi.partial(), epi.fired(), col_buf, cnt_buf);
    }
    __syncthreads();  // the next M tile's prologue overwrites the stages
  }
}

// ---- short K ------------------------------------------------------------------------------------

// Rows r0 .. r0 + 127 of src [R, K] (leading dimension ld), columns 0 .. Kp - 1, into dst
// [128][kShortKStride]: 16-byte cp.async for the chunks inside the matrix, zeros past K (Kp is K
// rounded up to 16) and past R. K % 8 == 0, src 16-byte aligned and ld % 8 == 0 (short_k_fits).
__device__ __forceinline__ void copy_rows_short_k(bf16* __restrict__ dst, const bf16* __restrict__ src, int ld, int R,
                                                  int K, int Kp, int r0) {
  for (int q = threadIdx.x; q < kTileM * (Kp / 8); q += kBlockThreads) {
    const int r = short_k_chunk_row(q, Kp);
    const int c = short_k_chunk_col(q, Kp);
    bf16* d = dst + r * kShortKStride + c;  // dst[r][c .. c + 7]
    if (r0 + r < R && c < K) cp_async16(d, src + size_t(r0 + r) * ld + c);  // src[r0 + r, c .. c + 7]
    else *reinterpret_cast<uint4*>(d) = make_uint4(0u, 0u, 0u, 0u);
  }
}

// The short-K store product C = A B^T (A [M, K], B [N, K], both k-contiguous; K <= kShortKMax):
// the logits product x W^T, K = d_model. The kernel above spends most of such a tile filling its
// pipeline (K = 128 is four k tiles), and a block then waits for its first stage again on the next
// tile. Here block (x, y) keeps rows 128 y .. 128 y + 127 of A whole in shared memory and walks N
// tiles x * tiles_per_block .. (x + 1) * tiles_per_block - 1, loading the next tile's rows of B
// (whole K, cp.async) while it computes and stores the current one. Same fragments and the same
// sums in the same order as the kernel above (k ascending, 16 at a time, into one accumulator).
template <typename Epi>
static __global__ void __launch_bounds__(kBlockThreads, 2)
    gemm_short_k_kernel(int M, int N, int K, const bf16* __restrict__ A, int lda, const bf16* __restrict__ B, int ldb,
                        Epi epi, int tiles_per_block) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* As = reinterpret_cast<bf16*>(smem_raw);  // [128][kShortKStride]: A's rows m0 ..
  bf16* Bs = As + kShortKTileElems;              // [2][128][kShortKStride]: B's rows of two N tiles
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int Kp = short_k_padded(K);
  const int m0 = blockIdx.y * kTileM;
  const int tiles_n = (N + kTileN - 1) / kTileN;
  const int t0 = blockIdx.x * tiles_per_block;
  const int t1 = min(t0 + tiles_per_block, tiles_n);
  if (t0 >= t1) return;  // uniform over the block

  copy_rows_short_k(As, A, lda, M, K, Kp, m0);
  copy_rows_short_k(Bs, B, ldb, N, K, Kp, t0 * kTileN);
  cp_async_commit();
  for (int t = t0; t < t1; ++t) {
    const bf16* bs = Bs + ((t - t0) & 1) * kShortKTileElems;  // tile t's rows of B
    if (t + 1 < t1) {  // the next tile's rows into the other buffer, read two tiles ago
      copy_rows_short_k(Bs + ((t + 1 - t0) & 1) * kShortKTileElems, B, ldb, N, K, Kp, (t + 1) * kTileN);
      cp_async_commit();
      cp_async_wait<1>();  // every group but the newest: A and tile t's rows (this thread's copies)
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // ... and everyone's, zeros included

    float acc[4][4][4];  // [m16 tile][n8 tile][c0..c3]
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;
    for (int kk = 0; kk < Kp; kk += 16) {
      unsigned int a[4][4];  // a[i]: m16 tile i
#pragma unroll
      for (int i = 0; i < 4; ++i) ldmatrix_x4(a[i], As + a_kcontig_offset(lane, warp, i, kk, kShortKStride));
      unsigned int b[2][4];  // b[p]: n8 tiles 2p and 2p + 1
#pragma unroll
      for (int pair = 0; pair < 2; ++pair) ldmatrix_x4(b[pair], bs + b_kcontig_offset(lane, warp, pair, kk, kShortKStride));
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          mma_bf16(acc[i][j], a[i], b[j / 2][b_fragment_reg(j, 0)], b[j / 2][b_fragment_reg(j, 1)]);
    }
    __syncthreads();  // every warp is done with bs: the copy issued at tile t + 1 overwrites it

    const int n0 = t * kTileN;
    for_each_pair(lane, warp, m0, n0, M, N, [&](int i, int h, int j, int row, int col) {
      epi(0, row, col, acc[i][j][2 * h], acc[i][j][2 * h + 1], col + 1 < N, 0u);
    });
  }
}

// ---- launch -------------------------------------------------------------------------------------


template <bool TA, bool TB, typename Epi>
static int launch(const Op& op, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb,
                  const Epi& epi, int splits = 1) {
  auto kernel = gemm_tensor_kernel<TA, TB, Epi>;
  constexpr size_t bytes = smem_bytes<TA, TB>();
  static_assert(size_t(kStageRows) * kStageStride * sizeof(float) <= bytes, "the stages hold the staging buffer");
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
                                                     static_cast<int>(tiles_m), staged_epilogue());
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

// The short-K kernel's dynamic shared memory: A's rows and B's, twice (104,448 bytes).
constexpr size_t kShortKSmemBytes = size_t(3) * kShortKTileElems * sizeof(bf16);

// Whether the device runs two short-K blocks per multiprocessor (their shared memory, each with
// the 1 KiB the runtime reserves per block): H100 and H200 do, A100 (164 KB) does not.
static bool short_k_device_fits() {
  static int fits = -1;
  if (fits < 0) {
    int device = 0, per_block = 0, per_sm = 0;
    fits = cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) == cudaSuccess &&
           cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device) == cudaSuccess &&
           size_t(per_block) >= kShortKSmemBytes && size_t(per_sm) >= 2 * (kShortKSmemBytes + 1024);
    (void)cudaGetLastError();
  }
  return fits == 1;
}

// Whether the short-K kernel takes a store product: NT, K <= kShortKMax and a multiple of 8, both
// operands 16-byte aligned with leading dimensions multiples of 8, at most 65,535 M tiles, a device
// with room for two blocks per multiprocessor, and not MONOSEMANTIC_CUDA_SHORT_K=off (read at each call).
static bool short_k_fits(bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb) {
  const char* v = std::getenv("MONOSEMANTIC_CUDA_SHORT_K");
  if (v && std::strcmp(v, "off") == 0) return false;
  return !trans_a && trans_b && K > 0 && K <= kShortKMax && K % 8 == 0 && aligned(A, 16) && aligned(B, 16) &&
         lda % 8 == 0 && ldb % 8 == 0 && (static_cast<long long>(M) + kTileM - 1) / kTileM <= kMaxGridY &&
         short_k_device_fits();
}

// Launches the short-K kernel: a block per M tile and run of N tiles, the runs as long as makes
// about four waves of blocks (two per multiprocessor), so the last wave's idle share stays small;
// each run reloads its rows of A (32 KiB), a small part of its traffic.
template <typename Epi>
static int launch_short_k(const Op& op, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb, const Epi& epi) {
  auto kernel = gemm_short_k_kernel<Epi>;
  MS_TRY(check(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kShortKSmemBytes)),
               "cudaFuncSetAttribute"));
  const long long tiles_m = (static_cast<long long>(M) + kTileM - 1) / kTileM;
  const long long tiles_n = (static_cast<long long>(N) + kTileN - 1) / kTileN;
  const long long slots = 2LL * (device_multiprocessors() > 0 ? device_multiprocessors() : 1);
  const long long per = (tiles_m * tiles_n + 4 * slots - 1) / (4 * slots);  // tiles a block for four waves
  const int tiles_per_block = int(std::max(1LL, std::min(tiles_n, per)));
  const dim3 grid(static_cast<unsigned int>((tiles_n + tiles_per_block - 1) / tiles_per_block), static_cast<unsigned int>(tiles_m));
  kernel<<<grid, kBlockThreads, kShortKSmemBytes, op.stream>>>(M, N, K, A, lda, B, ldb, epi, tiles_per_block);
  return check_launch(op, "gemm_short_k_kernel");
}

// C[r, c] = alpha * sum_z P[z][r, c] (+ bias[c]) (+ beta * C[r, c] when beta != 0), the splits summed in order:
// P [splits, M, N] row-major, C with leading dimension ldc; into C_bf (rounded, same ldc) when set.
static __global__ void split_sum_kernel(int M, int N, int splits, const float* __restrict__ P, float alpha,
                                        float beta, float* __restrict__ C, int ldc, const float* __restrict__ bias,
                                        bf16* __restrict__ C_bf) {
  const size_t total = size_t(M) * N;
  for (size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    float s = P[idx];
    for (int z = 1; z < splits; ++z) s += P[size_t(z) * total + idx];
    const size_t at = idx / N * size_t(ldc) + idx % N;  // C[idx / N, idx % N]
    float c = alpha * s;
    if (bias) c += bias[idx % N];
    if (beta != 0.0f) c = fmaf(beta, C[at], c);
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
  if (short_k_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb))
    return launch_short_k(op, M, N, K, A, lda, B, ldb, StoreOp{epilogue, store_pair_ok(epilogue)});
  const auto run = [&](const StoreOp& epi, int splits) {
    if (!trans_a && !trans_b) return launch<false, false>(op, M, N, K, A, lda, B, ldb, epi, splits);
    if (!trans_a) return launch<false, true>(op, M, N, K, A, lda, B, ldb, epi, splits);
    return launch<true, false>(op, M, N, K, A, lda, B, ldb, epi, splits);
  };
  // Too few output tiles for the GPU: K is split (split_count).
  return store_with_splits(op, M, N, split_count(M, N, K), epilogue, run);
}

bool store_on_general_kernel(bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B,
                             int ldb) {
  return !(trans_a && trans_b) && !(wgmma_chosen(true, M, N, K) && wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb)) &&
         !short_k_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb) && split_count(M, N, K) == 1;
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

int gemm_tensor(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda,
                const bf16* B, int ldb, const EpilogueSplitQkv& epilogue) {
  MS_TRY(check_gemm_args(op, trans_a, trans_b, M, N, K, A, lda, B, ldb, epilogue.q, N));
  if (!epilogue.k_cache || !epilogue.v_cache) return invalid(op.err, op.name, "gemm: null cache");
  if (epilogue.C <= 0 || N != 3 * epilogue.C || epilogue.T <= 0 || epilogue.offset < 0 ||
      (long long)epilogue.offset + epilogue.T > epilogue.Tmax || M % epilogue.T != 0)
    return invalid(op.err, op.name, "gemm: the q/k/v split takes N = 3C (N %d, C %d) and rows b*T + t (M %d, T %d, Tmax %d, offset %d)",
                   N, epilogue.C, M, epilogue.T, epilogue.Tmax, epilogue.offset);
  if (M == 0 || N == 0) return MS_OK;
  if (trans_a || trans_b) return unsupported(op, "q/k/v split", trans_a, trans_b);
  // A pair (even col, col + 1) stays in one of q, k, v when C is even.
  const bool pair_ok = epilogue.C % 2 == 0 && aligned(epilogue.q, 8) && aligned(epilogue.k_cache, 8) && aligned(epilogue.v_cache, 8);
  return launch<false, false>(op, M, N, K, A, lda, B, ldb, SplitQkvStoreOp{epilogue, pair_ok});
}

}  // namespace ms::cuda
