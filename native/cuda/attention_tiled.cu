/*
 * attention_tiled.cu — tiled causal attention for training (attention_tiled.cuh).
 *
 * Why: the warp-per-query kernels (transformer.cu, transformer_grad.cu) spend a warp-wide
 * reduction on every (query, key) score and re-read each key from L1/L2 once per query; at T = 1,024
 * they took 70% of a training step. Here a block of kRowsPerBlock threads owns as many consecutive
 * queries (forward, dq) or keys (dk, dv) of one head of one sequence; the other side is staged
 * through shared memory kTile rows at a time and read by every thread at the same address
 * (a broadcast), and each thread keeps the head's HD dimensions of its own row in registers, so a
 * score is HD fused multiply-adds and no shuffle.
 *
 * Math as the warp kernels (backend.h): s_tj = scale q_t . k_j for j <= t; the forward keeps a
 * running max m and sum l (online softmax), out_t = sum_j exp(s_tj - m) v_j / l and
 * lse_t = m + log l; the backward recomputes P_tj = exp(s_tj - lse_t) and, with
 * D_t = dout_t . out_t and dS_tj = P_tj (dout_t . v_j - D_t), writes dq_t = scale sum_j dS_tj k_j,
 * dk_j = scale sum_t dS_tj q_t and dv_j = sum_t P_tj dout_t. Each output is written by one thread,
 * summing in key (or query) order: deterministic. Sums run in fp32 in a different order from the
 * warp kernels, so the two agree to rounding, not bit for bit.
 */
#include "attention_tiled.cuh"

#include <cmath>

#include "attention_tiled_kernels.h"

namespace ms::cuda {
namespace {

using namespace attention_tiled;

constexpr long long kMaxGridY = 65535;

dim3 grid_for(int T, int heads) {
  return dim3(static_cast<unsigned int>((T + kRowsPerBlock - 1) / kRowsPerBlock), static_cast<unsigned int>(heads));
}

}  // namespace

bool tiled_attention_supported(bool forward, int hd, long long heads) {
  if (heads < 1 || heads > kMaxGridY) return false;
  // dk/dv keep four rows of HD floats per thread: only HD = 32 fits in registers.
  return forward ? (hd == 32 || hd == 64) : hd == 32;
}

int attention_train_tiled(const Op& op, int batch, int T, int C, int n_head, float scale, const float* q,
                          const float* k, const float* v, float* out, float* lse) {
  const int hd = C / n_head;
  const dim3 grid = grid_for(T, batch * n_head);
  if (hd == 32)
    attention_train_tiled_kernel<32><<<grid, kRowsPerBlock, 0, op.stream>>>(T, C, n_head, scale, q, k, v, out, lse);
  else if (hd == 64)
    attention_train_tiled_kernel<64><<<grid, kRowsPerBlock, 0, op.stream>>>(T, C, n_head, scale, q, k, v, out, lse);
  else
    return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "no tiled attention for head size %d", hd);
  return check_launch(op, "attention_train_tiled_kernel");
}

int attention_backward_tiled(const Op& op, int batch, int T, int C, int n_head, float scale, const float* dout,
                             const float* q, const float* k, const float* v, const float* out, const float* lse,
                             float* dq, float* dk, float* dv, int ld_grad, float* D) {
  const int hd = C / n_head;
  if (hd != 32) return set_error(op.err, MS_ERR_UNSUPPORTED, 0, op.name, "no tiled attention backward for head size %d", hd);
  const dim3 grid = grid_for(T, batch * n_head);
  attention_dq_tiled_kernel<32><<<grid, kRowsPerBlock, 0, op.stream>>>(T, C, n_head, scale, dout, q, k, v, out, lse, dq, ld_grad, D);
  MS_TRY(check_launch(op, "attention_dq_tiled_kernel"));
  attention_dkdv_tiled_kernel<32><<<grid, kRowsPerBlock, 0, op.stream>>>(T, C, n_head, scale, dout, q, k, v, lse, D, dk, dv, ld_grad);
  return check_launch(op, "attention_dkdv_tiled_kernel");
}

}  // namespace ms::cuda
