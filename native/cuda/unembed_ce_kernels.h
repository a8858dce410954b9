/*
 * unembed_ce_kernels.h — the kernels of unembed_ce.cu: the unembedding product fused with the softmax
 * cross-entropy (backend.h unembed_cross_entropy and its backward) on tensor cores (mma.sync m16n8k16,
 * bf16 operands, fp32 accumulation). The logits x Wᵀ [rows, V] are never written: the forward keeps
 * an online log-sum-exp per row, the backward recomputes them and writes only their bf16 gradient.
 *
 * Why: a language model's logits are its largest tensor (rows x V: 1 GiB in bf16 for 64 x 1,024
 * tokens and a vocabulary of 8,192). Formed in memory they are written by the product and read
 * back by the loss; here the forward moves only x and W, and the backward writes the gradient once.
 *
 * Device code only, in a header of its own so that test/native/unembed_ce_emulation.cpp can compile
 * it for the host (one host thread per CUDA thread, a barrier per __syncthreads and per
 * warp-collective call). The includer provides:
 *   mma_bf16(d, a, b0, b1)   d[4] += A (16x16) B (16x8), fragments as in attention_mma_kernels.h;
 *   shfl_xor(v, mask)        __shfl_xor_sync over the full warp (float), shfl_xor_u32 likewise (uint32_t);
 *   pack_bf16x2(lo, hi)      two floats rounded to bf16, lo in the low half;
 *   cp_async16(dst, src, n)  cp.async of 16 bytes to shared memory, the first n (16 or 0) from src,
 *                            the rest zero; cp_async_commit(); cp_async_wait_all() (this thread's
 *                            copies have landed);
 *   uint2, __syncthreads, threadIdx, blockIdx, gridDim, exp2f, log2f, logf, expf, fmaxf, INFINITY.
 *
 * Fragments (g = lane / 4, t = lane % 4; each 32-bit register two bf16 of one row):
 *   A 16x16: a0 = (g, 2t..2t+1), a1 = (g + 8, 2t..), a2 = (g, 2t + 8..), a3 = (g + 8, 2t + 8..);
 *   B 16x8 (k x n): b0 = (k 2t..2t+1, n g), b1 = (k 2t + 8.., n g);
 *   C 16x8: c0, c1 = (g, 2t), (g, 2t + 1); c2, c3 = (g + 8, 2t), (g + 8, 2t + 1).
 *
 * Block = 4 warps and 128 rows of x; warp w owns rows 32w .. 32w + 31 as two m16 groups whose A
 * fragments (all C columns) stay in registers for the whole block. The vocabulary runs through
 * shared memory kCols rows of W at a time, two tiles in flight (cp.async); each warp takes a tile
 * kChunk columns at a time: a 32 x kChunk block of logits in registers, then its epilogue. Grid
 * (row blocks, splits): split s takes the vocabulary tiles [s * per_split, (s + 1) * per_split), so
 * that enough blocks run at any number of rows; the forward's per-split log-sum-exps are combined
 * per row by unembed_ce_combine_kernel. Sums are in log2 units (exp2f), stored in natural units.
 */
#ifndef MONOSEMANTIC_CUDA_UNEMBED_CE_KERNELS_H
#define MONOSEMANTIC_CUDA_UNEMBED_CE_KERNELS_H

namespace ms::cuda::unembed_ce {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kGroups = 2;                 // m16 row groups per warp
constexpr int kWarpRows = 16 * kGroups;    // rows of x per warp
constexpr int kRows = kWarps * kWarpRows;  // rows of x per block
constexpr int kCols = 64;                  // rows of W (vocabulary entries) per shared-memory tile
constexpr int kChunk = 32;                 // vocabulary columns of one accumulator block
constexpr int kChunkTiles = kChunk / 8;    // its n8 tiles
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Words per row of a W tile: C bf16 as C / 2 words, padded by 4 so that the 32 words of a B
// fragment read (rows g, words t) fall in 32 banks; a row is 2C + 16 bytes, a multiple of 16.
template <int C>
constexpr int kRowWords = C / 2 + 4;

template <int C>
using WTile = uint32_t[kCols][kRowWords<C>];

// Vocabulary tiles of W: ceil(V / kCols).
__host__ __device__ constexpr int tile_count(int V) { return (V + kCols - 1) / kCols; }

// Queues the copy of vocabulary tile `tile` (W rows v0 = tile * kCols .., bf16 [V, C]) into Ws: 16
// bytes (8 bf16) a copy, rows past V zero (their source clamped to row 0, not read). Every thread of
// the block takes part; commits one group.
template <int C>
__device__ __forceinline__ void stage_tile(WTile<C>& Ws, const uint16_t* __restrict__ w, int V, int tile) {
  constexpr int kRowChunks = C / 8;  // 16-byte chunks per row
  const int v0 = tile * kCols;
  for (int e = threadIdx.x; e < kCols * kRowChunks; e += kThreads) {
    const int r = e / kRowChunks, c = e % kRowChunks;  // e = r * kRowChunks + c: row v0 + r, elements 8c .. 8c + 7
    const bool inside = v0 + r < V;
    const uint16_t* src = w + (inside ? size_t(v0 + r) * C + 8 * c : 0);
    cp_async16(&Ws[r][4 * c], src, inside ? 16 : 0);
  }
  cp_async_commit();
}

// The A fragments of the warp's rows r0 + 16 gi .. (gi < kGroups), all C columns, from x (bf16 [rows,
// C]) in global memory; rows past `rows` are zero.
template <int C>
__device__ __forceinline__ void load_rows(uint32_t (&a)[kGroups][C / 16][4], const uint16_t* __restrict__ x,
                                          int rows, int r0) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
  for (int gi = 0; gi < kGroups; ++gi) {
    const int ra = r0 + 16 * gi + g, rb = ra + 8;
    // The word of row r holding columns 2w, 2w + 1 is at element r*C + 2w (C even: 4-byte aligned).
    const uint32_t* xa = reinterpret_cast<const uint32_t*>(x + size_t(ra < rows ? ra : 0) * C);
    const uint32_t* xb = reinterpret_cast<const uint32_t*>(x + size_t(rb < rows ? rb : 0) * C);
#pragma unroll
    for (int kc = 0; kc < C / 16; ++kc) {
      const int w = 8 * kc + t;  // columns 16kc + 2t, + 1
      a[gi][kc][0] = ra < rows ? xa[w] : 0u;
      a[gi][kc][1] = rb < rows ? xb[w] : 0u;
      a[gi][kc][2] = ra < rows ? xa[w + 4] : 0u;
      a[gi][kc][3] = rb < rows ? xb[w + 4] : 0u;
    }
  }
}

// s[gi][n] = the logits of the warp's row group gi against vocabulary rows n0 + 8n .. n0 + 8n + 7 of
// the tile (n < kChunkTiles), over all C columns.
template <int C>
__device__ __forceinline__ void logits_chunk(float (&s)[kGroups][kChunkTiles][4], const uint32_t (&a)[kGroups][C / 16][4],
                                             const WTile<C>& Ws, int n0) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
  for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
    for (int n = 0; n < kChunkTiles; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) s[gi][n][r] = 0.0f;
#pragma unroll
  for (int kc = 0; kc < C / 16; ++kc)
#pragma unroll
    for (int n = 0; n < kChunkTiles; ++n) {
      // B[k][j] = W[v0 + n0 + 8n + j][16kc + k]: b0 holds k = 2t, 2t + 1 of row j = g, b1 k + 8.
      const uint32_t b0 = Ws[n0 + 8 * n + g][8 * kc + t], b1 = Ws[n0 + 8 * n + g][8 * kc + t + 4];
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) mma_bf16(s[gi][n], a[gi][kc], b0, b1);
    }
}

// Runs body(Ws, tile) over the block's vocabulary tiles [first, end) (first < end), each once its
// copy has landed in shared memory; the next tile's copy is in flight meanwhile.
template <int C, typename Body>
__device__ __forceinline__ void for_each_tile(WTile<C> (&Ws)[2], const uint16_t* __restrict__ w, int V, int first,
                                              int end, Body&& body) {
  stage_tile<C>(Ws[0], w, V, first);
  for (int tile = first; tile < end; ++tile) {
    const int buf = (tile - first) & 1;
    cp_async_wait_all();  // this thread's copies of `tile`
    // Everyone's copies of `tile` have landed, and everyone is done with the tile before it, whose
    // buffer the next copy overwrites.
    __syncthreads();
    if (tile + 1 < end) stage_tile<C>(Ws[buf ^ 1], w, V, tile + 1);
    body(Ws[buf], tile);
  }
}

// The block's rows and vocabulary tiles: rows blockIdx.x * kRows .., tiles [first, end) of split
// blockIdx.y (per_split tiles a split).
struct BlockRange {
  int r0, first, end;
};
__device__ __forceinline__ BlockRange block_range(int V, int per_split) {
  const int tiles = tile_count(V);
  const int first = int(blockIdx.y) * per_split;
  return {int(blockIdx.x) * kRows, first, min(tiles, first + per_split)};
}

// ---- forward ------------------------------------------------------------------------------------

// For the block's rows r and vocabulary split s (blockIdx.y): partial_lse[s * rows + r] = log sum_v
// exp(logits[r, v]) over the split's columns (natural units), and target_logit[r] = logits[r,
// targets[r]] from the split holding that column (targets[r] < 0: not written). x bf16 [rows, C], w
// bf16 [V, C], targets [rows] in [-inf, V).
template <int C>
__global__ void __launch_bounds__(kThreads)
    unembed_ce_forward_kernel(int rows, int V, int per_split, const uint16_t* __restrict__ x,
                              const uint16_t* __restrict__ w, const int32_t* __restrict__ targets,
                              float* __restrict__ partial_lse, float* __restrict__ target_logit) {
  __shared__ __align__(16) WTile<C> Ws[2];
  const BlockRange range = block_range(V, per_split);
  const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const int w0 = range.r0 + kWarpRows * warp;  // the warp's first row
  uint32_t a[kGroups][C / 16][4];
  load_rows<C>(a, x, rows, w0);
  // This lane's rows: w0 + 16 gi + g + 8h (h = 0, 1), slot i = 2 gi + h; their targets (-1 past rows).
  int target[2 * kGroups];
#pragma unroll
  for (int i = 0; i < 2 * kGroups; ++i) {
    const int row = w0 + 16 * (i >> 1) + g + 8 * (i & 1);
    target[i] = row < rows ? targets[row] : -1;
  }
  // Per slot: the running maximum over this lane's columns (log2 units) and this lane's sum of
  // exp2(logit - max); -inf / 0 until the lane sees a column inside V.
  float mx[2 * kGroups], sum[2 * kGroups];
#pragma unroll
  for (int i = 0; i < 2 * kGroups; ++i) mx[i] = -INFINITY, sum[i] = 0.0f;

  for_each_tile<C>(Ws, w, V, range.first, range.end, [&](const WTile<C>& tileW, int tile) {
#pragma unroll 1
    for (int n0 = 0; n0 < kCols; n0 += kChunk) {
      float s[kGroups][kChunkTiles][4];
      logits_chunk<C>(s, a, tileW, n0);
      const int col0 = tile * kCols + n0 + 2 * t;  // column of s[.][n][r] = col0 + 8n + (r & 1)
#pragma unroll
      for (int i = 0; i < 2 * kGroups; ++i) {
        const int gi = i >> 1, h = i & 1;
        float cmax = -INFINITY;
#pragma unroll
        for (int n = 0; n < kChunkTiles; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int col = col0 + 8 * n + e;
            const float logit = s[gi][n][2 * h + e];
            if (col == target[i]) target_logit[w0 + 16 * gi + g + 8 * h] = logit;  // one writer in the grid
            s[gi][n][2 * h + e] = col < V ? logit * kLog2e : -INFINITY;
            cmax = fmaxf(cmax, s[gi][n][2 * h + e]);
          }
        const float m = fmaxf(mx[i], cmax);
        if (m == -INFINITY) continue;  // no column of this lane inside V yet
        float add = 0.0f;
#pragma unroll
        for (int n = 0; n < kChunkTiles; ++n) add += exp2f(s[gi][n][2 * h] - m) + exp2f(s[gi][n][2 * h + 1] - m);
        sum[i] = sum[i] * exp2f(mx[i] - m) + add;  // exp2f(-inf) = 0 before the first column
        mx[i] = m;
      }
    }
  });

  // The quad's four lanes hold a row's columns between them: combine their maxima and sums. Every
  // split has a column inside V, so the quad's maximum is finite.
#pragma unroll
  for (int i = 0; i < 2 * kGroups; ++i) {
    float m = fmaxf(mx[i], shfl_xor(mx[i], 1));
    m = fmaxf(m, shfl_xor(m, 2));
    float l = mx[i] == -INFINITY ? 0.0f : sum[i] * exp2f(mx[i] - m);
    l += shfl_xor(l, 1);
    l += shfl_xor(l, 2);
    const int row = w0 + 16 * (i >> 1) + g + 8 * (i & 1);
    if (t == 0 && row < rows) partial_lse[size_t(blockIdx.y) * rows + row] = (m + log2f(l)) * kLn2;
  }
}

// lse[r] = log sum_s exp(partial_lse[s * rows + r]) over the splits; losses[r] = lse[r] -
// target_logit[r], 0 where targets[r] < 0. One thread a row.
__global__ void unembed_ce_combine_kernel(int rows, int splits, const float* __restrict__ partial_lse,
                                          const float* __restrict__ target_logit, const int32_t* __restrict__ targets,
                                          float* __restrict__ lse, float* __restrict__ losses) {
  const int r = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (r >= rows) return;
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, partial_lse[size_t(s) * rows + r]);
  float l = 0.0f;
  for (int s = 0; s < splits; ++s) l += expf(partial_lse[size_t(s) * rows + r] - m);
  const float total = m + logf(l);
  lse[r] = total;
  losses[r] = targets[r] < 0 ? 0.0f : total - target_logit[r];
}

// ---- backward -----------------------------------------------------------------------------------

// How the backward stores its gradient, the widest the row length and dlogits' alignment allow:
// kStoreQuads: 8 bytes (4 columns) a thread, V % 4 == 0 and dlogits 8-byte aligned; lanes t and t ^ 1
// swap a pair so that each holds four consecutive columns, and a warp's store covers 32 bytes of
// each of 8 rows (whole sectors). kStorePairs: 4 bytes, V even and dlogits 4-byte aligned.
// kStoreSingles: 2 bytes.
enum StoreWidth : int { kStoreSingles = 1, kStorePairs = 2, kStoreQuads = 4 };

// dlogits[r, v] = bf16((exp(logits[r, v] - lse[r]) - [v == targets[r]]) * scale) for the block's
// rows and vocabulary split; rows with targets[r] < 0 are 0. Operands as in the forward; `width` a
// StoreWidth.
template <int C>
__global__ void __launch_bounds__(kThreads)
    unembed_ce_backward_kernel(int rows, int V, int per_split, const uint16_t* __restrict__ x,
                               const uint16_t* __restrict__ w, const int32_t* __restrict__ targets,
                               const float* __restrict__ lse, float scale, int width, uint16_t* __restrict__ dlogits) {
  __shared__ __align__(16) WTile<C> Ws[2];
  const BlockRange range = block_range(V, per_split);
  const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const int w0 = range.r0 + kWarpRows * warp;
  uint32_t a[kGroups][C / 16][4];
  load_rows<C>(a, x, rows, w0);
  // Per slot i (row w0 + 16 (i >> 1) + g + 8 (i & 1)): its target, its log-sum-exp in log2 units and
  // the gradient's scale (0 for a row without a target); rows past `rows` are not stored.
  int target[2 * kGroups];
  float lse2[2 * kGroups], mul[2 * kGroups];
#pragma unroll
  for (int i = 0; i < 2 * kGroups; ++i) {
    const int row = w0 + 16 * (i >> 1) + g + 8 * (i & 1);
    target[i] = row < rows ? targets[row] : -1;
    // A row without a target reads no lse: exp2(logit - inf) = 0, so its gradient is 0 whatever lse holds.
    lse2[i] = target[i] >= 0 ? lse[row] * kLog2e : INFINITY;
    mul[i] = target[i] < 0 ? 0.0f : scale;
  }

  for_each_tile<C>(Ws, w, V, range.first, range.end, [&](const WTile<C>& tileW, int tile) {
#pragma unroll 1
    for (int n0 = 0; n0 < kCols; n0 += kChunk) {
      float s[kGroups][kChunkTiles][4];
      logits_chunk<C>(s, a, tileW, n0);
      const int col0 = tile * kCols + n0 + 2 * t;  // column of s[.][n][r] = col0 + 8n + (r & 1)
#pragma unroll
      for (int i = 0; i < 2 * kGroups; ++i) {
        const int gi = i >> 1, h = i & 1;
        const int row = w0 + 16 * gi + g + 8 * h;
        // bits[n] = the gradient at columns col0 + 8n, + 1 (past V or `rows`: computed, not stored)
        uint32_t bits[kChunkTiles];
#pragma unroll
        for (int n = 0; n < kChunkTiles; ++n) {
          float p[2];
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float prob = exp2f(s[gi][n][2 * h + e] * kLog2e - lse2[i]);
            p[e] = (col0 + 8 * n + e == target[i] ? prob - 1.0f : prob) * mul[i];
          }
          bits[n] = pack_bf16x2(p[0], p[1]);
        }
        uint16_t* out = dlogits + size_t(row) * V;  // dlogits[row, :]
        if (width == kStoreQuads) {
          // n8 tiles n, n + 1: an even lane keeps tile n and takes its odd neighbour's pair of it
          // (columns 8n + 2t .. + 3), an odd lane keeps tile n + 1 and takes its even neighbour's
          // (columns 8(n + 1) + 2(t - 1) .. + 3). Every lane of the warp takes part in the swap.
#pragma unroll
          for (int n = 0; n < kChunkTiles; n += 2) {
            const bool odd = t & 1;
            const uint32_t got = shfl_xor_u32(odd ? bits[n] : bits[n + 1], 1);
            const int col = odd ? col0 + 8 * (n + 1) - 2 : col0 + 8 * n;  // a multiple of 4
            if (row < rows && col < V) *reinterpret_cast<uint2*>(out + col) = odd ? uint2{got, bits[n + 1]} : uint2{bits[n], got};
          }
        } else if (row < rows) {
#pragma unroll
          for (int n = 0; n < kChunkTiles; ++n) {
            const int col = col0 + 8 * n;  // even
            if (col >= V) continue;
            if (width == kStorePairs) {
              *reinterpret_cast<uint32_t*>(out + col) = bits[n];
            } else {
              out[col] = uint16_t(bits[n] & 0xffffu);
              if (col + 1 < V) out[col + 1] = uint16_t(bits[n] >> 16);
            }
          }
        }
      }
    }
  });
}

}  // namespace ms::cuda::unembed_ce

#endif  // MONOSEMANTIC_CUDA_UNEMBED_CE_KERNELS_H
