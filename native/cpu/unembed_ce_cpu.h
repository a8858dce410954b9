/*
 * unembed_ce_cpu.h — the unembedding product fused with the softmax cross-entropy on the CPU
 * backend (backend.h, ABI 14): losses, log-sum-exps and the logits' bf16 gradient of x W^T without
 * the [rows, V] logits in memory. Targets are always checked on the host (cheap here), so
 * indices_checked changes nothing.
 */
#ifndef MONOSEMANTIC_CPU_UNEMBED_CE_H
#define MONOSEMANTIC_CPU_UNEMBED_CE_H

#include <cstdint>

#include "backend.h"

namespace ms::cpu {

int unembed_cross_entropy(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                          const float* W, const int32_t* targets, float* lse, float* losses, int indices_checked,
                          ms_error* err);
int unembed_cross_entropy_backward(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                                   const float* W, const int32_t* targets, const float* lse, float scale,
                                   uint16_t* dlogits_bf16, int indices_checked, ms_error* err);

}  // namespace ms::cpu

#endif
