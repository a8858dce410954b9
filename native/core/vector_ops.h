/* vector_ops.h — registers sumSquares, scaleInPlace, rowSqDist and gatherRows. */
#ifndef MONOSEMANTIC_CORE_VECTOR_OPS_H
#define MONOSEMANTIC_CORE_VECTOR_OPS_H

#include <napi.h>

namespace ms::core {
void register_vector_ops(Napi::Env env, Napi::Object exports);
}

#endif
