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
 * A block of 2 warpgroups and a warp computes a tile of C: consumer warpgroup c (0, 1) owns rows
 * 64c .. 64c + 63 with wgmma.m64n{BN}k16, and the last warp issues the TMA copies. Two tile shapes
 * (tile_columns, MONOSEMANTIC_CUDA_WGMMA_TILE):
 *   wide   128 x 256 (kBN), one block per multiprocessor, four stages: the most products per byte
 *          loaded, but while a block stores its tile or fills its pipeline the tensor cores wait;
 *   square 128 x 128 (kSquareBN, wgmma.m64n128k16), two blocks per multiprocessor of three stages
 *          each, so that one block's epilogue and pipeline fill overlap the other's products (as
 *          mma.sync's two blocks do), and a product with N <= 128 spends nothing on columns past N.
 * K is walked 64 at a time through the stages; every TMA box is 64 elements (128 bytes, the 128-byte
 * swizzle's width) wide:
 *   K-major:  A's stage is one box of 128 rows (m) x 64 k, B's one box of BN rows (n) x 64 k.
 *   MN-major: A's stage is two boxes of 64 rows (k) x 64 m (one per consumer), B's BN / 64 boxes of
 *             64 rows (k) x 64 n, each box 8 KB, one after another.
 * Shared memory: the stages' A tiles, then their B tiles (a_stage, b_stage), then the barriers and
 * the column reduction's rows.
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
constexpr int kBN = 256;        // columns of a wide tile: the n of one wgmma
constexpr int kSquareBN = 128;  // columns of a square tile
constexpr int kBK = 64;         // k per stage: 64 bf16 = 128 bytes, one swizzled row
constexpr int kConsumers = 2;                   // warpgroups of 64 output rows each
constexpr int kConsumerRows = kBM / kConsumers;  // 64: the m of one wgmma
constexpr int kConsumerThreads = 128 * kConsumers;  // threads 0 .. 255: the consumer warpgroups
constexpr int kThreads = kConsumerThreads + 32;      // then the producer's warp
constexpr int kConsumerWarps = 4 * kConsumers;
constexpr uint32_t kABytes = uint32_t(kBM) * kBK * 2;  // one stage of A: 16 KB
// A tile of bn columns: its stages, blocks per multiprocessor, a stage's B bytes and all its bytes
// (what the stage's TMA copies deliver), the accumulators per consumer thread (64 x bn / 128).
MS_WGMMA_FN int stages(int bn) { return bn == kBN ? 4 : 3; }
MS_WGMMA_FN int blocks_per_sm(int bn) { return bn == kBN ? 1 : 2; }
MS_WGMMA_FN uint32_t b_bytes(int bn) { return uint32_t(bn) * kBK * 2; }
MS_WGMMA_FN uint32_t stage_bytes(int bn) { return kABytes + b_bytes(bn); }
MS_WGMMA_FN int accumulators(int bn) { return bn / 2; }
// Byte offsets in shared memory of stage st's A tile and B tile: all the A tiles, then the B tiles.
MS_WGMMA_FN uint32_t a_stage(int st) { return uint32_t(st) * kABytes; }
MS_WGMMA_FN uint32_t b_stage(int bn, int st) { return uint32_t(stages(bn)) * kABytes + uint32_t(st) * b_bytes(bn); }
MS_WGMMA_FN uint32_t stage_region_bytes(int bn) { return uint32_t(stages(bn)) * stage_bytes(bn); }

// The ring: a block numbers its stage uses g across its items. Use g fills stage g % stages(bn); its
// full barrier completes phase g / stages(bn), which the consumers wait for by parity. The producer
// refills a stage once both consumers have released its previous use, g - stages(bn): the empty
// barrier's phase g / stages(bn) - 1.
MS_WGMMA_FN int stage_of(int bn, int g) { return g % stages(bn); }
MS_WGMMA_FN uint32_t full_parity(int bn, int g) { return uint32_t(g / stages(bn)) & 1u; }
MS_WGMMA_FN uint32_t empty_parity(int bn, int g) { return uint32_t(g / stages(bn) - 1) & 1u; }  // g >= stages(bn)
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

// Byte offsets inside a stage's A tile [kBM rows][128 bytes] and B tile [BN rows][128 bytes] of the
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
// A stage's full barrier expects stage_bytes(bn): what the boxes the producer issues deliver, in
// either storage order (K-major: one box per operand; MN-major: kConsumers boxes of A, bn / kMNBox of B).
static_assert(kABytes == uint32_t(kConsumers) * kMNBoxBytes && kBM == kConsumers * kMNBox, "A's MN-major boxes fill its stage");
static_assert(b_bytes(kBN) == uint32_t(kBN / kMNBox) * kMNBoxBytes && kBN % kMNBox == 0, "B's MN-major boxes fill its stage");
static_assert(b_bytes(kSquareBN) == uint32_t(kSquareBN / kMNBox) * kMNBoxBytes && kSquareBN % kMNBox == 0,
              "B's MN-major boxes fill its stage");
static_assert(kABytes % 1024 == 0 && b_bytes(kBN) % 1024 == 0 && b_bytes(kSquareBN) % 1024 == 0,
              "every stage's tiles start on a swizzle atom");

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

// Accumulator d[4j + r] (j = 0 .. BN / 8 - 1, r = 0 .. 3) of lane `lane` in warp w (0 .. 3) of a
// consumer warpgroup: row 16w + lane / 4 + 8 (r / 2), column 8j + 2 (lane % 4) + r % 2 of its 64 x BN
// block.
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

// Splits for a product of `tiles` output tiles over `k_tiles` k tiles on `slots` resident blocks
// (multiprocessors times blocks_per_sm): 1 when the tiles make at least two waves or K is short;
// otherwise the count up to 8 (each split keeping at least 4 k tiles) that fills the last wave
// best, the smallest among equals.
MS_WGMMA_FN int split_count(long long tiles, int k_tiles, int slots) {
  if (slots <= 0 || tiles >= 2LL * slots) return 1;
  int best = 1;
  long long best_num = 0, best_den = 1;  // fill of the waves as a fraction num / den
  for (int s = 1; s <= 8 && (s == 1 || k_tiles / s >= 4); ++s) {
    const long long blocks = tiles * s;
    const long long waves = (blocks + slots - 1) / slots;
    const long long num = blocks, den = waves * slots;
    if (num * best_den > best_num * den) {
      best = s;
      best_num = num;
      best_den = den;
    }
  }
  return best;
}

// ---- the tile stored by TMA (an fp32 output) ----------------------------------------------------------
// Instead of each thread storing its accumulator pairs to global memory, the consumers write the
// tile into shared memory (the stages' region: every stage is consumed by then) as boxes of 128
// rows x 32 fp32 columns (128 bytes a row, 16 KB a box, the 128-byte swizzle), and one thread
// stores each box with a TMA copy, which clips rows and columns past the matrix. Row r and column
// c of the tile (r < kBM, c < bn) land at store_offset(r, c); a pair (c even) shares a 16-byte
// chunk.
constexpr int kStoreBoxCols = 32;                                        // 128 bytes of fp32
constexpr uint32_t kStoreBoxBytes = uint32_t(kBM) * kStoreBoxCols * 4;  // 16 KB
MS_WGMMA_FN int store_boxes(int bn) { return bn / kStoreBoxCols; }
MS_WGMMA_FN uint32_t swizzle128(uint32_t offset) { return offset ^ (((offset >> 7) & 7u) << 4); }  // in a 1024-aligned region
MS_WGMMA_FN uint32_t store_offset(int r, int c) {
  return uint32_t(c / kStoreBoxCols) * kStoreBoxBytes + swizzle128(uint32_t(r) * 128 + uint32_t(c % kStoreBoxCols) * 4);
}
// Where consumer c's lane `lane` of warp w writes its pair d[4j + 2h], d[4j + 2h + 1]; box b's
// offset and its first column in C for the tile at column n0.
MS_WGMMA_FN uint32_t staged_pair_offset(int consumer, int w, int lane, int j, int h) {
  return store_offset(consumer * kConsumerRows + acc_row(w, lane, 2 * h), acc_col(lane, j, 0));
}
MS_WGMMA_FN uint32_t store_box_offset(int b) { return uint32_t(b) * kStoreBoxBytes; }
MS_WGMMA_FN int store_box_col(int n0, int b) { return n0 + b * kStoreBoxCols; }
static_assert(store_boxes(kBN) * kStoreBoxBytes <= stage_region_bytes(kBN) &&
                  store_boxes(kSquareBN) * kStoreBoxBytes <= stage_region_bytes(kSquareBN),
              "the stored tile fits the stages' region");

// ---- blocks and work items -----------------------------------------------------------------------
// The work of a product is its items (tile_n, tile_m, z): output tile (tile_n, tile_m) and split z,
// numbered tile_n fastest, then tile_m, then z. Block b of G takes items b, b + G, b + 2G, ...; its
// stage uses are numbered on across its items (use g is stage g % stages(bn), phase g / stages(bn)).
struct WorkItem {
  int tile_n, tile_m, z;
};
MS_WGMMA_FN WorkItem work_item(long long item, int tiles_n, int tiles_m) {
  return {int(item % tiles_n), int((item / tiles_n) % tiles_m), int(item / ((long long)tiles_n * tiles_m))};
}

// Blocks for the `items` of a product of k_tiles k tiles split `splits` ways, `slots` blocks
// resident at once (multiprocessors times blocks_per_sm): one per item; or, where K is not split,
// is short (at most kPersistentMaxKTiles k tiles) and the items outnumber the slots, one per slot,
// each taking items in turn, so that a block starts once and the producer loads the next item's
// stages while the consumers store this one's tile.
constexpr int kPersistentMaxKTiles = 16;
MS_WGMMA_FN long long block_count(long long items, int k_tiles, int splits, int slots) {
  return splits == 1 && k_tiles <= kPersistentMaxKTiles && slots > 0 && items > slots ? slots : items;
}

// ---- pairs: two blocks of a cluster that share B (MONOSEMANTIC_CUDA_WGMMA_PAIR) -----------------------
// The wide tile's stage is 16 KB of A and 32 KB of B, all of it from L2. With pairs, the blocks of a
// 2-block cluster (rank 0 and 1) take tiles (tile_n, 2p) and (tile_n, 2p + 1): the same B tile. Each
// loads its own A and half of B, which TMA multicasts into both blocks' stages (the same offsets, and
// each block's full barrier counts the bytes of both halves), so a block moves 32 KB a stage instead
// of 48. A stage is refilled once both blocks' consumers have released it: each empty barrier takes
// kPairArrivals arrivals, the consumer warpgroups of both blocks. Pair p of G / 2 takes pair items p,
// p + G / 2, ... numbered as work items over pair_tiles_m rows of tile pairs; a rank-1 tile past the
// matrix (tiles_m odd) loads zeros, runs its products and stores nothing.
constexpr int kPair = 2;
constexpr int kPairArrivals = kConsumers * kPair;
MS_WGMMA_FN int pair_tiles_m(int tiles_m) { return (tiles_m + 1) / 2; }
MS_WGMMA_FN WorkItem pair_work_item(long long item, int tiles_n, int tiles_m, int rank) {
  const WorkItem t = work_item(item, tiles_n, pair_tiles_m(tiles_m));
  return {t.tile_n, 2 * t.tile_m + rank, t.z};
}
// Rank r's half of a stage's B: K-major, one box of bn / 2 rows (n) at b_stage + b_half_offset, TMA
// row coordinate b_half_row; MN-major, boxes q of [b_half_first_box, + bn / kMNBox / 2).
MS_WGMMA_FN uint32_t b_half_offset(int bn, int rank) { return uint32_t(rank) * (b_bytes(bn) / 2); }
MS_WGMMA_FN int b_half_row(int n0, int bn, int rank) { return n0 + rank * (bn / 2); }
MS_WGMMA_FN int b_half_first_box(int bn, int rank) { return rank * (bn / kMNBox / 2); }
static_assert(b_bytes(kBN) / 2 % kSwizzleAtom == 0 && (kBN / kMNBox) % 2 == 0,
              "each half of the wide tile's B starts on a swizzle atom and holds whole MN-major boxes");

}  // namespace ms::cuda::wgmma_layout

#undef MS_WGMMA_FN

#endif  // MONOSEMANTIC_CUDA_GEMM_WGMMA_LAYOUT_H
