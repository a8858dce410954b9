/*
 * transformer_grad_ops.cpp — the GPT-2 backward ops and AdamW exposed to JS as promise-returning
 * workers (backend.h, ABI 5: attention_train, attention_backward, layernorm_backward,
 * linear_backward, activation_backward, cross_entropy_backward, embed_backward, adamw_update; ABI 15:
 * relu_linear_backward).
 * lib/lm/grad-ops.ts checks shapes, aliasing and hyperparameters with user-facing messages first;
 * the checks here keep every access inside its allocation. Checks that need the operands'
 * contents (token ids, targets) happen in the backends, which fail with MS_ERR_INVALID naming the
 * first bad index.
 */
#include "transformer_grad_ops.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "backend_worker.h"

namespace ms::core {
namespace {

// Reads batch, T, C, nHead (C a multiple of nHead); returns the element count of a [B*T, C] operand.
size_t read_attention_dims(Napi::Env env, const Napi::Object& a, int* batch, int* T, int* C, int* n_head) {
  *batch = int_field(a, "batch", 1, kMaxDim);
  *T = int_field(a, "T", 1, kMaxDim);
  *C = int_field(a, "C", 1, kMaxDim);
  *n_head = int_field(a, "nHead", 1, kMaxDim);
  if (*C % *n_head != 0)
    throw Napi::RangeError::New(env, "C (" + std::to_string(*C) + ") must be a multiple of nHead (" +
                                         std::to_string(*n_head) + ")");
  return product(env, product(env, size_t(*batch), size_t(*T), "q"), size_t(*C), "q");
}

// attentionTrain({ batch, T, C, nHead, precision?, q, k, v, out, lse }): q, k, v, out [B*T, C];
// lse [B, nHead, T].
class AttentionTrainWorker : public BackendWorker {
 public:
  AttentionTrainWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    const size_t n = read_attention_dims(env, a, &batch_, &T_, &C_, &n_head_);
    precision_ = precision_field_or_f32(a);
    q_ = static_cast<const float*>(operands_.take_f32(a, "q", n));
    k_ = static_cast<const float*>(operands_.take_f32(a, "k", n));
    v_ = static_cast<const float*>(operands_.take_f32(a, "v", n));
    out_ = static_cast<float*>(operands_.take_f32(a, "out", n));
    const size_t lse_n = product(env, product(env, size_t(batch_), size_t(n_head_), "lse"), size_t(T_), "lse");
    lse_ = static_cast<float*>(operands_.take_f32(a, "lse", lse_n));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->attention_train(batch_, T_, C_, n_head_, precision_, q_, k_, v_, out_, lse_, err);
  }

 private:
  int batch_ = 0, T_ = 0, C_ = 0, n_head_ = 0, precision_ = 0;
  const float *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
  float *out_ = nullptr, *lse_ = nullptr;
};

// attentionBackward({ batch, T, C, nHead, precision?, dout, q, k, v, out, lse, dq, dk, dv }), or with dqkv
// [B*T, 3C] for dq, dk, dv: the gradient of the q/k/v product, columns q | k | v (rows of 3C).
class AttentionBackwardWorker : public BackendWorker {
 public:
  AttentionBackwardWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    const size_t n = read_attention_dims(env, a, &batch_, &T_, &C_, &n_head_);
    precision_ = precision_field_or_f32(a);
    dout_ = static_cast<const float*>(operands_.take_f32(a, "dout", n));
    q_ = static_cast<const float*>(operands_.take_f32(a, "q", n));
    k_ = static_cast<const float*>(operands_.take_f32(a, "k", n));
    v_ = static_cast<const float*>(operands_.take_f32(a, "v", n));
    out_ = static_cast<const float*>(operands_.take_f32(a, "out", n));
    const size_t lse_n = product(env, product(env, size_t(batch_), size_t(n_head_), "lse"), size_t(T_), "lse");
    lse_ = static_cast<const float*>(operands_.take_f32(a, "lse", lse_n));
    if (!absent(a, "dqkv")) {
      if (C_ > INT_MAX / 3) throw Napi::RangeError::New(env, "dqkv's rows of 3C floats are too long");
      float* dqkv = static_cast<float*>(operands_.take_f32(a, "dqkv", product(env, n, 3, "dqkv")));
      dq_ = dqkv;  // row r: dq at dqkv + r*3C, dk at + C, dv at + 2C
      dk_ = dqkv + C_;
      dv_ = dqkv + 2 * size_t(C_);
      ld_grad_ = 3 * C_;
    } else {
      dq_ = static_cast<float*>(operands_.take_f32(a, "dq", n));
      dk_ = static_cast<float*>(operands_.take_f32(a, "dk", n));
      dv_ = static_cast<float*>(operands_.take_f32(a, "dv", n));
      ld_grad_ = C_;
    }
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->attention_backward(batch_, T_, C_, n_head_, precision_, dout_, q_, k_, v_, out_, lse_, dq_, dk_, dv_,
                                  ld_grad_, err);
  }

 private:
  int batch_ = 0, T_ = 0, C_ = 0, n_head_ = 0, precision_ = 0, ld_grad_ = 0;
  const float *dout_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *out_ = nullptr, *lse_ = nullptr;
  float *dq_ = nullptr, *dk_ = nullptr, *dv_ = nullptr;
};

// layerNormBackward({ rows, C, dout, x, weight, mean, rstd, dx, dweight, dbias, accumulate })
class LayerNormBackwardWorker : public BackendWorker {
 public:
  LayerNormBackwardWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    C_ = int_field(a, "C", 1, kMaxDim);
    accumulate_ = bool_field(a, "accumulate") ? 1 : 0;
    const size_t n = product(env, size_t(rows_), size_t(C_), "x");  // [rows, C]
    dout_ = static_cast<const float*>(operands_.take_f32(a, "dout", n));
    x_ = static_cast<const float*>(operands_.take_f32(a, "x", n));
    weight_ = static_cast<const float*>(operands_.take_f32(a, "weight", size_t(C_)));
    mean_ = static_cast<const float*>(operands_.take_f32(a, "mean", size_t(rows_)));
    rstd_ = static_cast<const float*>(operands_.take_f32(a, "rstd", size_t(rows_)));
    dx_ = static_cast<float*>(operands_.take_f32(a, "dx", n));
    dweight_ = static_cast<float*>(operands_.take_f32(a, "dweight", size_t(C_)));
    dbias_ = static_cast<float*>(operands_.take_f32(a, "dbias", size_t(C_)));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->layernorm_backward(rows_, C_, dout_, x_, weight_, mean_, rstd_, dx_, dweight_, dbias_, accumulate_,
                                  err);
  }

 private:
  int rows_ = 0, C_ = 0, accumulate_ = 0;
  const float *dout_ = nullptr, *x_ = nullptr, *weight_ = nullptr, *mean_ = nullptr, *rstd_ = nullptr;
  float *dx_ = nullptr, *dweight_ = nullptr, *dbias_ = nullptr;
};

// linearBackward({ rows, nIn, nOut, transW, precision, dout, x, weight?, dx?, dweight?, dbias?, accumulate }):
// weight [nIn, nOut] (transW false) or [nOut, nIn] (true); needed only with dx. dout f32, or bf16 at
// BF16 precision without dbias; x f32, or bf16 at BF16 precision (the dW product's operand as it is).
class LinearBackwardWorker : public BackendWorker {
 public:
  LinearBackwardWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    n_in_ = int_field(a, "nIn", 1, kMaxDim);
    n_out_ = int_field(a, "nOut", 1, kMaxDim);
    trans_w_ = bool_field(a, "transW") ? 1 : 0;
    precision_ = int_field(a, "precision", MS_PREC_F32, MS_PREC_BF16);
    accumulate_ = bool_field(a, "accumulate") ? 1 : 0;
    const size_t x_n = product(env, size_t(rows_), size_t(n_in_), "x");
    const size_t w_n = product(env, size_t(n_in_), size_t(n_out_), "weight");
    // dout: fp32, or the bf16 gradient (BF16 precision only; then no dbias), e.g. crossEntropyBackward's.
    const size_t dout_n = product(env, size_t(rows_), size_t(n_out_), "dout");
    operands_.take_f32_or_bf16(a, "dout", dout_n, dout_, dout_bf16_);
    operands_.take_f32_or_bf16(a, "x", x_n, x_, x_bf16_, precision_ == MS_PREC_BF16);
    // The weight is read only for dx (dW = x^T dout needs no weight).
    if (!absent(a, "weight")) W_ = static_cast<const float*>(operands_.take_f32(a, "weight", w_n));
    if (!absent(a, "dx")) {
      if (!W_) throw Napi::TypeError::New(env, "weight is needed to compute dx");
      dx_ = static_cast<float*>(operands_.take_f32(a, "dx", x_n));
    }
    if (!absent(a, "dweight")) dW_ = static_cast<float*>(operands_.take_f32(a, "dweight", w_n));
    if (!absent(a, "dbias")) dbias_ = static_cast<float*>(operands_.take_f32(a, "dbias", size_t(n_out_)));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->linear_backward(rows_, n_in_, n_out_, trans_w_, precision_, dout_, x_, x_bf16_, W_, dx_, dW_, dbias_,
                               accumulate_, dout_bf16_, err);
  }

 private:
  int rows_ = 0, n_in_ = 0, n_out_ = 0, trans_w_ = 0, precision_ = 0, accumulate_ = 0;
  const float *dout_ = nullptr, *x_ = nullptr, *W_ = nullptr;
  const uint16_t *dout_bf16_ = nullptr, *x_bf16_ = nullptr;
  float *dx_ = nullptr, *dW_ = nullptr, *dbias_ = nullptr;
};

// activationBackward({ kind, count, dpost, pre, dpre }): kind is an ms_activation code.
class ActivationBackwardWorker : public BackendWorker {
 public:
  ActivationBackwardWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    kind_ = int_field(a, "kind", MS_ACT_GELU_TANH, MS_ACT_RELU);
    count_ = count_field(a, "count");
    dpost_ = static_cast<const float*>(operands_.take_f32(a, "dpost", count_));
    operands_.take_f32_or_bf16(a, "pre", count_, pre_, pre_bf16_);
    dpre_ = static_cast<float*>(operands_.take_f32(a, "dpre", count_));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->activation_backward(kind_, count_, dpost_, pre_, pre_bf16_, dpre_, err);
  }

 private:
  int kind_ = 0;
  size_t count_ = 0;
  const float *dpost_ = nullptr, *pre_ = nullptr;
  const uint16_t* pre_bf16_ = nullptr;  // a bf16 pre, or null
  float* dpre_ = nullptr;
};

// reluLinearBackward({ rows, nIn, nOut, transW, dout, x, weight, dpre, dweight?, dbias?, dpreBias? }): the
// backward of out = x W + b through the ReLU that made x (bf16 [rows, nIn]); dout f32, or bf16 without
// dbias; dpre bf16 [rows, nIn]; dpreBias [nIn] += the column sums of dpre before rounding.
class ReluLinearBackwardWorker : public BackendWorker {
 public:
  ReluLinearBackwardWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    n_in_ = int_field(a, "nIn", 1, kMaxDim);
    n_out_ = int_field(a, "nOut", 1, kMaxDim);
    trans_w_ = bool_field(a, "transW") ? 1 : 0;
    const size_t x_n = product(env, size_t(rows_), size_t(n_in_), "x");
    const size_t w_n = product(env, size_t(n_in_), size_t(n_out_), "weight");
    const size_t dout_n = product(env, size_t(rows_), size_t(n_out_), "dout");
    operands_.take_f32_or_bf16(a, "dout", dout_n, dout_, dout_bf16_);
    x_bf16_ = static_cast<const uint16_t*>(operands_.take(a, "x", MS_BF16, x_n));
    W_ = static_cast<const float*>(operands_.take_f32(a, "weight", w_n));
    dpre_bf16_ = static_cast<uint16_t*>(operands_.take(a, "dpre", MS_BF16, x_n));
    if (!absent(a, "dweight")) dW_ = static_cast<float*>(operands_.take_f32(a, "dweight", w_n));
    if (!absent(a, "dbias")) dbias_ = static_cast<float*>(operands_.take_f32(a, "dbias", size_t(n_out_)));
    if (!absent(a, "dpreBias")) dpre_bias_ = static_cast<float*>(operands_.take_f32(a, "dpreBias", size_t(n_in_)));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->relu_linear_backward(rows_, n_in_, n_out_, trans_w_, dout_, dout_bf16_, x_bf16_, W_, dW_, dbias_,
                                    dpre_bf16_, dpre_bias_, err);
  }

 private:
  int rows_ = 0, n_in_ = 0, n_out_ = 0, trans_w_ = 0;
  const float *dout_ = nullptr, *W_ = nullptr;
  const uint16_t *dout_bf16_ = nullptr, *x_bf16_ = nullptr;
  uint16_t* dpre_bf16_ = nullptr;
  float *dW_ = nullptr, *dbias_ = nullptr, *dpre_bias_ = nullptr;
};

// crossEntropyBackward({ rows, V, logits, targets, losses, scale, gradient?, indicesChecked? }): logits
// [rows, V] (f32 or bf16) become the gradient, or it goes to gradient (bf16 [rows, V]) and the logits stay.
class CrossEntropyBackwardWorker : public BackendWorker {
 public:
  CrossEntropyBackwardWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    V_ = int_field(a, "V", 1, kMaxDim);
    scale_ = float(num_field(a, "scale"));
    const size_t logits_n = product(env, size_t(rows_), size_t(V_), "logits");
    operands_.take_f32_or_bf16(a, "logits", logits_n, logits_, logits_bf16_);
    targets_ = static_cast<const int32_t*>(operands_.take(a, "targets", MS_I32, size_t(rows_)));
    losses_ = static_cast<float*>(operands_.take_f32(a, "losses", size_t(rows_)));
    if (!absent(a, "gradient"))
      gradient_ = static_cast<uint16_t*>(operands_.take(a, "gradient", MS_BF16, product(env, size_t(rows_), size_t(V_), "gradient")));
    indices_checked_ = indices_checked_field(a);
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->cross_entropy_backward(rows_, V_, logits_, logits_bf16_, targets_, losses_, scale_, gradient_,
                                      indices_checked_, err);
  }

 private:
  int rows_ = 0, V_ = 0, indices_checked_ = 0;
  float scale_ = 0;
  float* logits_ = nullptr;
  uint16_t* logits_bf16_ = nullptr;  // bf16 logits, or null
  const int32_t* targets_ = nullptr;
  float* losses_ = nullptr;
  uint16_t* gradient_ = nullptr;  // bf16 [rows, V], or null: the gradient replaces the logits
};

// embedBackward({ batch, T, C, vocab, nPositions, ids, dtok, dpos, dwte, dwpe, indicesChecked? })
class EmbedBackwardWorker : public BackendWorker {
 public:
  EmbedBackwardWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    batch_ = int_field(a, "batch", 1, kMaxDim);
    T_ = int_field(a, "T", 1, kMaxDim);
    C_ = int_field(a, "C", 1, kMaxDim);
    V_ = int_field(a, "vocab", 1, kMaxDim);
    n_positions_ = int_field(a, "nPositions", 1, kMaxDim);
    if (T_ > n_positions_)
      throw Napi::RangeError::New(env, "T (" + std::to_string(T_) + ") exceeds nPositions (" +
                                           std::to_string(n_positions_) + ")");
    const size_t rows = product(env, size_t(batch_), size_t(T_), "ids");  // token rows b*T + t
    ids_ = static_cast<const int32_t*>(operands_.take(a, "ids", MS_I32, rows));
    const size_t n = product(env, rows, size_t(C_), "dtok");  // [B*T, C]
    dtok_ = static_cast<const float*>(operands_.take_f32(a, "dtok", n));
    dpos_ = static_cast<const float*>(operands_.take_f32(a, "dpos", n));
    dwte_ = static_cast<float*>(operands_.take_f32(a, "dwte", product(env, size_t(V_), size_t(C_), "dwte")));
    dwpe_ = static_cast<float*>(
        operands_.take_f32(a, "dwpe", product(env, size_t(n_positions_), size_t(C_), "dwpe")));
    indices_checked_ = indices_checked_field(a);
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->embed_backward(batch_, T_, C_, V_, n_positions_, ids_, dtok_, dpos_, dwte_, dwpe_, indices_checked_,
                              err);
  }

 private:
  int batch_ = 0, T_ = 0, C_ = 0, V_ = 0, n_positions_ = 0, indices_checked_ = 0;
  const int32_t* ids_ = nullptr;
  const float *dtok_ = nullptr, *dpos_ = nullptr;
  float *dwte_ = nullptr, *dwpe_ = nullptr;
};

// adamW({ count, param, grad, m, v, lr, beta1, beta2, eps, weightDecay, t, gradScale?, clipSumSquares?,
// clipNorm? }): the bias corrections 1 - beta^t and the decay factor 1 - lr * weightDecay are
// computed here in double and rounded once. clipSumSquares (a one-element f32 tensor holding the
// squared global gradient norm) clips the gradient to clipNorm on the backend (backend.h).
class AdamWWorker : public BackendWorker {
 public:
  AdamWWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    count_ = count_field(a, "count");
    param_ = static_cast<float*>(operands_.take_f32(a, "param", count_));
    grad_ = static_cast<const float*>(operands_.take_f32(a, "grad", count_));
    m_ = static_cast<float*>(operands_.take_f32(a, "m", count_));
    v_ = static_cast<float*>(operands_.take_f32(a, "v", count_));
    const double lr = num_field(a, "lr"), beta1 = num_field(a, "beta1"), beta2 = num_field(a, "beta2");
    const double eps = num_field(a, "eps"), weight_decay = num_field(a, "weightDecay");
    const int t = int_field(a, "t", 1, 2147483647);
    if (!(beta1 >= 0 && beta1 < 1)) throw Napi::RangeError::New(env, "beta1 must be in [0, 1)");
    if (!(beta2 >= 0 && beta2 < 1)) throw Napi::RangeError::New(env, "beta2 must be in [0, 1)");
    hp_.lr = float(lr);
    hp_.beta1 = float(beta1);
    hp_.beta2 = float(beta2);
    hp_.eps = float(eps);
    hp_.bias1 = float(1.0 - std::pow(beta1, t));
    hp_.bias2 = float(1.0 - std::pow(beta2, t));
    hp_.grad_scale = float(num_field_or(a, "gradScale", 1.0));
    decay_ = float(1.0 - lr * weight_decay);
    if (!absent(a, "clipSumSquares")) {
      clip_sum_sq_ = static_cast<const float*>(operands_.take_f32(a, "clipSumSquares", 1));
      clip_norm_ = float(num_field(a, "clipNorm"));
      if (!(clip_norm_ >= 0)) throw Napi::RangeError::New(env, "clipNorm must be >= 0");
    }
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->adamw_update(count_, param_, grad_, m_, v_, &hp_, decay_, clip_sum_sq_, clip_norm_, err);
  }

 private:
  size_t count_ = 0;
  float* param_ = nullptr;
  const float* grad_ = nullptr;
  float *m_ = nullptr, *v_ = nullptr;
  ms_adam_hparams hp_{};
  float decay_ = 1.0f;
  const float* clip_sum_sq_ = nullptr;
  float clip_norm_ = 0.0f;
};

Napi::Value AttentionTrain(const Napi::CallbackInfo& info) { return start_worker<AttentionTrainWorker>(info); }
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) { return start_worker<AttentionBackwardWorker>(info); }
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) { return start_worker<LayerNormBackwardWorker>(info); }
Napi::Value LinearBackward(const Napi::CallbackInfo& info) { return start_worker<LinearBackwardWorker>(info); }
Napi::Value ActivationBackward(const Napi::CallbackInfo& info) {
  return start_worker<ActivationBackwardWorker>(info);
}
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  return start_worker<CrossEntropyBackwardWorker>(info);
}
Napi::Value EmbedBackward(const Napi::CallbackInfo& info) { return start_worker<EmbedBackwardWorker>(info); }
Napi::Value AdamW(const Napi::CallbackInfo& info) { return start_worker<AdamWWorker>(info); }
Napi::Value ReluLinearBackward(const Napi::CallbackInfo& info) { return start_worker<ReluLinearBackwardWorker>(info); }

}  // namespace

void register_transformer_grad_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("attentionTrain", Napi::Function::New<AttentionTrain>(env, "attentionTrain"));
  exports.Set("attentionBackward", Napi::Function::New<AttentionBackward>(env, "attentionBackward"));
  exports.Set("layerNormBackward", Napi::Function::New<LayerNormBackward>(env, "layerNormBackward"));
  exports.Set("linearBackward", Napi::Function::New<LinearBackward>(env, "linearBackward"));
  exports.Set("activationBackward", Napi::Function::New<ActivationBackward>(env, "activationBackward"));
  exports.Set("reluLinearBackward", Napi::Function::New<ReluLinearBackward>(env, "reluLinearBackward"));
  exports.Set("crossEntropyBackward", Napi::Function::New<CrossEntropyBackward>(env, "crossEntropyBackward"));
  exports.Set("embedBackward", Napi::Function::New<EmbedBackward>(env, "embedBackward"));
  exports.Set("adamW", Napi::Function::New<AdamW>(env, "adamW"));
}

}  // namespace ms::core
