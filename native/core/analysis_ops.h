/* analysis_ops.h — registers sparseRows and columnStats (the feature-analysis ops). */
#ifndef MONOSEMANTIC_CORE_ANALYSIS_OPS_H
#define MONOSEMANTIC_CORE_ANALYSIS_OPS_H

#include <napi.h>

namespace ms::core {
void register_analysis_ops(Napi::Env env, Napi::Object exports);
}

#endif
