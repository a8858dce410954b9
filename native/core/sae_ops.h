/* sae_ops.h — registers the SAE operations (saeEncode, saeDecode, saeGrads, saeStep, ...). */
#ifndef MONOSEMANTIC_CORE_SAE_OPS_H
#define MONOSEMANTIC_CORE_SAE_OPS_H

#include <napi.h>

namespace ms::core {
void register_sae_ops(Napi::Env env, Napi::Object exports);
}

#endif
