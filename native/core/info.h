/* info.h — registers what `monosemantic doctor` reads: CPU facts, backend loading and device facts. */
#ifndef MONOSEMANTIC_CORE_INFO_H
#define MONOSEMANTIC_CORE_INFO_H

#include <napi.h>

namespace ms::core {
void register_info(Napi::Env env, Napi::Object exports);
}

#endif
