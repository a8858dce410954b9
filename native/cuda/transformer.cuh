/*
 * transformer.cuh — the GPT-2 forward ops of the CUDA backend (backend.h, ABI 3): layer norm,
 * linear layers (gemm.cuh, optional bf16 operands), activations, residual adds, embeddings, the
 * q/k/v split into a key/value cache, causal attention over the cache (online softmax), per-row
 * cross-entropy and argmax (attention_lse also saves the log-sum-exp that the backward pass in
 * transformer_grad.cu needs). The math is the CPU backend's (transformer_cpu.cpp), equal up to
 * summation order and fp32 instead of double accumulation; see transformer.cu.
 */
#ifndef MONOSEMANTIC_CUDA_TRANSFORMER_CUH
#define MONOSEMANTIC_CUDA_TRANSFORMER_CUH

#include <cstddef>
#include <cstdint>

#include "backend.h"
#include "common.cuh"

namespace ms::cuda {

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
int attention(int batch, int T, int Tmax, int offset, int C, int n_head, int precision, const float* q,
              const float* k_cache, const float* v_cache, float* out, uint16_t* out_bf16, ms_error* err);
// attention, also writing lse [B, n_head, T] (index (b*n_head + h)*T + t: the log of the query's
// softmax denominator) when lse is not null; with out null, out_bf16 (bf16 bits) instead; errors name
// `name`.
int attention_lse(const char* name, int batch, int T, int Tmax, int offset, int C, int n_head, int precision,
                  const float* q, const float* k_cache, const float* v_cache, float* out, uint16_t* out_bf16,
                  float* lse, ms_error* err);
int cross_entropy(int rows, int V, const float* logits, const uint16_t* logits_bf16, const int32_t* targets,
                  float* out, int indices_checked, ms_error* err);
int argmax_rows(int rows, int V, const float* logits, int32_t* out, ms_error* err);
int kl_rows(int rows, int V, const float* p_logits, const float* q_logits, float* out, ms_error* err);

// Helpers shared with transformer_grad.cu, queued on op.stream.
// dst[k] = bf16(src[k]) for k < count (round to nearest even).
int launch_to_bf16(const Op& op, const float* src, __nv_bfloat16* dst, size_t count);
// Unless indices_checked: MS_OK when every targets[r] (r < rows) is below V (a negative one is an
// ignored position), else MS_ERR_INVALID naming the first that is not. Waits for the device.
int check_targets(const Op& op, const char* name, const int32_t* targets, int rows, int V, int indices_checked);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_TRANSFORMER_CUH
