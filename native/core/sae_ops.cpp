/*
 * sae_ops.cpp — the SAE operations exposed to JS, each a promise-returning BackendWorker
 * (backend_worker.h): arguments are read and checked on the JS thread into a plain struct, the
 * operation runs holding the backend's mutex (on a libuv worker thread, or inline where the backend
 * only queues device work) and touches only that struct, and the result or a MonosemanticError
 * settles the promise on the JS thread.
 *
 * The TypeScript layer validates shapes with user-facing messages first; the checks here are the
 * last line that keeps every pointer access inside its allocation.
 */
#include "sae_ops.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backend_worker.h"
#include "errors.h"
#include "tensor.h"

namespace ms::core {
namespace {

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

// sae_grads, and — when `step` is set — the rest of a training step:
// [remove the decoder-parallel gradient] -> Adam on all four parameters -> [renormalise decoder],
// as one sae_update call, or as separate calls when the gradients are clipped.
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
    if (wst->bytes() < need)
      throw Napi::RangeError::New(env, "workspace holds " + std::to_string(wst->bytes()) +
                                           " bytes; " + std::to_string(need) + " needed");
    args_.workspace = operands_.take(a, "workspace", wst->dtype(), 0);
    const Napi::Value read_stats = a.Get("readStats");  // false: no statistics, no wait for them
    read_stats_ = read_stats.IsUndefined() || read_stats.ToBoolean();
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
    hp_.grad_scale = 1.0f;
    clip_ = num_field_or(a, "clipGradNorm", 0);
    if (clip_ < 0) throw Napi::RangeError::New(env, "clipGradNorm must be >= 0 (0: no clipping)");
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
      adam_.push_back(ms_adam_slot{s.param, s.grad, static_cast<float*>(operands_.take_f32(a, s.m, s.count)),
                               static_cast<float*>(operands_.take_f32(a, s.v, s.count)), s.count});
    }
  }

  int run(const ms_backend* be, ms_error* err) override {
    if (int rc = be->sae_grads(&args_, read_stats_ ? &stats_ : nullptr, err)) return rc;
    if (!step_) return MS_OK;
    // sae_grads only reads the parameters (hence const in its args); the step then updates them.
    float* W_dec = const_cast<float*>(args_.W_dec);
    if (clip_ == 0) {  // the whole update in one backend call (fused where the backend can)
      ms_sae_update_args u{};
      u.n = args_.n;
      u.d = args_.d;
      u.constrain_decoder = constrain_ ? 1 : 0;
      ms_adam_slot* slots[] = {&u.W_enc, &u.b_enc, &u.W_dec, &u.b_dec};
      for (size_t k = 0; k < adam_.size(); ++k) *slots[k] = adam_[k];
      u.hp = hp_;
      return be->sae_update(&u, err);
    }
    // Clipping needs the norm of the gradients after the decoder constraint and before Adam.
    if (constrain_)
      if (int rc = be->decoder_remove_parallel_grad(args_.n, args_.d, W_dec, args_.dW_dec, err)) return rc;
    double sum = 0.0;  // global L2 norm of the four gradients (as Adam will see them)
    for (const ms_adam_slot& s : adam_) {
      double part = 0.0;
      if (int rc = be->sum_squares(s.count, s.grad, &part, err)) return rc;
      sum += part;
    }
    grad_norm_ = std::sqrt(sum);
    if (grad_norm_ > clip_) hp_.grad_scale = float(clip_ / grad_norm_);
    for (const ms_adam_slot& s : adam_)
      if (int rc = be->adam_update(s.count, s.param, s.grad, s.m, s.v, &hp_, err)) return rc;
    if (constrain_)
      if (int rc = be->decoder_renormalize(args_.n, args_.d, W_dec, err)) return rc;
    return MS_OK;
  }
  Napi::Value result(Napi::Env env) override {
    if (!read_stats_) return env.Undefined();
    Napi::Object out = stats_object(env, stats_);
    if (step_) out.Set("gradNorm", grad_norm_);
    return out;
  }

 private:
  bool step_;
  bool read_stats_ = true;  // false: stats_ is not filled and the result is undefined
  bool constrain_ = false;
  double clip_ = 0;                  // max global gradient norm; 0: no clipping
  double grad_norm_ = std::nan("");  // measured when clipping
  ms_sae_grads_args args_{};
  ms_adam_hparams hp_{};
  std::vector<ms_adam_slot> adam_;  // W_enc, b_enc, W_dec, b_dec
  ms_sae_stats stats_{};
};

Napi::Value SaeEncode(const Napi::CallbackInfo& info) { return start_worker<EncodeWorker>(info); }
Napi::Value SaeDecode(const Napi::CallbackInfo& info) { return start_worker<DecodeWorker>(info); }
Napi::Value SaeGrads(const Napi::CallbackInfo& info) { return start_worker<GradsWorker>(info, false); }
Napi::Value SaeStep(const Napi::CallbackInfo& info) { return start_worker<GradsWorker>(info, true); }

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
