/*
 * backends.h — the process-wide backend registry: the CPU backend (built in) and the CUDA backend
 * (a shared library dlopen()ed on request). Each backend has a mutex: backend calls are
 * serialised, so async operations on libuv worker threads never run concurrently on one backend.
 */
#ifndef MONOSEMANTIC_CORE_BACKENDS_H
#define MONOSEMANTIC_CORE_BACKENDS_H

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "backend.h"

namespace ms::core {

struct Backend {
  const ms_backend* table = nullptr;  // null until loaded and initialised
  std::mutex mutex;                   // held for every call into table
  // Queued operations run in the order they were called: each takes the next ticket as it is
  // queued (next_ticket, guarded by queue_order_mutex(): JS threads of every worker_thread share
  // the backend) and runs when `serving` (guarded by mutex) reaches it; `turn` wakes the worker
  // threads waiting for theirs.
  uint64_t next_ticket = 0;
  uint64_t serving = 0;
  std::condition_variable turn;
  // Operations are called on the JS thread and their promises settled at once, without a worker
  // or a synchronisation (the CUDA backend unless MONOSEMANTIC_CUDA_ASYNC=0: its ops only queue
  // work on its stream, and anything that reads results on the host waits for them).
  bool launch_inline = false;
  // alloc and free are thread-safe and touch no state an operation uses (the CPU's heap): tensors
  // are made and freed without waiting for the running operation to release `mutex`. Their bytes
  // are host memory, reported to the JS engine's garbage collector as external memory.
  bool host_memory = false;
};

// Held while an operation takes its ticket and is queued on the libuv pool: the pool is
// process-wide, so a ticket and its place in the pool's queue must be taken as one step, or a
// pool thread can wait for a ticket queued behind it.
std::mutex& queue_order_mutex();

Backend& cpu_backend();

// The CUDA backend, or nullptr if it has not been loaded successfully.
Backend* cuda_backend();

// Loads and initialises the CUDA backend library at `path` (idempotent once loaded).
// Returns true on success; otherwise false with the reason in `why`.
bool load_cuda_backend(const std::string& path, std::string& why);

// "cpu" -> CPU, "cuda" -> CUDA if loaded; nullptr otherwise.
Backend* backend_by_name(const std::string& name);

}  // namespace ms::core

#endif
