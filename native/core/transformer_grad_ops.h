/* transformer_grad_ops.h — registers the GPT-2 backward ops and AdamW (attentionTrain,
 * attentionBackward, layerNormBackward, linearBackward, activationBackward,
 * crossEntropyBackward, embedBackward, adamW). */
#ifndef MONOSEMANTIC_CORE_TRANSFORMER_GRAD_OPS_H
#define MONOSEMANTIC_CORE_TRANSFORMER_GRAD_OPS_H

#include <napi.h>

namespace ms::core {
void register_transformer_grad_ops(Napi::Env env, Napi::Object exports);
}

#endif
