/*
 * transformer_cpu.h — the GPT-2 forward ops of the CPU backend (backend.h, ABI 3): layer norm,
 * linear layers (sgemm, optional bf16 operands), activations, residual adds, token + position
 * embeddings, the q/k/v split into a key/value cache (attention itself: attention_cpu.h), per-row
 * cross-entropy and per-row argmax. Layouts follow llm.c so a backward pass can reuse the saved
 * buffers (layer norm's mean/rstd). Token ids and targets are always checked on the host: cheap
 * here, so indices_checked changes nothing.
 */
#ifndef MONOSEMANTIC_CPU_TRANSFORMER_H
#define MONOSEMANTIC_CPU_TRANSFORMER_H

#include <cstddef>
#include <cstdint>

#include "backend.h"

namespace ms::cpu {

int layernorm(int rows, int C, float eps, const float* x, const float* weight, const float* bias,
              float* out, uint16_t* out_bf16, float* mean, float* rstd, ms_error* err);
int linear(int rows, int n_in, int n_out, int trans_w, int precision, const float* x, const uint16_t* x_bf16,
           const float* W, const float* bias, float* out, uint16_t* out_bf16, int act, int accumulate,
           ms_error* err);
int activation(int kind, size_t count, const float* x, float* out, ms_error* err);
int add(size_t count, const float* a, const float* b, float* out, ms_error* err);
int embed(int batch, int T, int C, int V, int n_positions, int pos_offset, const int32_t* ids,
          const float* wte, const float* wpe, float* tok_out, float* pos_out, int indices_checked, ms_error* err);
int split_qkv(int batch, int T, int C, int Tmax, int offset, const float* qkv, float* q, float* k_cache,
              float* v_cache, ms_error* err);
int linear_qkv(int batch, int T, int C, int Tmax, int offset, int precision, const float* x, const uint16_t* x_bf16,
               const float* W, const float* bias, float* q, float* k_cache, float* v_cache, ms_error* err);
int cross_entropy(int rows, int V, const float* logits, const uint16_t* logits_bf16, const int32_t* targets,
                  float* out, int indices_checked, ms_error* err);
int argmax_rows(int rows, int V, const float* logits, int32_t* out, ms_error* err);
int kl_rows(int rows, int V, const float* p_logits, const float* q_logits, float* out, ms_error* err);

}  // namespace ms::cpu

#endif
