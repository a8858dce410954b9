/*
 * attention_cpu.h — causal multi-head attention on the CPU backend (backend.h): the inference
 * forward over a key/value cache, the training forward that also saves each query's log-sum-exp,
 * and the backward that recomputes the probabilities from it (no T x T matrix is kept).
 * All three compute in fp32 at either precision.
 */
#ifndef MONOSEMANTIC_CPU_ATTENTION_H
#define MONOSEMANTIC_CPU_ATTENTION_H

#include "backend.h"

namespace ms::cpu {

// q [B*T, C]; k_cache, v_cache [B, Tmax, C] holding positions 0 .. offset+T-1; out [B*T, C].
int attention(int batch, int T, int Tmax, int offset, int C, int n_head, int precision, const float* q,
              const float* k_cache, const float* v_cache, float* out, uint16_t* out_bf16, ms_error* err);
// attention with Tmax = T and offset 0, also writing lse [B, n_head, T] (index (b*n_head + h)*T + t:
// the log of the query's softmax denominator, max_j s_j + log sum_j exp(s_j - max)).
int attention_train(int batch, int T, int C, int n_head, int precision, const float* q, const float* k,
                    const float* v, float* out, float* lse, ms_error* err);
// dq, dk, dv [B*T rows of ld_grad floats, C used] from dout, the forward's inputs, its out and lse.
int attention_backward(int batch, int T, int C, int n_head, int precision, const float* dout, const float* q,
                       const float* k, const float* v, const float* out, const float* lse, float* dq, float* dk,
                       float* dv, int ld_grad, ms_error* err);

}  // namespace ms::cpu

#endif
