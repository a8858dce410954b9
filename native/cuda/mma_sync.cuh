/*
 * mma_sync.cuh — the warp-level primitives of the kernel headers that a host emulation compiles too
 * (attention_mma_kernels.h, unembed_ce_kernels.h): mma.sync m16n8k16 (bf16, fp32 accumulate), bf16
 * pair packing, warp shuffles and 16-byte cp.async. The emulations in test/native define the same
 * names for the host. In a namespace of their own (gemm_tensor.cu has wrappers of its own): a kernel
 * header's includer opens it into the header's namespace.
 */
#ifndef MONOSEMANTIC_CUDA_MMA_SYNC_CUH
#define MONOSEMANTIC_CUDA_MMA_SYNC_CUH

#include <cstdint>
#include <cstring>

#include <cuda_bf16.h>

namespace ms::cuda::mma_sync {

// d += A B for one m16n8k16 tile (fragments in attention_mma_kernels.h).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// bf16(lo) in the low half, bf16(hi) in the high half, each rounded to nearest even.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x = lo (low half), .y = hi
  uint32_t r;
  memcpy(&r, &h, sizeof r);
  return r;
}

__device__ __forceinline__ float shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ float shfl(float v, int lane) { return __shfl_sync(0xffffffffu, v, lane); }
__device__ __forceinline__ uint32_t shfl_xor_u32(uint32_t v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }

// Queues a copy of 16 bytes into shared memory at dst (16-byte aligned): the first src_bytes (16 or
// 0) from src (16-byte aligned; not read when 0), the rest zero.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  const unsigned int d = static_cast<unsigned int>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(src_bytes) : "memory");
}
// Closes this thread's copies queued since the last commit into one group.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until every copy this thread queued has landed.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

}  // namespace ms::cuda::mma_sync

#endif  // MONOSEMANTIC_CUDA_MMA_SYNC_CUH
