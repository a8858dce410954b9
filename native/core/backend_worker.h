/*
 * backend_worker.h — the plumbing shared by the native operations exposed to JS: reading checked
 * tensor operands and numbers from an argument object, and BackendWorker, an operation whose
 * promise settles once it has run: on a libuv worker thread holding the backend's mutex
 * (QueuedOperation, sharp's "baton" pattern), in the order the operations were called, or inline
 * on the JS thread where the backend only queues device work.
 */
#ifndef MONOSEMANTIC_CORE_BACKEND_WORKER_H
#define MONOSEMANTIC_CORE_BACKEND_WORKER_H

#include <napi.h>

#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "errors.h"
#include "tensor.h"

namespace ms::core {

// The operands of one call: device pointers plus the buffers that keep them alive until it ends.
struct Operands {
  Backend* backend = nullptr;
  std::vector<std::shared_ptr<DeviceBuffer>> keep_alive;

  // Reads obj[key] as a tensor of `dtype` with at least `numel` elements on the shared backend.
  void* take(const Napi::Object& obj, const char* key, int dtype, size_t numel) {
    Napi::Env env = obj.Env();
    Tensor* t = Tensor::From(obj.Get(key), key);
    if (t->dtype() != dtype)
      throw Napi::TypeError::New(env, std::string(key) + " must have dtype " + dtype_name(dtype) +
                                          " (got " + dtype_name(t->dtype()) + ")");
    if (t->numel() < numel)
      throw Napi::RangeError::New(env, std::string(key) + " holds " + std::to_string(t->numel()) +
                                           " elements; " + std::to_string(numel) + " needed");
    if (!backend) backend = t->backend();
    if (t->backend() != backend)
      throw Napi::TypeError::New(env, std::string(key) + " is on another backend than the other operands");
    keep_alive.push_back(t->buffer());
    return t->data();
  }
  void* take_f32(const Napi::Object& obj, const char* key, size_t numel) {
    return take(obj, key, MS_F32, numel);
  }

  // Reads obj[key] (numel elements) into f32 where its dtype is fp32, or into bf16 where it is bf16;
  // the other pointer stays null. bf16_allowed false (fp32 precision): a bf16 tensor is refused,
  // naming it.
  template <typename F, typename H>
  void take_f32_or_bf16(const Napi::Object& obj, const char* key, size_t numel, F*& f32, H*& bf16,
                        bool bf16_allowed = true) {
    if (Tensor::From(obj.Get(key), key)->dtype() != MS_BF16) {
      f32 = static_cast<F*>(take_f32(obj, key, numel));
      return;
    }
    if (!bf16_allowed) throw Napi::TypeError::New(obj.Env(), std::string("a bf16 ") + key + " needs bf16 precision");
    bf16 = static_cast<H*>(take(obj, key, MS_BF16, numel));
  }
};

inline int int_field(const Napi::Object& obj, const char* key, int lo, int hi) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(obj.Env(), std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != std::floor(d))
    throw Napi::RangeError::New(obj.Env(), std::string(key) + " must be an integer in [" +
                                               std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return int(d);
}

// obj[key] as a finite number; `fallback` when it is undefined.
inline double num_field_or(const Napi::Object& obj, const char* key, double fallback) {
  if (obj.Get(key).IsUndefined()) return fallback;
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(obj.Env(), std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::RangeError::New(obj.Env(), std::string(key) + " must be finite");
  return d;
}

inline double num_field(const Napi::Object& obj, const char* key) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(obj.Env(), std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::RangeError::New(obj.Env(), std::string(key) + " must be finite");
  return d;
}

// Largest dimension the transformer ops take (lib/lm/ops.ts checks the same).
constexpr int kMaxDim = 1 << 30;

// a * b for element counts; a RangeError naming `what` when it exceeds 2^53.
inline size_t product(Napi::Env env, size_t a, size_t b, const char* what) {
  constexpr size_t kMax = size_t(1) << 53;
  if (a != 0 && b > kMax / a) throw Napi::RangeError::New(env, std::string(what) + " holds too many elements");
  return a * b;
}

// obj[key] as an integer count in [1, 2^53).
inline size_t count_field(const Napi::Object& obj, const char* key) {
  const double d = num_field(obj, key);
  if (d < 1 || d >= 9007199254740992.0 || d != std::floor(d))
    throw Napi::RangeError::New(obj.Env(), std::string(key) + " must be an integer in [1, 2^53)");
  return size_t(d);
}

// obj.precision as an ms_precision; MS_PREC_F32 when it is absent.
inline int precision_field_or_f32(const Napi::Object& obj) {
  return obj.Get("precision").IsUndefined() ? int(MS_PREC_F32) : int_field(obj, "precision", MS_PREC_F32, MS_PREC_BF16);
}

inline bool bool_field(const Napi::Object& obj, const char* key) {
  const Napi::Value v = obj.Get(key);
  if (!v.IsBoolean()) throw Napi::TypeError::New(obj.Env(), std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// obj.indicesChecked (optional boolean): the caller has checked the op's indices on the host, so a
// backend may skip its own check (backend.h). 0 when absent.
inline int indices_checked_field(const Napi::Object& obj) {
  return !obj.Get("indicesChecked").IsUndefined() && bool_field(obj, "indicesChecked") ? 1 : 0;
}

// obj[key] is undefined or null.
inline bool absent(const Napi::Object& obj, const char* key) {
  const Napi::Value v = obj.Get(key);
  return v.IsUndefined() || v.IsNull();
}

inline Napi::Object stats_object(Napi::Env env, const ms_sae_stats& s) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", s.loss);
  out.Set("mse", s.mse);
  out.Set("sparsity", s.sparsity);
  out.Set("l0", s.l0);
  return out;
}

// Base for the operations: the operands read from the argument object (in the constructor, on the
// JS thread), run() under the backend's lock, and the value its promise resolves to.
class BackendWorker {
 public:
  BackendWorker(Napi::Env, Operands operands) : operands_(std::move(operands)) {}
  BackendWorker(const BackendWorker&) = delete;
  BackendWorker& operator=(const BackendWorker&) = delete;
  virtual ~BackendWorker() = default;
  const Backend* backend() const { return operands_.backend; }

  // On a JS thread, holding queue_order_mutex(), as the operation is queued: its place in the
  // backend's order.
  void TakeTicket() { ticket_ = operands_.backend->next_ticket++; }
  // Still holding queue_order_mutex(), when queueing failed right after TakeTicket(): no later
  // ticket was taken.
  void ReturnTicket() { --operands_.backend->next_ticket; }

  // On a libuv worker thread, once every operation queued before it on this backend has run: the
  // operation, then a wait for the device. (libuv hands out its work in the order it was queued,
  // so the operations ahead of this one are running or done: the wait always ends.)
  void Execute() {
    Backend* backend = operands_.backend;
    std::unique_lock<std::mutex> lock(backend->mutex);
    backend->turn.wait(lock, [&] { return backend->serving == ticket_; });
    failed_ = !RunGuarded(backend->table);
    if (!failed_ && backend->table->synchronize(&err_) != MS_OK) failed_ = true;
    ++backend->serving;
    backend->turn.notify_all();
  }

  // On the JS thread, for a backend with launch_inline, whose operations only queue device work.
  void RunInline() {
    Backend* backend = operands_.backend;
    std::lock_guard<std::mutex> lock(backend->mutex);
    failed_ = !RunGuarded(backend->table);
  }

  // On the JS thread, after Execute() or RunInline(): settles the operation's promise.
  void Settle(Napi::Env env, const Napi::Promise::Deferred& deferred) {
    if (failed_) deferred.Reject(make_error(env, err_));
    else deferred.Resolve(result(env));
  }

 protected:
  virtual int run(const ms_backend* be, ms_error* err) = 0;
  virtual Napi::Value result(Napi::Env env) { return env.Undefined(); }

  Operands operands_;
  ms_error err_{};
  bool failed_ = false;
  uint64_t ticket_ = 0;

 private:
  // run(), with a host allocation that throws (a kernel's std::vector) reported as E_OOM like the
  // backends' own allocation failures; true when it succeeded.
  bool RunGuarded(const ms_backend* table) {
    try {
      return run(table, &err_) == MS_OK;
    } catch (const std::bad_alloc&) {
      err_ = ms_error{};
      err_.code = MS_ERR_OOM;
      std::snprintf(err_.op, sizeof err_.op, "%s", "host allocation");
      std::snprintf(err_.message, sizeof err_.message, "%s", "out of host memory");
      return false;
    }
  }
};

// An operation run on a libuv worker thread (sharp's "baton" pattern: Execute() touches only the
// operation's own fields), its promise settled back on the JS thread.
class QueuedOperation : public Napi::AsyncWorker {
 public:
  QueuedOperation(Napi::Env env, std::unique_ptr<BackendWorker> op)
      : Napi::AsyncWorker(env, "monosemantic"), op_(std::move(op)), deferred_(env) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override { op_->Execute(); }
  // Settling throws where the JS environment is being torn down (a worker_thread terminated with
  // operations queued): nothing is left to settle, and the exception must not escape (it would
  // abort the process). A result that fails to convert in a live environment rejects instead.
  void OnOK() override {
    Napi::HandleScope scope(Env());
    try {
      op_->Settle(Env(), deferred_);
    } catch (const Napi::Error& e) {
      try {
        deferred_.Reject(e.Value());
      } catch (const Napi::Error&) {
      }
    }
  }
  void OnError(const Napi::Error& e) override {
    try {
      deferred_.Reject(e.Value());
    } catch (const Napi::Error&) {
    }
  }

 private:
  std::unique_ptr<BackendWorker> op_;
  Napi::Promise::Deferred deferred_;
};

// Reads the operation's arguments and runs it: inline, its promise settled before returning, where
// the backend only queues device work (no libuv work item or async resource is made for it), else
// queued on the libuv pool.
template <typename Worker, typename... Extra>
Napi::Value start_worker(const Napi::CallbackInfo& info, Extra... extra) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(env, "expected one argument object");
  auto op = std::make_unique<Worker>(env, info[0].As<Napi::Object>(), extra...);
  const Backend* backend = op->backend();
  if (backend && backend->launch_inline) {
    const Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    op->RunInline();
    op->Settle(env, deferred);
    return deferred.Promise();  // op, and its operands' references, freed on return
  }
  BackendWorker* worker = op.get();
  auto* queued = new QueuedOperation(env, std::move(op));  // deletes itself once settled
  Napi::Promise promise = queued->promise();
  std::lock_guard<std::mutex> order(queue_order_mutex());
  worker->TakeTicket();
  try {
    queued->Queue();
  } catch (...) {
    worker->ReturnTicket();  // never queued: the next operation takes its place
    throw;
  }
  return promise;
}

}  // namespace ms::core

#endif
