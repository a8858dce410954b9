/*
 * attention_mma.cuh — causal self-attention over whole sequences (offset 0, keys = queries) and its
 * gradients on tensor cores: bf16 operands, fp32 accumulation and softmax (attention_mma_kernels.h).
 * Used at bf16 precision for head sizes 32 and 64 unless turned off (mma_attention_enabled); the
 * fp32 tiled kernels (attention_tiled.cuh) otherwise.
 */
#ifndef MONOSEMANTIC_CUDA_ATTENTION_MMA_CUH
#define MONOSEMANTIC_CUDA_ATTENTION_MMA_CUH

#include <initializer_list>

#include "common.cuh"

namespace ms::cuda {

// Whether the tensor-core kernels are on: on by default and with MONOSEMANTIC_CUDA_ATTENTION=mma,
// off with =tiled (read once).
bool mma_attention_enabled();

// Whether they take head size hd for batch * n_head heads, with every operand 16-byte aligned.
bool mma_attention_supported(int hd, long long heads, std::initializer_list<const void*> operands);

// out[b*T + t, head h] = softmax_{j <= t}(scale q_t . k_j) v_j and, when lse is not null,
// lse[(b*n_head + h)*T + t] its log-sum-exp, for q, k, v, out [B*T, C]; with out null, into
// out_bf16 [B*T, C] (bf16 bits) rounded to nearest even instead. Queues the kernel on op.stream.
int attention_forward_mma(const Op& op, int batch, int T, int C, int n_head, float scale, const float* q,
                          const float* k, const float* v, float* out, uint16_t* out_bf16, float* lse);

// The backward (backend.h attention_backward) from out and lse, into dq, dk, dv of B*T rows of
// ld_grad >= C floats (C used; the inputs [B*T, C]); D [B, n_head, T] is scratch for
// dout_t . out_t. Queues the two kernels on op.stream.
int attention_backward_mma(const Op& op, int batch, int T, int C, int n_head, float scale, const float* dout,
                           const float* q, const float* k, const float* v, const float* out, const float* lse,
                           float* dq, float* dk, float* dv, int ld_grad, float* D);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_ATTENTION_MMA_CUH
