/* transformer_ops.h — registers the GPT-2 forward ops (layerNorm, linear, activation, add, embed,
 * splitQkv, attention, crossEntropy, argmaxRows, klRows). */
#ifndef MONOSEMANTIC_CORE_TRANSFORMER_OPS_H
#define MONOSEMANTIC_CORE_TRANSFORMER_OPS_H

#include <napi.h>

namespace ms::core {
void register_transformer_ops(Napi::Env env, Napi::Object exports);
}

#endif
