/* unembed_ce_ops.h — registers the unembedding product fused with the softmax cross-entropy
 * (unembedCrossEntropy, unembedCrossEntropyBackward). */
#ifndef MONOSEMANTIC_CORE_UNEMBED_CE_OPS_H
#define MONOSEMANTIC_CORE_UNEMBED_CE_OPS_H

#include <napi.h>

namespace ms::core {
void register_unembed_ce_ops(Napi::Env env, Napi::Object exports);
}

#endif
