/*
 * gemm_wgmma_layout.h — every index computation of the Hopper GEMM (gemm_wgmma.cu) as plain
 * integer functions, compiled both into the kernel and into a host emulation of it
 * (test/native/gemm_wgmma_emulation.cpp, run by test/unit/gemm-tensor-layout.test.ts), which
 * replays the TMA copies, the operand descriptors, wgmma and the epilogue on the CPU with the
 * layouts of the PTX ISA and the CUDA driver API, and checks the products against direct ones.
 *
 * C[M, N] = op(A) op(B) in two storage orders, both operands alike:
 *   K-major ("NT"):  A stored [M, K], B stored [N, K]; C = A B^T.
 *   MN-major ("TN"): A stored [K, M], B stored [K, N]; C = A^T B (wgmma's transposed operands).
 * A block of 3 warpgroups computes a 128 x 256 tile of C: warpgroup 0 issues the TMA copies, and
 * consumer warpgroup c (0, 1) owns rows 64c .. 64c + 63 with wgmma.m64n256k16. K is walked 64 at a
 * time through kStages shared-memory stages; every TMA box is 64 elements (128 bytes, the 128-byte
 * swizzle's width) wide:
 *   K-major:  A's stage is one box of 128 rows (m) x 64 k, B's one box of 256 rows (n) x 64 k.
 *   MN-major: A's stage is two boxes of 64 rows (k) x 64 m (one per consumer), B's four boxes of
 *             64 rows (k) x 64 n, each box 8 KB, one after another.
 */
#ifndef MONOSEMANTIC_CUDA_GEMM_WGMMA_LAYOUT_H
#define MONOSEMANTIC_CUDA_GEMM_WGMMA_LAYOUT_H

#include <cstdint>

#if defined(__CUDACC__)
#define MS_WGMMA_FN __host__ __device__ __forceinline__ constexpr
#else
#define MS_WGMMA_FN inline constexpr
#endif

namespace ms::cuda::wgmma_layout {

constexpr int kBM = 128;  // rows of a block tile (also the rows of one column-partial tile)
constexpr int kBN = 256;  // columns of a block tile: the n of one wgmma
constexpr int kBK = 64;   // k per stage: 64 bf16 = 128 bytes, one swizzled row
constexpr int kStages = 4;
constexpr int kConsumers = 2;                   // warpgroups of 64 output rows each
constexpr int kConsumerRows = kBM / kConsumers;  // 64: the m of one wgmma
constexpr int kThreads = 128 * (1 + kConsumers);
constexpr int kConsumerWarps = 4 * kConsumers;
constexpr int kAccumulators = kBN / 2;  // fp32 accumulators per consumer thread (64 x 256 / 128)
constexpr uint32_t kABytes = uint32_t(kBM) * kBK * 2;  // one stage of A: 16 KB
constexpr uint32_t kBBytes = uint32_t(kBN) * kBK * 2;  // one stage of B: 32 KB
constexpr uint32_t kStageBytes = kABytes + kBBytes;    // what the stage's TMA copies deliver
constexpr uint32_t kSwizzleRow = 128;                  // bytes per swizzled row
constexpr uint32_t kSwizzleAtom = 8 * kSwizzleRow;     // 8 rows: the swizzle repeats every 1024 bytes

// The wgmma matrix descriptor (PTX ISA, "Matrix Descriptor Format") of a K-major operand with the
// 128-byte swizzle whose first row starts at shared-memory byte address addr (1024-byte aligned but
// for the k offset inside the swizzled row): bits 0-13 addr >> 4; bits 16-29 the leading byte
// offset >> 4 (unused for swizzled K-major layouts: 1); bits 32-45 the stride byte offset >> 4
// (from one 8-row group to the next: 1024 bytes); bits 62-63 the swizzle mode (1: 128 bytes).
MS_WGMMA_FN uint64_t smem_descriptor(uint32_t addr) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(kSwizzleAtom >> 4) << 32) |
         (uint64_t(1) << 62);
}

// Byte offsets inside a stage's A tile [kBM rows][128 bytes] and B tile [kBN rows][128 bytes] of the
// operand of consumer c's k step kk (0 .. kBK / 16 - 1): its first row, plus 32 bytes (16 bf16) per
// k step; the hardware applies the swizzle to the addresses it forms from there.
MS_WGMMA_FN uint32_t a_operand_offset(int consumer, int kk) {
  return uint32_t(consumer) * kConsumerRows * kSwizzleRow + uint32_t(kk) * 32;
}
MS_WGMMA_FN uint32_t b_operand_offset(int kk) { return uint32_t(kk) * 32; }

// TMA box coordinates (innermost first) of k tile kt of the A tile at row m0 or the B tile at n0.
MS_WGMMA_FN int tma_k(int kt) { return kt * kBK; }

// ---- MN-major operands ------------------------------------------------------------------------------
// A box of 64 k rows x 64 mn (128 bytes) is 8 KB: 8 swizzle atoms of 8 k rows each.
constexpr int kMNBox = 64;                                       // mn (and k) extent of one box
constexpr uint32_t kMNBoxBytes = uint32_t(kMNBox) * kBK * 2;     // 8 KB
static_assert(kBK == kMNBox, "one box spans the stage's k");
// A stage's full barrier expects kStageBytes: what the boxes the producer issues deliver, in
// either storage order (K-major: one box per operand; MN-major: kConsumers boxes of A, kBN / kMNBox of B).
static_assert(kABytes == uint32_t(kConsumers) * kMNBoxBytes && kBM == kConsumers * kMNBox, "A's MN-major boxes fill its stage");
static_assert(kBBytes == uint32_t(kBN / kMNBox) * kMNBoxBytes && kBN % kMNBox == 0, "B's MN-major boxes fill its stage");

// The descriptor of an MN-major operand (PTX ISA canonical layout, 128-byte swizzle:
// ((T,8,m),(8,k)) : ((1,T,LBO),(8T,SBO)) in 16-byte units): 64 consecutive mn elements per 128-byte
// row, one row per k; the stride byte offset steps 8 k rows (one 1024-byte atom), the leading
// byte offset steps 64 mn (the next box).
MS_WGMMA_FN uint64_t smem_descriptor_mn(uint32_t addr) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(kMNBoxBytes >> 4) << 16) | (uint64_t(kSwizzleAtom >> 4) << 32) |
         (uint64_t(1) << 62);
}

// Byte offsets in a stage: A's box of consumer c, B's box q (0 .. kBN / 64 - 1); the operand of k
// step kk starts 16 k rows (2048 bytes, two atoms) further per step.
MS_WGMMA_FN uint32_t a_box_offset_mn(int consumer) { return uint32_t(consumer) * kMNBoxBytes; }
MS_WGMMA_FN uint32_t b_box_offset_mn(int q) { return uint32_t(q) * kMNBoxBytes; }
MS_WGMMA_FN uint32_t a_operand_offset_mn(int consumer, int kk) { return a_box_offset_mn(consumer) + uint32_t(kk) * 16 * kSwizzleRow; }
MS_WGMMA_FN uint32_t b_operand_offset_mn(int kk) { return uint32_t(kk) * 16 * kSwizzleRow; }

// TMA box coordinates (innermost first: mn, then k) of consumer c's A box and B box q at k tile kt.
MS_WGMMA_FN int tma_a_mn(int m0, int consumer) { return m0 + consumer * kMNBox; }
MS_WGMMA_FN int tma_b_mn(int n0, int q) { return n0 + q * kMNBox; }

// Accumulator d[4j + r] (j = 0 .. 31, r = 0 .. 3) of lane `lane` in warp w (0 .. 3) of a consumer
// warpgroup: row 16w + lane / 4 + 8 (r / 2), column 8j + 2 (lane % 4) + r % 2 of its 64 x 256 block.
MS_WGMMA_FN int acc_row(int w, int lane, int r) { return 16 * w + lane / 4 + 8 * (r / 2); }
MS_WGMMA_FN int acc_col(int lane, int j, int r) { return 8 * j + 2 * (lane % 4) + r % 2; }

// The epilogue takes accumulators in pairs d[4j + 2h], d[4j + 2h + 1] (one row, columns col and
// col + 1). An epilogue that reads a mask keeps the pair's two bits at bit mask_shift(j, h) of word
// mask_word(j, h) of two 64-bit words (64 pairs).
MS_WGMMA_FN int mask_word(int j, int h) { return (2 * j + h) / 32; }
MS_WGMMA_FN int mask_shift(int j, int h) { return 2 * ((2 * j + h) % 32); }

// The column reduction: after folding lanes that share columns, lane t (< 4) of consumer warp cw
// (0 .. 7, the warpgroup's warps in order) holds columns 8j + 2t and 8j + 2t + 1 for every j, and
// writes them to the shared row cw of [kConsumerWarps][kBN]; consumer thread i then sums column i
// of the eight rows in order.
MS_WGMMA_FN int consumer_warp(int consumer, int w) { return 4 * consumer + w; }

// Split K, in whole k tiles: split z of `splits` takes k tiles [split_begin, split_begin(z + 1)).
MS_WGMMA_FN int split_begin(int z, int k_tiles, int splits) { return int((long long)z * k_tiles / splits); }

// Splits for a product of `tiles` output tiles over `k_tiles` k tiles on `sms` multiprocessors (one
// block each): 1 when the tiles make at least two waves or K is short; otherwise the count up to 8
// (each split keeping at least 4 k tiles) that fills the last wave best, the smallest among equals.
MS_WGMMA_FN int split_count(long long tiles, int k_tiles, int sms) {
  if (sms <= 0 || tiles >= 2LL * sms) return 1;
  int best = 1;
  long long best_num = 0, best_den = 1;  // fill of the waves as a fraction num / den
  for (int s = 1; s <= 8 && (s == 1 || k_tiles / s >= 4); ++s) {
    const long long blocks = tiles * s;
    const long long waves = (blocks + sms - 1) / sms;
    const long long num = blocks, den = waves * sms;
    if (num * best_den > best_num * den) {
      best = s;
      best_num = num;
      best_den = den;
    }
  }
  return best;
}

// ---- blocks and work items -----------------------------------------------------------------------
// The work of a product is its items (tile_n, tile_m, z): output tile (tile_n, tile_m) and split z,
// numbered tile_n fastest, then tile_m, then z. Block b of G takes items b, b + G, b + 2G, ...; its
// stage uses are numbered on across its items (use g is stage g % kStages, phase g / kStages).
struct WorkItem {
  int tile_n, tile_m, z;
};
MS_WGMMA_FN WorkItem work_item(long long item, int tiles_n, int tiles_m) {
  return {int(item % tiles_n), int((item / tiles_n) % tiles_m), int(item / ((long long)tiles_n * tiles_m))};
}

// Blocks for the `items` of a product of k_tiles k tiles split `splits` ways: one per item; or,
// where K is not split, is short (at most kPersistentMaxKTiles k tiles) and the items outnumber
// the multiprocessors, one per multiprocessor, each taking items in turn, so that a block starts
// once and the producer loads the next item's stages while the consumers store this one's tile.
constexpr int kPersistentMaxKTiles = 16;
MS_WGMMA_FN long long block_count(long long items, int k_tiles, int splits, int sms) {
  return splits == 1 && k_tiles <= kPersistentMaxKTiles && sms > 0 && items > sms ? sms : items;
}

}  // namespace ms::cuda::wgmma_layout

#undef MS_WGMMA_FN

#endif  // MONOSEMANTIC_CUDA_GEMM_WGMMA_LAYOUT_H
