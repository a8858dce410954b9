/*
 * gemm_wgmma_kernel.cuh — the Hopper bf16 GEMM's kernel and its launch, templated on the operands'
 * storage orders, the tile's width and the epilogue: acc = op(A) op(B) with each operand K-major or
 * MN-major (wgmma's transposed operands) as it is stored. gemm_wgmma.cu instantiates it with the
 * epilogues of gemm_epilogue_ops.cuh; the GEMM playground (bench/kernels/gemm_bf16.cu) also with
 * epilogues of its own that measure parts of a tile's time. Everything here has internal linkage:
 * each file that includes it has its own instantiations.
 *
 * Why: mma.sync reaches 200-300 TFLOP/s on Hopper (26-39% of cuBLAS); wgmma reads both operands
 * from shared memory without ldmatrix, 64 x 256 x 16 per instruction per warpgroup, and TMA moves a
 * whole tile with one thread and no registers.
 *
 * Block: 2 consumer warpgroups and a producer warp (288 threads), one output tile at a time (index
 * math: gemm_wgmma_layout.h), of one of two shapes (tile_columns(), MONOSEMANTIC_CUDA_WGMMA_TILE):
 * 128 x 256, one block per multiprocessor with four stages; or 128 x 128 (wgmma.m64n128k16), two
 * blocks per multiprocessor with three stages each, so that one block's epilogue and pipeline fill
 * overlap the other's products, and a product with N <= 128 runs on no columns past N. A block per
 * work item (tile and split of K); where K is short (at most 1,024, not split) and the tiles
 * outnumber the resident blocks, a block per slot takes tiles in turn (block_count), its stage
 * ring running on from one item to the next, so the producer loads the next item's first stages
 * while the consumers store this one.
 *
 * The producer warp's first thread issues the TMA copies of the 128 x 64 A tile and the BN x 64 B
 * tile of each k step (one box per operand when K-major; 64 x 64 boxes, two for A and BN / 64 for
 * B, when MN-major) into the ring of stages (128-byte swizzle, the layouts wgmma reads), completing
 * on the stage's `full` mbarrier. Consumer warpgroups 0 and 1 each own 64 rows: per stage four
 * wgmma.m64nBNk16 (k = 0, 16, 32, 48) committed as one group; once the previous stage's group has
 * completed (one group stays in flight; an item's last stage once its products are done), one
 * arrival per warpgroup on that stage's `empty` mbarrier lets the producer refill it. Barrier
 * phases are waited by parity: use u of a stage is phase u. With a warp, not a warpgroup, for the
 * producer, two blocks of 288 threads leave ptxas 96 registers a thread (64 accumulators and the
 * epilogue's state); two of 384 would leave 80, too few for m64n128k16, and setmaxnreg cannot
 * hand out more than the launch allots. The wide tile's block has the same shape (168 a thread).
 *
 * Epilogue: the functors of gemm_epilogue_ops.cuh on accumulator pairs (one row, two columns), as
 * the mma.sync kernel calls them; an epilogue that reads a mask (the backward's ReLU mask, from
 * the buffer its output overwrites) reads all of the thread's bits before the main loop. Column
 * sums: each thread's rows are folded over the lanes that share columns, the 8 consumer warps'
 * sums go through shared memory, and consumer thread i adds column i's eight in order (double,
 * deterministic); firing counts by integer atomics. Split K (store epilogue, few output tiles):
 * the items' z splits whole k tiles, each writing its partial product, summed in order afterwards.
 * An epilogue with kTmaStore (so far the GEMM playground's, for measuring) takes the other road:
 * the consumers write the fp32 tile into the stages' shared memory, all consumed by then, in
 * 128-byte-swizzled boxes of 128 x 32 (store_offset), and one thread stores each box by TMA, which
 * clips what lies past the matrix; such a launch gives each work item its own block, unsplit.
 *
 * Pairs (MONOSEMANTIC_CUDA_WGMMA_PAIR=on, wide tiles): at long K a wide tile's time is its operand
 * bytes from L2 (bench/kernels/NOTES-gemm-bf16.md), so the blocks of a 2-block cluster take tiles
 * (n, 2p) and (n, 2p + 1) and share B: each producer loads its A and half of B, multicast into both
 * blocks' stages; each empty barrier takes the release of both blocks' consumer warpgroups (one of
 * them a remote arrival), and a producer ends by waiting for every use it filled to be released, so
 * that neither block exits while the other may still arrive on its barriers. A cluster barrier after
 * the barriers' set-up keeps the other block's copies and arrivals from reaching them before.
 *
 * A barrier wait that lasts 10 s (a phase no one will complete: a bug) traps: the launch fails
 * with an error, and the process's CUDA context with it (later CUDA calls fail too), instead of
 * the device hanging. (A debugger paused inside the kernel for 10 s trips it as well.)
 *
 * The kernel body exists only in the sm_90a build (__CUDA_ARCH_FEAT_SM90_ALL); gemm_wgmma.cu's probe
 * tells the host whether the code the device runs has it.
 */
#ifndef MONOSEMANTIC_CUDA_GEMM_WGMMA_KERNEL_CUH
#define MONOSEMANTIC_CUDA_GEMM_WGMMA_KERNEL_CUH

#include <cuda.h>  // CUtensorMap and its enums (types only: the driver entry point is looked up)
#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "common.cuh"
#include "gemm_tensor.cuh"  // kTensorTileRows, device_multiprocessors
#include "gemm_wgmma_layout.h"

namespace ms::cuda {

using bf16 = __nv_bfloat16;

namespace {

using namespace wgmma_layout;

// The shared memory of a block with tiles of BN columns: the stages' operand tiles where the
// layout's a_stage and b_stage put them (each on a 1024-byte swizzle atom), then the barriers and
// the column reduction's rows.
template <int BN>
struct alignas(1024) Smem {
  uint8_t tiles[stage_region_bytes(BN)];
  uint64_t full[stages(BN)];   // TMA completion (transaction bytes)
  uint64_t empty[stages(BN)];  // consumers done with the stage (one arrival per consumer warpgroup)
  double col_sum[kConsumerWarps][BN];  // the column reduction's per-warp sums
  int col_count[kConsumerWarps][BN];
};
template <int BN>
constexpr size_t smem_bytes() { return sizeof(Smem<BN>) + 1024; }  // + room to align the dynamic base to 1024

// An H100's multiprocessor has 228 KB of shared memory, 1 KB of it reserved per resident block; a
// block may opt in to 227 KB.
template <int BN>
constexpr bool fits_multiprocessor() {
  return smem_bytes<BN>() <= 227 * 1024 && blocks_per_sm(BN) * (smem_bytes<BN>() + 1024) <= 228 * 1024;
}
static_assert(fits_multiprocessor<kBN>() && fits_multiprocessor<kSquareBN>(),
              "the blocks_per_sm blocks of each tile fit a multiprocessor's shared memory");

// An epilogue whose tile goes out by TMA (Epi::kTmaStore, an fp32 output [M, N] that the launch maps
// as map_c): the accumulators as they are, one block per work item (the stored tile borrows the
// stages' shared memory, which a block taking items in turn would be loading).
template <typename Epi, typename = void>
struct StoresByTma : std::false_type {};
template <typename Epi>
struct StoresByTma<Epi, std::enable_if_t<Epi::kTmaStore>> : std::true_type {};

// ---- PTX wrappers (sm_90a device code only) -----------------------------------------------------------
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ bool mbar_try_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(smem_u32(bar)), "r"(parity)
      : "memory");
  return done != 0;
}
__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}
// Waits until the phase of `parity` has completed. Every wait here ends within microseconds (a
// TMA copy, or the other side's products on one stage): one that lasts kStallNs means a phase no
// one will complete, and the kernel traps, so that the launch fails with an error (the CUDA
// context with it) rather than holding the device forever.
constexpr uint64_t kStallNs = 10'000'000'000ull;  // 10 s
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  if (mbar_try_wait(bar, parity)) return;
  const uint64_t start = global_ns();
  for (uint32_t tries = 1; !mbar_try_wait(bar, parity); ++tries)
    if (tries % 1024 == 0 && global_ns() - start > kStallNs) __trap();
}

// The box at (c0 = k, c1 = row) of `map` into dst, completing its bytes on bar.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::
          "r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
}

// As tma_load_2d, the box also landing in the other blocks of `cta_mask` (a bit per cluster rank) at
// the same shared-memory offset, each completing its bytes on its own barrier at bar's offset.
__device__ __forceinline__ void tma_load_2d_multicast(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1,
                                                      uint16_t cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster "
      "[%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "h"(cta_mask)
      : "memory");
}
// One arrival on the barrier at bar's offset in the shared memory of cluster rank `rank`.
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t* bar, uint32_t rank) {
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(smem_u32(bar)),
      "r"(rank)
      : "memory");
}
__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
// Every thread of every block of the cluster: what each wrote before is visible to all after.
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// The box at (c0 = column, c1 = row) of `map` from src: TMA clips what lies past the matrix.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, const void* src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(smem_u32(src)), "r"(c0), "r"(c1)
               : "memory");
}
__device__ __forceinline__ void st_shared_v2(uint32_t addr, float x, float y) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(x), "f"(y) : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Until every committed store has read its shared memory (the block may then reuse or leave it).
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
// Shared-memory writes by threads made visible to the TMA (async proxy) reads that follow.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
}

// Pins each accumulator register at this point of the program: the compiler may not move the
// accumulators' zeroing past the first wgmma.fence, nor the epilogue's reads above wgmma.wait_group
// (the asm statements' "memory" clobbers do not order register uses).
template <int N>
__device__ __forceinline__ void fence_accumulators(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// The consumer warpgroups' own barrier (the producer's threads do not take part).
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;\n" ::"n"(128 * kConsumers) : "memory"); }

// d[128] += A (64 x 16, descriptor da) times B (16 x 256, descriptor db) from shared memory, each
// K-major (0) or MN-major (1: wgmma's imm-trans-a / imm-trans-b).
template <int TransA, int TransB>
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[accumulators(kBN)], uint64_t da, uint64_t db) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, 1, 0;\n"  // scale-d: accumulate into d
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
      "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, "
      "%47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, "
      "%70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, "
      "%93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, "
      "%113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
      "%128, %129, p, 1, 1, %130, %131;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]),
        "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]),
        "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]),
        "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]),
        "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]),
        "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]),
        "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
        "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]),
        "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]),
        "+f"(d[126]), "+f"(d[127])
      : "l"(da), "l"(db), "n"(TransA), "n"(TransB));
}


// The square tile's product: d[64] += A (64 x 16) times B (16 x 128), as wgmma_m64n256k16.
template <int TransA, int TransB>
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[accumulators(kSquareBN)], uint64_t da, uint64_t db) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, 1, 0;\n"  // scale-d: accumulate into d
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, %66, %67;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "n"(TransA), "n"(TransB));
}
#endif

// ---- the kernel ------------------------------------------------------------------------------------

// Block b of gridDim.x takes work items b, b + gridDim.x, ... of tiles_n x tiles_m x splits
// (work_item): C columns n0 = tile_n * BN .., rows m0 = tile_m * kBM .., k tiles
// [split_begin(z), split_begin(z + 1)) of k_tiles. AMN: A stored [K, M] (MN-major), else [M, K];
// BMN: B stored [K, N], else [N, K]. BN: the tile's columns, kBN (wide) or kSquareBN (square).
// Pair (wide tiles only; launched in clusters of 2): the blocks of a cluster take pair items
// (pair_work_item) and share B's loads (gemm_wgmma_layout.h, "pairs"); map_b's K-major box is then
// BN / 2 rows.
template <bool AMN, bool BMN, int BN, bool Pair, typename Epi>
__global__ void __launch_bounds__(wgmma_layout::kThreads, wgmma_layout::blocks_per_sm(BN))
    gemm_wgmma_kernel(int M, int N, int k_tiles, int splits, const __grid_constant__ CUtensorMap map_a,
                      const __grid_constant__ CUtensorMap map_b, const __grid_constant__ CUtensorMap map_c, Epi epi) {
  static_assert(BN == kBN || BN == kSquareBN, "a wide or a square tile");
  static_assert(!Pair || BN == kBN, "pairs share the wide tile's B");
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ uint8_t smem_raw[];
  Smem<BN>& s = *reinterpret_cast<Smem<BN>*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const int tiles_n = int((N + (long long)BN - 1) / BN), tiles_m = int((M + (long long)kBM - 1) / kBM);
  // The items this block takes: first, first + stride, ... below items; a pair's blocks take the
  // same pair items, each its rank's tile of them.
  const int rank = Pair ? int(cluster_rank()) : 0;
  const long long items = (long long)tiles_n * (Pair ? pair_tiles_m(tiles_m) : tiles_m) * splits;
  const long long first = Pair ? blockIdx.x / kPair : blockIdx.x, stride = Pair ? gridDim.x / kPair : gridDim.x;
  if (threadIdx.x == 0) {
    for (int i = 0; i < stages(BN); ++i) {
      mbar_init(&s.full[i], 1);
      mbar_init(&s.empty[i], Pair ? kPairArrivals : kConsumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    fence_proxy_async();
  }
  __syncthreads();
  if constexpr (Pair) cluster_sync();  // both blocks' barriers are set up before either's copies or arrivals reach them

  if (threadIdx.x >= kConsumerThreads) {  // the producer's warp
    if (threadIdx.x == kConsumerThreads) {
      int g = 0;  // this block's stage use
      for (long long item = first; item < items; item += stride) {
        const WorkItem t = Pair ? pair_work_item(item, tiles_n, tiles_m, rank) : work_item(item, tiles_n, tiles_m);
        const int n0 = t.tile_n * BN, m0 = t.tile_m * kBM;
        const int kt_begin = split_begin(t.z, k_tiles, splits);
        const int kt_count = split_begin(t.z + 1, k_tiles, splits) - kt_begin;
        for (int i = 0; i < kt_count; ++i, ++g) {
          const int st = stage_of(BN, g);
          if (g >= stages(BN)) mbar_wait(&s.empty[st], empty_parity(BN, g));  // its previous use is released
          mbar_arrive_expect_tx(&s.full[st], stage_bytes(BN));
          const int k0 = tma_k(kt_begin + i);
          // MN-major: boxes of 64 k rows x 64 mn at coordinates (mn, k); K-major: one box per operand
          // at (k, row).
          uint8_t* a = s.tiles + a_stage(st);
          uint8_t* b = s.tiles + b_stage(BN, st);
          if constexpr (AMN)
            for (int c = 0; c < kConsumers; ++c) tma_load_2d(a + a_box_offset_mn(c), &map_a, &s.full[st], tma_a_mn(m0, c), k0);
          else
            tma_load_2d(a, &map_a, &s.full[st], k0, m0);
          if constexpr (Pair) {  // this rank's half of B, into both blocks
            if constexpr (BMN)
              for (int q = b_half_first_box(BN, rank); q < b_half_first_box(BN, rank) + BN / kMNBox / 2; ++q)
                tma_load_2d_multicast(b + b_box_offset_mn(q), &map_b, &s.full[st], tma_b_mn(n0, q), k0, 0x3);
            else
              tma_load_2d_multicast(b + b_half_offset(BN, rank), &map_b, &s.full[st], k0, b_half_row(n0, BN, rank), 0x3);
          } else if constexpr (BMN) {
            for (int q = 0; q < BN / kMNBox; ++q) tma_load_2d(b + b_box_offset_mn(q), &map_b, &s.full[st], tma_b_mn(n0, q), k0);
          } else {
            tma_load_2d(b, &map_b, &s.full[st], k0, n0);
          }
        }
      }
      if constexpr (Pair) {
        // Until both blocks' consumers have released every use this block filled: the other block's
        // last arrivals on this block's barriers, and its last reads of the B halves this block sent,
        // are done before this block exits.
        for (int i = 0; i < stages(BN); ++i, ++g)
          if (g >= stages(BN)) mbar_wait(&s.empty[stage_of(BN, g)], empty_parity(BN, g));
      }
    }
    return;
  }

  const int consumer = threadIdx.x / 128;
  const int lane = threadIdx.x % 32, w = (threadIdx.x % 128) / 32;
  const bool leader = threadIdx.x % 128 == 0;  // arrives for its warpgroup on the empty barriers
  const bool columns = Epi::kColumnSums && epi.columns();  // uniform over the block
  const int cw = consumer_warp(consumer, w);
  int g = 0;  // this block's stage use, as the producer counts them
  // A stage use is released on this block's empty barrier and, in a pair, on the other block's.
  const auto release = [&](int st) {
    mbar_arrive(&s.empty[st]);
    if constexpr (Pair) mbar_arrive_cluster(&s.empty[st], uint32_t(rank ^ 1));
  };
  for (long long item = first; item < items; item += stride) {
    const WorkItem t = Pair ? pair_work_item(item, tiles_n, tiles_m, rank) : work_item(item, tiles_n, tiles_m);
    const int n0 = t.tile_n * BN, tile_m = t.tile_m, m0 = tile_m * kBM;
    const int kt_begin = split_begin(t.z, k_tiles, splits);
    const int kt_count = split_begin(t.z + 1, k_tiles, splits) - kt_begin;
    const int row_base = m0 + consumer * kConsumerRows;  // this warpgroup's first row of C

    // The mask bits of every output pair (kReadsMask), read before any output of the tile is written.
    unsigned long long masks[2] = {0, 0};
    if constexpr (Epi::kReadsMask) {
#pragma unroll
      for (int j = 0; j < BN / 8; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = row_base + acc_row(w, lane, 2 * h), col = n0 + acc_col(lane, j, 0);
          if (row < M && col < N)
            masks[mask_word(j, h)] |= static_cast<unsigned long long>(epi.live(row, col, col + 1 < N)) << mask_shift(j, h);
        }
    }

    float d[accumulators(BN)];
#pragma unroll
    for (int i = 0; i < accumulators(BN); ++i) d[i] = 0.0f;
    fence_accumulators(d);
    for (int i = 0; i < kt_count; ++i, ++g) {
      const int st = stage_of(BN, g);
      mbar_wait(&s.full[st], full_parity(BN, g));
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        const uint32_t a = smem_u32(s.tiles + a_stage(st)), b = smem_u32(s.tiles + b_stage(BN, st));
        const uint64_t da = AMN ? smem_descriptor_mn(a + a_operand_offset_mn(consumer, kk))
                                : smem_descriptor(a + a_operand_offset(consumer, kk));
        const uint64_t db = BMN ? smem_descriptor_mn(b + b_operand_offset_mn(kk)) : smem_descriptor(b + b_operand_offset(kk));
        if constexpr (BN == kBN) wgmma_m64n256k16<AMN ? 1 : 0, BMN ? 1 : 0>(d, da, db);
        else wgmma_m64n128k16<AMN ? 1 : 0, BMN ? 1 : 0>(d, da, db);
      }
      wgmma_commit();
      // One group in flight: this stage's products run while the previous stage is handed back.
      wgmma_wait<1>();
      if (i > 0 && leader) release(stage_of(BN, g - 1));
    }
    wgmma_wait<0>();
    fence_accumulators(d);
    // The item's last stage is handed back too: the producer may be loading the next item already.
    if (kt_count > 0 && leader) release(stage_of(BN, g - 1));

    if (Pair && m0 >= M) continue;  // a pair's rank-1 tile past the matrix: nothing to store (uniform over the block)
    if constexpr (StoresByTma<Epi>::value) {
      // The launch gives this block this one item: every stage is consumed once both warpgroups'
      // products are done, and the tile may take their shared memory.
      consumers_sync();
      const uint32_t tiles = smem_u32(s.tiles);
#pragma unroll
      for (int j = 0; j < BN / 8; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          st_shared_v2(tiles + staged_pair_offset(consumer, w, lane, j, h), d[4 * j + 2 * h], d[4 * j + 2 * h + 1]);
      fence_proxy_async();
      consumers_sync();
      if (threadIdx.x == 0) {
        for (int b = 0; b < store_boxes(BN); ++b)
          if (store_box_col(n0, b) < N) tma_store_2d(&map_c, s.tiles + store_box_offset(b), store_box_col(n0, b), m0);
        bulk_commit();
        bulk_wait_read();
      }
    } else {
      // Epilogue: d[4j + 2h], d[4j + 2h + 1] are columns col, col + 1 of one row.
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        double sum[2] = {0.0, 0.0};  // this lane's rows of columns col, col + 1
        int count[2] = {0, 0};
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = row_base + acc_row(w, lane, 2 * h), col = n0 + acc_col(lane, j, 0);
          if (row >= M || col >= N) continue;
          const unsigned mask = static_cast<unsigned>(masks[mask_word(j, h)] >> mask_shift(j, h)) & 3u;
          const float2 out = epi(t.z, row, col, d[4 * j + 2 * h], d[4 * j + 2 * h + 1], col + 1 < N, mask);
          if constexpr (Epi::kColumnSums) {
            sum[0] += double(out.x);
            sum[1] += double(out.y);
            count[0] += out.x > 0.0f ? 1 : 0;
            count[1] += out.y > 0.0f ? 1 : 0;
          }
        }
        if constexpr (Epi::kColumnSums) {
          if (columns) {
            // Lanes 4g + t (g = 0..7) hold the same columns: a fixed xor tree over g.
#pragma unroll
            for (int c = 0; c < 2; ++c)
#pragma unroll
              for (int offset = 4; offset < 32; offset <<= 1) {
                sum[c] += __shfl_xor_sync(0xffffffffu, sum[c], offset);
                count[c] += __shfl_xor_sync(0xffffffffu, count[c], offset);
              }
            if (lane < 4) {
#pragma unroll
              for (int c = 0; c < 2; ++c) {
                s.col_sum[cw][acc_col(lane, j, c)] = sum[c];
                s.col_count[cw][acc_col(lane, j, c)] = count[c];
              }
            }
          }
        }
      }
      if constexpr (Epi::kColumnSums) {
        if (columns) {
          consumers_sync();
          const int local = threadIdx.x;  // consumer thread 0 .. 255: column n0 + local, if local < BN
          const int col = n0 + local;
          if (local < BN && col < N) {
            double total = 0.0;
            int fired = 0;
#pragma unroll
            for (int k = 0; k < kConsumerWarps; ++k) {
              total += s.col_sum[k][local];
              fired += s.col_count[k][local];
            }
            epi.partial()[size_t(tile_m) * N + col] = total;  // partial[tile_m, col]
            if (epi.fired() && fired) atomicAdd(epi.fired() + col, fired);
          }
          consumers_sync();  // every sum read before the next item's are written
        }
      }
    }
  }
#endif
}

static_assert(kBN <= 128 * kConsumers && kSquareBN <= 128 * kConsumers,
              "a consumer thread for each column of the tile in the column reduction");
static_assert(kBM == kTensorTileRows, "partial[tile_m, col]: the callers size col_partial by the tensor tiles' rows");

// ---- host ----------------------------------------------------------------------------------------

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiled encode_tiled() {
  static const EncodeTiled fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    (void)cudaGetLastError();
    return reinterpret_cast<EncodeTiled>(p);
  }();
  return fn;
}

// The map of a row-major bf16 matrix [rows, cols] (leading dimension ld) read in boxes of
// box_rows x kBK, 128-byte swizzled, zeros outside the matrix.
bool make_map(CUtensorMap* map, const bf16* base, int rows, int cols, int ld, int box_rows) {
  const EncodeTiled encode = encode_tiled();
  if (!encode) return false;
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ld) * sizeof(bf16)};
  const cuuint32_t box[2] = {cuuint32_t(kBK), cuuint32_t(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bf16*>(base), dims, strides, box, elem_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// The map of a row-major fp32 output [rows, cols] (leading dimension ld) written in boxes of kBM rows
// x kStoreBoxCols, 128-byte swizzled (store_offset): the TMA store clips what lies outside.
bool make_store_map(CUtensorMap* map, float* base, int rows, int cols, int ld) {
  const EncodeTiled encode = encode_tiled();
  if (!encode) return false;
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ld) * sizeof(float)};
  const cuuint32_t box[2] = {cuuint32_t(kStoreBoxCols), cuuint32_t(kBM)};
  const cuuint32_t elem_strides[2] = {1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, base, dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Block slots of the GPU for tiles of bn columns: the blocks resident at once.
int slots(int bn) { return device_multiprocessors() * blocks_per_sm(bn); }

// A stored [K, M] (AMN) or [M, K]; B stored [K, N] (BMN) or [N, K]; tiles of BN columns; Pair: in
// clusters of two blocks sharing B.
template <bool AMN, bool BMN, int BN, bool Pair, typename Epi>
int launch(const Op& op, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb, const Epi& epi,
           int splits) {
  auto kernel = gemm_wgmma_kernel<AMN, BMN, BN, Pair, Epi>;
  constexpr bool kTma = StoresByTma<Epi>::value;
  if (kTma && splits != 1) return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "gemm_wgmma: a TMA-stored tile is not split");
  CUtensorMap map_a, map_b, map_c{};
  bool mapped = (AMN ? make_map(&map_a, A, K, M, lda, kMNBox) : make_map(&map_a, A, M, K, lda, kBM)) &&
                (BMN ? make_map(&map_b, B, K, N, ldb, kMNBox) : make_map(&map_b, B, N, K, ldb, Pair ? BN / 2 : BN));
  if constexpr (kTma) mapped = mapped && make_store_map(&map_c, epi.C, M, N, epi.ldc);
  if (!mapped)
    return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "gemm_wgmma: cuTensorMapEncodeTiled refused the operands");
  constexpr size_t kSmemBytes = smem_bytes<BN>();
  MS_TRY(check(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemBytes)),
               "cudaFuncSetAttribute"));
  if constexpr (blocks_per_sm(BN) > 1)  // room in shared memory for the blocks that share a multiprocessor
    MS_TRY(check(op, cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, int(cudaSharedmemCarveoutMaxShared)),
                 "cudaFuncSetAttribute"));
  const int k_tiles = int((K + (long long)kBK - 1) / kBK);
  const long long tiles_n = (N + (long long)BN - 1) / BN, tiles_m = (M + (long long)kBM - 1) / kBM;
  if constexpr (Pair) {
    // A block per pair item and rank, or a pair of blocks per pair of slots taking pair items in turn.
    const long long items = tiles_n * pair_tiles_m(int(tiles_m)) * splits;
    const long long blocks = kPair * (kTma ? items : block_count(items, k_tiles, splits, slots(BN) / kPair));
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(static_cast<unsigned int>(blocks));
    config.blockDim = dim3(wgmma_layout::kThreads);
    config.dynamicSmemBytes = kSmemBytes;
    config.stream = op.stream;
    cudaLaunchAttribute cluster{};
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = kPair;
    cluster.val.clusterDim.y = 1;
    cluster.val.clusterDim.z = 1;
    config.attrs = &cluster;
    config.numAttrs = 1;
    MS_TRY(check(op, cudaLaunchKernelEx(&config, kernel, M, N, k_tiles, splits, map_a, map_b, map_c, epi), "cudaLaunchKernelEx"));
  } else {
    const long long items = tiles_n * tiles_m * splits;
    const long long blocks = kTma ? items : block_count(items, k_tiles, splits, slots(BN));
    kernel<<<static_cast<unsigned int>(blocks), wgmma_layout::kThreads, kSmemBytes, op.stream>>>(M, N, k_tiles, splits,
                                                                                                   map_a, map_b, map_c, epi);
  }
  return check_launch(op, "gemm_wgmma_kernel");
}

// Whether wide tiles run in pairs sharing B: MONOSEMANTIC_CUDA_WGMMA_PAIR=on (read at each call; off
// by default until measured).
bool wgmma_pairs() {
  const char* v = std::getenv("MONOSEMANTIC_CUDA_WGMMA_PAIR");
  return v && std::strcmp(v, "on") == 0;
}

// launch with the tile of bn columns (kBN or kSquareBN); wide tiles in pairs where wgmma_pairs() and
// there are two tile rows or more (with one, every pair's rank-1 block would only load zeros).
template <bool AMN, bool BMN, typename Epi>
int launch_tile(int bn, const Op& op, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb,
                const Epi& epi, int splits) {
  if (bn == kSquareBN) return launch<AMN, BMN, kSquareBN, false>(op, M, N, K, A, lda, B, ldb, epi, splits);
  if (wgmma_pairs() && M > kBM) return launch<AMN, BMN, kBN, true>(op, M, N, K, A, lda, B, ldb, epi, splits);
  return launch<AMN, BMN, kBN, false>(op, M, N, K, A, lda, B, ldb, epi, splits);
}

}  // namespace
}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_GEMM_WGMMA_KERNEL_CUH
