/*
 * gemm.cpp — the sgemm driver (gemm.h): kernel-set dispatch, cache blocking, packing, threading,
 * edge tiles, and the portable scalar kernel set.
 *
 * Loop nest (BLIS / GotoBLAS), for C[M,N] += op(A)[M,K] op(B)[K,N]:
 *   for jc over N in blocks of nc            B block kc x nc lives in L3 (shared by the threads)
 *     for pc over K in blocks of kc          beta applies on the first pass only
 *       pack op(B)[pc:+kc, jc:+nc] into NR-column panels      (parallel_for over panels)
 *       parallel_for over a tm x tn grid of (row range, column-panel range) tasks:
 *         for ic over the task's rows in blocks of mc
 *           pack op(A)[ic:+mc, pc:+kc] into MR-row panels     (per-thread buffer, L2-sized)
 *           for jr over the task's column panels               B panel kc x NR, reused from L1/L2
 *             for ir over the block's row panels: microkernel on one MR x NR tile of C
 * Packing absorbs the transposes (a k-major source is copied, the other kind is transposed in
 * 8x8 blocks) and pads panels with zeros, so the microkernel always runs full tiles; a tile that
 * sticks out of C is computed into a local buffer and only its valid part is written.
 * Each C element is written by one task and sums k in block order, so the result does not depend
 * on the thread count.
 */
#include "gemm.h"

#include <algorithm>
#include <cstdint>
#include <new>

#include "cpu_features.h"
#include "thread_pool.h"

namespace ms::cpu {
namespace gemm_detail {
namespace {

constexpr int kScalarMR = 4;
constexpr int kScalarNR = 8;

// Portable microkernel (plain loops; the compiler vectorises the j loop for the baseline ISA).
void micro_scalar(int kc, const float* ap, const float* bp, float* c, std::ptrdiff_t ldc, float alpha,
                  float beta) {
  float acc[kScalarMR][kScalarNR] = {};
  for (int k = 0; k < kc; ++k) {
    const float* b = bp + k * kScalarNR;  // B[k, 0:NR]
    for (int i = 0; i < kScalarMR; ++i) {
      const float a = ap[k * kScalarMR + i];  // A[i, k]
      for (int j = 0; j < kScalarNR; ++j) acc[i][j] += a * b[j];
    }
  }
  for (int i = 0; i < kScalarMR; ++i) {
    float* ci = c + i * ldc;  // C[i, :]
    for (int j = 0; j < kScalarNR; ++j) ci[j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * ci[j];
  }
}

// Portable packer (see PackFn in gemm.h). Reads the source in memory order: row by row when it
// is k-major, line by line otherwise.
void pack_scalar(const float* src, std::ptrdiff_t ld, bool k_major, int width, int kc, int W, float* dst) {
  const std::ptrdiff_t panel = std::ptrdiff_t(kc) * W;  // floats per packed panel
  const int padded = (width + W - 1) / W * W;           // lines incl. the last panel's zero lines
  if (k_major) {
    for (int k = 0; k < kc; ++k) {
      const float* s = src + k * ld;  // source row k: line w at s[w]
      for (int p0 = 0; p0 < padded; p0 += W) {
        float* d = dst + (p0 / W) * panel + k * W;  // panel p0/W, packed row k
        for (int w = 0; w < W; ++w) d[w] = p0 + w < width ? s[p0 + w] : 0.0f;
      }
    }
    return;
  }
  for (int line = 0; line < padded; ++line) {
    float* d = dst + (line / W) * panel + line % W;  // element k of this line at d[k*W]
    if (line >= width) {
      for (int k = 0; k < kc; ++k) d[k * W] = 0.0f;
      continue;
    }
    const float* s = src + line * ld;  // source line: step k at s[k]
    for (int k = 0; k < kc; ++k) d[k * W] = s[k];
  }
}

const KernelSet& scalar_kernel_set() {
  static const KernelSet set{"scalar 4x8", kScalarMR, kScalarNR, 128, 256, 2048, micro_scalar, pack_scalar};
  return set;
}

}  // namespace

const KernelSet& active_kernel_set() {
#if defined(__x86_64__) || defined(_M_X64)
  switch (active_simd()) {
    case SimdLevel::AVX512: return avx512_kernel_set();
    case SimdLevel::AVX2: return avx2_kernel_set();
    default: break;
  }
#endif
  return scalar_kernel_set();
}

}  // namespace gemm_detail

namespace {

using gemm_detail::KernelSet;

// Below this many multiply-adds per thread, another thread costs more (wake-up, a second packed
// A) than it saves.
constexpr double kMinFmaPerThread = double(1 << 19);
// Largest MR*NR of any kernel set (the edge-tile buffer).
constexpr int kMaxTile = 1024;

size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

// Grow-only 64-byte-aligned float buffer. One per thread and role: packing buffers are allocated
// once per thread and reused by every later sgemm.
class PackBuffer {
 public:
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { release(); }

  float* reserve(size_t floats) {
    if (floats > capacity_) {
      release();
      data_ = static_cast<float*>(::operator new(floats * sizeof(float), std::align_val_t(64)));
      capacity_ = floats;
    }
    return data_;
  }

 private:
  void release() {
    if (data_) ::operator delete(data_, std::align_val_t(64));
    data_ = nullptr;
    capacity_ = 0;
  }
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

thread_local PackBuffer t_pack_a;  // A block of the task this thread runs (mc x kc)
thread_local PackBuffer t_pack_b;  // B block of the sgemm this thread called (kc x nc), read by all workers

// The arguments of one sgemm call, and where its operands' blocks start.
struct Gemm {
  bool trans_a, trans_b;
  int M, N, K;
  float alpha;
  const float* A;
  std::ptrdiff_t lda;
  const float* B;
  std::ptrdiff_t ldb;
  float* C;
  std::ptrdiff_t ldc;
  const KernelSet& ks;

  // op(A)[i0:, p0:] for the packer: trans_a -> A stored [K,M], op(A)[i,k] at A[k*lda + i] (k-major);
  // else A stored [M,K], op(A)[i,k] at A[i*lda + k].
  const float* a_block(int i0, int p0) const { return trans_a ? A + p0 * lda + i0 : A + i0 * lda + p0; }
  // op(B)[p0:, j0:]: !trans_b -> B stored [K,N], op(B)[k,j] at B[k*ldb + j] (k-major);
  // else B stored [N,K], op(B)[k,j] at B[j*ldb + k].
  const float* b_block(int p0, int j0) const { return trans_b ? B + j0 * ldb + p0 : B + p0 * ldb + j0; }
};

// C = beta * C on [M, N] (beta == 0 writes zeros without reading C).
void scale_c(int M, int N, float beta, float* C, std::ptrdiff_t ldc) {
  if (beta == 1.0f) return;
  parallel_for(size_t(M), ceil_div(16384, size_t(N)), [&](size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
      float* ci = C + std::ptrdiff_t(i) * ldc;  // C[i, :]
      if (beta == 0.0f) std::fill(ci, ci + N, 0.0f);
      else for (int j = 0; j < N; ++j) ci[j] *= beta;
    }
  });
}

// One MR x NR tile at C[i0, j0] (top-left) with m x n of it inside C.
void run_tile(const Gemm& g, int kc, const float* ap, const float* bp, int i0, int j0, int m, int n, float beta) {
  const KernelSet& ks = g.ks;
  float* c = g.C + i0 * g.ldc + j0;  // C[i0, j0]
  if (m == ks.mr && n == ks.nr) {
    ks.micro(kc, ap, bp, c, g.ldc, g.alpha, beta);
    return;
  }
  alignas(64) float tile[kMaxTile];  // tile[i*nr + j] = sum_k A[i, k] B[k, j]
  ks.micro(kc, ap, bp, tile, ks.nr, 1.0f, 0.0f);
  for (int i = 0; i < m; ++i) {
    float* ci = c + i * g.ldc;            // C[i0+i, j0:]
    const float* ti = tile + i * ks.nr;   // tile[i, :]
    for (int j = 0; j < n; ++j) ci[j] = beta == 0.0f ? g.alpha * ti[j] : g.alpha * ti[j] + beta * ci[j];
  }
}

// Splits `total` items into `parts` contiguous near-equal ranges; returns range `index`.
void split(size_t total, size_t parts, size_t index, size_t& begin, size_t& end) {
  const size_t base = total / parts, rem = total % parts;
  begin = index * base + std::min(index, rem);
  end = begin + base + (index < rem ? 1 : 0);
}

// Picks the tm x tn task grid (tm*tn <= threads) for mp row panels x np column panels that
// minimises the largest task: its tiles plus its share of packing A (a packed A element costs
// about as much as 16 multiply-adds). Ties go to more row splits (less duplicated A packing).
void choose_grid(size_t mp, size_t np, int threads, int mr, int nr, size_t& tm, size_t& tn) {
  double best = -1;
  tm = tn = 1;
  for (size_t m_parts = std::min<size_t>(threads, mp); m_parts >= 1; --m_parts) {
    const size_t n_parts = std::min<size_t>(threads / m_parts, np);
    const double rows = double(ceil_div(mp, m_parts)) * mr;
    const double cost = rows * double(ceil_div(np, n_parts)) * nr + rows * 16;
    if (best < 0 || cost < best) {
      best = cost;
      tm = m_parts;
      tn = n_parts;
    }
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const KernelSet& ks = gemm_detail::active_kernel_set();
  const Gemm g{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, C, ldc, ks};
  const int mr = ks.mr, nr = ks.nr;

  const double fma = double(M) * N * K;
  const int threads = int(std::clamp(fma / kMinFmaPerThread, 1.0, double(num_threads())));

  // Even block sizes: K in nk blocks of <= ks.kc, N in nn blocks of <= ks.nc (whole NR panels).
  const int nk = int(ceil_div(K, ks.kc));
  const int kc_max = int(ceil_div(K, nk));
  const size_t n_panels = ceil_div(N, nr);
  const size_t nn = ceil_div(n_panels * nr, ks.nc);
  const size_t nc_panels_max = ceil_div(n_panels, nn);
  const size_t m_panels = ceil_div(M, mr);
  const size_t mc_panels_max = size_t(ks.mc / mr);

  float* bp = t_pack_b.reserve(nc_panels_max * nr * kc_max);

  for (size_t jb = 0; jb < nn; ++jb) {
    size_t cp0, cp1;  // column panels [cp0, cp1) of C in this block: columns [cp0*nr, min(cp1*nr, N))
    split(n_panels, nn, jb, cp0, cp1);
    const int j_begin = int(cp0) * nr;
    const size_t np = cp1 - cp0;
    size_t tm, tn;
    choose_grid(m_panels, np, threads, mr, nr, tm, tn);

    for (int kb = 0; kb < nk; ++kb) {
      const int p0 = kb * kc_max;  // k steps [p0, p0 + kc)
      const int kc = std::min(kc_max, K - p0);
      const float beta_k = kb == 0 ? beta : 1.0f;

      // Packed B: panel q (columns j_begin + q*nr ...) at bp + q*kc*nr. At most `threads`
      // chunks, each of at least 16K floats.
      const size_t b_grain = std::max(ceil_div(np, threads), ceil_div(16384, size_t(kc) * nr));
      parallel_for(np, b_grain, [&](size_t q0, size_t q1) {
        const int j0 = j_begin + int(q0) * nr;
        const int width = std::min(j_begin + int(q1) * nr, N) - j0;
        ks.pack(g.b_block(p0, j0), g.ldb, !trans_b, width, kc, nr, bp + q0 * kc * nr);
      });

      parallel_for(tm * tn, 1, [&](size_t t0, size_t t1) {
        for (size_t t = t0; t < t1; ++t) {
          size_t r0, r1, q0, q1;  // this task: row panels [r0, r1), column panels [q0, q1) of the block
          split(m_panels, tm, t / tn, r0, r1);
          split(np, tn, t % tn, q0, q1);
          const size_t blocks = ceil_div(r1 - r0, mc_panels_max);
          float* ap = t_pack_a.reserve(ceil_div(r1 - r0, blocks) * mr * kc);
          for (size_t b = 0; b < blocks; ++b) {
            size_t ib0, ib1;  // row panels [ib0, ib1) of this A block
            split(r1 - r0, blocks, b, ib0, ib1);
            ib0 += r0;
            ib1 += r0;
            const int i_begin = int(ib0) * mr;
            ks.pack(g.a_block(i_begin, p0), g.lda, trans_a, std::min(int(ib1) * mr, M) - i_begin, kc, mr, ap);
            for (size_t q = q0; q < q1; ++q) {
              const int j0 = j_begin + int(q) * nr;
              const float* bq = bp + q * kc * nr;  // packed B panel q
              for (size_t ip = ib0; ip < ib1; ++ip) {
                const int i0 = int(ip) * mr;
                const float* ai = ap + (ip - ib0) * mr * kc;  // packed A panel ip
                run_tile(g, kc, ai, bq, i0, j0, std::min(mr, M - i0), std::min(nr, N - j0), beta_k);
              }
            }
          }
        }
      });
    }
  }
}

}  // namespace ms::cpu
