/*
 * attention_mma.cu — launchers of the tensor-core attention kernels (attention_mma.cuh) and the
 * device primitives their header expects: mma.sync m16n8k16 (bf16, fp32 accumulate), bf16 pair
 * packing and warp shuffles.
 *
 * Why: the tiled kernels (attention_tiled.cu) compute every score and product on CUDA cores in
 * fp32, and attention took over half of a harvest forward and 40% of a training step of the
 * paper's model at T = 1,024. Here each warp computes 16 x 64 blocks of scores, and their products
 * with v (or the gradients' products), as m16n8k16 tensor-core tiles, as flash attention 2 does.
 * Each output is written by one thread after sums in a fixed order: deterministic.
 */
#include "attention_mma.cuh"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <cuda_bf16.h>

namespace ms::cuda {
namespace attention_mma {

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

}  // namespace attention_mma
}  // namespace ms::cuda

#include "attention_mma_kernels.h"

namespace ms::cuda {
namespace {

using namespace attention_mma;

constexpr long long kMaxGridY = 65535;

dim3 grid_for(int T, int heads) {
  return dim3(static_cast<unsigned int>((T + kRows - 1) / kRows), static_cast<unsigned int>(heads));
}

}  // namespace

bool mma_attention_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("MONOSEMANTIC_CUDA_ATTENTION");
    return !(v && std::strcmp(v, "tiled") == 0);
  }();
  return enabled;
}

bool mma_attention_supported(int hd, long long heads, std::initializer_list<const void*> operands) {
  if (hd != 32 && hd != 64) return false;
  if (heads < 1 || heads > kMaxGridY) return false;
  for (const void* p : operands)  // the tiles are read as float4
    if (!aligned(p, 16)) return false;
  return true;
}

int attention_forward_mma(const Op& op, int batch, int T, int C, int n_head, float scale, const float* q,
                          const float* k, const float* v, float* out, float* lse) {
  const int hd = C / n_head;
  const dim3 grid = grid_for(T, batch * n_head);
  if (hd == 32)
    attention_mma_forward_kernel<32><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, q, k, v, out, lse);
  else if (hd == 64)
    attention_mma_forward_kernel<64><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, q, k, v, out, lse);
  else
    return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "no tensor-core attention for head size %d", hd);
  return check_launch(op, "attention_mma_forward_kernel");
}

int attention_backward_mma(const Op& op, int batch, int T, int C, int n_head, float scale, const float* dout,
                           const float* q, const float* k, const float* v, const float* out, const float* lse,
                           float* dq, float* dk, float* dv, float* D) {
  const int hd = C / n_head;
  const dim3 grid = grid_for(T, batch * n_head);
  if (hd == 32) {
    attention_mma_dq_kernel<32><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, dout, q, k, v, out, lse, dq, D);
    MS_TRY(check_launch(op, "attention_mma_dq_kernel"));
    attention_mma_dkdv_kernel<32><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, dout, q, k, v, lse, D, dk, dv);
  } else if (hd == 64) {
    attention_mma_dq_kernel<64><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, dout, q, k, v, out, lse, dq, D);
    MS_TRY(check_launch(op, "attention_mma_dq_kernel"));
    attention_mma_dkdv_kernel<64><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, dout, q, k, v, lse, D, dk, dv);
  } else {
    return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "no tensor-core attention backward for head size %d", hd);
  }
  return check_launch(op, "attention_mma_dkdv_kernel");
}

}  // namespace ms::cuda
