/*
 * gemm_wgmma.cuh — version 3 of the bf16 GEMM playground (bench/kernels/gemm_bf16.cu): Hopper's
 * warpgroup MMA (wgmma, sm_90a) fed by the tensor-memory accelerator (TMA), for the storage order
 * in which both operands are K-major: C[M, N] = A B^T with A stored [M, K] and B stored [N, K]
 * ("NT", the SAE backward's g W_dec^T). fp32 accumulation and output.
 *
 * Why: mma.sync (version 2) reaches 26-39% of cuBLAS's rate on Hopper; wgmma reads both operands
 * from shared memory without ldmatrix, 64 x 256 x 16 per instruction per warpgroup, and TMA moves
 * whole tiles with one thread and no registers.
 *
 * Block: 3 warpgroups (384 threads), one 128 x 256 output tile. Warpgroup 0 is the producer: one
 * thread issues the TMA copies of the 128 x 64 A tile and the 256 x 64 B tile of each k step into
 * a ring of kStages shared-memory stages (128-byte swizzle, the layout wgmma reads), completing on
 * the stage's `full` mbarrier. Warpgroups 1 and 2 each own 64 rows of the tile: per stage, four
 * wgmma.m64n256k16 (k = 0, 16, 32, 48), then an arrive on the stage's `empty` mbarrier so the
 * producer may refill it. Registers move to the consumers with setmaxnreg (40 / 232).
 *
 * Operand descriptors (PTX ISA, "matrix descriptor"): start address >> 4 in bits 0-13, leading
 * byte offset >> 4 in bits 16-29 (unused for swizzled K-major layouts: 1), stride byte offset >> 4
 * in bits 32-45 (1024: eight 128-byte rows, one swizzle atom), swizzle mode in bits 62-63 (1:
 * 128-byte). A k step of 16 elements inside the 64-element (128-byte) swizzled row advances the
 * start address by 32 bytes; the hardware applies the swizzle to the addresses it forms.
 *
 * Accumulators of m64nNk16 (f32): warp w of the warpgroup holds rows 16w .. 16w + 15; d[4j + r]
 * is row 16w + g + 8 (r / 2), column 8j + 2t + r % 2 (g = lane / 4, t = lane % 4), as mma.sync.
 *
 * Edges: TMA fills out-of-bounds box elements with zeros (ragged M, N and the K tail); stores are
 * bounds-checked. TMA needs 16-byte aligned rows: K (the leading dimensions) a multiple of 8.
 */
#pragma once

#include <cuda.h>  // CUtensorMap and its enums (types only: the driver entry point is looked up)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace wgmma_v3 {

using bf16 = __nv_bfloat16;

constexpr int kBM = 128, kBN = 256, kBK = 64, kStages = 4;
constexpr int kConsumers = 2;  // warpgroups of 64 output rows each
constexpr int kThreads = 128 * (1 + kConsumers);
constexpr uint32_t kStageBytes = (kBM + kBN) * kBK * sizeof(bf16);  // 48 KB: what TMA delivers per stage

struct alignas(1024) Smem {
  bf16 A[kStages][kBM * kBK];  // 16 KB per stage (a multiple of 1024: every stage stays swizzle-aligned)
  bf16 B[kStages][kBN * kBK];  // 32 KB per stage
  uint64_t full[kStages];      // TMA completion (transaction bytes)
  uint64_t empty[kStages];     // consumers done with the stage (kConsumers arrivals)
};
constexpr size_t kSmemBytes = sizeof(Smem) + 1024;  // + room to align the dynamic base to 1024

// ---- PTX wrappers --------------------------------------------------------------------------------

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
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  while (!mbar_try_wait(bar, parity)) {
  }
}

// The box at (c0 = k, c1 = row) of `map` into dst, completing `bytes` on bar.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(
          smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }

template <uint32_t Regs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Regs));
}
template <uint32_t Regs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Regs));
}

// The descriptor of a K-major, 128-byte-swizzled operand starting at p (shared memory).
__device__ __forceinline__ uint64_t smem_desc(const bf16* p) {
  const uint64_t addr = smem_u32(p);
  return ((addr & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

// d[128] (+)= A (64 x 16, K-major in shared memory, descriptor da) times B (16 x 256, K-major,
// descriptor db); scale_d = 0 overwrites d. Operands: %0..%127 accumulators, %128 da, %129 db, %130 scale_d.
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t da, uint64_t db, int scale_d) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
      "%128, %129, p, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
        "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
        "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(da), "l"(db), "r"(scale_d));
}

// ---- the kernel ------------------------------------------------------------------------------------

// Block (blockIdx.x, blockIdx.y): C rows m0 = blockIdx.y * kBM .., columns n0 = blockIdx.x * kBN ..
__global__ void __launch_bounds__(kThreads, 1)
    gemm_nt_kernel(int M, int N, int K, float* __restrict__ C, int ldc, const __grid_constant__ CUtensorMap map_a,
                   const __grid_constant__ CUtensorMap map_b) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ uint8_t smem_raw[];
  Smem& s = *reinterpret_cast<Smem*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  const int k_tiles = (K + kBK - 1) / kBK;
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

  if (wg == 0) {
    setmaxnreg_dec<40>();
    if (threadIdx.x == 0) {
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int st = kt % kStages;
        if (kt >= kStages) mbar_wait(&s.empty[st], ((kt / kStages) - 1) & 1);  // its previous use is done
        mbar_arrive_expect_tx(&s.full[st], kStageBytes);
        tma_load_2d(s.A[st], &map_a, &s.full[st], kt * kBK, m0);
        tma_load_2d(s.B[st], &map_b, &s.full[st], kt * kBK, n0);
      }
    }
  } else {
    setmaxnreg_inc<232>();
    float d[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) d[i] = 0.0f;
    const int row0 = (wg - 1) * 64;  // this warpgroup's rows of the tile
    for (int kt = 0; kt < k_tiles; ++kt) {
      const int st = kt % kStages;
      mbar_wait(&s.full[st], (kt / kStages) & 1);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk)
        wgmma_m64n256k16(d, smem_desc(&s.A[st][row0 * kBK + kk * 16]), smem_desc(&s.B[st][kk * 16]), 1);
      wgmma_commit();
      wgmma_wait_all();
      if (threadIdx.x % 128 == 0) mbar_arrive(&s.empty[st]);
    }
    // Row 16w + g + 8 (r / 2), column 8j + 2t + r % 2 of this warpgroup's 64 x 256 block.
    const int lane = threadIdx.x % 32, w = (threadIdx.x % 128) / 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int j = 0; j < 32; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = m0 + row0 + 16 * w + g + 8 * (r / 2), col = n0 + 8 * j + 2 * t + r % 2;
        if (row < M && col < N) C[size_t(row) * ldc + col] = d[4 * j + r];
      }
  }
#endif
}

// ---- host ----------------------------------------------------------------------------------------

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

inline EncodeTiled encode_tiled() {
  static EncodeTiled fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    return reinterpret_cast<EncodeTiled>(p);
  }();
  return fn;
}

// The map of a row-major bf16 matrix [rows, cols] (leading dimension ld) read in boxes of
// box_rows x kBK, 128-byte swizzled.
inline bool make_map(CUtensorMap* map, const bf16* base, int rows, int cols, int ld, int box_rows) {
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

// C[M, N] = A B^T, A [M, K] (leading dimension lda), B [N, K] (ldb), C fp32 [M, ldc]. Returns 0, or
// -1 where this version does not apply (leading dimensions not multiples of 8, no driver entry
// point), -2 on a launch failure.
inline int gemm_nt(cudaStream_t stream, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb, float* C,
                   int ldc) {
  if (M < 1 || N < 1 || K < 1 || lda % 8 || ldb % 8 || lda < K || ldb < K) return -1;
  CUtensorMap map_a, map_b;
  if (!make_map(&map_a, A, M, K, lda, kBM) || !make_map(&map_b, B, N, K, ldb, kBN)) return -1;
  static bool configured = cudaFuncSetAttribute(gemm_nt_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                int(kSmemBytes)) == cudaSuccess;
  if (!configured) return -2;
  const dim3 grid((N + kBN - 1) / kBN, (M + kBM - 1) / kBM);
  gemm_nt_kernel<<<grid, kThreads, kSmemBytes, stream>>>(M, N, K, C, ldc, map_a, map_b);
  return cudaGetLastError() == cudaSuccess ? 0 : -2;
}

}  // namespace wgmma_v3
