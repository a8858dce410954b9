/*
 * attention_mma.cu — launchers of the tensor-core attention kernels (attention_mma.cuh; the device
 * primitives their header expects are mma_sync.cuh's).
 *
 * Why: the tiled kernels (attention_tiled.cu) compute every score and product on CUDA cores in
 * fp32, and attention took over half of a harvest forward and 40% of a training step of the
 * paper's model at T = 1,024. Here each warp computes 16 x 64 blocks of scores, and their products
 * with v (or the gradients' products), as m16n8k16 tensor-core tiles, as flash attention 2 does.
 * Each output is written by one thread after sums in a fixed order: deterministic.
 */
#include "attention_mma.cuh"
#include "mma_sync.cuh"  // the primitives attention_mma_kernels.h expects

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <cuda_bf16.h>

namespace ms::cuda::attention_mma {
using namespace mma_sync;
}
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

namespace {

// MONOSEMANTIC_CUDA_ATTENTION_PREFETCH=on (read at each call): each tile's rows are read during the
// previous tile's products instead of when the tile is staged (attention_mma_kernels.h). Off by
// default: it takes registers, and at head size 32 a quarter to a third of the resident blocks.
bool attention_prefetch() {
  const char* v = std::getenv("MONOSEMANTIC_CUDA_ATTENTION_PREFETCH");
  return v && std::strcmp(v, "on") == 0;
}

// out in fp32, or (out null) out_bf16 in bf16.
template <int HD, bool Prefetch>
void launch_forward(const Op& op, dim3 grid, int T, int C, int n_head, float scale, const float* q, const float* k,
                    const float* v, float* out, uint16_t* out_bf16, float* lse) {
  if (out)
    attention_mma_forward_kernel<HD, Prefetch, float><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, q, k, v, out, lse);
  else
    attention_mma_forward_kernel<HD, Prefetch, uint16_t><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, q, k, v, out_bf16, lse);
}

template <int HD, bool Prefetch>
int launch_backward(const Op& op, dim3 grid, int T, int C, int n_head, float scale, const float* dout, const float* q,
                    const float* k, const float* v, const float* out, const float* lse, float* dq, float* dk,
                    float* dv, int ld_grad, float* D) {
  attention_mma_dq_kernel<HD, Prefetch><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, dout, q, k, v, out, lse, dq, ld_grad, D);
  MS_TRY(check_launch(op, "attention_mma_dq_kernel"));
  attention_mma_dkdv_kernel<HD, Prefetch><<<grid, attention_mma::kThreads, 0, op.stream>>>(T, C, n_head, scale, dout, q, k, v, lse, D, dk, dv, ld_grad);
  return check_launch(op, "attention_mma_dkdv_kernel");
}

}  // namespace

int attention_forward_mma(const Op& op, int batch, int T, int C, int n_head, float scale, const float* q,
                          const float* k, const float* v, float* out, uint16_t* out_bf16, float* lse) {
  const int hd = C / n_head;
  const dim3 grid = grid_for(T, batch * n_head);
  const bool prefetch = attention_prefetch();
  if (hd == 32)
    (prefetch ? launch_forward<32, true> : launch_forward<32, false>)(op, grid, T, C, n_head, scale, q, k, v, out, out_bf16, lse);
  else if (hd == 64)
    (prefetch ? launch_forward<64, true> : launch_forward<64, false>)(op, grid, T, C, n_head, scale, q, k, v, out, out_bf16, lse);
  else
    return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "no tensor-core attention for head size %d", hd);
  return check_launch(op, "attention_mma_forward_kernel");
}

int attention_backward_mma(const Op& op, int batch, int T, int C, int n_head, float scale, const float* dout,
                           const float* q, const float* k, const float* v, const float* out, const float* lse,
                           float* dq, float* dk, float* dv, int ld_grad, float* D) {
  const int hd = C / n_head;
  const dim3 grid = grid_for(T, batch * n_head);
  const bool prefetch = attention_prefetch();
  if (hd == 32)
    return (prefetch ? launch_backward<32, true> : launch_backward<32, false>)(op, grid, T, C, n_head, scale, dout, q, k, v, out, lse, dq, dk, dv, ld_grad, D);
  if (hd == 64)
    return (prefetch ? launch_backward<64, true> : launch_backward<64, false>)(op, grid, T, C, n_head, scale, dout, q, k, v, out, lse, dq, dk, dv, ld_grad, D);
  return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "no tensor-core attention backward for head size %d", hd);
}

}  // namespace ms::cuda
