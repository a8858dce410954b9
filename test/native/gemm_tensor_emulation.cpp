// Host emulation of the tensor-core GEMM (native/cuda/gemm_tensor.cu) built on the same index
// functions (native/cuda/gemm_tensor_layout.h): tile copies into padded shared-memory stages,
// ldmatrix / ldmatrix.trans, mma.sync.m16n8k16 and the epilogue, with the fragment layouts of the
// PTX ISA written out independently below. Each block tile of C = op(A) op(B) is replayed warp by
// warp and lane by lane and compared with a direct product; operands are small integers, so every
// sum is exact and the comparison is equality. Shared memory starts as NaN, so a fragment read
// from an element no copy wrote (padding, a wrong offset) poisons the result; ldmatrix row
// addresses must be 16-byte aligned and inside the stage; every output must be written exactly once.
// The epilogue's column reduction is checked to fold only lanes and warps that hold the same columns.
// Split K (gridDim.z > 1) replays each split's K range and operand offsets and sums the partials.
// The short-K kernel (whole-K tiles of A and B, N tiles walked in runs) is replayed the same way,
// and the staged store's buffer layout is checked on its own.
//
//   c++ -std=c++17 -O2 -Inative test/native/gemm_tensor_emulation.cpp -o emu && ./emu
// prints one line per case and "ok", or the first mismatch and exits 1.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/gemm_tensor_layout.h"

using namespace ms::cuda::layout;

namespace {

struct Case {
  int M, N, K;
  bool ta, tb;     // A stored [K, M] / B stored [N, K]
  int splits = 1;  // split K (store products with few output tiles): partial products summed in order
};

[[noreturn]] void fail(const char* what, const Case& c) {
  std::printf("FAIL %s (M %d, N %d, K %d, %c%c, %d splits)\n", what, c.M, c.N, c.K, c.ta ? 'T' : 'N', c.tb ? 'T' : 'N',
              c.splits);
  std::exit(1);
}

// copy_tile of gemm_tensor.cu: the rows x cols tile at (r0, c0) of src [R, C] (leading dimension ld,
// starting at src[base]) into dst [rows][stride], zero outside the matrix.
void copy_tile(std::vector<double>& dst, int rows, int cols, int stride, const std::vector<double>& src, size_t base,
               int ld, int R, int C, int r0, int c0) {
  for (int q = 0; q < rows * cols / 8; ++q) {
    const int r = chunk_row(q, cols), c = chunk_col(q, cols);
    for (int e = 0; e < 8; ++e) {
      const int gr = r0 + r, gc = c0 + c + e;
      dst[size_t(r) * stride + c + e] = (gr < R && gc < C) ? src[base + size_t(gr) * ld + gc] : 0.0;
    }
  }
}

// ldmatrix.x4 (PTX ISA): lanes 8q..8q+7 give the row addresses of matrix q; register q of lane L
// holds elements (L / 4, 2 (L % 4)) and (L / 4, 2 (L % 4) + 1) of matrix q, or with .trans
// elements (2 (L % 4), L / 4) and (2 (L % 4) + 1, L / 4).
void ldmatrix(const std::vector<double>& smem, const int (&addr)[32], bool trans, double (&out)[32][4][2],
              const Case& c) {
  for (int lane = 0; lane < 32; ++lane)
    if (addr[lane] % 8 != 0 || addr[lane] < 0 || size_t(addr[lane]) + 8 > smem.size())
      fail("ldmatrix row address misaligned or outside the stage", c);
  for (int q = 0; q < 4; ++q)
    for (int lane = 0; lane < 32; ++lane)
      for (int h = 0; h < 2; ++h) {
        const int row = trans ? 2 * (lane % 4) + h : lane / 4;
        const int col = trans ? lane / 4 : 2 * (lane % 4) + h;
        out[lane][q][h] = smem[size_t(addr[8 * q + row]) + col];
      }
}

// mma.sync.m16n8k16 .row.col (PTX ISA) for n8 tile j, g = lane / 4, t = lane % 4:
//   A (16 x 16): a0a1 = (g, 2t..), a2a3 = (g + 8, 2t..), a4a5 = (g, 2t + 8..), a6a7 = (g + 8, 2t + 8..)
//   B (16 x 8):  b0b1 = (2t.., g), b2b3 = (2t + 8.., g)
//   C (16 x 8):  c0 c1 = (g, 2t), (g, 2t + 1); c2 c3 = (g + 8, 2t), (g + 8, 2t + 1)
void mma(double (&acc)[32][4], const double (&a)[32][4][2], const double (&b)[32][4][2], int j) {
  double Am[16][16], Bm[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int h = 0; h < 2; ++h) {
      Am[g][2 * t + h] = a[lane][0][h];
      Am[g + 8][2 * t + h] = a[lane][1][h];
      Am[g][2 * t + 8 + h] = a[lane][2][h];
      Am[g + 8][2 * t + 8 + h] = a[lane][3][h];
      Bm[2 * t + h][g] = b[lane][b_fragment_reg(j, 0)][h];
      Bm[2 * t + 8 + h][g] = b[lane][b_fragment_reg(j, 1)][h];
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int r = 0; r < 4; ++r) {
      const int row = g + (r / 2) * 8, col = 2 * t + r % 2;
      double s = 0.0;
      for (int k = 0; k < 16; ++k) s += Am[row][k] * Bm[k][col];
      acc[lane][r] += s;
    }
  }
}

void run_case(const Case& c, unsigned seed) {
  const int lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
  std::vector<double> A(size_t(c.M) * c.K), B(size_t(c.K) * c.N);
  for (double& v : A) v = double(int((seed = seed * 1103515245u + 12345u) >> 16) % 7 - 3);
  for (double& v : B) v = double(int((seed = seed * 1103515245u + 12345u) >> 16) % 7 - 3);
  auto a_at = [&](int m, int k) { return c.ta ? A[size_t(k) * lda + m] : A[size_t(m) * lda + k]; };
  auto b_at = [&](int k, int n) { return c.tb ? B[size_t(n) * ldb + k] : B[size_t(k) * ldb + n]; };

  // Split z: the kernel's K range and operand offsets for gridDim.z = splits (gemm_tensor.cu).
  std::vector<double> C(size_t(c.M) * c.N, 0.0);
  const bool a_kcontig = !c.ta, b_kcontig = c.tb;
  std::vector<double> As(tile_elems(a_kcontig)), Bs(tile_elems(b_kcontig));
  static double acc[8][32][4][4][4];  // [warp][lane][i][j][r]
  for (int z = 0; z < c.splits; ++z) {
    const int k_begin = c.splits > 1 ? split_k_begin(z, c.K, c.splits) : 0;
    const int K = c.splits > 1 ? split_k_count(z, c.K, c.splits) : c.K;
    const size_t a_base = c.ta ? size_t(k_begin) * lda : size_t(k_begin);
    const size_t b_base = c.tb ? size_t(k_begin) : size_t(k_begin) * ldb;
    std::vector<double> P(size_t(c.M) * c.N, NAN);  // this split's partial product
    std::vector<int> writes(size_t(c.M) * c.N, 0);
    for (int m0 = 0; m0 < c.M; m0 += kTileM)
      for (int n0 = 0; n0 < c.N; n0 += kTileN) {
        for (auto& w : acc)
          for (auto& l : w)
            for (auto& i : l)
              for (auto& j : i)
                for (double& r : j) r = 0.0;
        for (int k0 = 0; k0 < K; k0 += kTileK) {
          std::fill(As.begin(), As.end(), NAN);
          std::fill(Bs.begin(), Bs.end(), NAN);
          if (c.ta) copy_tile(As, kMNContigRows, kMNContigCols, kMNContigStride, A, a_base, lda, K, c.M, k0, m0);
          else copy_tile(As, kKContigRows, kTileK, kKContigStride, A, a_base, lda, c.M, K, m0, k0);
          if (c.tb) copy_tile(Bs, kKContigRows, kTileK, kKContigStride, B, b_base, ldb, c.N, K, n0, k0);
          else copy_tile(Bs, kMNContigRows, kMNContigCols, kMNContigStride, B, b_base, ldb, K, c.N, k0, n0);
          for (int kk = 0; kk < kTileK; kk += 16)
            for (int warp = 0; warp < kBlockThreads / 32; ++warp) {
              double a[4][32][4][2], b[2][32][4][2];
              for (int i = 0; i < 4; ++i) {
                int addr[32];
                for (int lane = 0; lane < 32; ++lane) addr[lane] = a_fragment_offset(c.ta, lane, warp, i, kk);
                ldmatrix(As, addr, a_fragment_trans(c.ta), a[i], c);
              }
              for (int p = 0; p < 2; ++p) {
                int addr[32];
                for (int lane = 0; lane < 32; ++lane) addr[lane] = b_fragment_offset(c.tb, lane, warp, p, kk);
                ldmatrix(Bs, addr, b_fragment_trans(c.tb), b[p], c);
              }
              for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) {
                  double tile[32][4] = {};
                  mma(tile, a[i], b[j / 2], j);
                  for (int lane = 0; lane < 32; ++lane)
                    for (int r = 0; r < 4; ++r) acc[warp][lane][i][j][r] += tile[lane][r];
                }
            }
        }
        for (int warp = 0; warp < kBlockThreads / 32; ++warp)
          for (int lane = 0; lane < 32; ++lane)
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j)
                for (int r = 0; r < 4; ++r) {
                  const int row = m0 + acc_row(lane, warp, i, r), col = n0 + acc_col(lane, warp, j, r);
                  if (row >= c.M || col >= c.N) continue;
                  P[size_t(row) * c.N + col] = acc[warp][lane][i][j][r];
                  ++writes[size_t(row) * c.N + col];
                }
      }
    for (size_t e = 0; e < C.size(); ++e) {
      if (writes[e] != 1) fail("an output was not written exactly once", c);
      C[e] += P[e];  // split_sum_kernel: the splits in order
    }
  }
  for (int m = 0; m < c.M; ++m)
    for (int n = 0; n < c.N; ++n) {
      double ref = 0.0;
      for (int k = 0; k < c.K; ++k) ref += a_at(m, k) * b_at(k, n);
      if (!(C[size_t(m) * c.N + n] == ref)) {
        std::printf("C[%d, %d] = %g, expected %g\n", m, n, C[size_t(m) * c.N + n], ref);
        fail("mismatch", c);
      }
    }
  std::printf("ok   M %4d N %4d K %4d  %c%c%s\n", c.M, c.N, c.K, c.ta ? 'T' : 'N', c.tb ? 'T' : 'N',
              c.splits > 1 ? (" split " + std::to_string(c.splits)).c_str() : "");
}

// The short-K kernel (gemm_short_k_kernel in gemm_tensor.cu): C = A B^T with A [M, K], B [N, K]
// (leading dimensions lda, ldb >= K), K <= kShortKMax and a multiple of 8. Block (x, y) holds A's
// rows 128 y .. whole (K padded to 16 with zeros) and walks N tiles x * per .. in two alternating
// buffers; each replayed with the same ldmatrix and mma emulation, outputs compared with a direct
// product and counted (each written once).
void run_short_k_case(int M, int N, int K, int lda, int ldb, int per, unsigned seed) {
  const Case c{M, N, K, false, true};
  std::vector<double> A(size_t(M) * lda, NAN), B(size_t(N) * ldb, NAN);  // NaN past K: never read
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) A[size_t(m) * lda + k] = double(int((seed = seed * 1103515245u + 12345u) >> 16) % 7 - 3);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k) B[size_t(n) * ldb + k] = double(int((seed = seed * 1103515245u + 12345u) >> 16) % 7 - 3);
  const int Kp = short_k_padded(K);
  // copy_rows_short_k: rows r0 .. r0 + 127 of src, chunks of 8 up to Kp, zeros past K and past R.
  auto copy_rows = [&](std::vector<double>& dst, const std::vector<double>& src, int ld, int R, int r0) {
    for (int q = 0; q < kTileM * (Kp / 8); ++q) {
      const int r = short_k_chunk_row(q, Kp), col = short_k_chunk_col(q, Kp);
      for (int e = 0; e < 8; ++e)
        dst[size_t(r) * kShortKStride + col + e] = (r0 + r < R && col < K) ? src[size_t(r0 + r) * ld + col + e] : 0.0;
    }
  };
  const int tiles_n = (N + kTileN - 1) / kTileN;
  std::vector<double> C(size_t(M) * N, NAN);
  std::vector<int> writes(size_t(M) * N, 0);
  std::vector<double> As(kShortKTileElems), Bs[2] = {std::vector<double>(kShortKTileElems), std::vector<double>(kShortKTileElems)};
  static double acc[8][32][4][4][4];  // [warp][lane][i][j][r]
  for (int m0 = 0; m0 < M; m0 += kTileM)
    for (int t0 = 0; t0 < tiles_n; t0 += per) {
      std::fill(As.begin(), As.end(), NAN);
      copy_rows(As, A, lda, M, m0);
      for (int t = t0; t < std::min(t0 + per, tiles_n); ++t) {
        std::vector<double>& bs = Bs[(t - t0) & 1];
        std::fill(bs.begin(), bs.end(), NAN);
        copy_rows(bs, B, ldb, N, t * kTileN);
        for (auto& w : acc)
          for (auto& l : w)
            for (auto& i : l)
              for (auto& j : i)
                for (double& r : j) r = 0.0;
        for (int kk = 0; kk < Kp; kk += 16)
          for (int warp = 0; warp < kBlockThreads / 32; ++warp) {
            double a[4][32][4][2], b[2][32][4][2];
            for (int i = 0; i < 4; ++i) {
              int addr[32];
              for (int lane = 0; lane < 32; ++lane) addr[lane] = a_kcontig_offset(lane, warp, i, kk, kShortKStride);
              ldmatrix(As, addr, false, a[i], c);
            }
            for (int p = 0; p < 2; ++p) {
              int addr[32];
              for (int lane = 0; lane < 32; ++lane) addr[lane] = b_kcontig_offset(lane, warp, p, kk, kShortKStride);
              ldmatrix(bs, addr, false, b[p], c);
            }
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j) {
                double tile[32][4] = {};
                mma(tile, a[i], b[j / 2], j);
                for (int lane = 0; lane < 32; ++lane)
                  for (int r = 0; r < 4; ++r) acc[warp][lane][i][j][r] += tile[lane][r];
              }
          }
        const int n0 = t * kTileN;
        for (int warp = 0; warp < kBlockThreads / 32; ++warp)
          for (int lane = 0; lane < 32; ++lane)
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j)
                for (int r = 0; r < 4; ++r) {
                  const int row = m0 + acc_row(lane, warp, i, r), col = n0 + acc_col(lane, warp, j, r);
                  if (row >= M || col >= N) continue;
                  C[size_t(row) * N + col] = acc[warp][lane][i][j][r];
                  ++writes[size_t(row) * N + col];
                }
      }
    }
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      if (writes[size_t(m) * N + n] != 1) fail("short K: an output was not written exactly once", c);
      double ref = 0.0;
      for (int k = 0; k < K; ++k) ref += A[size_t(m) * lda + k] * B[size_t(n) * ldb + k];
      if (!(C[size_t(m) * N + n] == ref)) {
        std::printf("C[%d, %d] = %g, expected %g\n", m, n, C[size_t(m) * N + n], ref);
        fail("short K: mismatch", c);
      }
    }
  std::printf("ok   short K  M %4d N %4d K %3d  lda %3d ldb %3d, %d tiles a block\n", M, N, K, lda, ldb, per);
}

}  // namespace

// The epilogue's column reduction (reduce_columns in gemm_tensor.cu) folds lanes 4g + t over g
// and warps w, w + 4 together: they must hold the same columns, and lanes 0..3 of warps 0..3
// must cover the tile's columns once.
void check_column_reduction_layout() {
  const Case none{0, 0, 0, false, false};
  std::vector<int> seen(kTileN, 0);
  for (int warp = 0; warp < kBlockThreads / 32; ++warp)
    for (int lane = 0; lane < 32; ++lane)
      for (int j = 0; j < 4; ++j)
        for (int c = 0; c < 2; ++c) {
          const int col = acc_col(lane, warp, j, c);
          if (col != acc_col(lane % 4, warp % 4, j, c)) fail("column reduction: lanes or warps disagree on a column", none);
          if (warp < 4 && lane < 4) ++seen[col];
        }
  for (int n : seen)
    if (n != 1) fail("column reduction: lanes 0..3 of warps 0..3 do not cover the tile's columns once", none);
  std::printf("ok   column reduction layout\n");
}

// The mask an epilogue reads before writing (FeatureGradOp): each of a lane's 32 accumulator
// pairs (i, j, 2h), (i, j, 2h + 1) is one row and two adjacent columns, and owns its own two bits.
void check_epilogue_mask_layout() {
  const Case none{0, 0, 0, false, false};
  for (int warp = 0; warp < kBlockThreads / 32; ++warp)
    for (int lane = 0; lane < 32; ++lane) {
      unsigned long long used = 0;
      for (int i = 0; i < 4; ++i)
        for (int h = 0; h < 2; ++h)
          for (int j = 0; j < 4; ++j) {
            if (acc_row(lane, warp, i, 2 * h) != acc_row(lane, warp, i, 2 * h + 1) ||
                acc_col(lane, warp, j, 2 * h) + 1 != acc_col(lane, warp, j, 2 * h + 1))
              fail("epilogue pair: accumulators 2h, 2h + 1 are not one row and adjacent columns", none);
            const int bit = mask_bit(i, h, j);
            if (bit < 0 || bit > 62 || bit % 2 != 0) fail("mask_bit outside the 64-bit word", none);
            const unsigned long long two = 3ull << bit;
            if (used & two) fail("mask_bit: two pairs share bits", none);
            used |= two;
          }
      if (used != ~0ull) fail("mask_bit: the 32 pairs do not fill the word", none);
    }
  std::printf("ok   epilogue mask layout\n");
}

// The staged store (gemm_tensor.cu, store_staged and the kernel's staged epilogue): for each half
// of the tile, the warps of that half write each accumulator pair into the buffer, inside it,
// 8-byte aligned and never twice, a half-warp's 16 pairs in 32 distinct banks; then every thread's
// 16-byte reads find there the tile elements it stores, and together the threads store each
// element of the half exactly once.
void check_staged_store_layout() {
  const Case none{0, 0, 0, false, false};
  const int cells = kStageRows * kStageStride;
  for (int half = 0; half < 2; ++half) {
    const int r0 = half * kStageRows;
    std::vector<int> holds(cells, -1);  // the tile element (row * kTileN + col) written at each cell
    for (int warp = 0; warp < kBlockThreads / 32; ++warp) {
      if (warp_row(warp) != r0) continue;
      for (int i = 0; i < 4; ++i)
        for (int h = 0; h < 2; ++h)
          for (int j = 0; j < 4; ++j) {
            int banks[32] = {};  // words of the current half-warp (lanes 0-15, then 16-31) in each bank
            for (int lane = 0; lane < 32; ++lane) {
              const int row = acc_row(lane, warp, i, 2 * h), col = acc_col(lane, warp, j, 2 * h);
              if (row < r0 || row >= r0 + kStageRows) fail("staged store: a warp writes a row outside its half", none);
              const int at = stage_offset(row - r0, col);
              if (at < 0 || at + 2 > cells || at % 2 != 0) fail("staged store: a pair outside the buffer or not 8-byte aligned", none);
              for (int e = 0; e < 2; ++e) {
                if (holds[at + e] != -1) fail("staged store: a cell written twice", none);
                holds[at + e] = row * kTileN + col + e;
                ++banks[(at + e) % 32];  // banks of this half-warp's words
              }
              if (lane % 16 == 15) {
                for (int b = 0; b < 32; ++b)
                  if (banks[b] != 1) fail("staged store: a half-warp's pairs share a bank", none);
                for (int& b : banks) b = 0;
              }
            }
          }
    }
    std::vector<int> stored(size_t(kStageRows) * kTileN, 0);
    for (int warp = 0; warp < kBlockThreads / 32; ++warp)
      for (int lane = 0; lane < 32; ++lane) {
        const int c = staged_col(lane);
        for (int r = staged_first_row(warp); r < kStageRows; r += kStagedRowStep) {
          const int at = stage_offset(r, c);
          if (at % 4 != 0 || at < 0 || at + 4 > cells) fail("staged store: a 16-byte read misaligned or outside the buffer", none);
          for (int e = 0; e < 4; ++e) {
            if (holds[at + e] != (r0 + r) * kTileN + c + e) fail("staged store: a read finds another element than it stores", none);
            ++stored[size_t(r) * kTileN + c + e];
          }
        }
      }
    for (int n : stored)
      if (n != 1) fail("staged store: an element of the half is not stored exactly once", none);
  }
  std::printf("ok   staged store layout\n");
}

int main() {
  check_column_reduction_layout();
  check_epilogue_mask_layout();
  check_staged_store_layout();
  const int dims[][3] = {{1, 1, 1}, {17, 9, 33}, {128, 128, 32}, {129, 130, 31}, {300, 257, 77}, {64, 515, 264}, {257, 96, 70}};
  unsigned seed = 1;
  for (const auto& d : dims)
    for (int t = 0; t < 4; ++t) run_case(Case{d[0], d[1], d[2], (t & 1) != 0, (t & 2) != 0}, seed++);
  // Split K, in the storage orders of the store products (NN, NT, TN): K ragged, a split left
  // empty (K 70 in 4 splits of 32 leaves the last one nothing), more splits than k tiles.
  const int split_dims[][4] = {{129, 70, 300, 2}, {64, 257, 1030, 3}, {17, 9, 70, 4}, {130, 128, 96, 5}};
  for (const auto& d : split_dims)
    for (int t = 0; t < 3; ++t) run_case(Case{d[0], d[1], d[2], t == 2, t == 1, d[3]}, seed++);
  // Short K: whole tiles and ragged ones, K a multiple of 16 and of 8 only (a zero half step), the
  // largest K, padded leading dimensions, runs of N tiles that end early.
  const int short_dims[][6] = {{256, 256, 128, 128, 128, 2}, {129, 300, 72, 72, 80, 2}, {300, 130, 8, 16, 8, 1},
                               {64, 520, 128, 136, 128, 3}, {1, 1, 40, 40, 40, 1}};
  for (const auto& d : short_dims) run_short_k_case(d[0], d[1], d[2], d[3], d[4], d[5], seed++);
  std::printf("ok\n");
  return 0;
}
