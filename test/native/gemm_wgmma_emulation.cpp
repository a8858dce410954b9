// Host emulation of the Hopper GEMM (native/cuda/gemm_wgmma.cu) built on the same index functions
// (native/cuda/gemm_wgmma_layout.h): TMA box copies into 128-byte-swizzled shared-memory stages,
// wgmma.m64n256k16 (m64n128k16 for the square tile) reading its operands through matrix
// descriptors, the accumulator fragments, and the epilogues (store with split K, bias + ReLU with
// column sums and firing counts, the feature gradient with its mask read from the buffer it
// overwrites, the tile written to shared memory and stored by TMA). The hardware's side is written
// out independently below from the CUDA driver API (CU_TENSOR_MAP_SWIZZLE_128B, boxes clipped at
// the matrix's edges) and the PTX ISA (matrix descriptor, wgmma D fragment layout); the kernel's
// side comes from the header.
// Operands are small integers, so every sum is exact and comparisons are equalities. Shared memory
// starts as NaN, so an operand read from an element no copy wrote poisons the result; every output
// must be written exactly once.
//
//   c++ -std=c++17 -O2 -Inative test/native/gemm_wgmma_emulation.cpp -o emu && ./emu
// prints one line per case and "ok", or the first mismatch and exits 1.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/gemm_wgmma_layout.h"

using namespace ms::cuda::wgmma_layout;

namespace {

enum class Epi { Store, BiasRelu, FeatureGrad, TmaStore };

struct Case {
  int M, N, K;
  Epi epi;
  int splits = 1;    // split K (the store epilogue): partial products summed in order
  bool amn = false;  // A stored [K, M] (MN-major), else [M, K]
  bool bmn = false;  // B stored [K, N] (MN-major), else [N, K]
  int sms = 132;     // multiprocessors of the emulated GPU (block_count: times blocks_per_sm(bn))
  int bn = kBN;      // the tile's columns: kBN (wide) or kSquareBN (square)
  bool pair = false;  // wide tiles in clusters of two blocks sharing B (TMA multicast)
};

const char* order(const Case& c) { return c.amn ? (c.bmn ? "TN" : "TT") : (c.bmn ? "NN" : "NT"); }

const char* epi_name(Epi e) {
  return e == Epi::Store ? "store" : e == Epi::BiasRelu ? "bias-relu" : e == Epi::FeatureGrad ? "feature-grad" : "tma-store";
}

[[noreturn]] void fail(const char* what, const Case& c) {
  std::printf("FAIL %s (M %d, N %d, K %d, %s, %d splits, %s, %d-wide tiles%s)\n", what, c.M, c.N, c.K, epi_name(c.epi),
              c.splits, order(c), c.bn, c.pair ? ", pairs" : "");
  std::exit(1);
}

// ---- the hardware ---------------------------------------------------------------------------------

// Shared memory as 2-byte slots (bf16 elements), indexed by byte address / 2.
struct Shared {
  std::vector<double> slot;
  explicit Shared(size_t bytes) : slot(bytes / 2, NAN) {}
};

// The 128-byte swizzle (CU_TENSOR_MAP_SWIZZLE_128B): within each 1024-byte block of 8 rows of 128
// bytes, the 16-byte chunk index (address bits 4-6) is XORed with the row index (bits 7-9).
uint32_t hw_swizzle128(uint32_t addr) { return addr ^ (((addr >> 7) & 7u) << 4); }

// cp.async.bulk.tensor.2d with a tensor map of the row-major matrix src [R, C] (leading dimension
// ld), box {64, box_rows}, 128-byte swizzle, zero fill: element (r, c) of the box at coordinates
// (c0, c1) is src[c1 + r, c0 + c] and lands at dst + r * 128 + 2c, swizzled.
void tma_load(Shared& smem, uint32_t dst, const std::vector<double>& src, int ld, int R, int C, int box_rows, int c0,
              int c1, const Case& cs) {
  if (dst % 1024 != 0) fail("TMA destination not 1024-byte aligned (128-byte swizzle)", cs);
  for (int r = 0; r < box_rows; ++r)
    for (int c = 0; c < 64; ++c) {
      const int gr = c1 + r, gc = c0 + c;
      const double v = (gr < R && gc < C) ? src[size_t(gr) * ld + gc] : 0.0;
      smem.slot[hw_swizzle128(dst + uint32_t(r) * 128 + uint32_t(c) * 2) / 2] = v;
    }
}

// A K-major operand of `rows` x 16 through a matrix descriptor (PTX ISA): start address bits 0-13
// (<< 4), stride byte offset bits 32-45 (<< 4) between 8-row groups, swizzle mode bits 62-63 (1:
// 128 bytes), base offset bits 49-51 (0 for 1024-aligned atoms). Row r, k element k is at
// start + (r / 8) * SBO + (r % 8) * 128 + 2k, with the swizzle applied to that address.
void read_operand(const Shared& smem, uint64_t desc, int rows, std::vector<double>& out, uint32_t lo, uint32_t hi,
                  const Case& cs) {
  const uint32_t start = uint32_t(desc & 0x3FFF) << 4;
  const uint32_t sbo = uint32_t((desc >> 32) & 0x3FFF) << 4;
  if ((desc >> 62) != 1) fail("descriptor: swizzle mode is not 128 bytes", cs);
  if (((desc >> 49) & 7) != 0) fail("descriptor: nonzero base offset", cs);
  if (sbo != 1024) fail("descriptor: stride byte offset is not one 8-row atom", cs);
  out.assign(size_t(rows) * 16, NAN);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < 16; ++k) {
      const uint32_t addr = hw_swizzle128(start + uint32_t(r / 8) * sbo + uint32_t(r % 8) * 128 + uint32_t(k) * 2);
      if (addr < lo || addr + 2 > hi) fail("descriptor reads outside its stage's tile", cs);
      out[size_t(r) * 16 + k] = smem.slot[addr / 2];
    }
}

// An MN-major operand of `rows` (m or n) x 16 k through a matrix descriptor, 128-byte swizzle (PTX
// ISA canonical layout ((T,8,m),(8,k)) : ((1,T,LBO),(8T,SBO)) in 16-byte units, T = 8 bf16): mn
// element e of row r = mn is at (mn % 8) * 2 + ((mn / 8) % 8) * 16 + (mn / 64) * LBO bytes, k at
// (k % 8) * 128 + (k / 8) * SBO bytes from the start, with the swizzle applied to the address.
void read_operand_mn(const Shared& smem, uint64_t desc, int rows, std::vector<double>& out, uint32_t lo, uint32_t hi,
                     const Case& cs) {
  const uint32_t start = uint32_t(desc & 0x3FFF) << 4;
  const uint32_t lbo = uint32_t((desc >> 16) & 0x3FFF) << 4;
  const uint32_t sbo = uint32_t((desc >> 32) & 0x3FFF) << 4;
  if ((desc >> 62) != 1) fail("descriptor: swizzle mode is not 128 bytes", cs);
  if (((desc >> 49) & 7) != 0) fail("descriptor: nonzero base offset", cs);
  if (start % 1024 != 0) fail("descriptor: MN-major operand not at a swizzle atom", cs);
  out.assign(size_t(rows) * 16, NAN);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < 16; ++k) {
      const uint32_t addr = hw_swizzle128(start + uint32_t(r % 8) * 2 + uint32_t((r / 8) % 8) * 16 + uint32_t(r / 64) * lbo +
                                       uint32_t(k % 8) * 128 + uint32_t(k / 8) * sbo);
      if (addr < lo || addr + 2 > hi) fail("descriptor reads outside its stage's tile", cs);
      out[size_t(r) * 16 + k] = smem.slot[addr / 2];
    }
}

// wgmma.mma_async.m64n{n}k16.f32.bf16.bf16 (either operand order: the operands arrive as [rows][16 k]): D[64, n] +=
// A[64, 16] B[n, 16]^T. D fragment (PTX ISA, "wgmma D matrix fragment", f32 accumulators): thread
// T of the warpgroup (warp T / 32, lane T % 32) holds d[i] = D[16 (T / 32) + 8 ((i % 4) / 2) +
// (T % 32) / 4][8 (i / 4) + 2 (T % 4) + i % 2], i < n / 2.
void wgmma(std::vector<std::vector<double>>& acc, const std::vector<double>& A, const std::vector<double>& B, int n) {
  for (int T = 0; T < 128; ++T)
    for (int i = 0; i < n / 2; ++i) {
      const int row = 16 * (T / 32) + 8 * ((i % 4) / 2) + (T % 32) / 4;
      const int col = 8 * (i / 4) + 2 * (T % 4) + i % 2;
      double s = 0.0;
      for (int k = 0; k < 16; ++k) s += A[size_t(row) * 16 + k] * B[size_t(col) * 16 + k];
      acc[T][i] += s;
    }
}

// ---- the kernel's side, replayed ------------------------------------------------------------------

void run_case(const Case& c, unsigned seed) {
  // Storage: K-major A [M, lda], B [N, ldb]; MN-major A [K, lda], B [K, ldb]. Leading dimensions
  // are multiples of 8 (TMA's 16-byte rows), one of them padded; the padding is never read.
  const int a_cols = c.amn ? c.M : c.K, b_cols = c.bmn ? c.N : c.K;
  const int a_rows = c.amn ? c.K : c.M, b_rows = c.bmn ? c.K : c.N;
  const int lda = (a_cols + 7) / 8 * 8 + 8, ldb = (b_cols + 7) / 8 * 8;
  auto draw = [&](int lo, int span) { return double(int((seed = seed * 1103515245u + 12345u) >> 16) % span + lo); };
  std::vector<double> A(size_t(a_rows) * lda, NAN), B(size_t(b_rows) * ldb, NAN);
  for (int r = 0; r < a_rows; ++r)
    for (int e = 0; e < a_cols; ++e) A[size_t(r) * lda + e] = draw(-3, 7);
  for (int r = 0; r < b_rows; ++r)
    for (int e = 0; e < b_cols; ++e) B[size_t(r) * ldb + e] = draw(-3, 7);
  auto a_at = [&](int m, int k) { return c.amn ? A[size_t(k) * lda + m] : A[size_t(m) * lda + k]; };
  auto b_at = [&](int n, int k) { return c.bmn ? B[size_t(k) * ldb + n] : B[size_t(n) * ldb + k]; };
  std::vector<double> bias(c.N), pen(c.N);
  for (int n = 0; n < c.N; ++n) {
    bias[n] = draw(-20, 41);
    pen[n] = draw(1, 3);
  }
  const double l1 = 0.5;
  // The feature gradient's activations f [M, N] (integers, about half of them not positive), which
  // its output overwrites in place.
  std::vector<double> fgp(size_t(c.M) * c.N);
  for (double& v : fgp) v = draw(-3, 7);
  const std::vector<double> f_in = fgp;

  const int splits = c.epi == Epi::Store ? c.splits : 1;
  const int k_tiles = (c.K + kBK - 1) / kBK;
  const int bn = c.bn;
  if (bn != kBN && bn != kSquareBN) fail("a tile neither wide nor square", c);
  if (c.pair && bn != kBN) fail("pairs of square tiles", c);
  const int n_stages = stages(bn);
  const int tiles_m = (c.M + kBM - 1) / kBM, tiles_n = (c.N + bn - 1) / bn;
  std::vector<double> P(size_t(splits) * c.M * c.N, NAN);  // store: split z's partial at z * M * N
  std::vector<int> writes(size_t(splits) * c.M * c.N, 0);
  std::vector<double> out(size_t(c.M) * c.N, NAN);  // bias-ReLU's f
  std::vector<double> partial(size_t(tiles_m) * c.N, NAN);
  std::vector<int> fired(c.N, 0);

  // The stages' A tiles, then their B tiles; an operand read outside its own tile fails.
  if (b_stage(bn, n_stages - 1) + b_bytes(bn) != uint32_t(n_stages) * stage_bytes(bn) ||
      a_stage(n_stages - 1) + kABytes > b_stage(bn, 0))
    fail("the stages' tiles overlap or leave gaps", c);
  Shared smem(size_t(n_stages) * stage_bytes(bn));
  // The blocks (block_count on a GPU of c.sms multiprocessors, blocks_per_sm(bn) resident on each),
  // each taking its work items in turn, with its stage uses numbered across them. Pairs: the
  // items are pair items, blocks 2p and 2p + 1 take pair p's, each its rank's tile of them.
  const long long items = (long long)tiles_n * (c.pair ? pair_tiles_m(tiles_m) : tiles_m) * splits;
  const int group = c.pair ? kPair : 1;
  // (The TMA-stored tile borrows the stages' region: a block per item.)
  const long long blocks =
      group * (c.epi == Epi::TmaStore ? items : block_count(items, k_tiles, splits, c.sms * blocks_per_sm(bn) / group));
  for (long long blk = 0; blk < blocks; ++blk) {
    const int rank = int(blk % group);
    int g = 0;
    // The ring's barriers, counted here apart from the header's parities: each stage's fills (its
    // full barrier's completed phases) and releases (its empty barrier's: both consumers arrive).
    std::vector<int> fills(n_stages, 0), releases(n_stages, 0);
    for (long long item = blk / group; item < items; item += blocks / group) {
      const WorkItem t = c.pair ? pair_work_item(item, tiles_n, tiles_m, rank) : work_item(item, tiles_n, tiles_m);
      if (c.pair) {
        // The other block of the pair takes the same B tile and k range, in step: its ring and this
        // one's fill and release the same uses, and each fills half of the other's B.
        const WorkItem u = pair_work_item(item, tiles_n, tiles_m, rank ^ 1);
        if (u.tile_n != t.tile_n || u.z != t.z || u.tile_m != (t.tile_m ^ 1)) fail("a pair's blocks take different B tiles", c);
        if (t.tile_m >= tiles_m && (rank == 0 || t.tile_m > tiles_m)) fail("a pair item with no tile in the matrix", c);
      }
      const int z = t.z, tile_m = t.tile_m;
      const int m0 = tile_m * kBM, n0 = t.tile_n * bn;
      const int kt_begin = split_begin(z, k_tiles, splits);
      const int kt_count = split_begin(z + 1, k_tiles, splits) - kt_begin;
      // Masks first (kReadsMask): each consumer thread's bits before any output is written.
      unsigned long long masks[kConsumers][128][2] = {};
      if (c.epi == Epi::FeatureGrad)
        for (int cons = 0; cons < kConsumers; ++cons)
          for (int T = 0; T < 128; ++T) {
            const int w = T / 32, lane = T % 32;
            for (int j = 0; j < bn / 8; ++j)
              for (int h = 0; h < 2; ++h) {
                const int row = m0 + cons * kConsumerRows + acc_row(w, lane, 2 * h), col = n0 + acc_col(lane, j, 0);
                if (row >= c.M || col >= c.N) continue;
                unsigned bits = fgp[size_t(row) * c.N + col] > 0 ? 1u : 0u;
                if (col + 1 < c.N && fgp[size_t(row) * c.N + col + 1] > 0) bits |= 2u;
                masks[cons][T][mask_word(j, h)] |= static_cast<unsigned long long>(bits) << mask_shift(j, h);
              }
          }
      std::vector<std::vector<std::vector<double>>> acc(kConsumers, std::vector<std::vector<double>>(128, std::vector<double>(accumulators(bn), 0.0)));
      for (int i = 0; i < kt_count; ++i, ++g) {
        const int st = stage_of(bn, g);
        if (st < 0 || st >= n_stages || (g > 0 && st != (stage_of(bn, g - 1) + 1) % n_stages))
          fail("the stage uses do not walk the ring in order", c);
        // The producer refills a stage once its previous use is released: it waits for the empty
        // barrier's latest phase, and the consumers for the full barrier's phase this fill completes.
        if (g >= n_stages) {
          if (releases[st] != fills[st] || empty_parity(bn, g) != uint32_t(releases[st] - 1) % 2u)
            fail("the producer waits for another phase of the empty barrier than the last release", c);
        } else if (fills[st] != 0) {
          fail("a stage filled twice before the ring wraps", c);
        }
        ++fills[st];
        if (full_parity(bn, g) != uint32_t(fills[st] - 1) % 2u) fail("the consumers wait for another phase of the full barrier than this fill", c);
        const uint32_t a_base = a_stage(st), b_base = b_stage(bn, st);
        for (uint32_t b = a_base; b < a_base + kABytes; b += 2) smem.slot[b / 2] = NAN;
        for (uint32_t b = b_base; b < b_base + b_bytes(bn); b += 2) smem.slot[b / 2] = NAN;
        const int k0 = tma_k(kt_begin + i);
        // What the stage's copies deliver (TMA counts a box's whole bytes, zero fill included) must
        // be what its full barrier expects, stage_bytes(bn), or the barrier never completes.
        // In a pair both halves of B arrive, one copied by each block.
        const uint32_t b_delivered = c.pair ? uint32_t(kPair) * (c.bmn ? uint32_t(bn / kMNBox / 2) * kMNBoxBytes : uint32_t(bn / 2) * kSwizzleRow)
                                            : (c.bmn ? uint32_t(bn / kMNBox) * kMNBoxBytes : uint32_t(bn) * kSwizzleRow);
        const uint32_t delivered = (c.amn ? uint32_t(kConsumers) * kMNBoxBytes : uint32_t(kBM) * kSwizzleRow) + b_delivered;
        if (delivered != stage_bytes(bn)) fail("a stage's copies deliver other bytes than its barrier expects", c);
        if (c.amn)
          for (int cons = 0; cons < kConsumers; ++cons)
            tma_load(smem, a_base + a_box_offset_mn(cons), A, lda, c.K, c.M, kMNBox, tma_a_mn(m0, cons), k0, c);
        else
          tma_load(smem, a_base, A, lda, c.M, c.K, kBM, k0, m0, c);
        if (c.pair) {
          // Each rank's half, multicast: both land in this block's stage.
          for (int r = 0; r < kPair; ++r) {
            if (c.bmn)
              for (int q = b_half_first_box(bn, r); q < b_half_first_box(bn, r) + bn / kMNBox / 2; ++q)
                tma_load(smem, b_base + b_box_offset_mn(q), B, ldb, c.K, c.N, kMNBox, tma_b_mn(n0, q), k0, c);
            else
              tma_load(smem, b_base + b_half_offset(bn, r), B, ldb, c.N, c.K, bn / 2, k0, b_half_row(n0, bn, r), c);
          }
        } else if (c.bmn) {
          for (int q = 0; q < bn / kMNBox; ++q)
            tma_load(smem, b_base + b_box_offset_mn(q), B, ldb, c.K, c.N, kMNBox, tma_b_mn(n0, q), k0, c);
        } else {
          tma_load(smem, b_base, B, ldb, c.N, c.K, bn, k0, n0, c);
        }
        for (int cons = 0; cons < kConsumers; ++cons)
          for (int kk = 0; kk < kBK / 16; ++kk) {
            std::vector<double> a, b;
            if (c.amn)
              read_operand_mn(smem, smem_descriptor_mn(a_base + a_operand_offset_mn(cons, kk)), kConsumerRows, a,
                              a_base, a_base + kABytes, c);
            else
              read_operand(smem, smem_descriptor(a_base + a_operand_offset(cons, kk)), kConsumerRows, a, a_base,
                           a_base + kABytes, c);
            // The B tile fills b_bytes(bn) of its stage: reads past them fail.
            if (c.bmn)
              read_operand_mn(smem, smem_descriptor_mn(b_base + b_operand_offset_mn(kk)), bn, b, b_base,
                              b_base + b_bytes(bn), c);
            else
              read_operand(smem, smem_descriptor(b_base + b_operand_offset(kk)), bn, b, b_base, b_base + b_bytes(bn), c);
            wgmma(acc[cons], a, b, bn);
          }
        // The kernel releases a use once the next one's products are issued, and an item's last
        // use at the item's end: here, the previous use now, the last one after the loop.
        if (i > 0) ++releases[stage_of(bn, g - 1)];
      }
      if (kt_count > 0) ++releases[stage_of(bn, g - 1)];
      if (c.pair && m0 >= c.M) continue;  // a rank-1 tile past the matrix stores nothing
      if (c.epi == Epi::TmaStore) {
        // The consumers write the tile into the stages' region at store_offset; one TMA store per box
        // of 128 rows x 32 fp32 columns, 128-byte swizzled, clipped at the matrix's edges.
        std::vector<double> staged(stage_region_bytes(bn) / 4, NAN);
        for (int cons = 0; cons < kConsumers; ++cons)
          for (int T = 0; T < 128; ++T)
            for (int j = 0; j < bn / 8; ++j)
              for (int h = 0; h < 2; ++h) {
                const uint32_t at = staged_pair_offset(cons, T / 32, T % 32, j, h);
                if (at % 8 != 0 || at + 8 > stage_region_bytes(bn)) fail("a stored pair outside the stages' region or unaligned", c);
                for (int e = 0; e < 2; ++e) {
                  if (!std::isnan(staged[at / 4 + e])) fail("two values staged in one place", c);
                  staged[at / 4 + e] = acc[cons][T][4 * j + 2 * h + e];
                }
              }
        // The wgmma D fragment (PTX ISA) puts d[4j + 2h + e] of thread T at row 16 (T / 32) + (T % 32) / 4
        // + 8h and column 8j + 2 (T % 4) + e of its warpgroup's 64 x bn block: the values staged above
        // must reach C there.
        for (int b = 0; b < store_boxes(bn); ++b) {
          if (store_box_col(n0, b) >= c.N) continue;  // the kernel issues no box wholly past N
          for (int r = 0; r < kBM; ++r)
            for (int cc = 0; cc < kStoreBoxCols; ++cc) {
              const int row = m0 + r, col = store_box_col(n0, b) + cc;
              if (row >= c.M || col >= c.N) continue;  // TMA clips
              const double v = staged[(store_box_offset(b) + hw_swizzle128(uint32_t(r) * 128 + uint32_t(cc) * 4)) / 4];
              P[size_t(row) * c.N + col] = v;
              ++writes[size_t(row) * c.N + col];
            }
        }
        continue;
      }
      // Epilogue, as the kernel: pairs (j, h), then the column reduction through shared memory.
      std::vector<std::vector<double>> col_sum(kConsumerWarps, std::vector<double>(bn, NAN));
      std::vector<std::vector<int>> col_count(kConsumerWarps, std::vector<int>(bn, -1));
      for (int cons = 0; cons < kConsumers; ++cons)
        for (int w = 0; w < 4; ++w)
          for (int j = 0; j < bn / 8; ++j) {
            double sum[32][2] = {};
            int count[32][2] = {};
            for (int lane = 0; lane < 32; ++lane) {
              const int T = 32 * w + lane;
              for (int h = 0; h < 2; ++h) {
                const int row = m0 + cons * kConsumerRows + acc_row(w, lane, 2 * h), col = n0 + acc_col(lane, j, 0);
                if (row >= c.M || col >= c.N) continue;
                const bool has1 = col + 1 < c.N;
                const unsigned mask = static_cast<unsigned>(masks[cons][T][mask_word(j, h)] >> mask_shift(j, h)) & 3u;
                const double v[2] = {acc[cons][T][4 * j + 2 * h], acc[cons][T][4 * j + 2 * h + 1]};
                for (int e = 0; e < (has1 ? 2 : 1); ++e) {
                  const size_t at = size_t(row) * c.N + col + e;
                  double r = 0.0;
                  if (c.epi == Epi::Store) {
                    P[size_t(z) * c.M * c.N + at] = v[e];
                    ++writes[size_t(z) * c.M * c.N + at];
                    continue;
                  }
                  if (c.epi == Epi::BiasRelu) {
                    r = std::fmax(v[e] + bias[col + e], 0.0);
                    out[at] = r;
                  } else {
                    r = (mask >> e) & 1u ? v[e] + l1 * pen[col + e] : 0.0;
                    fgp[at] = r;  // overwrites the activations
                  }
                  ++writes[at];
                  sum[lane][e] += r;
                  count[lane][e] += r > 0 ? 1 : 0;
                }
              }
            }
            if (c.epi == Epi::Store) continue;
            // __shfl_xor_sync over offsets 4, 8, 16: lane L adds lane L ^ offset's value.
            for (int offset = 4; offset < 32; offset <<= 1) {
              double s2[32][2];
              int c2[32][2];
              for (int lane = 0; lane < 32; ++lane)
                for (int e = 0; e < 2; ++e) {
                  s2[lane][e] = sum[lane][e] + sum[lane ^ offset][e];
                  c2[lane][e] = count[lane][e] + count[lane ^ offset][e];
                }
              for (int lane = 0; lane < 32; ++lane)
                for (int e = 0; e < 2; ++e) {
                  sum[lane][e] = s2[lane][e];
                  count[lane][e] = c2[lane][e];
                }
            }
            for (int lane = 0; lane < 4; ++lane)
              for (int e = 0; e < 2; ++e) {
                const int cw = consumer_warp(cons, w), local = acc_col(lane, j, e);
                if (local >= bn) fail("column reduction: a column past the tile", c);
                if (!std::isnan(col_sum[cw][local])) fail("column reduction: a shared slot written twice", c);
                col_sum[cw][local] = sum[lane][e];
                col_count[cw][local] = count[lane][e];
              }
          }
      if (c.epi != Epi::Store)
        for (int local = 0; local < kConsumerThreads; ++local) {  // consumer thread `local`
          const int col = n0 + local;
          if (local >= bn || col >= c.N) continue;
          double total = 0.0;
          int n_fired = 0;
          for (int k = 0; k < kConsumerWarps; ++k) {
            if (std::isnan(col_sum[k][local])) fail("column reduction: a shared slot never written", c);
            total += col_sum[k][local];
            n_fired += col_count[k][local];
          }
          partial[size_t(tile_m) * c.N + col] = total;
          if (c.epi == Epi::BiasRelu) fired[col] += n_fired;
        }
    }
    for (int st = 0; st < n_stages; ++st)
      if (releases[st] != fills[st]) fail("a stage use never released", c);
  }

  // Direct products and epilogues.
  std::vector<double> ref_sum(size_t(tiles_m) * c.N, 0.0);
  std::vector<int> ref_fired(c.N, 0);
  for (int m = 0; m < c.M; ++m)
    for (int n = 0; n < c.N; ++n) {
      double prod = 0.0;
      for (int k = 0; k < c.K; ++k) prod += a_at(m, k) * b_at(n, k);
      const size_t at = size_t(m) * c.N + n;
      double got = 0.0, want = prod;
      if (c.epi == Epi::Store || c.epi == Epi::TmaStore) {
        for (int z = 0; z < splits; ++z) {
          if (writes[size_t(z) * c.M * c.N + at] != 1) fail("an output was not written exactly once", c);
          got += P[size_t(z) * c.M * c.N + at];  // sum_split_partials: the splits in order
        }
      } else {
        if (writes[at] != 1) fail("an output was not written exactly once", c);
        if (c.epi == Epi::BiasRelu) {
          want = std::fmax(prod + bias[n], 0.0);
          got = out[at];
        } else {
          want = f_in[at] > 0 ? prod + l1 * pen[n] : 0.0;
          got = fgp[at];
        }
        ref_sum[size_t(m / kBM) * c.N + n] += want;
        if (want > 0) ++ref_fired[n];
      }
      if (!(got == want)) {
        std::printf("C[%d, %d] = %g, expected %g\n", m, n, got, want);
        fail("mismatch", c);
      }
    }
  if (c.epi == Epi::BiasRelu || c.epi == Epi::FeatureGrad) {
    for (size_t e = 0; e < partial.size(); ++e)
      if (!(partial[e] == ref_sum[e])) fail("column partial mismatch", c);
    if (c.epi == Epi::BiasRelu)
      for (int n = 0; n < c.N; ++n)
        if (fired[n] != ref_fired[n]) fail("firing count mismatch", c);
  }
  std::printf("ok   M %4d N %4d K %4d  %-12s splits %d  %2lld blocks for %2lld items  %s  %d-wide tiles%s\n", c.M, c.N,
              c.K, epi_name(c.epi), splits, blocks, items, order(c), bn, c.pair ? " in pairs" : "");
}

// The mask bits of the 64 pairs of a thread are distinct and fit their words.
void check_mask_layout() {
  const Case none{0, 0, 0, Epi::FeatureGrad};
  std::vector<int> used(128, 0);
  for (int j = 0; j < kBN / 8; ++j)
    for (int h = 0; h < 2; ++h) {
      const int w = mask_word(j, h), s = mask_shift(j, h);
      if (w < 0 || w > 1 || s < 0 || s > 62 || s % 2) fail("mask bits outside their word", none);
      if (used[64 * w + s]++ || used[64 * w + s + 1]++) fail("two pairs share mask bits", none);
    }
  std::printf("ok   mask bit layout\n");
}

// Split counts at the SAE step's shapes on 132 multiprocessors, and the ranges they give.
void check_splits() {
  const Case none{0, 0, 0, Epi::Store};
  struct S {
    long long tiles;
    int k_tiles, want;
  } cases[] = {
      {64, 256, 2},      // x̂ at (512, 16384, 4096): 32 x 2 tiles, 128 blocks
      {64, 2048, 2},     // x̂ at (512, 131072, 4096)
      {96, 384, 4},      // x̂ at (768, 24576, 4096): 32 x 3 tiles; 4 splits fill 384 of 396 slots
      {2048, 8, 1},      // the encoder: many tiles
      {10, 3, 1},        // K too short to split
  };
  for (const S& s : cases) {
    const int got = split_count(s.tiles, s.k_tiles, 132);
    if (got != s.want) {
      std::printf("split_count(%lld, %d, 132) = %d, expected %d\n", s.tiles, s.k_tiles, got, s.want);
      fail("split count", none);
    }
    int covered = 0;
    for (int z = 0; z < got; ++z) {
      const int b = split_begin(z, s.k_tiles, got), e = split_begin(z + 1, s.k_tiles, got);
      if (b != covered || e <= b) fail("split ranges do not tile K", none);
      covered = e;
    }
    if (covered != s.k_tiles) fail("split ranges do not cover K", none);
  }
  std::printf("ok   split counts and ranges\n");
}

// Work items: the numbering covers every (tile_n, tile_m, z) once; blocks take turns only where K
// is short and not split and the items outnumber the multiprocessors.
void check_blocks() {
  const Case none{0, 0, 0, Epi::Store};
  const int tiles_n = 5, tiles_m = 3, splits = 2;
  std::vector<int> seen(size_t(tiles_n) * tiles_m * splits, 0);
  for (long long item = 0; item < (long long)seen.size(); ++item) {
    const WorkItem t = work_item(item, tiles_n, tiles_m);
    if (t.tile_n < 0 || t.tile_n >= tiles_n || t.tile_m < 0 || t.tile_m >= tiles_m || t.z < 0 || t.z >= splits)
      fail("work item outside the product", none);
    if (item > 0 && t.tile_n != (item % tiles_n)) fail("work items not numbered tile_n fastest", none);
    ++seen[(size_t(t.z) * tiles_m + t.tile_m) * tiles_n + t.tile_n];
  }
  for (int v : seen)
    if (v != 1) fail("work items do not cover the product once", none);
  if (block_count(2048, 8, 1, 132) != 132) fail("short items on a full GPU: one block per multiprocessor", none);
  if (block_count(2048, 64, 1, 132) != 2048) fail("long items: one block each", none);
  if (block_count(100, 8, 1, 132) != 100) fail("fewer items than multiprocessors: one block each", none);
  if (block_count(500, 64, 5, 132) != 500) fail("split K: one block per item", none);
  std::printf("ok   work items and block counts\n");
}

}  // namespace

int main() {
  check_mask_layout();
  check_splits();
  check_blocks();
  unsigned seed = 12345;
  // The orders each epilogue is compiled for (gemm_wgmma.cu): store NT, NN, TN; bias-ReLU NN;
  // feature gradient NT. Shapes ragged around the 128 x 256 x 64 tiles.
  const Case cases[] = {
      {200, 300, 100, Epi::Store},                    // NT
      {64, 40, 8, Epi::Store},                        // NT, K under one stage
      {130, 260, 520, Epi::Store, 3},                 // NT, split K
      {257, 513, 72, Epi::Store, 2, false, true},     // NN, split K
      {200, 300, 100, Epi::Store, 1, false, true},    // NN
      {200, 300, 100, Epi::Store, 1, true, true},     // TN
      {130, 520, 136, Epi::Store, 3, true, true},     // TN, split K
      {64, 40, 8, Epi::Store, 1, true, true},         // TN
      {257, 513, 72, Epi::BiasRelu, 1, false, true},  // NN
      {128, 256, 64, Epi::BiasRelu, 1, false, true},  // NN, whole tiles
      {129, 257, 136, Epi::FeatureGrad},              // NT
      {300, 600, 24, Epi::FeatureGrad},               // NT
      {96, 264, 40, Epi::Store, 1, true, false},      // TT: not compiled, but the layouts hold
      // The square tile, in each compiled order and epilogue, ragged and whole.
      {200, 100, 100, Epi::Store, 1, false, false, 132, kSquareBN},   // NT
      {300, 128, 520, Epi::Store, 3, false, false, 132, kSquareBN},   // NT, split K
      {257, 72, 72, Epi::Store, 2, false, true, 132, kSquareBN},      // NN, split K
      {130, 128, 136, Epi::Store, 1, false, true, 132, kSquareBN},    // NN, whole columns
      {130, 120, 136, Epi::Store, 3, true, true, 132, kSquareBN},     // TN, split K
      {64, 40, 8, Epi::Store, 1, true, true, 132, kSquareBN},         // TN, K under one stage
      {600, 100, 100, Epi::Store, 1, false, false, 132, kSquareBN},   // NT, 5 items (on 2 multiprocessors: in turn)
      {520, 128, 72, Epi::Store, 1, false, true, 132, kSquareBN},     // NN, 5 items
      {700, 40, 8, Epi::Store, 1, true, true, 132, kSquareBN},        // TN, 6 items
      {200, 300, 100, Epi::Store, 1, false, false, 132, kSquareBN},   // NT, 3 columns of tiles
      {257, 513, 200, Epi::Store, 1, true, true, 132, kSquareBN},     // TN, ragged past several tiles
      {257, 300, 72, Epi::BiasRelu, 1, false, true, 132, kSquareBN},  // NN, in turn on 2 multiprocessors
      {128, 256, 64, Epi::BiasRelu, 1, false, true, 132, kSquareBN},  // NN, whole tiles
      {129, 257, 136, Epi::FeatureGrad, 1, false, false, 132, kSquareBN},  // NT
      {300, 600, 24, Epi::FeatureGrad, 1, false, false, 132, kSquareBN},   // NT, many items
      // The tile stored by TMA from shared memory: ragged rows and columns clipped, both tiles.
      {200, 300, 100, Epi::TmaStore, 1, false, false},                 // NT
      {257, 516, 72, Epi::TmaStore, 1, false, true},                   // NN
      {130, 260, 136, Epi::TmaStore, 1, true, true},                   // TN
      {200, 300, 100, Epi::TmaStore, 1, false, false, 132, kSquareBN},  // NT
      {129, 132, 8, Epi::TmaStore, 1, true, true, 132, kSquareBN},      // TN, K under one stage
      // Wide tiles in pairs sharing B: odd and even tile rows (a rank-1 tile past M), each order and
      // epilogue, split K, and pairs taking pair items in turn (short K on 2 multiprocessors).
      {300, 300, 100, Epi::Store, 1, false, false, 132, kBN, true},   // NT, 3 tile rows
      {520, 513, 136, Epi::Store, 1, false, true, 132, kBN, true},    // NN, 5 tile rows
      {257, 520, 200, Epi::Store, 1, true, true, 132, kBN, true},     // TN
      {130, 260, 520, Epi::Store, 3, false, false, 132, kBN, true},   // NT, split K
      {130, 520, 136, Epi::Store, 3, true, true, 132, kBN, true},     // TN, split K
      {100, 300, 40, Epi::Store, 1, false, false, 132, kBN, true},    // NT, one tile row: rank 1 past M
      {257, 513, 72, Epi::BiasRelu, 1, false, true, 132, kBN, true},  // NN
      {300, 600, 24, Epi::FeatureGrad, 1, false, false, 132, kBN, true},  // NT
      {257, 516, 72, Epi::TmaStore, 1, false, true, 132, kBN, true},  // NN, stored by TMA
  };
  for (const Case& c : cases) {
    run_case(c, seed++);
    if (c.epi == Epi::TmaStore) continue;  // a block per item whatever the GPU
    Case few = c;  // a GPU of two multiprocessors: blocks take several items each where K is short
    few.sms = 2;
    run_case(few, seed++);
  }
  std::printf("ok\n");
  return 0;
}
