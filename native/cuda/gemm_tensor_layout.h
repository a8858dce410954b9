/*
 * gemm_tensor_layout.h — every index computation of the tensor-core GEMM (gemm_tensor.cu) as
 * plain integer functions, compiled both into the kernel and into a host emulation of it
 * (test/native/gemm_tensor_emulation.cpp, run by test/unit/gemm-tensor-layout.test.ts), which
 * replays the tile copies, ldmatrix, mma.sync and the epilogue on the CPU with the fragment
 * layouts of the PTX ISA and checks the product against a direct one.
 *
 * Tiles: a 128 x 128 output tile per 256-thread block, 8 warps of 64 x 32 (warp w at rows
 * (w / 4) * 64, columns (w % 4) * 32), K in steps of 32. Shared memory holds each operand tile in
 * its global storage order, rows padded by 8 elements:
 *   k-contiguous  [128 rows of m or n][32 + 8]   (A as stored, or B transposed)
 *   mn-contiguous [32 rows of k][128 + 8]        (A transposed, or B as stored)
 */
#ifndef MONOSEMANTIC_CUDA_GEMM_TENSOR_LAYOUT_H
#define MONOSEMANTIC_CUDA_GEMM_TENSOR_LAYOUT_H

#if defined(__CUDACC__)
#define MS_LAYOUT_FN __host__ __device__ __forceinline__ constexpr
#else
#define MS_LAYOUT_FN inline constexpr
#endif

namespace ms::cuda::layout {

constexpr int kTileM = 128;
constexpr int kTileN = 128;
constexpr int kTileK = 32;
constexpr int kBlockThreads = 256;
constexpr int kWarpM = 64;  // rows of a warp's sub-tile: 4 mma tiles of 16
constexpr int kWarpN = 32;  // columns of a warp's sub-tile: 4 mma tiles of 8
constexpr int kPad = 8;
constexpr int kKContigRows = 128;
constexpr int kKContigStride = kTileK + kPad;  // 40 elements = 80 bytes
constexpr int kMNContigRows = kTileK;
constexpr int kMNContigCols = 128;
constexpr int kMNContigStride = kMNContigCols + kPad;  // 136 elements = 272 bytes
constexpr int kKContigElems = kKContigRows * kKContigStride;
constexpr int kMNContigElems = kMNContigRows * kMNContigStride;

MS_LAYOUT_FN int tile_elems(bool k_contiguous) { return k_contiguous ? kKContigElems : kMNContigElems; }

// Tile copies: chunk q (8 contiguous elements) of a rows x cols tile starts at row
// chunk_row(q, cols), column chunk_col(q, cols); it lands at dst[row * stride + col].
MS_LAYOUT_FN int chunk_row(int q, int cols) { return q / (cols / 8); }
MS_LAYOUT_FN int chunk_col(int q, int cols) { return (q % (cols / 8)) * 8; }

MS_LAYOUT_FN int warp_row(int warp) { return (warp / 4) * kWarpM; }  // warp sub-tile origin
MS_LAYOUT_FN int warp_col(int warp) { return (warp % 4) * kWarpN; }

// ldmatrix.x4 row addresses (element offsets within a stage). Lanes 8q .. 8q + 7 address the rows
// of matrix q, which becomes register q of every lane.
//
// A, m16 tile i of the warp at k offset kk: registers {a0a1, a2a3, a4a5, a6a7} of mma.m16n8k16 =
// matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
//   k-contiguous As[m][k], ldmatrix:            row m = base + lane % 8 + ((lane / 8) % 2) * 8,
//                                               k = kk + (lane / 16) * 8
//   mn-contiguous As[k][m], ldmatrix.trans:     row k = kk + lane % 8 + (lane / 16) * 8,
//                                               m = base + ((lane / 8) % 2) * 8
// a_kcontig_offset: the k-contiguous case with rows `stride` elements apart (the short-K kernel's
// whole-K tiles use it too).
MS_LAYOUT_FN int a_kcontig_offset(int lane, int warp, int i, int kk, int stride) {
  return (warp_row(warp) + i * 16 + lane % 8 + ((lane / 8) % 2) * 8) * stride + kk + (lane / 16) * 8;
}
MS_LAYOUT_FN int a_fragment_offset(bool a_transposed, int lane, int warp, int i, int kk) {
  const int base = warp_row(warp) + i * 16;
  return a_transposed ? (kk + lane % 8 + (lane / 16) * 8) * kMNContigStride + base + ((lane / 8) % 2) * 8
                      : a_kcontig_offset(lane, warp, i, kk, kKContigStride);
}

// B, the pair of n8 tiles 2p and 2p + 1 of the warp at k offset kk: registers {b0b1, b2b3} of tile
// 2p, then of tile 2p + 1 = matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
//   k-contiguous Bs[n][k], ldmatrix:            row n = base + lane % 8 + (lane / 16) * 8,
//                                               k = kk + ((lane / 8) % 2) * 8
//   mn-contiguous Bs[k][n], ldmatrix.trans:     row k = kk + lane % 8 + ((lane / 8) % 2) * 8,
//                                               n = base + (lane / 16) * 8
// b_kcontig_offset: the k-contiguous case with rows `stride` elements apart.
MS_LAYOUT_FN int b_kcontig_offset(int lane, int warp, int p, int kk, int stride) {
  return (warp_col(warp) + p * 16 + lane % 8 + (lane / 16) * 8) * stride + kk + ((lane / 8) % 2) * 8;
}
MS_LAYOUT_FN int b_fragment_offset(bool b_transposed, int lane, int warp, int p, int kk) {
  const int base = warp_col(warp) + p * 16;
  return b_transposed ? b_kcontig_offset(lane, warp, p, kk, kKContigStride)
                      : (kk + lane % 8 + ((lane / 8) % 2) * 8) * kMNContigStride + base + (lane / 16) * 8;
}

// Short K (gemm_tensor.cu's short-K kernel, NT store products with K <= kShortKMax, K % 8 == 0):
// a block holds 128 rows of A and, twice, 128 rows of B whole, k-contiguous, rows kShortKStride
// elements apart (the pad keeps ldmatrix's 8 rows in distinct banks), with K rounded up to 16
// (short_k_padded) and zeros past K. Row r's chunk q (8 elements) is at short_k_chunk_row(q, Kp),
// short_k_chunk_col(q, Kp).
constexpr int kShortKMax = 128;
constexpr int kShortKStride = kShortKMax + 8;  // 136 elements = 272 bytes
constexpr int kShortKTileElems = kTileM * kShortKStride;
static_assert(kTileM == kTileN, "A's and B's whole-K tiles have the same shape");
MS_LAYOUT_FN int short_k_padded(int K) { return (K + 15) / 16 * 16; }
MS_LAYOUT_FN int short_k_chunk_row(int q, int Kp) { return q / (Kp / 8); }
MS_LAYOUT_FN int short_k_chunk_col(int q, int Kp) { return (q % (Kp / 8)) * 8; }

// Which ldmatrix reads each operand: .trans for an mn-contiguous tile (A transposed, B as stored).
MS_LAYOUT_FN bool a_fragment_trans(bool a_transposed) { return a_transposed; }
MS_LAYOUT_FN bool b_fragment_trans(bool b_transposed) { return !b_transposed; }

// n8 tile j of a warp takes its B registers {b0b1, b2b3} from register b_fragment_reg(j, 0) and
// b_fragment_reg(j, 1) of the ldmatrix of pair j / 2.
MS_LAYOUT_FN int b_fragment_reg(int j, int h) { return (j % 2) * 2 + h; }

// Accumulator r (0..3) of mma tile (i, j) of a lane: row g + 8 (r / 2), column 2 t + r % 2 of the
// 16 x 8 tile (g = lane / 4, t = lane % 4), placed in the block tile.
MS_LAYOUT_FN int acc_row(int lane, int warp, int i, int r) { return warp_row(warp) + i * 16 + lane / 4 + (r / 2) * 8; }
MS_LAYOUT_FN int acc_col(int lane, int warp, int j, int r) { return warp_col(warp) + j * 8 + (lane % 4) * 2 + r % 2; }

// The epilogue takes a lane's accumulators in pairs (i, j, 2h), (i, j, 2h + 1): one row, columns
// col and col + 1. An epilogue that reads a mask first keeps the pair's two bits at bits
// mask_bit(i, h, j) and mask_bit(i, h, j) + 1 of one 64-bit word (4 x 2 x 4 pairs).
MS_LAYOUT_FN int mask_bit(int i, int h, int j) { return 2 * ((i * 2 + h) * 4 + j); }

// The staged store (kStaged epilogues): the block tile passes through a shared-memory buffer of
// kStageRows rows of fp32, rows kStageStride floats apart, one half of the tile at a time. The
// warps whose sub-tiles hold half `h`'s rows (warp_row(warp) == h * kStageRows) write each
// accumulator pair at stage_offset(row - h * kStageRows, col) (8-byte stores; the pad puts the 4
// rows of a half-warp's pairs 8 banks apart: conflict-free). Then every thread stores columns
// staged_col(lane) .. + 3 of rows staged_first_row(warp), + kStagedRowStep, ... of the half, read
// from the buffer with one 16-byte load each.
constexpr int kStageRows = kWarpM;
constexpr int kStageStride = kTileN + 8;
constexpr int kStagedRowStep = kBlockThreads / 32;
static_assert(kTileM == 2 * kStageRows && kTileN == 4 * kWarpN, "two row halves, each its four warps' sub-tiles side by side");
static_assert(kTileN == 4 * 32, "a warp's 32 lanes store a row's 128 columns, 4 each");
MS_LAYOUT_FN int stage_offset(int row, int col) { return row * kStageStride + col; }  // stage[row][col]
MS_LAYOUT_FN int staged_col(int lane) { return 4 * lane; }
MS_LAYOUT_FN int staged_first_row(int warp) { return warp; }

// Split K (a store product with too few output tiles to fill the GPU): split z of `splits` takes
// k in [split_k_begin, split_k_begin + split_k_count), whole k tiles of split_k_len each but the
// last; an empty split (count 0) writes zeros.
MS_LAYOUT_FN int split_k_len(int K, int splits) {
  const int per = (K + splits - 1) / splits;
  return (per + kTileK - 1) / kTileK * kTileK;
}
MS_LAYOUT_FN int split_k_begin(int z, int K, int splits) {
  const long long b = (long long)z * split_k_len(K, splits);
  return b < K ? int(b) : K;
}
MS_LAYOUT_FN int split_k_count(int z, int K, int splits) {
  const long long e = (long long)split_k_begin(z, K, splits) + split_k_len(K, splits);
  return (e < K ? int(e) : K) - split_k_begin(z, K, splits);
}

}  // namespace ms::cuda::layout

#undef MS_LAYOUT_FN

#endif  // MONOSEMANTIC_CUDA_GEMM_TENSOR_LAYOUT_H
