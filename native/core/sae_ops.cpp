/*
 * sae_ops.cpp — the SAE operations exposed to JS, each a promise-returning AsyncWorker
 * (sharp's "baton" pattern): arguments are read and checked on the JS thread into a plain struct,
 * Execute() runs on a libuv worker thread holding the backend's mutex and touches only that
 * struct, and the result or a MonosemanticError settles the promise on the JS thread.
 *
 * The TypeScript layer validates shapes with user-facing messages first; the checks here are the
 * last line that keeps every pointer access inside its allocation.
 */
#include "sae_ops.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "tensor.h"

namespace ms::core {
namespace {

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
    return t->buffer()->ptr;
  }
  void* take_f32(const Napi::Object& obj, const char* key, size_t numel) {
    return take(obj, key, MS_F32, numel);
  }
};

int int_field(const Napi::Object& obj, const char* key, int lo, int hi) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(obj.Env(), std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != std::floor(d))
    throw Napi::RangeError::New(obj.Env(), std::string(key) + " must be an integer in [" +
                                               std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return int(d);
}

double num_field(const Napi::Object& obj, const char* key) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(obj.Env(), std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::RangeError::New(obj.Env(), std::string(key) + " must be finite");
  return d;
}

Napi::Object stats_object(Napi::Env env, const ms_sae_stats& s) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", s.loss);
  out.Set("mse", s.mse);
  out.Set("sparsity", s.sparsity);
  out.Set("l0", s.l0);
  return out;
}

// Base for the SAE workers: runs `run()` under the backend lock, settles a promise.
class BackendWorker : public Napi::AsyncWorker {
 public:
  BackendWorker(Napi::Env env, Operands operands)
      : Napi::AsyncWorker(env, "monosemantic"), operands_(std::move(operands)), deferred_(env) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual int run(const ms_backend* be, ms_error* err) = 0;
  virtual Napi::Value result(Napi::Env env) { return env.Undefined(); }

  void Execute() override {
    Backend* backend = operands_.backend;
    std::lock_guard<std::mutex> lock(backend->mutex);
    failed_ = run(backend->table, &err_) != MS_OK;
    if (!failed_ && backend->table->synchronize(&err_) != MS_OK) failed_ = true;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failed_) deferred_.Reject(make_error(env, err_));
    else deferred_.Resolve(result(env));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Operands operands_;
  ms_error err_{};
  bool failed_ = false;

 private:
  Napi::Promise::Deferred deferred_;
};

struct Dims {
  int batch, d, n, precision;
};

Dims read_dims(const Napi::Object& a) {
  return Dims{int_field(a, "batch", 1, 1 << 30), int_field(a, "d", 1, 1 << 30),
              int_field(a, "n", 1, 1 << 30), int_field(a, "precision", MS_PREC_F32, MS_PREC_BF16)};
}

class EncodeWorker : public BackendWorker {
 public:
  EncodeWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}), dims_(read_dims(a)) {
    const size_t B = size_t(dims_.batch), D = size_t(dims_.d), N = size_t(dims_.n);
    x_ = static_cast<const float*>(operands_.take_f32(a, "x", B * D));
    W_enc_ = static_cast<const float*>(operands_.take_f32(a, "W_enc", D * N));
    b_enc_ = static_cast<const float*>(operands_.take_f32(a, "b_enc", N));
    b_dec_ = static_cast<const float*>(operands_.take_f32(a, "b_dec", D));
    f_ = static_cast<float*>(operands_.take_f32(a, "out", B * N));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->sae_encode(dims_.batch, dims_.d, dims_.n, dims_.precision, x_, W_enc_, b_enc_, b_dec_,
                          f_, err);
  }

 private:
  Dims dims_;
  const float *x_, *W_enc_, *b_enc_, *b_dec_;
  float* f_;
};

class DecodeWorker : public BackendWorker {
 public:
  DecodeWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}), dims_(read_dims(a)) {
    const size_t B = size_t(dims_.batch), D = size_t(dims_.d), N = size_t(dims_.n);
    f_ = static_cast<const float*>(operands_.take_f32(a, "f", B * N));
    W_dec_ = static_cast<const float*>(operands_.take_f32(a, "W_dec", N * D));
    b_dec_ = static_cast<const float*>(operands_.take_f32(a, "b_dec", D));
    xhat_ = static_cast<float*>(operands_.take_f32(a, "out", B * D));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->sae_decode(dims_.batch, dims_.d, dims_.n, dims_.precision, f_, W_dec_, b_dec_, xhat_, err);
  }

 private:
  Dims dims_;
  const float *f_, *W_dec_, *b_dec_;
  float* xhat_;
};

// One Adam-updated parameter: the parameter, its gradient and both moments.
struct AdamSlot {
  float *param, *grad, *m, *v;
  size_t count;
};

// sae_grads, and — when `step` is set — the rest of a training step:
// [remove the decoder-parallel gradient] -> Adam on all four parameters -> [renormalise decoder].
class GradsWorker : public BackendWorker {
 public:
  GradsWorker(Napi::Env env, const Napi::Object& a, bool step)
      : BackendWorker(env, Operands{}), step_(step) {
    const Dims dims = read_dims(a);
    const size_t B = size_t(dims.batch), D = size_t(dims.d), N = size_t(dims.n);
    args_.batch = dims.batch;
    args_.d = dims.d;
    args_.n = dims.n;
    args_.precision = dims.precision;
    args_.penalty = int_field(a, "penalty", MS_PENALTY_L1, MS_PENALTY_L1_DECNORM);
    args_.l1_coeff = float(num_field(a, "l1Coeff"));
    args_.x = static_cast<const float*>(operands_.take_f32(a, "x", B * D));
    args_.W_enc = static_cast<float*>(operands_.take_f32(a, "W_enc", D * N));
    args_.b_enc = static_cast<float*>(operands_.take_f32(a, "b_enc", N));
    args_.W_dec = static_cast<float*>(operands_.take_f32(a, "W_dec", N * D));
    args_.b_dec = static_cast<float*>(operands_.take_f32(a, "b_dec", D));
    args_.dW_enc = static_cast<float*>(operands_.take_f32(a, "dW_enc", D * N));
    args_.db_enc = static_cast<float*>(operands_.take_f32(a, "db_enc", N));
    args_.dW_dec = static_cast<float*>(operands_.take_f32(a, "dW_dec", N * D));
    args_.db_dec = static_cast<float*>(operands_.take_f32(a, "db_dec", D));
    Napi::Value counts = a.Get("fireCounts");
    args_.fire_counts = counts.IsUndefined() || counts.IsNull()
                            ? nullptr
                            : static_cast<int32_t*>(operands_.take(a, "fireCounts", MS_I32, N));
    const Napi::Value ws = a.Get("workspace");
    Tensor* wst = Tensor::From(ws, "workspace");
    const size_t need = operands_.backend->table->sae_workspace_bytes(dims.batch, dims.d, dims.n,
                                                                      dims.precision);
    if (wst->buffer()->bytes < need)
      throw Napi::RangeError::New(env, "workspace holds " + std::to_string(wst->buffer()->bytes) +
                                           " bytes; " + std::to_string(need) + " needed");
    args_.workspace = operands_.take(a, "workspace", wst->dtype(), 0);
    if (!step_) return;

    constrain_ = a.Get("constrainDecoder").ToBoolean();
    const double lr = num_field(a, "lr"), beta1 = num_field(a, "beta1"), beta2 = num_field(a, "beta2");
    const double eps = num_field(a, "eps");
    const int t = int_field(a, "t", 1, 2147483647);
    hp_.lr = float(lr);
    hp_.beta1 = float(beta1);
    hp_.beta2 = float(beta2);
    hp_.eps = float(eps);
    hp_.bias1 = float(1.0 - std::pow(beta1, t));
    hp_.bias2 = float(1.0 - std::pow(beta2, t));
    const struct {
      const char *m, *v;
      float* param;
      float* grad;
      size_t count;
    } slots[] = {{"m_W_enc", "v_W_enc", const_cast<float*>(args_.W_enc), args_.dW_enc, D * N},
                 {"m_b_enc", "v_b_enc", const_cast<float*>(args_.b_enc), args_.db_enc, N},
                 {"m_W_dec", "v_W_dec", const_cast<float*>(args_.W_dec), args_.dW_dec, N * D},
                 {"m_b_dec", "v_b_dec", const_cast<float*>(args_.b_dec), args_.db_dec, D}};
    for (const auto& s : slots) {
      adam_.push_back(AdamSlot{s.param, s.grad, static_cast<float*>(operands_.take_f32(a, s.m, s.count)),
                               static_cast<float*>(operands_.take_f32(a, s.v, s.count)), s.count});
    }
  }

  int run(const ms_backend* be, ms_error* err) override {
    if (int rc = be->sae_grads(&args_, &stats_, err)) return rc;
    if (!step_) return MS_OK;
    // sae_grads only reads the parameters (hence const in its args); the step then updates them.
    float* W_dec = const_cast<float*>(args_.W_dec);
    if (constrain_)
      if (int rc = be->decoder_remove_parallel_grad(args_.n, args_.d, W_dec, args_.dW_dec, err)) return rc;
    for (const AdamSlot& s : adam_)
      if (int rc = be->adam_update(s.count, s.param, s.grad, s.m, s.v, &hp_, err)) return rc;
    if (constrain_)
      if (int rc = be->decoder_renormalize(args_.n, args_.d, W_dec, err)) return rc;
    return MS_OK;
  }
  Napi::Value result(Napi::Env env) override { return stats_object(env, stats_); }

 private:
  bool step_;
  bool constrain_ = false;
  ms_sae_grads_args args_{};
  ms_adam_hparams hp_{};
  std::vector<AdamSlot> adam_;
  ms_sae_stats stats_{};
};

template <typename Worker, typename... Extra>
Napi::Value start(const Napi::CallbackInfo& info, Extra... extra) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(env, "expected one argument object");
  auto* worker = new Worker(env, info[0].As<Napi::Object>(), extra...);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Value SaeEncode(const Napi::CallbackInfo& info) { return start<EncodeWorker>(info); }
Napi::Value SaeDecode(const Napi::CallbackInfo& info) { return start<DecodeWorker>(info); }
Napi::Value SaeGrads(const Napi::CallbackInfo& info) { return start<GradsWorker>(info, false); }
Napi::Value SaeStep(const Napi::CallbackInfo& info) { return start<GradsWorker>(info, true); }

// saeWorkspaceBytes(backend, batch, d, n, precision) -> number
Napi::Value SaeWorkspaceBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Backend* be = info[0].IsString() ? backend_by_name(info[0].As<Napi::String>()) : nullptr;
  if (!be) throw Napi::TypeError::New(env, "saeWorkspaceBytes: unknown or unavailable backend");
  const size_t bytes = be->table->sae_workspace_bytes(
      info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(),
      info[3].As<Napi::Number>().Int32Value(), info[4].As<Napi::Number>().Int32Value());
  return Napi::Number::New(env, double(bytes));
}

}  // namespace

void register_sae_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("saeEncode", Napi::Function::New<SaeEncode>(env, "saeEncode"));
  exports.Set("saeDecode", Napi::Function::New<SaeDecode>(env, "saeDecode"));
  exports.Set("saeGrads", Napi::Function::New<SaeGrads>(env, "saeGrads"));
  exports.Set("saeStep", Napi::Function::New<SaeStep>(env, "saeStep"));
  exports.Set("saeWorkspaceBytes", Napi::Function::New<SaeWorkspaceBytes>(env, "saeWorkspaceBytes"));
}

}  // namespace ms::core
