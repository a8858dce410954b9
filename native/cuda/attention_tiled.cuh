/*
 * attention_tiled.cuh — causal self-attention over whole sequences (offset 0, keys = queries: a
 * training step, or a forward without a cache) with keys,
 * values and queries staged through shared memory in tiles: one thread per query (forward, dq) or
 * per key (dk, dv), the head's dimensions in registers. For head sizes with an instantiation
 * (tiled_attention_head_size); transformer.cu and transformer_grad.cu use the warp-per-query
 * kernels otherwise, and with MONOSEMANTIC_CUDA_KERNELS=simple.
 */
#ifndef MONOSEMANTIC_CUDA_ATTENTION_TILED_CUH
#define MONOSEMANTIC_CUDA_ATTENTION_TILED_CUH

#include "common.cuh"

namespace ms::cuda {

// Whether the forward (forward = true) or the backward has a tiled kernel for head size hd and
// batch * n_head sequences of heads.
bool tiled_attention_supported(bool forward, int hd, long long heads);

// out[b*T + t, head h] = softmax_j<=t(scale q_t . k_j) v_j and, when lse is not null,
// lse[(b*n_head + h)*T + t] = its log-sum-exp, for q, k, v, out [B*T, C]. Queues the kernel on
// op.stream.
int attention_train_tiled(const Op& op, int batch, int T, int C, int n_head, float scale, const float* q,
                          const float* k, const float* v, float* out, float* lse);

// The backward of attention_train_tiled (same math as attention_backward in backend.h): dq, dk, dv
// B*T rows of ld_grad >= C floats (C used; the inputs [B*T, C]); D [B, n_head, T] is scratch for
// dout_t . out_t. Queues the two kernels on op.stream.
int attention_backward_tiled(const Op& op, int batch, int T, int C, int n_head, float scale, const float* dout,
                             const float* q, const float* k, const float* v, const float* out, const float* lse,
                             float* dq, float* dk, float* dv, int ld_grad, float* D);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_ATTENTION_TILED_CUH
