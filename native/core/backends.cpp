/* backends.cpp — see backends.h. */
#include "backends.h"

#ifndef _WIN32
#include <dlfcn.h>
#endif

#include <cstdlib>

#include "cpu/backend_cpu.h"

namespace ms::core {
namespace {

Backend g_cpu;
Backend g_cuda;
std::mutex g_load_mutex;

}  // namespace

Backend& cpu_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_cpu.table = ms::cpu::cpu_backend();
    g_cpu.host_memory = true;
  });
  return g_cpu;
}

std::mutex& queue_order_mutex() {
  static std::mutex m;
  return m;
}

Backend* cuda_backend() {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  return g_cuda.table ? &g_cuda : nullptr;
}

bool load_cuda_backend(const std::string& path, std::string& why) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (g_cuda.table) return true;
#ifdef _WIN32
  (void)path;
  why = "loading the CUDA backend is not supported on Windows yet";
  return false;
#else
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* detail = dlerror();
    why = std::string("could not load ") + path + ": " + (detail ? detail : "unknown dlopen error");
    return false;
  }
  auto entry = reinterpret_cast<ms_backend_entry_fn>(dlsym(handle, MS_CUDA_ENTRY_SYMBOL));
  if (!entry) {
    why = path + " does not export " + MS_CUDA_ENTRY_SYMBOL;
    dlclose(handle);
    return false;
  }
  const ms_backend* table = entry(MS_BACKEND_ABI_VERSION);
  if (!table || table->abi_version != MS_BACKEND_ABI_VERSION) {
    why = path + " was built for another backend ABI version (rebuild the package)";
    dlclose(handle);
    return false;
  }
  ms_error err{};
  if (table->init(&err) != MS_OK) {
    why = err.message[0] ? std::string(err.message) : std::string("CUDA initialisation failed");
    // The library stays loaded: unloading a CUDA runtime after a failed init is not safe.
    return false;
  }
  g_cuda.table = table;
  const char* async_ops = std::getenv("MONOSEMANTIC_CUDA_ASYNC");
  g_cuda.launch_inline = !(async_ops && std::string(async_ops) == "0");
  return true;
#endif
}

Backend* backend_by_name(const std::string& name) {
  if (name == "cpu") return &cpu_backend();
  if (name == "cuda") return cuda_backend();
  return nullptr;
}

}  // namespace ms::core
