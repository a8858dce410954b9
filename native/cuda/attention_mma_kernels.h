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
 * kCols rows at a time, each thread converting its share (TileRegs) to bf16. With Prefetch, a
 * thread holds its share of the next tile in registers while the current tile's products run, so
 * the global reads overlap the tensor cores, at the cost of those registers (attention_mma.cu
 * picks). Scores are kept in log2 units (scale · log2 e folded in, exp2f), the log-sum-exp is
 * stored in natural units like the other attention kernels (backend.h).
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

// The same head's start in dq, dk, dv (B*T rows of ld_grad floats): b*T*ld_grad + h*HD, from its
// head_base = b*T*C + h*HD (h*HD < C, so b = base / (T*C) and h*HD = base % (T*C)). Taken from
// base, which the kernels keep anyway, not from blockIdx.y / n_head, whose quotient would stay live
// through the main loop (a spill in the dq kernel at HD 32 without Prefetch).
__device__ __forceinline__ size_t grad_base(size_t base, int T, int C, int ld_grad) {
  const size_t tc = size_t(T) * C;  // floats per sequence in [B*T, C]
  return base / tc * T * ld_grad + base % tc;
}

// One thread's share of a kCols x HD tile of src rows r0 .. r0 + kCols - 1, held in registers
// between load() and store_*(), so that the next tile's global reads can be in flight while the
// current tile's products run. Item i of thread x is e = x + i * kThreads: rows r0 + 2w and
// r0 + 2w + 1, dims 4c .. 4c + 3 (zero for rows >= T), with e's low WBits bits the low bits of w,
// the next bits c (HD / 4 chunks), the rest the high bits of w. WBits sets how a warp's 32 lanes
// spread over rows and chunks: 2 (4 row pairs x 8 chunks at HD 32: whole 128-byte rows per load,
// 2-way bank conflicts on store_rows) for tiles stored row-major only; 3 (8 row pairs x 4 chunks:
// 64-byte pieces of rows, 2-way conflicts on either store) for tiles stored transposed. (All 5
// bits to w would make the transposed stores conflict-free but the row-major ones 8-way, and
// read 16 bytes from each of 32 rows per load.)
template <int HD, int WBits>
struct TileRegs {
  static constexpr int kPairs = kCols / 2;
  static constexpr int kChunks = HD / 4;  // float4 chunks per row
  static constexpr int kItems = kPairs * kChunks / kThreads;
  static_assert(kPairs * kChunks % kThreads == 0, "every thread takes the same number of row pairs");
  static_assert(kPairs % (1 << WBits) == 0, "w's low bits fit in a tile's row pairs");
  float4 a[kItems], b[kItems];  // rows 2w, 2w + 1 of item i

  // Item e's row pair w and chunk c (e = w_low + 2^WBits (c + kChunks w_high), w = w_low + 2^WBits w_high).
  __device__ __forceinline__ static int pair_of(int e) {
    return (e & ((1 << WBits) - 1)) + ((e >> WBits) / kChunks << WBits);
  }
  __device__ __forceinline__ static int chunk_of(int e) { return (e >> WBits) % kChunks; }

  __device__ __forceinline__ void load(const float* __restrict__ src, size_t base, int C, int r0, int T) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int e = threadIdx.x + i * kThreads;
      const int w = pair_of(e), c = chunk_of(e);
      const int ra = r0 + 2 * w, rb = ra + 1;
      a[i] = b[i] = float4{0.0f, 0.0f, 0.0f, 0.0f};
      if (ra < T) a[i] = *reinterpret_cast<const float4*>(src + base + size_t(ra) * C + 4 * c);
      if (rb < T) b[i] = *reinterpret_cast<const float4*>(src + base + size_t(rb) * C + 4 * c);
    }
  }

  // X[r][wd] = bf16 of the tile's row r, dims 2wd and 2wd + 1.
  __device__ __forceinline__ void store_rows(uint32_t (*X)[kRowWords<HD>]) const {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int e = threadIdx.x + i * kThreads;
      const int w = pair_of(e), c = chunk_of(e);
      X[2 * w][2 * c] = pack_bf16x2(a[i].x, a[i].y);
      X[2 * w][2 * c + 1] = pack_bf16x2(a[i].z, a[i].w);
      X[2 * w + 1][2 * c] = pack_bf16x2(b[i].x, b[i].y);
      X[2 * w + 1][2 * c + 1] = pack_bf16x2(b[i].z, b[i].w);
    }
  }

  // Xt[d][w] = bf16 of the tile's rows 2w and 2w + 1 at dim d.
  __device__ __forceinline__ void store_cols(uint32_t (*Xt)[kColWords]) const {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int e = threadIdx.x + i * kThreads;
      const int w = pair_of(e), c = chunk_of(e);
      Xt[4 * c][w] = pack_bf16x2(a[i].x, b[i].x);
      Xt[4 * c + 1][w] = pack_bf16x2(a[i].y, b[i].y);
      Xt[4 * c + 2][w] = pack_bf16x2(a[i].z, b[i].z);
      Xt[4 * c + 3][w] = pack_bf16x2(a[i].w, b[i].w);
    }
  }
};

template <int HD>
using RowTileRegs = TileRegs<HD, 2>;  // stored row-major only
template <int HD>
using ColTileRegs = TileRegs<HD, 3>;  // stored transposed (and maybe row-major too)

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

// Columns c, c + 1 (c even) of an output row: fp32, or bf16 (uint16_t bits, rounded to nearest
// even; one 32-bit store, the row's base and c even).
__device__ __forceinline__ void store_out_pair(float* p, float a, float b) {
  p[0] = a;
  p[1] = b;
}
__device__ __forceinline__ void store_out_pair(uint16_t* p, float a, float b) {
  *reinterpret_cast<uint32_t*>(p) = pack_bf16x2(a, b);
}

// Writes a warp's 16 x HD accumulator times `mul` to rows row0 + g, row0 + g + 8 (those < T) of
// dst at base (row stride ld; base and ld even for bf16), as fp32 or bf16 (Out: float or uint16_t).
template <int HD, typename Out>
__device__ __forceinline__ void store_rows(Out* __restrict__ dst, size_t base, int ld, int row0, int T,
                                           const float (&acc)[HD / 8][4], float mul0, float mul1) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + g + 8 * half;
    if (row >= T) continue;
    const float mul = half ? mul1 : mul0;
    Out* out = dst + base + size_t(row) * ld;  // dst[row, head h] in rows of ld
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) store_out_pair(out + 8 * n + 2 * t, acc[n][2 * half] * mul, acc[n][2 * half + 1] * mul);
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
// out[t] = softmax_{j <= t}(scale q_t . k_j) v_j (Out: float, or uint16_t for bf16 rounded to
// nearest even) and, when lse is not null, lse[bh*T + t] its log-sum-exp (natural units).
template <int HD, bool Prefetch, typename Out>
__global__ void __launch_bounds__(kThreads)
    attention_mma_forward_kernel(int T, int C, int n_head, float scale, const float* __restrict__ q,
                                 const float* __restrict__ k, const float* __restrict__ v, Out* __restrict__ out,
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
  {
    RowTileRegs<HD> qr;
    qr.load(q, base, C, q0, T);
    qr.store_rows(ks);
  }
  // A key tile's k and v rows (with Prefetch, the next one's, read during the products); the first
  // read once the q rows' registers are free.
  RowTileRegs<HD> kn;
  ColTileRegs<HD> vn;
  if constexpr (Prefetch) {
    kn.load(k, base, C, 0, T);
    vn.load(v, base, C, 0, T);
  }
  __syncthreads();
  uint32_t qa[HD / 16][4];
  load_rows<HD>(qa, ks, 16 * warp);
  float o[HD / 8][4] = {};
  float m0 = -INFINITY, m1 = -INFINITY;  // running maxima of rows row0, row1 (log2 units)
  float l0 = 0.0f, l1 = 0.0f;            // this lane's share of the running sums
  const float sl = scale * kLog2e;
  const int last = min(T, q0 + kRows) - 1;  // the block's last query sees keys 0 .. last
  for (int j0 = 0; j0 <= last; j0 += kCols) {
    if constexpr (!Prefetch) {
      kn.load(k, base, C, j0, T);
      vn.load(v, base, C, j0, T);
    }
    __syncthreads();  // the previous tile (or the q rows) is no longer read
    kn.store_rows(ks);
    vn.store_cols(vt);
    __syncthreads();
    if (Prefetch && j0 + kCols <= last) {
      kn.load(k, base, C, j0 + kCols, T);
      vn.load(v, base, C, j0 + kCols, T);
    }
    if (w0 + 15 < j0) continue;  // every key of the tile is after the warp's queries
    float s[kCols / 8][4];
    scores<HD>(s, qa, ks);
    // Key j0 + 8j + 2t + (r & 1) is seen by its row when it is at most the row: when 8j + (r & 1),
    // a constant of the unrolled loop, is at most that row's lim. (Rows past T are not stored; a
    // stored row's keys are below T.)
    const int lim0 = row0 - j0 - 2 * t, lim1 = row1 - j0 - 2 * t;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        s[j][r] = 8 * j + (r & 1) <= (r < 2 ? lim0 : lim1) ? s[j][r] * sl : -INFINITY;
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
  store_rows<HD, Out>(out, base, C, w0, T, o, 1.0f / l0, 1.0f / l1);
  if (lse && t == 0) {
    if (row0 < T) lse[size_t(bh) * T + row0] = (m0 + log2f(l0)) * kLn2;  // lse[b, h, t]
    if (row1 < T) lse[size_t(bh) * T + row1] = (m1 + log2f(l1)) * kLn2;
  }
}

// ---- backward -----------------------------------------------------------------------------------

// Block tiles of queries as in the forward. D[bh*T + t] = dout_t . out_t (fp32, from global
// memory) and dq_t = scale sum_{j <= t} dS_tj k_j with P_tj = exp(scale q_t . k_j - lse_t) and
// dS_tj = P_tj (dout_t . v_j - D_t); dq is B*T rows of ld_grad floats, the inputs rows of C.
template <int HD, bool Prefetch>
__global__ void __launch_bounds__(kThreads)
    attention_mma_dq_kernel(int T, int C, int n_head, float scale, const float* __restrict__ dout,
                            const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                            const float* __restrict__ out, const float* __restrict__ lse, float* __restrict__ dq,
                            int ld_grad, float* __restrict__ D) {
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
  {
    RowTileRegs<HD> qr, gr;
    qr.load(q, base, C, q0, T);
    gr.load(dout, base, C, q0, T);
    qr.store_rows(ks);
    gr.store_rows(vs);
  }
  ColTileRegs<HD> kn;  // as in the forward (k stored both ways)
  RowTileRegs<HD> vn;
  if constexpr (Prefetch) {
    kn.load(k, base, C, 0, T);
    vn.load(v, base, C, 0, T);
  }
  __syncthreads();
  uint32_t qa[HD / 16][4], ga[HD / 16][4];
  load_rows<HD>(qa, ks, 16 * warp);
  load_rows<HD>(ga, vs, 16 * warp);
  float acc[HD / 8][4] = {};
  const int last = min(T, q0 + kRows) - 1;
  for (int j0 = 0; j0 <= last; j0 += kCols) {
    if constexpr (!Prefetch) {
      kn.load(k, base, C, j0, T);
      vn.load(v, base, C, j0, T);
    }
    __syncthreads();
    kn.store_rows(ks);
    kn.store_cols(kt);
    vn.store_rows(vs);
    __syncthreads();
    if (Prefetch && j0 + kCols <= last) {
      kn.load(k, base, C, j0 + kCols, T);
      vn.load(v, base, C, j0 + kCols, T);
    }
    if (w0 + 15 < j0) continue;
    float s[kCols / 8][4], dp[kCols / 8][4];
    scores<HD>(s, qa, ks);
    scores<HD>(dp, ga, vs);
    const int lim0 = row0 - j0 - 2 * t, lim1 = row1 - j0 - 2 * t;  // as in the forward
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float p = 8 * j + (r & 1) <= (r < 2 ? lim0 : lim1) ? exp2f(s[j][r] * sl - (r < 2 ? L0 : L1)) : 0.0f;
        s[j][r] = p * (dp[j][r] - (r < 2 ? D0 : D1));  // dS
      }
    accumulate<HD>(acc, s, kt);
  }
  // dq[b*T + t, h*HD ..] in rows of ld_grad
  store_rows<HD, float>(dq, grad_base(base, T, C, ld_grad), ld_grad, w0, T, acc, scale, scale);
}

// Block (blockIdx.x, blockIdx.y = b*n_head + h) owns keys j0 .. j0 + kRows - 1, warp w keys
// j0 + 16w ..; queries run through shared memory from the block's first key on (earlier queries
// do not see these keys). dk_j = scale sum_{t >= j} dS_tj q_t and dv_j = sum_{t >= j} P_tj dout_t,
// from lse and D (written by the dq kernel); dk and dv are B*T rows of ld_grad floats.
template <int HD, bool Prefetch>
__global__ void __launch_bounds__(kThreads)
    attention_mma_dkdv_kernel(int T, int C, int n_head, float scale, const float* __restrict__ dout,
                              const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                              const float* __restrict__ lse, const float* __restrict__ D, float* __restrict__ dk,
                              float* __restrict__ dv, int ld_grad) {
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
  // A query tile's q and dout rows, and the lse (log2 units) and D of thread x's query x (x < kCols);
  // with Prefetch, the next tile's, read during the products.
  ColTileRegs<HD> qn, gn;  // stored both ways
  float ln = 0.0f, Dn = 0.0f;
  static_assert(kThreads >= kCols, "a thread per query of a tile carries its lse and D");
  auto load_queries = [&](int t0) {
    qn.load(q, base, C, t0, T);
    gn.load(dout, base, C, t0, T);
    ln = Dn = 0.0f;
    if (threadIdx.x < kCols && t0 + int(threadIdx.x) < T) {
      ln = lse[size_t(bh) * T + t0 + threadIdx.x] * kLog2e;
      Dn = D[size_t(bh) * T + t0 + threadIdx.x];
    }
  };
  {
    RowTileRegs<HD> kr, vr;
    kr.load(k, base, C, j0, T);
    vr.load(v, base, C, j0, T);
    kr.store_rows(qs);
    vr.store_rows(gs);
  }
  if constexpr (Prefetch) load_queries(j0);  // once the k and v rows' registers are free
  __syncthreads();
  uint32_t ka[HD / 16][4], va[HD / 16][4];
  load_rows<HD>(ka, qs, 16 * warp);
  load_rows<HD>(va, gs, 16 * warp);
  float acc_k[HD / 8][4] = {}, acc_v[HD / 8][4] = {};
  const float sl = scale * kLog2e;
  for (int t0 = j0; t0 < T; t0 += kCols) {
    if constexpr (!Prefetch) load_queries(t0);
    __syncthreads();
    qn.store_rows(qs);
    qn.store_cols(qt);
    gn.store_rows(gs);
    gn.store_cols(gt);
    if (threadIdx.x < kCols) {
      ls[threadIdx.x] = ln;
      Ds[threadIdx.x] = Dn;
    }
    __syncthreads();
    const int t1 = t0 + kCols;  // the next tile's first query
    if (Prefetch && t1 < T) load_queries(t1);
    // Sᵀ (the warp's 16 keys x kCols queries) and dPᵀ = V doutᵀ.
    float p[kCols / 8][4], ds[kCols / 8][4];
    scores<HD>(p, ka, qs);
    scores<HD>(ds, va, gs);
    // Query t0 + 8j + 2t + (r & 1) sees the row's key when it is in [key, T): when 8j + (r & 1),
    // a constant of the unrolled loop, is in [lo, hi] of that row.
    const int lo0 = key0 - t0 - 2 * t, lo1 = key1 - t0 - 2 * t, hi = T - 1 - t0 - 2 * t;
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int c = 8 * j + 2 * t + (r & 1), i = 8 * j + (r & 1);
        p[j][r] = i >= (r < 2 ? lo0 : lo1) && i <= hi ? exp2f(p[j][r] * sl - ls[c]) : 0.0f;  // Pᵀ
        ds[j][r] = p[j][r] * (ds[j][r] - Ds[c]);                                                   // dSᵀ
      }
    accumulate<HD>(acc_v, p, gt);
    accumulate<HD>(acc_k, ds, qt);
  }
  const size_t gbase = grad_base(base, T, C, ld_grad);  // dk, dv[b*T + j, h*HD ..] in rows of ld_grad
  store_rows<HD, float>(dk, gbase, ld_grad, w0, T, acc_k, scale, scale);
  store_rows<HD, float>(dv, gbase, ld_grad, w0, T, acc_v, 1.0f, 1.0f);
}

}  // namespace ms::cuda::attention_mma

#endif  // MONOSEMANTIC_CUDA_ATTENTION_MMA_KERNELS_H
