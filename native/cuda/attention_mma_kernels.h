/*
 * attention_mma_kernels.h — the kernels of attention_mma.cu: causal attention and its gradients on
 * tensor cores (mma.sync m16n8k16, bf16 operands, fp32 accumulation), flash-attention style.
 *
 * Device code only, in a header of its own so that test/native/attention_mma_emulation.cpp can
 * compile it for the host (one host thread per CUDA thread, a barrier per __syncthreads and per
 * warp-collective call) and check it against float64 attention without a GPU. The includer
 * provides the warp-collective primitives:
 *   mma_bf16(d, a, b0, b1)  d[4] += A (16x16) B (16x8), fragments as in the PTX ISA (below);
 *   pack_bf16x2(lo, hi)     two floats rounded to bf16, lo in the low half (the lower column);
 *   shfl_xor(v, mask)       __shfl_xor_sync over the full warp; shfl(v, lane) likewise __shfl_sync;
 *   float4, __syncthreads, threadIdx, blockIdx, gridDim, exp2f, log2f.
 *
 * Fragments (g = lane / 4, t = lane % 4), each 32-bit register holding two bf16 of one row:
 *   A 16x16: a0 = (g, 2t..2t+1), a1 = (g + 8, 2t..), a2 = (g, 2t + 8..), a3 = (g + 8, 2t + 8..);
 *   B 16x8 (k x n): b0 = (k 2t..2t+1, n g), b1 = (k 2t + 8.., n g);
 *   C 16x8: c0, c1 = (g, 2t), (g, 2t + 1); c2, c3 = (g + 8, 2t), (g + 8, 2t + 1).
 * Shared-memory tiles hold bf16 pairs as 32-bit words, so that every fragment register is one
 * word read: a row-major tile X[row][word] (word w = elements 2w, 2w + 1 of the row) gives A
 * fragments of X and B fragments of Xᵀ; a transposed tile Xt[col][word] (word w = rows 2w, 2w + 1)
 * gives B fragments of X. Rows are padded by 4 words, which spreads a fragment read's 32 words
 * over the 32 banks. A C accumulator of 16 x 16 columns (two n8 tiles) packs into an A fragment
 * of the same rows without leaving registers (P and dS are used that way).
 *
 * Block = 4 warps; each warp owns 16 rows (queries in the forward and dq, keys in dk/dv) of a
 * 64-row block tile of one head of one sequence, and the other side runs through shared memory
 * kCols rows at a time. Scores are kept in log2 units (scale · log2 e folded in, exp2f), the
 * log-sum-exp is stored in natural units like the other attention kernels (backend.h).
 */
#ifndef MONOSEMANTIC_CUDA_ATTENTION_MMA_KERNELS_H
#define MONOSEMANTIC_CUDA_ATTENTION_MMA_KERNELS_H

namespace ms::cuda::attention_mma {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = kWarps * 16;  // rows of a block tile: 16 per warp
constexpr int kCols = 64;           // rows of the other side per shared-memory tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Words per row of a row-major tile of head size HD, and of a transposed tile of kCols rows.
template <int HD>
constexpr int kRowWords = HD / 2 + 4;
constexpr int kColWords = kCols / 2 + 4;

// Row t of head h of sequence b in q, k, v, dout, out [B*T, C] is at head_base + t*C, with
// blockIdx.y = b*n_head + h.
template <int HD>
__device__ __forceinline__ size_t head_base(int T, int C, int n_head) {
  const int h = blockIdx.y % n_head, b = blockIdx.y / n_head;
  return size_t(b) * T * C + size_t(h) * HD;
}

// X[r][w] = bf16(src[base + (r0 + r)*C + 2w]), bf16(... + 2w + 1) for r < kRows, w < HD/2; zero
// for rows r0 + r >= T. Every thread of the block takes part.
template <int HD>
__device__ __forceinline__ void stage_rows(uint32_t (*X)[kRowWords<HD>], const float* __restrict__ src,
                                           size_t base, int C, int r0, int T) {
  constexpr int kChunks = HD / 4;  // float4 chunks per row
  for (int e = threadIdx.x; e < kRows * kChunks; e += kThreads) {
    const int r = e / kChunks, c = e % kChunks;  // e = r * kChunks + c
    float4 x = {0.0f, 0.0f, 0.0f, 0.0f};
    if (r0 + r < T) x = *reinterpret_cast<const float4*>(src + base + size_t(r0 + r) * C + 4 * c);
    X[r][2 * c] = pack_bf16x2(x.x, x.y);
    X[r][2 * c + 1] = pack_bf16x2(x.z, x.w);
  }
}

// The transposed tile: Xt[d][w] = bf16(src row r0 + 2w, dim d), bf16(row r0 + 2w + 1, dim d) for
// d < HD, w < kCols/2; zero for rows >= T. Consecutive threads take consecutive row pairs, so
// their stores fall in consecutive banks.
template <int HD>
__device__ __forceinline__ void stage_cols(uint32_t (*Xt)[kColWords], const float* __restrict__ src, size_t base,
                                           int C, int r0, int T) {
  constexpr int kPairs = kCols / 2;
  for (int e = threadIdx.x; e < kPairs * (HD / 4); e += kThreads) {
    const int w = e % kPairs, c = e / kPairs;  // e = c * kPairs + w: rows r0 + 2w, +1; dims 4c .. 4c + 3
    const int ra = r0 + 2 * w, rb = ra + 1;
    float4 a = {0.0f, 0.0f, 0.0f, 0.0f}, b = {0.0f, 0.0f, 0.0f, 0.0f};
    if (ra < T) a = *reinterpret_cast<const float4*>(src + base + size_t(ra) * C + 4 * c);
    if (rb < T) b = *reinterpret_cast<const float4*>(src + base + size_t(rb) * C + 4 * c);
    Xt[4 * c][w] = pack_bf16x2(a.x, b.x);
    Xt[4 * c + 1][w] = pack_bf16x2(a.y, b.y);
    Xt[4 * c + 2][w] = pack_bf16x2(a.z, b.z);
    Xt[4 * c + 3][w] = pack_bf16x2(a.w, b.w);
  }
}

// The A fragment of rows r0 .. r0 + 15, columns k0 .. k0 + 15 (k0 even) of a tile of `Words`
// words per row.
template <int Words>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const uint32_t (*X)[Words], int r0, int k0) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const int w = k0 / 2 + t;  // word of columns k0 + 2t, k0 + 2t + 1
  a[0] = X[r0 + g][w];
  a[1] = X[r0 + g + 8][w];
  a[2] = X[r0 + g][w + 4];
  a[3] = X[r0 + g + 8][w + 4];
}

// The B fragment B[k][n] = X[n0 + n][k0 + k] (k < 16, n < 8): from a row-major tile it is a
// block of Xᵀ, from a transposed tile a block of the original rows.
template <int Words>
__device__ __forceinline__ void load_b(uint32_t& b0, uint32_t& b1, const uint32_t (*X)[Words], int n0, int k0) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  b0 = X[n0 + g][k0 / 2 + t];
  b1 = X[n0 + g][k0 / 2 + t + 4];
}

// The A fragment of columns 16c .. 16c + 15 of a 16 x kCols accumulator s[j][4] (n8 tiles j).
__device__ __forceinline__ void pack_a(uint32_t (&a)[4], const float (&s)[kCols / 8][4], int c) {
  a[0] = pack_bf16x2(s[2 * c][0], s[2 * c][1]);
  a[1] = pack_bf16x2(s[2 * c][2], s[2 * c][3]);
  a[2] = pack_bf16x2(s[2 * c + 1][0], s[2 * c + 1][1]);
  a[3] = pack_bf16x2(s[2 * c + 1][2], s[2 * c + 1][3]);
}

// s = A Bᵀ over HD: rows of the warp's A fragments a[HD/16] against kCols rows of a row-major tile.
template <int HD>
__device__ __forceinline__ void scores(float (&s)[kCols / 8][4], const uint32_t (&a)[HD / 16][4],
                                       const uint32_t (*X)[kRowWords<HD>]) {
#pragma unroll
  for (int j = 0; j < kCols / 8; ++j) {
#pragma unroll
    for (int r = 0; r < 4; ++r) s[j][r] = 0.0f;
#pragma unroll
    for (int kc = 0; kc < HD / 16; ++kc) {
      uint32_t b0, b1;
      load_b<kRowWords<HD>>(b0, b1, X, 8 * j, 16 * kc);
      mma_bf16(s[j], a[kc], b0, b1);
    }
  }
}

// acc (16 x HD) += S (16 x kCols, an accumulator) times the kCols x HD matrix held transposed in Xt.
template <int HD>
__device__ __forceinline__ void accumulate(float (&acc)[HD / 8][4], const float (&s)[kCols / 8][4],
                                           const uint32_t (*Xt)[kColWords]) {
#pragma unroll
  for (int c = 0; c < kCols / 16; ++c) {
    uint32_t a[4];
    pack_a(a, s, c);
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      uint32_t b0, b1;
      load_b<kColWords>(b0, b1, Xt, 8 * n, 16 * c);
      mma_bf16(acc[n], a, b0, b1);
    }
  }
}

// The warp's A fragments of rows r0 .. r0 + 15 of a row-major tile, all HD columns.
template <int HD>
__device__ __forceinline__ void load_rows(uint32_t (&a)[HD / 16][4], const uint32_t (*X)[kRowWords<HD>], int r0) {
#pragma unroll
  for (int kc = 0; kc < HD / 16; ++kc) load_a<kRowWords<HD>>(a[kc], X, r0, 16 * kc);
}

// Writes a warp's 16 x HD accumulator times `mul` to rows row0 + g, row0 + g + 8 (those < T) of
// dst at base (row stride C).
template <int HD>
__device__ __forceinline__ void store_rows(float* __restrict__ dst, size_t base, int C, int row0, int T,
                                           const float (&acc)[HD / 8][4], float mul0, float mul1) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + g + 8 * half;
    if (row >= T) continue;
    const float mul = half ? mul1 : mul0;
    float* out = dst + base + size_t(row) * C;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      out[8 * n + 2 * t] = acc[n][2 * half] * mul;
      out[8 * n + 2 * t + 1] = acc[n][2 * half + 1] * mul;
    }
  }
}

// The sum of v over the four lanes of a quad (the lanes holding one accumulator row).
__device__ __forceinline__ float quad_sum(float v) {
  v += shfl_xor(v, 1);
  return v + shfl_xor(v, 2);
}
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, shfl_xor(v, 1));
  return fmaxf(v, shfl_xor(v, 2));
}

// ---- forward ------------------------------------------------------------------------------------

// Block (blockIdx.x, blockIdx.y = b*n_head + h) owns queries q0 .. q0 + kRows - 1, the block tiles
// taken last first so the longest rows start first; warp w owns q0 + 16w .. q0 + 16w + 15.
// out[t] = softmax_{j <= t}(scale q_t . k_j) v_j and, when lse is not null, lse[bh*T + t] its
// log-sum-exp (natural units).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_mma_forward_kernel(int T, int C, int n_head, float scale, const float* __restrict__ q,
                                 const float* __restrict__ k, const float* __restrict__ v, float* __restrict__ out,
                                 float* __restrict__ lse) {
  static_assert(kCols == kRows, "the q rows are staged in the key tile");
  constexpr int RW = kRowWords<HD>;
  __shared__ uint32_t ks[kCols][RW];      // k rows j0 .. (q rows at the start)
  __shared__ uint32_t vt[HD][kColWords];  // v rows j0 .., transposed
  const int bh = blockIdx.y;                  // b*n_head + h
  const size_t base = head_base<HD>(T, C, n_head);
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;
  const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const int w0 = q0 + 16 * warp;   // the warp's first query
  const int row0 = w0 + g, row1 = row0 + 8;  // the queries of this lane's accumulator rows
  stage_rows<HD>(ks, q, base, C, q0, T);
  __syncthreads();
  uint32_t qa[HD / 16][4];
  load_rows<HD>(qa, ks, 16 * warp);
  float o[HD / 8][4] = {};
  float m0 = -INFINITY, m1 = -INFINITY;  // running maxima of rows row0, row1 (log2 units)
  float l0 = 0.0f, l1 = 0.0f;            // this lane's share of the running sums
  const float sl = scale * kLog2e;
  const int last = min(T, q0 + kRows) - 1;  // the block's last query sees keys 0 .. last
  for (int j0 = 0; j0 <= last; j0 += kCols) {
    __syncthreads();  // the previous tile (or the q rows) is no longer read
    stage_rows<HD>(ks, k, base, C, j0, T);
    stage_cols<HD>(vt, v, base, C, j0, T);
    __syncthreads();
    if (w0 + 15 < j0) continue;  // every key of the tile is after the warp's queries
    float s[kCols / 8][4];
    scores<HD>(s, qa, ks);
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int key = j0 + 8 * j + 2 * t + (r & 1), row = r < 2 ? row0 : row1;
        s[j][r] = key <= row && key < T ? s[j][r] * sl : -INFINITY;
        if (r < 2) mx0 = fmaxf(mx0, s[j][r]);
        else mx1 = fmaxf(mx1, s[j][r]);
      }
    // Key 0 is in the first tile, so after it every row's maximum is finite.
    const float n0 = fmaxf(m0, quad_max(mx0)), n1 = fmaxf(m1, quad_max(mx1));
    const float c0 = exp2f(m0 - n0), c1 = exp2f(m1 - n1);  // exp2(-inf) = 0 at the first tile
    m0 = n0;
    m1 = n1;
    float p0 = 0.0f, p1 = 0.0f;
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j) {
      s[j][0] = exp2f(s[j][0] - m0);
      s[j][1] = exp2f(s[j][1] - m0);
      s[j][2] = exp2f(s[j][2] - m1);
      s[j][3] = exp2f(s[j][3] - m1);
      p0 += s[j][0] + s[j][1];
      p1 += s[j][2] + s[j][3];
    }
    l0 = l0 * c0 + p0;
    l1 = l1 * c1 + p1;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      o[n][0] *= c0;
      o[n][1] *= c0;
      o[n][2] *= c1;
      o[n][3] *= c1;
    }
    accumulate<HD>(o, s, vt);
  }
  l0 = quad_sum(l0);
  l1 = quad_sum(l1);
  store_rows<HD>(out, base, C, w0, T, o, 1.0f / l0, 1.0f / l1);
  if (lse && t == 0) {
    if (row0 < T) lse[size_t(bh) * T + row0] = (m0 + log2f(l0)) * kLn2;  // lse[b, h, t]
    if (row1 < T) lse[size_t(bh) * T + row1] = (m1 + log2f(l1)) * kLn2;
  }
}

// ---- backward -----------------------------------------------------------------------------------

// Block tiles of queries as in the forward. D[bh*T + t] = dout_t . out_t (fp32, from global
// memory) and dq_t = scale sum_{j <= t} dS_tj k_j with P_tj = exp(scale q_t . k_j - lse_t) and
// dS_tj = P_tj (dout_t . v_j - D_t).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_mma_dq_kernel(int T, int C, int n_head, float scale, const float* __restrict__ dout,
                            const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                            const float* __restrict__ out, const float* __restrict__ lse, float* __restrict__ dq,
                            float* __restrict__ D) {
  static_assert(kCols == kRows, "the q and dout rows are staged in the key tiles");
  constexpr int RW = kRowWords<HD>;
  __shared__ uint32_t ks[kCols][RW];      // k rows j0 .. (q rows at the start)
  __shared__ uint32_t vs[kCols][RW];      // v rows j0 .. (dout rows at the start)
  __shared__ uint32_t kt[HD][kColWords];  // k rows j0 .., transposed
  const int bh = blockIdx.y;
  const size_t base = head_base<HD>(T, C, n_head);
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int w0 = q0 + 16 * warp;
  const int row0 = w0 + g, row1 = row0 + 8;
  // D of the warp's 16 queries: lanes 2i and 2i + 1 take halves of query w0 + i.
  float Dl = 0.0f;
  {
    const int row = w0 + (lane >> 1);
    if (row < T) {
      const float* go = dout + base + size_t(row) * C + (lane & 1) * (HD / 2);
      const float* oo = out + base + size_t(row) * C + (lane & 1) * (HD / 2);
      for (int d = 0; d < HD / 2; ++d) Dl = fmaf(go[d], oo[d], Dl);
    }
    Dl += shfl_xor(Dl, 1);  // both lanes of the pair hold D of query w0 + lane / 2
    if (row < T && (lane & 1) == 0) D[size_t(bh) * T + row] = Dl;
  }
  const float D0 = shfl(Dl, 2 * g), D1 = shfl(Dl, 2 * (g + 8));
  const float sl = scale * kLog2e;
  const float L0 = row0 < T ? lse[size_t(bh) * T + row0] * kLog2e : 0.0f;  // log2 units
  const float L1 = row1 < T ? lse[size_t(bh) * T + row1] * kLog2e : 0.0f;
  stage_rows<HD>(ks, q, base, C, q0, T);
  stage_rows<HD>(vs, dout, base, C, q0, T);
  __syncthreads();
  uint32_t qa[HD / 16][4], ga[HD / 16][4];
  load_rows<HD>(qa, ks, 16 * warp);
  load_rows<HD>(ga, vs, 16 * warp);
  float acc[HD / 8][4] = {};
  const int last = min(T, q0 + kRows) - 1;
  for (int j0 = 0; j0 <= last; j0 += kCols) {
    __syncthreads();
    stage_rows<HD>(ks, k, base, C, j0, T);
    stage_rows<HD>(vs, v, base, C, j0, T);
    stage_cols<HD>(kt, k, base, C, j0, T);
    __syncthreads();
    if (w0 + 15 < j0) continue;
    float s[kCols / 8][4], dp[kCols / 8][4];
    scores<HD>(s, qa, ks);
    scores<HD>(dp, ga, vs);
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int key = j0 + 8 * j + 2 * t + (r & 1), row = r < 2 ? row0 : row1;
        const float p = key <= row && key < T ? exp2f(s[j][r] * sl - (r < 2 ? L0 : L1)) : 0.0f;
        s[j][r] = p * (dp[j][r] - (r < 2 ? D0 : D1));  // dS
      }
    accumulate<HD>(acc, s, kt);
  }
  store_rows<HD>(dq, base, C, w0, T, acc, scale, scale);
}

// Block (blockIdx.x, blockIdx.y = b*n_head + h) owns keys j0 .. j0 + kRows - 1, warp w keys
// j0 + 16w ..; queries run through shared memory from the block's first key on (earlier queries
// do not see these keys). dk_j = scale sum_{t >= j} dS_tj q_t and dv_j = sum_{t >= j} P_tj dout_t,
// from lse and D (written by the dq kernel).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_mma_dkdv_kernel(int T, int C, int n_head, float scale, const float* __restrict__ dout,
                              const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                              const float* __restrict__ lse, const float* __restrict__ D, float* __restrict__ dk,
                              float* __restrict__ dv) {
  static_assert(kCols == kRows, "the k and v rows are staged in the query tiles");
  constexpr int RW = kRowWords<HD>;
  __shared__ uint32_t qs[kCols][RW];      // q rows t0 .. (k rows at the start)
  __shared__ uint32_t gs[kCols][RW];      // dout rows t0 .. (v rows at the start)
  __shared__ uint32_t qt[HD][kColWords];  // q rows t0 .., transposed
  __shared__ uint32_t gt[HD][kColWords];  // dout rows t0 .., transposed
  __shared__ float ls[kCols];             // lse[b, h, t0 + r] in log2 units
  __shared__ float Ds[kCols];             // D[b, h, t0 + r]
  const int bh = blockIdx.y;
  const size_t base = head_base<HD>(T, C, n_head);
  const int j0 = blockIdx.x * kRows;
  const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const int w0 = j0 + 16 * warp;             // the warp's first key
  const int key0 = w0 + g, key1 = key0 + 8;  // the keys of this lane's accumulator rows
  stage_rows<HD>(qs, k, base, C, j0, T);
  stage_rows<HD>(gs, v, base, C, j0, T);
  __syncthreads();
  uint32_t ka[HD / 16][4], va[HD / 16][4];
  load_rows<HD>(ka, qs, 16 * warp);
  load_rows<HD>(va, gs, 16 * warp);
  float acc_k[HD / 8][4] = {}, acc_v[HD / 8][4] = {};
  const float sl = scale * kLog2e;
  const float* lse_bh = lse + size_t(bh) * T;  // lse[b, h, :]
  const float* D_bh = D + size_t(bh) * T;      // D[b, h, :]
  for (int t0 = j0; t0 < T; t0 += kCols) {
    __syncthreads();
    stage_rows<HD>(qs, q, base, C, t0, T);
    stage_rows<HD>(gs, dout, base, C, t0, T);
    stage_cols<HD>(qt, q, base, C, t0, T);
    stage_cols<HD>(gt, dout, base, C, t0, T);
    for (int r = threadIdx.x; r < kCols; r += kThreads) {
      ls[r] = t0 + r < T ? lse_bh[t0 + r] * kLog2e : 0.0f;
      Ds[r] = t0 + r < T ? D_bh[t0 + r] : 0.0f;
    }
    __syncthreads();
    // Sᵀ (the warp's 16 keys x kCols queries) and dPᵀ = V doutᵀ.
    float p[kCols / 8][4], ds[kCols / 8][4];
    scores<HD>(p, ka, qs);
    scores<HD>(ds, va, gs);
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int c = 8 * j + 2 * t + (r & 1), query = t0 + c, key = r < 2 ? key0 : key1;
        p[j][r] = query >= key && query < T ? exp2f(p[j][r] * sl - ls[c]) : 0.0f;  // Pᵀ
        ds[j][r] = p[j][r] * (ds[j][r] - Ds[c]);                                     // dSᵀ
      }
    accumulate<HD>(acc_v, p, gt);
    accumulate<HD>(acc_k, ds, qt);
  }
  store_rows<HD>(dk, base, C, w0, T, acc_k, scale, scale);
  store_rows<HD>(dv, base, C, w0, T, acc_v, 1.0f, 1.0f);
}

}  // namespace ms::cuda::attention_mma

#endif  // MONOSEMANTIC_CUDA_ATTENTION_MMA_KERNELS_H
