/*
 * addon_state.h — per-instance state of the addon (one per Node.js environment / worker thread):
 * references to JS functions the native side needs. Freed by Node when the environment ends.
 */
#ifndef MONOSEMANTIC_CORE_ADDON_STATE_H
#define MONOSEMANTIC_CORE_ADDON_STATE_H

#include <napi.h>

namespace ms::core {

struct AddonState {
  Napi::FunctionReference error_factory;  // (code, op, deviceCode, message) => MonosemanticError
};

inline AddonState& addon_state(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

}  // namespace ms::core

#endif
