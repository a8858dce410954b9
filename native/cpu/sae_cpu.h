/*
 * sae_cpu.h — the standard SAE's forward and backward on the CPU (see backend.h for the math).
 * Matrix products go through sgemm (gemm.h); elementwise passes and reductions are threaded with
 * parallel_for. Reductions accumulate in double and combine in a fixed order, so results do not
 * depend on the thread count beyond the sgemm's own summation order.
 */
#ifndef MONOSEMANTIC_CPU_SAE_H
#define MONOSEMANTIC_CPU_SAE_H

#include "backend.h"

namespace ms::cpu {

size_t sae_workspace_bytes(int batch, int d, int n, int precision);
int sae_encode(int batch, int d, int n, int precision, const float* x, const float* W_enc,
               const float* b_enc, const float* b_dec, float* f, ms_error* err);
int sae_decode(int batch, int d, int n, int precision, const float* f, const float* W_dec,
               const float* b_dec, float* xhat, ms_error* err);
int sae_grads(const ms_sae_grads_args* args, ms_sae_stats* stats, ms_error* err);

int decoder_remove_parallel_grad(int n, int d, const float* W_dec, float* dW_dec, ms_error* err);
int decoder_renormalize(int n, int d, float* W_dec, ms_error* err);
int adam_update(size_t count, float* param, const float* grad, float* m, float* v,
                const ms_adam_hparams* hp, ms_error* err);
int sae_update(const ms_sae_update_args* args, ms_error* err);

}  // namespace ms::cpu

#endif
