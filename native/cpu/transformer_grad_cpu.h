/*
 * transformer_grad_cpu.h — the GPT-2 backward ops of the CPU backend (backend.h, ABI 5), as in
 * llm.c's training pass (attention's are in attention_cpu.h): the q/k/v merge, layer-norm, linear,
 * activation and embedding backwards, fused softmax cross-entropy with its gradient, and AdamW. Deterministic: every sum has a fixed order whatever
 * the thread count.
 */
#ifndef MONOSEMANTIC_CPU_TRANSFORMER_GRAD_H
#define MONOSEMANTIC_CPU_TRANSFORMER_GRAD_H

#include <cstddef>
#include <cstdint>

#include "backend.h"

namespace ms::cpu {

// Token ids and targets are always checked (cheap on the host): indices_checked changes nothing.

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

}  // namespace ms::cpu

#endif
