/*
 * gemm_wgmma.cu — the Hopper bf16 GEMM of gemm_wgmma.cuh: acc = op(A) op(B) with each operand
 * K-major or MN-major (wgmma's transposed operands) as it is stored.
 *
 * Why: mma.sync reaches 200-300 TFLOP/s on Hopper (26-39% of cuBLAS); wgmma reads both operands
 * from shared memory without ldmatrix, 64 x 256 x 16 per instruction per warpgroup, and TMA moves a
 * whole tile with one thread and no registers.
 *
 * Block: 3 warpgroups (384 threads), one 128 x 256 output tile at a time (index math:
 * gemm_wgmma_layout.h). A block per work item (tile and split of K); where K is short (at most
 * 1,024, not split) and the tiles outnumber the multiprocessors, a block per multiprocessor takes
 * tiles in turn (block_count), its stage ring running on from one item to the next, so the
 * producer loads the next item's first stages while the consumers store this one. Warpgroup 0 is
 * the producer:
 * one thread issues the TMA copies of the 128 x 64 A tile and the 256 x 64 B tile of each k step
 * (one box per operand when K-major; 64 x 64 boxes, two for A or four for B, when MN-major) into a
 * ring of kStages stages (128-byte swizzle, the layouts wgmma reads), completing on the stage's
 * `full` mbarrier. Warpgroups 1 and 2 each own 64 rows: per stage four wgmma.m64n256k16 (k = 0,
 * 16, 32, 48) committed as one group; once the previous stage's group has completed (one group
 * stays in flight; an item's last stage once its products are done), one arrival per warpgroup on
 * that stage's `empty` mbarrier lets the producer refill it. setmaxnreg moves registers to the
 * consumers (40 / 232 per thread). Barrier phases are waited by parity: use u of a stage is phase u.
 *
 * Epilogue: the functors of gemm_epilogue_ops.cuh on accumulator pairs (one row, two columns), as
 * the mma.sync kernel calls them; an epilogue that reads a mask (the backward's ReLU mask, from
 * the buffer its output overwrites) reads all of the thread's bits before the main loop. Column
 * sums: each thread's rows are folded over the lanes that share columns, the 8 consumer warps'
 * sums go through shared memory, and consumer thread i adds column i's eight in order (double,
 * deterministic); firing counts by integer atomics. Split K (store epilogue, few output tiles):
 * the items' z splits whole k tiles, each writing its partial product, summed in order afterwards.
 *
 * A barrier wait that lasts 10 s (a phase no one will complete: a bug) traps: the launch fails
 * with an error, and the process's CUDA context with it (later CUDA calls fail too), instead of
 * the device hanging. (A debugger paused inside the kernel for 10 s trips it as well.)
 *
 * The kernel body exists only in the sm_90a build (__CUDA_ARCH_FEAT_SM90_ALL); a probe tells the
 * host whether the code the device runs has it.
 */
#include "gemm_wgmma.cuh"

#include <cuda.h>  // CUtensorMap and its enums (types only: the driver entry point is looked up)

#include <cstdlib>
#include <cstring>

#include "gemm_epilogue_ops.cuh"
#include "gemm_wgmma_layout.h"

namespace ms::cuda {

using bf16 = __nv_bfloat16;
using namespace wgmma_layout;

namespace {

struct alignas(1024) Smem {
  bf16 A[kStages][kBM * kBK];  // 16 KB per stage (a multiple of 1024: each stage stays swizzle-aligned)
  bf16 B[kStages][kBN * kBK];  // 32 KB per stage
  uint64_t full[kStages];      // TMA completion (transaction bytes)
  uint64_t empty[kStages];     // consumers done with the stage (one arrival per consumer warpgroup)
  double col_sum[kConsumerWarps][kBN];  // the column reduction's per-warp sums
  int col_count[kConsumerWarps][kBN];
};
constexpr size_t kSmemBytes = sizeof(Smem) + 1024;  // + room to align the dynamic base to 1024

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

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
}

template <uint32_t Regs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Regs));
}
template <uint32_t Regs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Regs));
}

// The consumer warpgroups' own barrier (the producer's threads do not take part).
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;\n" ::"n"(128 * kConsumers) : "memory"); }

// d[128] += A (64 x 16, descriptor da) times B (16 x 256, descriptor db) from shared memory, each
// K-major (0) or MN-major (1: wgmma's imm-trans-a / imm-trans-b).
template <int TransA, int TransB>
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[kAccumulators], uint64_t da, uint64_t db) {
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

#endif

// ---- the kernel ------------------------------------------------------------------------------------

// Block b of gridDim.x takes work items b, b + gridDim.x, ... of tiles_n x tiles_m x splits
// (work_item): C columns n0 = tile_n * kBN .., rows m0 = tile_m * kBM .., k tiles
// [split_begin(z), split_begin(z + 1)) of k_tiles. AMN: A stored [K, M] (MN-major), else [M, K];
// BMN: B stored [K, N], else [N, K].
template <bool AMN, bool BMN, typename Epi>
__global__ void __launch_bounds__(wgmma_layout::kThreads, 1)
    gemm_wgmma_kernel(int M, int N, int k_tiles, int splits, const __grid_constant__ CUtensorMap map_a,
                      const __grid_constant__ CUtensorMap map_b, Epi epi) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ uint8_t smem_raw[];
  Smem& s = *reinterpret_cast<Smem*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const int tiles_n = int((N + (long long)kBN - 1) / kBN), tiles_m = int((M + (long long)kBM - 1) / kBM);
  const long long items = (long long)tiles_n * tiles_m * splits;
  const int wg = threadIdx.x / 128;
  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) {
      mbar_init(&s.full[i], 1);
      mbar_init(&s.empty[i], kConsumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {  // the producer
    setmaxnreg_dec<40>();
    if (threadIdx.x == 0) {
      int g = 0;  // this block's stage use
      for (long long item = blockIdx.x; item < items; item += gridDim.x) {
        const WorkItem t = work_item(item, tiles_n, tiles_m);
        const int n0 = t.tile_n * kBN, m0 = t.tile_m * kBM;
        const int kt_begin = split_begin(t.z, k_tiles, splits);
        const int kt_count = split_begin(t.z + 1, k_tiles, splits) - kt_begin;
        for (int i = 0; i < kt_count; ++i, ++g) {
          const int st = g % kStages;
          if (g >= kStages) mbar_wait(&s.empty[st], ((g / kStages) - 1) & 1);  // its previous use is done
          mbar_arrive_expect_tx(&s.full[st], kStageBytes);
          const int k0 = tma_k(kt_begin + i);
          // MN-major: boxes of 64 k rows x 64 mn at coordinates (mn, k); K-major: one box per operand
          // at (k, row).
          uint8_t* a = reinterpret_cast<uint8_t*>(s.A[st]);
          uint8_t* b = reinterpret_cast<uint8_t*>(s.B[st]);
          if constexpr (AMN)
            for (int c = 0; c < kConsumers; ++c) tma_load_2d(a + a_box_offset_mn(c), &map_a, &s.full[st], tma_a_mn(m0, c), k0);
          else
            tma_load_2d(a, &map_a, &s.full[st], k0, m0);
          if constexpr (BMN)
            for (int q = 0; q < kBN / kMNBox; ++q) tma_load_2d(b + b_box_offset_mn(q), &map_b, &s.full[st], tma_b_mn(n0, q), k0);
          else
            tma_load_2d(b, &map_b, &s.full[st], k0, n0);
        }
      }
    }
    return;
  }

  setmaxnreg_inc<232>();
  const int consumer = wg - 1;
  const int lane = threadIdx.x % 32, w = (threadIdx.x % 128) / 32;
  const bool leader = threadIdx.x % 128 == 0;  // arrives for its warpgroup on the empty barriers
  const bool columns = Epi::kColumnSums && epi.columns();  // uniform over the block
  const int cw = consumer_warp(consumer, w);
  int g = 0;  // this block's stage use, as the producer counts them
  for (long long item = blockIdx.x; item < items; item += gridDim.x) {
    const WorkItem t = work_item(item, tiles_n, tiles_m);
    const int n0 = t.tile_n * kBN, tile_m = t.tile_m, m0 = tile_m * kBM;
    const int kt_begin = split_begin(t.z, k_tiles, splits);
    const int kt_count = split_begin(t.z + 1, k_tiles, splits) - kt_begin;
    const int row_base = m0 + consumer * kConsumerRows;  // this warpgroup's first row of C

    // The mask bits of every output pair (kReadsMask), read before any output of the tile is written.
    unsigned long long masks[2] = {0, 0};
    if constexpr (Epi::kReadsMask) {
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = row_base + acc_row(w, lane, 2 * h), col = n0 + acc_col(lane, j, 0);
          if (row < M && col < N)
            masks[mask_word(j, h)] |= static_cast<unsigned long long>(epi.live(row, col, col + 1 < N)) << mask_shift(j, h);
        }
    }

    float d[kAccumulators];
#pragma unroll
    for (int i = 0; i < kAccumulators; ++i) d[i] = 0.0f;
    for (int i = 0; i < kt_count; ++i, ++g) {
      const int st = g % kStages;
      mbar_wait(&s.full[st], (g / kStages) & 1);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        const uint32_t a = smem_u32(s.A[st]), b = smem_u32(s.B[st]);
        const uint64_t da = AMN ? smem_descriptor_mn(a + a_operand_offset_mn(consumer, kk))
                                : smem_descriptor(a + a_operand_offset(consumer, kk));
        const uint64_t db = BMN ? smem_descriptor_mn(b + b_operand_offset_mn(kk)) : smem_descriptor(b + b_operand_offset(kk));
        wgmma_m64n256k16<AMN ? 1 : 0, BMN ? 1 : 0>(d, da, db);
      }
      wgmma_commit();
      // One group in flight: this stage's products run while the previous stage is handed back.
      wgmma_wait<1>();
      if (i > 0 && leader) mbar_arrive(&s.empty[(g - 1) % kStages]);
    }
    wgmma_wait<0>();
    // The item's last stage is handed back too: the producer may be loading the next item already.
    if (kt_count > 0 && leader) mbar_arrive(&s.empty[(g - 1) % kStages]);

    // Epilogue: d[4j + 2h], d[4j + 2h + 1] are columns col, col + 1 of one row.
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
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
        const int local = threadIdx.x - 128;  // consumer thread 0 .. 255: column n0 + local
        const int col = n0 + local;
        if (col < N) {
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
#endif
}

static_assert(kBN == 128 * kConsumers, "one consumer thread per column of the tile in the column reduction");
static_assert(kBM == kTensorTileRows, "partial[tile_m, col]: the callers size col_partial by the tensor tiles' rows");

// A one-thread kernel that says whether the device runs this file's sm_90a code.
__global__ void wgmma_probe_kernel(int* out) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

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

enum class Choice { Auto, Always, Never };

Choice choice() {
  const char* v = std::getenv("MONOSEMANTIC_CUDA_GEMM");
  if (v && std::strcmp(v, "wgmma") == 0) return Choice::Always;
  if (v && std::strcmp(v, "mma") == 0) return Choice::Never;
  return Choice::Auto;
}

// A stored [K, M] (AMN) or [M, K]; B stored [K, N] (BMN) or [N, K].
template <bool AMN, bool BMN, typename Epi>
int launch(const Op& op, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb, const Epi& epi,
           int splits) {
  CUtensorMap map_a, map_b;
  const bool mapped = (AMN ? make_map(&map_a, A, K, M, lda, kMNBox) : make_map(&map_a, A, M, K, lda, kBM)) &&
                      (BMN ? make_map(&map_b, B, K, N, ldb, kMNBox) : make_map(&map_b, B, N, K, ldb, kBN));
  if (!mapped)
    return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "gemm_wgmma: cuTensorMapEncodeTiled refused the operands");
  auto kernel = gemm_wgmma_kernel<AMN, BMN, Epi>;
  MS_TRY(check(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemBytes)),
               "cudaFuncSetAttribute"));
  const int k_tiles = int((K + (long long)kBK - 1) / kBK);
  const long long items = (long long)((N + (long long)kBN - 1) / kBN) * ((M + (long long)kBM - 1) / kBM) * splits;
  const long long blocks = block_count(items, k_tiles, splits, device_multiprocessors());
  kernel<<<static_cast<unsigned int>(blocks), wgmma_layout::kThreads, kSmemBytes, op.stream>>>(M, N, k_tiles, splits,
                                                                                                 map_a, map_b, epi);
  return check_launch(op, "gemm_wgmma_kernel");
}

int unsupported(const Op& op, const char* what) {
  return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "gemm_wgmma: %s", what);
}

}  // namespace

bool wgmma_chosen(bool store_epilogue, int M, int N, int K) {
  switch (choice()) {
    case Choice::Never:
      return false;
    case Choice::Always:
      return wgmma_runs();
    case Choice::Auto:
      break;
  }
  return store_epilogue && K >= kWgmmaAutoMinK && (long long)M * N >= kWgmmaAutoMinOutputs && wgmma_runs();
}

bool wgmma_runs() {
  static int runs = -1;  // the probe's answer: 1, 0; -1 not yet asked
  if (runs < 0) {
    runs = 0;
    int device = 0, major = 0, minor = 0;
    if (encode_tiled() && cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess && major == 9 &&
        minor == 0) {
      int* flag = nullptr;
      int host = 0;
      if (cudaMalloc(&flag, sizeof(int)) == cudaSuccess) {
        // The flag starts at 0, so a kernel that did not run answers "no", whatever cudaMalloc returned.
        if (cudaMemset(flag, 0, sizeof(int)) == cudaSuccess) {
          wgmma_probe_kernel<<<1, 1>>>(flag);
          if (cudaGetLastError() == cudaSuccess && cudaMemcpy(&host, flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess)
            runs = host == 1 ? 1 : 0;
        }
        cudaFree(flag);
      }
    }
    (void)cudaGetLastError();  // a failed probe means "no", not an error for the next launch
  }
  return runs == 1;
}

bool wgmma_fits(bool trans_a, bool trans_b, int M, int N, int K, const void* A, int lda, const void* B, int ldb) {
  // trans_a: A stored [K, M] (MN-major); trans_b: B stored [N, K] (K-major).
  // One block per work item at most: the item count must fit a grid's x (up to 8 splits).
  const bool shape = M >= 1 && N >= 1 && K >= 1 &&
                     (long long)((M + (long long)kBM - 1) / kBM) * ((N + (long long)kBN - 1) / kBN) * 8 <= 0x7fffffffLL;
  const bool lds = lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N);
  return shape && lds && lda % 8 == 0 && ldb % 8 == 0 && aligned(A, 16) && aligned(B, 16);
}

int gemm_wgmma(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B,
               int ldb, const EpilogueStore& epilogue) {
  if (M == 0 || N == 0) return MS_OK;
  if (!wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb)) return unsupported(op, "operands outside its requirements");
  if (trans_a && trans_b) return unsupported(op, "no TT order");
  const auto run = [&](const StoreOp& epi, int splits) {
    if (!trans_a && trans_b) return launch<false, false>(op, M, N, K, A, lda, B, ldb, epi, splits);  // NT
    if (!trans_a) return launch<false, true>(op, M, N, K, A, lda, B, ldb, epi, splits);             // NN
    return launch<true, true>(op, M, N, K, A, lda, B, ldb, epi, splits);                            // TN
  };
  const long long tiles = (long long)((M + (long long)kBM - 1) / kBM) * ((N + (long long)kBN - 1) / kBN);
  // Too few output tiles for the GPU: K is split (split_count of gemm_wgmma_layout.h).
  return store_with_splits(op, M, N, split_count(tiles, int((K + (long long)kBK - 1) / kBK), device_multiprocessors()), epilogue, run);
}

int gemm_wgmma(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B,
               int ldb, const EpilogueBiasAct& epilogue) {
  if (!epilogue.bias) return invalid(op.err, op.name, "gemm: null bias");
  if (M == 0 || N == 0) return MS_OK;
  if (!wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb)) return unsupported(op, "operands outside its requirements");
  if (trans_a || trans_b) return unsupported(op, "the bias-activation epilogue is compiled for NN only");
  if (!epilogue_activation(epilogue.act)) return unsupported(op, "no bias-activation epilogue for this activation");
  const bool pair_ok = aligned(epilogue.f, 8) && aligned(epilogue.f_bf, 4) && epilogue.ld % 2 == 0;
  if (epilogue.act == MS_ACT_GELU_TANH)
    return launch<false, true>(op, M, N, K, A, lda, B, ldb, BiasActOp<MS_ACT_GELU_TANH>{epilogue, pair_ok}, 1);
  return launch<false, true>(op, M, N, K, A, lda, B, ldb, BiasActOp<MS_ACT_RELU>{epilogue, pair_ok}, 1);
}

int gemm_wgmma(const Op& op, bool trans_a, bool trans_b, int M, int N, int K, const bf16* A, int lda, const bf16* B,
               int ldb, const EpilogueFeatureGrad& epilogue) {
  if (!epilogue.f_bf) return invalid(op.err, op.name, "gemm: null activations");
  if (M == 0 || N == 0) return MS_OK;
  if (!wgmma_fits(trans_a, trans_b, M, N, K, A, lda, B, ldb)) return unsupported(op, "operands outside its requirements");
  if (trans_a || !trans_b) return unsupported(op, "the feature-gradient epilogue is compiled for NT only");
  const bool pair_ok = aligned(epilogue.gp, 8) && aligned(epilogue.gp_bf, 4) && aligned(epilogue.f_bf, 4) &&
                       epilogue.ld % 2 == 0;
  return launch<false, false>(op, M, N, K, A, lda, B, ldb, FeatureGradOp{epilogue, pair_ok}, 1);
}

}  // namespace ms::cuda
