/*
 * unembed_ce.cu — the entry points of unembed_ce.cuh: operand checks, the bf16 copies of W (and of
 * an fp32 x), the split of the vocabulary over blocks, and the launches of unembed_ce_kernels.h.
 *
 * Forward: unembed_ce_forward_kernel leaves a log-sum-exp per row and vocabulary split, and each
 * row's target logit; unembed_ce_combine_kernel makes lse and the losses. Backward: one kernel
 * recomputes the logits and writes their gradient in bf16. Each output is written by one thread
 * after sums in a fixed order: deterministic.
 */
#include "unembed_ce.cuh"

#include <cstdint>

#include "common.cuh"
#include "gemm_tensor.cuh"  // device_multiprocessors
#include "mma_sync.cuh"
#include "transformer.cuh"  // launch_to_bf16, check_targets

namespace ms::cuda::unembed_ce {
using namespace mma_sync;  // the primitives unembed_ce_kernels.h expects
}
#include "unembed_ce_kernels.h"

namespace ms::cuda {
namespace {

using namespace unembed_ce;

// How the vocabulary's tiles are shared out: `splits` splits of `per_split` tiles (the last maybe
// fewer, none empty), so that row blocks x splits is about 8 blocks per multiprocessor (3 fit).
struct Splits {
  int splits, per_split;
};
Splits vocabulary_splits(int rows, int V) {
  const long long row_blocks = (rows + kRows - 1) / kRows;
  const int tiles = tile_count(V);
  const long long wanted = 8LL * (device_multiprocessors() > 0 ? device_multiprocessors() : 132);
  long long splits = (wanted + row_blocks - 1) / row_blocks;
  if (splits < 1) splits = 1;
  if (splits > tiles) splits = tiles;
  const int per_split = int((tiles + splits - 1) / splits);
  return {(tiles + per_split - 1) / per_split, per_split};
}

// The operands every entry point checks and converts: the bf16 copies of W and (when x is fp32 or
// not 4-byte aligned) of x, in one scratch allocation with `extra_floats` more floats after them.
struct Operands {
  const uint16_t* x = nullptr;
  const uint16_t* w = nullptr;
  float* extra = nullptr;
};
int prepare(const Op& op, DeviceScratch& scratch, int rows, int V, int C, const float* x, const uint16_t* x_bf16,
            const float* W, size_t extra_floats, Operands* out) {
  const bool copy_x = !x_bf16 || !aligned(x_bf16, 4);
  Carver size(nullptr);
  size.take<uint16_t>(size_t(V) * C);
  if (copy_x) size.take<uint16_t>(size_t(rows) * C);
  size.take<float>(extra_floats);
  MS_TRY(scratch.allocate(op, size.used()));
  Carver carve(scratch.get());
  uint16_t* w = carve.take<uint16_t>(size_t(V) * C);
  MS_TRY(launch_to_bf16(op, W, reinterpret_cast<__nv_bfloat16*>(w), size_t(V) * C));
  out->w = w;
  if (copy_x) {
    uint16_t* xc = carve.take<uint16_t>(size_t(rows) * C);
    if (x_bf16)
      MS_TRY(check(op, cudaMemcpyAsync(xc, x_bf16, size_t(rows) * C * sizeof(uint16_t), cudaMemcpyDeviceToDevice, op.stream),
                   "cudaMemcpyAsync"));
    else
      MS_TRY(launch_to_bf16(op, x, reinterpret_cast<__nv_bfloat16*>(xc), size_t(rows) * C));
    out->x = xc;
  } else {
    out->x = x_bf16;
  }
  out->extra = carve.take<float>(extra_floats);
  return MS_OK;
}

// The checks both entry points share; MS_OK when the op can run here.
int check_operands(ms_error* err, const char* name, int rows, int V, int C, int precision, const float* x,
                   const uint16_t* x_bf16, const float* W, const int32_t* targets) {
  if (rows <= 0 || V <= 0 || C <= 0) return invalid(err, name, "bad shape: rows %d, V %d, C %d", rows, V, C);
  if (!x && !x_bf16) return invalid(err, name, "x is null");
  MS_REQUIRE(W);
  MS_REQUIRE(targets);
  if (precision != MS_PREC_BF16)
    return set_error(err, MS_ERR_UNSUPPORTED, 0, name, "the fused unembedding and cross-entropy runs at bf16 only");
  if (C != 32 && C != 64 && C != 128)
    return set_error(err, MS_ERR_UNSUPPORTED, 0, name, "no fused unembedding and cross-entropy for width %d (32, 64 or 128)", C);
  return MS_OK;
}

template <int C>
void launch_forward(const Op& op, dim3 grid, int rows, int V, int per_split, const uint16_t* x, const uint16_t* w,
                    const int32_t* targets, float* partial_lse, float* target_logit) {
  unembed_ce_forward_kernel<C><<<grid, unembed_ce::kThreads, 0, op.stream>>>(rows, V, per_split, x, w, targets, partial_lse, target_logit);
}

template <int C>
void launch_backward(const Op& op, dim3 grid, int rows, int V, int per_split, const uint16_t* x, const uint16_t* w,
                     const int32_t* targets, const float* lse, float scale, int width, uint16_t* dlogits) {
  unembed_ce_backward_kernel<C><<<grid, unembed_ce::kThreads, 0, op.stream>>>(rows, V, per_split, x, w, targets, lse, scale, width, dlogits);
}

}  // namespace

int unembed_cross_entropy(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                          const float* W, const int32_t* targets, float* lse, float* losses, int indices_checked,
                          ms_error* err) {
  const char* name = "unembed_cross_entropy";
  MS_TRY(check_operands(err, name, rows, V, C, precision, x, x_bf16, W, targets));
  MS_REQUIRE(lse);
  MS_REQUIRE(losses);
  Op op;
  MS_TRY(begin(op, err, name));
  MS_TRY(check_targets(op, name, targets, rows, V, indices_checked));
  const Splits sp = vocabulary_splits(rows, V);
  DeviceScratch scratch;
  Operands in;
  // extra: partial_lse [splits, rows], then target_logit [rows]
  MS_TRY(prepare(op, scratch, rows, V, C, x, x_bf16, W, size_t(sp.splits + 1) * rows, &in));
  float* partial_lse = in.extra;
  float* target_logit = in.extra + size_t(sp.splits) * rows;
  const dim3 grid(static_cast<unsigned int>((rows + kRows - 1) / kRows), static_cast<unsigned int>(sp.splits));
  if (C == 32) launch_forward<32>(op, grid, rows, V, sp.per_split, in.x, in.w, targets, partial_lse, target_logit);
  else if (C == 64) launch_forward<64>(op, grid, rows, V, sp.per_split, in.x, in.w, targets, partial_lse, target_logit);
  else launch_forward<128>(op, grid, rows, V, sp.per_split, in.x, in.w, targets, partial_lse, target_logit);
  MS_TRY(check_launch(op, "unembed_ce_forward_kernel"));
  unembed_ce_combine_kernel<<<static_cast<unsigned int>((rows + 255) / 256), 256, 0, op.stream>>>(
      rows, sp.splits, partial_lse, target_logit, targets, lse, losses);
  MS_TRY(check_launch(op, "unembed_ce_combine_kernel"));
  MS_TRY(scratch.release(op));
  return finish(op);
}

int unembed_cross_entropy_backward(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                                   const float* W, const int32_t* targets, const float* lse, float scale,
                                   uint16_t* dlogits_bf16, int indices_checked, ms_error* err) {
  const char* name = "unembed_cross_entropy_backward";
  MS_TRY(check_operands(err, name, rows, V, C, precision, x, x_bf16, W, targets));
  MS_REQUIRE(lse);
  MS_REQUIRE(dlogits_bf16);
  Op op;
  MS_TRY(begin(op, err, name));
  MS_TRY(check_targets(op, name, targets, rows, V, indices_checked));
  const Splits sp = vocabulary_splits(rows, V);
  DeviceScratch scratch;
  Operands in;
  MS_TRY(prepare(op, scratch, rows, V, C, x, x_bf16, W, 0, &in));
  const dim3 grid(static_cast<unsigned int>((rows + kRows - 1) / kRows), static_cast<unsigned int>(sp.splits));
  const int width = V % 4 == 0 && aligned(dlogits_bf16, 8) ? kStoreQuads
                    : V % 2 == 0 && aligned(dlogits_bf16, 4) ? kStorePairs
                                                             : kStoreSingles;
  if (C == 32) launch_backward<32>(op, grid, rows, V, sp.per_split, in.x, in.w, targets, lse, scale, width, dlogits_bf16);
  else if (C == 64) launch_backward<64>(op, grid, rows, V, sp.per_split, in.x, in.w, targets, lse, scale, width, dlogits_bf16);
  else launch_backward<128>(op, grid, rows, V, sp.per_split, in.x, in.w, targets, lse, scale, width, dlogits_bf16);
  MS_TRY(check_launch(op, "unembed_ce_backward_kernel"));
  MS_TRY(scratch.release(op));
  return finish(op);
}

}  // namespace ms::cuda
