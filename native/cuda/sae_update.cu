/*
 * sae_update.cu — sae_update (sae_update.cuh): everything a training step does after the
 * gradients, queued back to back on the stream with one synchronisation at the end.
 *
 * With the decoder constraint, one kernel takes each W_dec row through the three stages that
 * otherwise are three kernels and three passes over memory: remove the gradient's component along
 * the row, Adam, renormalise. Block i = row i, 256 threads, thread t holding elements
 * j = t + 256 r (r < R) of the row in registers, R the fewest that hold the row (registers bound
 * the rows in flight): the row's weights, gradient and moments are read once, together, and
 * written once. The reductions are the separate kernels' (double, the same per-thread order
 * j = t, t + 256, ..., the same block_sum tree) and the element updates are the shared helpers of
 * adam.cuh and decoder_norm.cuh, so the result equals the separate kernels' to the bit. Rows
 * longer than 256 * kMaxRowRegs take the separate kernels.
 */
#include "sae_update.cuh"

#include "adam.cuh"
#include "common.cuh"
#include "decoder_norm.cuh"

namespace ms::cuda {

constexpr int kMaxRowRegs = 16;  // elements per thread: rows of up to 4096

// Row i of W [n, d], its gradient G and moments M, V: G[i] loses its component along W[i] (kept
// in G, as decoder_remove_parallel_grad leaves it), W[i] takes the Adam step, then unit norm.
template <int R>
static __global__ void __launch_bounds__(kThreads)
    decoder_row_update_kernel(int n, int d, float* __restrict__ W, float* __restrict__ G, float* __restrict__ M,
                              float* __restrict__ V, AdamConsts c) {
  __shared__ double scratch[33];
  const int i = blockIdx.x;
  if (i >= n) return;
  const size_t row = size_t(i) * d;  // W[i, :] at W[i*d], likewise G, M, V
  // All four rows are read up front: the moments do not depend on the reductions, and loads
  // cannot move across their barriers, so reading them later would cost a second trip to memory.
  float w[R], g[R], m[R], v[R];
  double dot = 0.0, ss = 0.0;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int j = threadIdx.x + r * kThreads;
    if (j < d) {
      w[r] = W[row + j];
      g[r] = G[row + j];
      m[r] = M[row + j];
      v[r] = V[row + j];
      const double wj = w[r];
      dot += double(g[r]) * wj;
      ss += wj * wj;
    }
  }
  dot = block_sum(dot, scratch);
  ss = block_sum(ss, scratch);
  if (ss != 0.0) {  // zero row: gradient untouched (the whole block agrees)
    const float k = float(dot / ss);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int j = threadIdx.x + r * kThreads;
      if (j < d) {
        g[r] = remove_parallel_element(g[r], k, w[r]);
        G[row + j] = g[r];
      }
    }
  }
  double ss_new = 0.0;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int j = threadIdx.x + r * kThreads;
    if (j < d) {
      w[r] = adam_element(w[r], g[r], m[r], v[r], c);
      M[row + j] = m[r];
      V[row + j] = v[r];
      const double wj = w[r];
      ss_new += wj * wj;
    }
  }
  ss_new = block_sum(ss_new, scratch);
  const float inv = ss_new != 0.0 ? renormalize_factor(ss_new) : 1.0f;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int j = threadIdx.x + r * kThreads;
    if (j < d) W[row + j] = ss_new != 0.0 ? __fmul_rn(w[r], inv) : w[r];
  }
}

int sae_update(const ms_sae_update_args* a, ms_error* err) {
  const char* name = "sae_update";
  if (!a) return invalid(err, name, "args is null");
  if (a->n <= 0 || a->d <= 0) return invalid(err, name, "n and d must be positive (got n %d, d %d)", a->n, a->d);
  const size_t N = size_t(a->n), D = size_t(a->d);
  if (a->W_enc.count != D * N || a->b_enc.count != N || a->W_dec.count != N * D || a->b_dec.count != D)
    return invalid(err, name, "slot counts do not match n %d and d %d", a->n, a->d);
  for (const ms_adam_slot* s : {&a->W_enc, &a->b_enc, &a->W_dec, &a->b_dec})
    if (!s->param || !s->grad || !s->m || !s->v) return invalid(err, name, "a slot pointer is null");
  Op op;
  MS_TRY(begin(op, err, name));
  const AdamConsts c = adam_consts(a->hp);
  for (const ms_adam_slot* s : {&a->W_enc, &a->b_enc, &a->b_dec})
    MS_TRY(launch_adam(op, s->count, s->param, s->grad, s->m, s->v, c));
  const ms_adam_slot& w = a->W_dec;
  if (!a->constrain_decoder) {
    MS_TRY(launch_adam(op, w.count, w.param, w.grad, w.m, w.v, c));
  } else if (a->d <= kThreads * kMaxRowRegs) {
    const unsigned int rows = static_cast<unsigned int>(a->n);
    const int regs = (a->d + kThreads - 1) / kThreads;  // elements per thread
    if (regs <= 1) decoder_row_update_kernel<1><<<rows, kThreads, 0, op.stream>>>(a->n, a->d, w.param, w.grad, w.m, w.v, c);
    else if (regs <= 2) decoder_row_update_kernel<2><<<rows, kThreads, 0, op.stream>>>(a->n, a->d, w.param, w.grad, w.m, w.v, c);
    else if (regs <= 4) decoder_row_update_kernel<4><<<rows, kThreads, 0, op.stream>>>(a->n, a->d, w.param, w.grad, w.m, w.v, c);
    else if (regs <= 8) decoder_row_update_kernel<8><<<rows, kThreads, 0, op.stream>>>(a->n, a->d, w.param, w.grad, w.m, w.v, c);
    else decoder_row_update_kernel<16><<<rows, kThreads, 0, op.stream>>>(a->n, a->d, w.param, w.grad, w.m, w.v, c);
    MS_TRY(check_launch(op, "decoder_row_update_kernel"));
  } else {
    MS_TRY(launch_remove_parallel(op, a->n, a->d, w.param, w.grad));
    MS_TRY(launch_adam(op, w.count, w.param, w.grad, w.m, w.v, c));
    MS_TRY(launch_renormalize(op, a->n, a->d, w.param));
  }
  return finish(op);
}

}  // namespace ms::cuda
