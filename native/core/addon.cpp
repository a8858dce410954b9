/*
 * addon.cpp — the core addon's entry: creates the per-environment state and registers exports.
 * Nothing else lives here.
 */
#include <napi.h>

#include "addon_state.h"
#include "analysis_ops.h"
#include "backend.h"
#include "errors.h"
#include "info.h"
#include "resample_ops.h"
#include "sae_ops.h"
#include "tensor.h"
#include "transformer_grad_ops.h"
#include "transformer_ops.h"
#include "unembed_ce_ops.h"
#include "vector_ops.h"

namespace ms::core {
namespace {

Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction())
    throw Napi::TypeError::New(info.Env(), "setErrorFactory(fn)");
  set_error_factory(info.Env(), info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonState());
  exports.Set("NativeTensor", Tensor::Define(env));
  exports.Set("abiVersion", Napi::Number::New(env, MS_BACKEND_ABI_VERSION));
  exports.Set("setErrorFactory", Napi::Function::New<SetErrorFactory>(env, "setErrorFactory"));
  register_info(env, exports);
  register_sae_ops(env, exports);
  register_vector_ops(env, exports);
  register_analysis_ops(env, exports);
  register_resample_ops(env, exports);
  register_transformer_ops(env, exports);
  register_transformer_grad_ops(env, exports);
  register_unembed_ce_ops(env, exports);
  return exports;
}

}  // namespace
}  // namespace ms::core

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return ms::core::Init(env, exports); }

NODE_API_MODULE(monosemantic, InitAddon)
