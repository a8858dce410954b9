/* errors.cpp — see errors.h. */
#include "errors.h"

#include "addon_state.h"

namespace ms::core {

const char* code_name(int code) {
  switch (code) {
    case MS_ERR_INVALID: return "E_INVALID";
    case MS_ERR_OOM: return "E_OOM";
    case MS_ERR_DEVICE: return "E_DEVICE";
    case MS_ERR_UNSUPPORTED: return "E_UNSUPPORTED";
    case MS_ERR_UNAVAILABLE: return "E_UNAVAILABLE";
    default: return "E_UNKNOWN";
  }
}

void set_error_factory(Napi::Env env, Napi::Function factory) {
  addon_state(env).error_factory = Napi::Persistent(factory);
}

Napi::Value make_error(Napi::Env env, const ms_error& err) {
  const std::string message = std::string(err.op) + ": " + err.message;
  Napi::FunctionReference& factory = addon_state(env).error_factory;
  if (factory.IsEmpty()) return Napi::Error::New(env, message).Value();
  return factory.Call({Napi::String::New(env, code_name(err.code)), Napi::String::New(env, err.op),
                         Napi::Number::New(env, err.device_code), Napi::String::New(env, message)});
}

void throw_error(Napi::Env env, const ms_error& err) {
  throw Napi::Error(env, make_error(env, err));
}

}  // namespace ms::core
