/*
 * transformer_grad.cuh — the GPT-2 backward ops of the CUDA backend (backend.h, ABI 5): attention
 * with its saved log-sum-exp and the flash-style attention backward, the q/k/v merge, layer-norm,
 * linear, activation and embedding backwards, fused softmax cross-entropy with its gradient, and
 * AdamW. The math is the CPU backend's (transformer_grad_cpu.cpp), equal up to summation order and
 * fp32 instead of double accumulation; see transformer_grad.cu.
 */
#ifndef MONOSEMANTIC_CUDA_TRANSFORMER_GRAD_CUH
#define MONOSEMANTIC_CUDA_TRANSFORMER_GRAD_CUH

#include <cstddef>
#include <cstdint>

#include "backend.h"

namespace ms::cuda {

int attention_train(int batch, int T, int C, int n_head, int precision, const float* q, const float* k,
                    const float* v, float* out, float* lse, ms_error* err);
int attention_backward(int batch, int T, int C, int n_head, int precision, const float* dout, const float* q,
                       const float* k, const float* v, const float* out, const float* lse, float* dq, float* dk,
                       float* dv, int ld_grad, ms_error* err);
int layernorm_backward(int rows, int C, const float* dout, const float* x, const float* weight, const float* mean,
                       const float* rstd, float* dx, float* dweight, float* dbias, int accumulate, ms_error* err);
int linear_backward(int rows, int n_in, int n_out, int trans_w, int precision, const float* dout, const float* x,
                    const uint16_t* x_bf16, const float* W, float* dx, float* dW, float* dbias, int accumulate,
                    const uint16_t* dout_bf16, ms_error* err);
int activation_backward(int kind, size_t count, const float* dpost, const float* pre, const uint16_t* pre_bf16,
                        float* dpre, ms_error* err);
int relu_linear_backward(int rows, int n_in, int n_out, int trans_w, const float* dout, const uint16_t* dout_bf16,
                         const uint16_t* x_bf16, const float* W, float* dW, float* dbias, uint16_t* dpre_bf16,
                         float* dpre_bias, ms_error* err);
int cross_entropy_backward(int rows, int V, float* logits, uint16_t* logits_bf16, const int32_t* targets,
                           float* losses, float scale, uint16_t* grad_bf16, int indices_checked, ms_error* err);
int embed_backward(int batch, int T, int C, int V, int n_positions, const int32_t* ids, const float* dtok,
                   const float* dpos, float* dwte, float* dwpe, int indices_checked, ms_error* err);
int adamw_update(size_t count, float* param, const float* grad, float* m, float* v, const ms_adam_hparams* hp,
                 float decay, const float* clip_sum_sq, float clip_norm, ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_TRANSFORMER_GRAD_CUH
