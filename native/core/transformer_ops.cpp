/*
 * transformer_ops.cpp — the GPT-2 forward ops exposed to JS as promise-returning workers
 * (backend.h, ABI 3: layernorm, linear, activation, add, embed, split_qkv, attention,
 * cross_entropy, argmax_rows; ABI 13: linear_qkv). lib/lm/ops.ts checks shapes with user-facing messages first; the
 * checks here keep every access inside its allocation (sizes, and cache offsets that index rows).
 * Checks that need the operands' contents (token ids, targets) happen in the backends, which fail
 * with MS_ERR_INVALID naming the first bad index.
 */
#include "transformer_ops.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "backend_worker.h"

namespace ms::core {
namespace {

// layerNorm({ rows, C, eps, x, weight, bias, out, mean?, rstd? }); mean and rstd together or neither;
// out f32, or bf16 (rounded).
class LayerNormWorker : public BackendWorker {
 public:
  LayerNormWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    C_ = int_field(a, "C", 1, kMaxDim);
    const double eps = num_field(a, "eps");
    if (eps < 0) throw Napi::RangeError::New(env, "eps must be >= 0");
    eps_ = float(eps);
    const size_t n = product(env, size_t(rows_), size_t(C_), "x");  // x [rows, C]
    x_ = static_cast<const float*>(operands_.take_f32(a, "x", n));
    weight_ = static_cast<const float*>(operands_.take_f32(a, "weight", size_t(C_)));
    bias_ = static_cast<const float*>(operands_.take_f32(a, "bias", size_t(C_)));
    operands_.take_f32_or_bf16(a, "out", n, out_, out_bf16_);
    if (absent(a, "mean") != absent(a, "rstd")) throw Napi::TypeError::New(env, "mean and rstd go together");
    if (!absent(a, "mean")) {
      mean_ = static_cast<float*>(operands_.take_f32(a, "mean", size_t(rows_)));
      rstd_ = static_cast<float*>(operands_.take_f32(a, "rstd", size_t(rows_)));
    }
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->layernorm(rows_, C_, eps_, x_, weight_, bias_, out_, out_bf16_, mean_, rstd_, err);
  }

 private:
  int rows_ = 0, C_ = 0;
  float eps_ = 0;
  const float *x_ = nullptr, *weight_ = nullptr, *bias_ = nullptr;
  float *out_ = nullptr, *mean_ = nullptr, *rstd_ = nullptr;
  uint16_t* out_bf16_ = nullptr;  // a bf16 out, or null
};

// linear({ rows, nIn, nOut, transW, precision, x, weight, bias?, out, activation?, accumulate? }):
// activation is an ms_activation code applied to the result (absent: none); accumulate adds the
// result to out's values (fp32 out, no activation).
// out [rows, nOut] = x [rows, nIn] W + bias, W [nIn, nOut] (transW false) or [nOut, nIn] (true);
// x and out f32, or either bf16 at BF16 precision (x the operand as it is; out the result rounded).
class LinearWorker : public BackendWorker {
 public:
  LinearWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    n_in_ = int_field(a, "nIn", 1, kMaxDim);
    n_out_ = int_field(a, "nOut", 1, kMaxDim);
    trans_w_ = bool_field(a, "transW") ? 1 : 0;
    precision_ = int_field(a, "precision", MS_PREC_F32, MS_PREC_BF16);
    const size_t x_n = product(env, size_t(rows_), size_t(n_in_), "x");
    operands_.take_f32_or_bf16(a, "x", x_n, x_, x_bf16_, precision_ == MS_PREC_BF16);
    W_ = static_cast<const float*>(
        operands_.take_f32(a, "weight", product(env, size_t(n_in_), size_t(n_out_), "weight")));
    if (!absent(a, "bias")) bias_ = static_cast<const float*>(operands_.take_f32(a, "bias", size_t(n_out_)));
    const size_t out_n = product(env, size_t(rows_), size_t(n_out_), "out");
    operands_.take_f32_or_bf16(a, "out", out_n, out_, out_bf16_, precision_ == MS_PREC_BF16);
    act_ = absent(a, "activation") ? int(MS_ACT_NONE) : int_field(a, "activation", MS_ACT_GELU_TANH, MS_ACT_RELU);
    accumulate_ = !absent(a, "accumulate") && bool_field(a, "accumulate") ? 1 : 0;
    if (accumulate_ && (out_bf16_ || act_ != MS_ACT_NONE))
      throw Napi::TypeError::New(env, "accumulate needs an f32 out and no activation");
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->linear(rows_, n_in_, n_out_, trans_w_, precision_, x_, x_bf16_, W_, bias_, out_, out_bf16_, act_,
                      accumulate_, err);
  }

 private:
  int rows_ = 0, n_in_ = 0, n_out_ = 0, trans_w_ = 0, precision_ = 0, act_ = MS_ACT_NONE, accumulate_ = 0;
  const float *x_ = nullptr, *W_ = nullptr, *bias_ = nullptr;
  float* out_ = nullptr;
  const uint16_t* x_bf16_ = nullptr;  // a bf16 x, or null
  uint16_t* out_bf16_ = nullptr;      // a bf16 out, or null
};

// activation({ kind, count, x, out }): kind is an ms_activation code.
class ActivationWorker : public BackendWorker {
 public:
  ActivationWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    kind_ = int_field(a, "kind", MS_ACT_GELU_TANH, MS_ACT_RELU);
    count_ = count_field(a, "count");
    x_ = static_cast<const float*>(operands_.take_f32(a, "x", count_));
    out_ = static_cast<float*>(operands_.take_f32(a, "out", count_));
  }
  int run(const ms_backend* be, ms_error* err) override { return be->activation(kind_, count_, x_, out_, err); }

 private:
  int kind_ = 0;
  size_t count_ = 0;
  const float* x_ = nullptr;
  float* out_ = nullptr;
};

// add({ count, a, b, out }): out = a + b.
class AddWorker : public BackendWorker {
 public:
  AddWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    count_ = count_field(a, "count");
    a_ = static_cast<const float*>(operands_.take_f32(a, "a", count_));
    b_ = static_cast<const float*>(operands_.take_f32(a, "b", count_));
    out_ = static_cast<float*>(operands_.take_f32(a, "out", count_));
  }
  int run(const ms_backend* be, ms_error* err) override { return be->add(count_, a_, b_, out_, err); }

 private:
  size_t count_ = 0;
  const float *a_ = nullptr, *b_ = nullptr;
  float* out_ = nullptr;
};

// embed({ batch, T, C, vocab, nPositions, posOffset, ids, wte, wpe, tokOut, posOut?, indicesChecked? }):
// without posOut, tokOut receives the sum of the token and position rows.
class EmbedWorker : public BackendWorker {
 public:
  EmbedWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    batch_ = int_field(a, "batch", 1, kMaxDim);
    T_ = int_field(a, "T", 1, kMaxDim);
    C_ = int_field(a, "C", 1, kMaxDim);
    V_ = int_field(a, "vocab", 1, kMaxDim);
    n_positions_ = int_field(a, "nPositions", 1, kMaxDim);
    pos_offset_ = int_field(a, "posOffset", 0, kMaxDim);
    const size_t rows = product(env, size_t(batch_), size_t(T_), "ids");  // token rows b*T + t
    ids_ = static_cast<const int32_t*>(operands_.take(a, "ids", MS_I32, rows));
    wte_ = static_cast<const float*>(operands_.take_f32(a, "wte", product(env, size_t(V_), size_t(C_), "wte")));
    wpe_ = static_cast<const float*>(
        operands_.take_f32(a, "wpe", product(env, size_t(n_positions_), size_t(C_), "wpe")));
    const size_t n = product(env, rows, size_t(C_), "tokOut");  // [B*T, C]
    tok_out_ = static_cast<float*>(operands_.take_f32(a, "tokOut", n));
    if (!absent(a, "posOut")) pos_out_ = static_cast<float*>(operands_.take_f32(a, "posOut", n));  // else: the sum
    indices_checked_ = indices_checked_field(a);
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->embed(batch_, T_, C_, V_, n_positions_, pos_offset_, ids_, wte_, wpe_, tok_out_, pos_out_,
                     indices_checked_, err);
  }

 private:
  int batch_ = 0, T_ = 0, C_ = 0, V_ = 0, n_positions_ = 0, pos_offset_ = 0, indices_checked_ = 0;
  const int32_t* ids_ = nullptr;
  const float *wte_ = nullptr, *wpe_ = nullptr;
  float *tok_out_ = nullptr, *pos_out_ = nullptr;
};

// Reads Tmax and offset, requiring offset + T <= Tmax (the cache rows written or read exist).
void read_cache_window(const Napi::Object& a, int T, int* Tmax, int* offset) {
  *Tmax = int_field(a, "Tmax", 1, kMaxDim);
  *offset = int_field(a, "offset", 0, kMaxDim);
  if (int64_t(*offset) + T > *Tmax)
    throw Napi::RangeError::New(a.Env(), "offset + T (" + std::to_string(int64_t(*offset) + T) +
                                             ") exceeds Tmax (" + std::to_string(*Tmax) + ")");
}

// splitQkv({ batch, T, C, Tmax, offset, qkv, q, kCache, vCache })
class SplitQkvWorker : public BackendWorker {
 public:
  SplitQkvWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    batch_ = int_field(a, "batch", 1, kMaxDim);
    T_ = int_field(a, "T", 1, kMaxDim);
    C_ = int_field(a, "C", 1, kMaxDim);
    read_cache_window(a, T_, &Tmax_, &offset_);
    const size_t rows = product(env, size_t(batch_), size_t(T_), "q");
    qkv_ = static_cast<const float*>(operands_.take_f32(a, "qkv", product(env, rows, 3 * size_t(C_), "qkv")));
    q_ = static_cast<float*>(operands_.take_f32(a, "q", product(env, rows, size_t(C_), "q")));
    const size_t cache = product(env, product(env, size_t(batch_), size_t(Tmax_), "kCache"), size_t(C_), "kCache");
    k_cache_ = static_cast<float*>(operands_.take_f32(a, "kCache", cache));
    v_cache_ = static_cast<float*>(operands_.take_f32(a, "vCache", cache));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->split_qkv(batch_, T_, C_, Tmax_, offset_, qkv_, q_, k_cache_, v_cache_, err);
  }

 private:
  int batch_ = 0, T_ = 0, C_ = 0, Tmax_ = 0, offset_ = 0;
  const float* qkv_ = nullptr;
  float *q_ = nullptr, *k_cache_ = nullptr, *v_cache_ = nullptr;
};

// linearQkv({ batch, T, C, Tmax, offset, precision, x, weight, bias?, q, kCache, vCache }): linear's
// x [B*T, C] (f32, or bf16 at BF16 precision) times weight [C, 3C] + bias [3C], split as splitQkv.
class LinearQkvWorker : public BackendWorker {
 public:
  LinearQkvWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    batch_ = int_field(a, "batch", 1, kMaxDim);
    T_ = int_field(a, "T", 1, kMaxDim);
    C_ = int_field(a, "C", 1, kMaxDim);
    read_cache_window(a, T_, &Tmax_, &offset_);
    precision_ = int_field(a, "precision", MS_PREC_F32, MS_PREC_BF16);
    const size_t rows = product(env, size_t(batch_), size_t(T_), "q");
    const size_t x_n = product(env, rows, size_t(C_), "x");
    operands_.take_f32_or_bf16(a, "x", x_n, x_, x_bf16_, precision_ == MS_PREC_BF16);
    W_ = static_cast<const float*>(operands_.take_f32(a, "weight", product(env, size_t(C_), 3 * size_t(C_), "weight")));
    if (!absent(a, "bias")) bias_ = static_cast<const float*>(operands_.take_f32(a, "bias", 3 * size_t(C_)));
    q_ = static_cast<float*>(operands_.take_f32(a, "q", x_n));
    const size_t cache = product(env, product(env, size_t(batch_), size_t(Tmax_), "kCache"), size_t(C_), "kCache");
    k_cache_ = static_cast<float*>(operands_.take_f32(a, "kCache", cache));
    v_cache_ = static_cast<float*>(operands_.take_f32(a, "vCache", cache));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->linear_qkv(batch_, T_, C_, Tmax_, offset_, precision_, x_, x_bf16_, W_, bias_, q_, k_cache_, v_cache_, err);
  }

 private:
  int batch_ = 0, T_ = 0, C_ = 0, Tmax_ = 0, offset_ = 0, precision_ = 0;
  const float *x_ = nullptr, *W_ = nullptr, *bias_ = nullptr;
  const uint16_t* x_bf16_ = nullptr;
  float *q_ = nullptr, *k_cache_ = nullptr, *v_cache_ = nullptr;
};

// attention({ batch, T, Tmax, offset, C, nHead, precision?, q, kCache, vCache, out }): out f32, or
// bf16 at BF16 precision (the result rounded).
class AttentionWorker : public BackendWorker {
 public:
  AttentionWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    batch_ = int_field(a, "batch", 1, kMaxDim);
    T_ = int_field(a, "T", 1, kMaxDim);
    C_ = int_field(a, "C", 1, kMaxDim);
    n_head_ = int_field(a, "nHead", 1, kMaxDim);
    if (C_ % n_head_ != 0)
      throw Napi::RangeError::New(env, "C (" + std::to_string(C_) + ") must be a multiple of nHead (" +
                                           std::to_string(n_head_) + ")");
    read_cache_window(a, T_, &Tmax_, &offset_);
    precision_ = precision_field_or_f32(a);
    const size_t n = product(env, product(env, size_t(batch_), size_t(T_), "q"), size_t(C_), "q");  // [B*T, C]
    q_ = static_cast<const float*>(operands_.take_f32(a, "q", n));
    const size_t cache = product(env, product(env, size_t(batch_), size_t(Tmax_), "kCache"), size_t(C_), "kCache");
    k_cache_ = static_cast<const float*>(operands_.take_f32(a, "kCache", cache));
    v_cache_ = static_cast<const float*>(operands_.take_f32(a, "vCache", cache));
    operands_.take_f32_or_bf16(a, "out", n, out_, out_bf16_, precision_ == MS_PREC_BF16);
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->attention(batch_, T_, Tmax_, offset_, C_, n_head_, precision_, q_, k_cache_, v_cache_, out_, out_bf16_,
                         err);
  }

 private:
  int batch_ = 0, T_ = 0, Tmax_ = 0, offset_ = 0, C_ = 0, n_head_ = 0, precision_ = 0;
  const float *q_ = nullptr, *k_cache_ = nullptr, *v_cache_ = nullptr;
  float* out_ = nullptr;
  uint16_t* out_bf16_ = nullptr;  // a bf16 out, or null
};

// crossEntropy({ rows, V, logits, targets, out, indicesChecked? }): logits f32 or bf16.
class CrossEntropyWorker : public BackendWorker {
 public:
  CrossEntropyWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    V_ = int_field(a, "V", 1, kMaxDim);
    const size_t logits_n = product(env, size_t(rows_), size_t(V_), "logits");
    operands_.take_f32_or_bf16(a, "logits", logits_n, logits_, logits_bf16_);
    targets_ = static_cast<const int32_t*>(operands_.take(a, "targets", MS_I32, size_t(rows_)));
    out_ = static_cast<float*>(operands_.take_f32(a, "out", size_t(rows_)));
    indices_checked_ = indices_checked_field(a);
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->cross_entropy(rows_, V_, logits_, logits_bf16_, targets_, out_, indices_checked_, err);
  }

 private:
  int rows_ = 0, V_ = 0, indices_checked_ = 0;
  const float* logits_ = nullptr;
  const uint16_t* logits_bf16_ = nullptr;  // bf16 logits, or null
  const int32_t* targets_ = nullptr;
  float* out_ = nullptr;
};

// argmaxRows({ rows, V, logits, out }): out int32 [rows].
class ArgmaxRowsWorker : public BackendWorker {
 public:
  ArgmaxRowsWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    V_ = int_field(a, "V", 1, kMaxDim);
    logits_ = static_cast<const float*>(
        operands_.take_f32(a, "logits", product(env, size_t(rows_), size_t(V_), "logits")));
    out_ = static_cast<int32_t*>(operands_.take(a, "out", MS_I32, size_t(rows_)));
  }
  int run(const ms_backend* be, ms_error* err) override { return be->argmax_rows(rows_, V_, logits_, out_, err); }

 private:
  int rows_ = 0, V_ = 0;
  const float* logits_ = nullptr;
  int32_t* out_ = nullptr;
};

// klRows({ rows, V, p, q, out }): out [rows] = KL(softmax(p[r]) || softmax(q[r])).
class KlRowsWorker : public BackendWorker {
 public:
  KlRowsWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    V_ = int_field(a, "V", 1, kMaxDim);
    const size_t count = product(env, size_t(rows_), size_t(V_), "p");
    p_ = static_cast<const float*>(operands_.take_f32(a, "p", count));
    q_ = static_cast<const float*>(operands_.take_f32(a, "q", count));
    out_ = static_cast<float*>(operands_.take_f32(a, "out", size_t(rows_)));
  }
  int run(const ms_backend* be, ms_error* err) override { return be->kl_rows(rows_, V_, p_, q_, out_, err); }

 private:
  int rows_ = 0, V_ = 0;
  const float *p_ = nullptr, *q_ = nullptr;
  float* out_ = nullptr;
};

Napi::Value LayerNorm(const Napi::CallbackInfo& info) { return start_worker<LayerNormWorker>(info); }
Napi::Value Linear(const Napi::CallbackInfo& info) { return start_worker<LinearWorker>(info); }
Napi::Value Activation(const Napi::CallbackInfo& info) { return start_worker<ActivationWorker>(info); }
Napi::Value Add(const Napi::CallbackInfo& info) { return start_worker<AddWorker>(info); }
Napi::Value Embed(const Napi::CallbackInfo& info) { return start_worker<EmbedWorker>(info); }
Napi::Value SplitQkv(const Napi::CallbackInfo& info) { return start_worker<SplitQkvWorker>(info); }
Napi::Value LinearQkv(const Napi::CallbackInfo& info) { return start_worker<LinearQkvWorker>(info); }
Napi::Value Attention(const Napi::CallbackInfo& info) { return start_worker<AttentionWorker>(info); }
Napi::Value CrossEntropy(const Napi::CallbackInfo& info) { return start_worker<CrossEntropyWorker>(info); }
Napi::Value ArgmaxRows(const Napi::CallbackInfo& info) { return start_worker<ArgmaxRowsWorker>(info); }
Napi::Value KlRows(const Napi::CallbackInfo& info) { return start_worker<KlRowsWorker>(info); }

}  // namespace

void register_transformer_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("layerNorm", Napi::Function::New<LayerNorm>(env, "layerNorm"));
  exports.Set("linear", Napi::Function::New<Linear>(env, "linear"));
  exports.Set("activation", Napi::Function::New<Activation>(env, "activation"));
  exports.Set("add", Napi::Function::New<Add>(env, "add"));
  exports.Set("embed", Napi::Function::New<Embed>(env, "embed"));
  exports.Set("splitQkv", Napi::Function::New<SplitQkv>(env, "splitQkv"));
  exports.Set("linearQkv", Napi::Function::New<LinearQkv>(env, "linearQkv"));
  exports.Set("attention", Napi::Function::New<Attention>(env, "attention"));
  exports.Set("crossEntropy", Napi::Function::New<CrossEntropy>(env, "crossEntropy"));
  exports.Set("argmaxRows", Napi::Function::New<ArgmaxRows>(env, "argmaxRows"));
  exports.Set("klRows", Napi::Function::New<KlRows>(env, "klRows"));
}

}  // namespace ms::core
