/*
 * info.cpp — backend loading and facts: cpuInfo(), setThreads(n), setSimdCap(level),
 * loadCuda(path) -> { ok, reason }, backendInfo(name) -> { runtime, devices, asyncOps },
 * synchronize(name).
 */
#include "info.h"

#include <string>

#include "backends.h"
#include "cpu/cpu_features.h"
#include "cpu/thread_pool.h"
#include "errors.h"

namespace ms::core {
namespace {

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("model", ms::cpu::cpu_model_name());
  out.Set("simd", ms::cpu::simd_name(ms::cpu::active_simd()));
  out.Set("simdDetected", ms::cpu::simd_name(ms::cpu::detected_simd()));
  out.Set("threads", ms::cpu::num_threads());
  return out;
}

// setThreads(n >= 1)
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1)
    throw Napi::RangeError::New(env, "setThreads: thread count must be an integer >= 1");
  ms::cpu::set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

// setSimdCap('scalar' | 'avx2' | 'avx512'): caps the CPU kernels' instruction set (for tests).
Napi::Value SetSimdCap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string name = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  for (auto level : {ms::cpu::SimdLevel::Scalar, ms::cpu::SimdLevel::AVX2, ms::cpu::SimdLevel::AVX512}) {
    if (name == ms::cpu::simd_name(level)) {
      ms::cpu::set_simd_cap(level);
      return Napi::String::New(env, ms::cpu::simd_name(ms::cpu::active_simd()));
    }
  }
  throw Napi::RangeError::New(env, "setSimdCap: level must be 'scalar', 'avx2' or 'avx512'");
}

// loadCuda(path) -> { ok: boolean, reason?: string }
Napi::Value LoadCuda(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "loadCuda(path: string)");
  std::string why;
  const bool ok = load_cuda_backend(info[0].As<Napi::String>(), why);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", ok);
  if (!ok) out.Set("reason", why);
  return out;
}

// The backend named by info[0]; an Error when it is not loaded.
Backend& loaded_backend(const Napi::CallbackInfo& info) {
  const std::string name = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  Backend* be = backend_by_name(name);
  if (!be) throw Napi::Error::New(info.Env(), "backend '" + name + "' is not loaded");
  return *be;
}

// backendInfo(name) -> { runtime: { driverVersion, runtimeVersion, deviceCount, hopperGemm }, devices: [...] }
Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Backend* be = &loaded_backend(info);
  std::lock_guard<std::mutex> lock(be->mutex);
  ms_error err{};
  ms_runtime_info rt{};
  if (be->table->runtime_info(&rt, &err) != MS_OK) throw_error(env, err);
  Napi::Object runtime = Napi::Object::New(env);
  runtime.Set("driverVersion", rt.driver_version);
  runtime.Set("runtimeVersion", rt.runtime_version);
  runtime.Set("deviceCount", rt.device_count);
  runtime.Set("hopperGemm", rt.hopper_gemm != 0);
  Napi::Array devices = Napi::Array::New(env, size_t(rt.device_count));
  for (int i = 0; i < rt.device_count; ++i) {
    ms_device_info d{};
    if (be->table->device_info(i, &d, &err) != MS_OK) throw_error(env, err);
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("name", std::string(d.name));
    dev.Set("totalBytes", double(d.total_bytes));
    dev.Set("freeBytes", double(d.free_bytes));
    dev.Set("multiprocessors", d.multiprocessors);
    dev.Set("computeCapability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
    devices.Set(uint32_t(i), dev);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("runtime", runtime);
  out.Set("devices", devices);
  out.Set("asyncOps", be->launch_inline);
  return out;
}

// synchronize(name): waits until the backend has finished all work queued so far; throws its
// error (an asynchronous failure of an earlier operation) if it failed.
Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Backend& be = loaded_backend(info);
  std::lock_guard<std::mutex> lock(be.mutex);
  ms_error err{};
  if (be.table->synchronize(&err) != MS_OK) throw_error(env, err);
  return env.Undefined();
}

}  // namespace

void register_info(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuInfo", Napi::Function::New<CpuInfo>(env, "cpuInfo"));
  exports.Set("setThreads", Napi::Function::New<SetThreads>(env, "setThreads"));
  exports.Set("setSimdCap", Napi::Function::New<SetSimdCap>(env, "setSimdCap"));
  exports.Set("loadCuda", Napi::Function::New<LoadCuda>(env, "loadCuda"));
  exports.Set("backendInfo", Napi::Function::New<BackendInfo>(env, "backendInfo"));
  exports.Set("synchronize", Napi::Function::New<Synchronize>(env, "synchronize"));
}

}  // namespace ms::core
