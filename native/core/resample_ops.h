/* resample_ops.h — registers resampleCandidates and saeResample (dead-feature resampling). */
#ifndef MONOSEMANTIC_CORE_RESAMPLE_OPS_H
#define MONOSEMANTIC_CORE_RESAMPLE_OPS_H

#include <napi.h>

namespace ms::core {
void register_resample_ops(Napi::Env env, Napi::Object exports);
}

#endif
