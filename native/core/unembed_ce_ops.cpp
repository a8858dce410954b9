/*
 * unembed_ce_ops.cpp — the unembedding product fused with the softmax cross-entropy exposed to JS
 * as promise-returning workers (backend.h, ABI 14: unembed_cross_entropy,
 * unembed_cross_entropy_backward). lib/lm/grad-ops.ts checks shapes, dtypes and aliasing with
 * user-facing messages first; the checks here keep every access inside its allocation. Targets are
 * checked in the backends, which fail with MS_ERR_INVALID naming the first bad row.
 */
#include "unembed_ce_ops.h"

#include <cstdint>

#include "backend_worker.h"

namespace ms::core {
namespace {

// The operands both ops read: rows, V, C, precision, x [rows, C] (f32 or bf16), weight [V, C],
// targets i32 [rows], lse [rows] (written by the forward, read by the backward), indicesChecked?.
class UnembedCeWorker : public BackendWorker {
 public:
  UnembedCeWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 1, kMaxDim);
    V_ = int_field(a, "V", 1, kMaxDim);
    C_ = int_field(a, "C", 1, kMaxDim);
    precision_ = int_field(a, "precision", MS_PREC_F32, MS_PREC_BF16);
    const size_t x_n = product(env, size_t(rows_), size_t(C_), "x");
    operands_.take_f32_or_bf16(a, "x", x_n, x_, x_bf16_);
    W_ = static_cast<const float*>(operands_.take_f32(a, "weight", product(env, size_t(V_), size_t(C_), "weight")));
    targets_ = static_cast<const int32_t*>(operands_.take(a, "targets", MS_I32, size_t(rows_)));
    lse_ = static_cast<float*>(operands_.take_f32(a, "lse", size_t(rows_)));
    indices_checked_ = indices_checked_field(a);
  }

 protected:
  int rows_ = 0, V_ = 0, C_ = 0, precision_ = 0, indices_checked_ = 0;
  const float* x_ = nullptr;
  const uint16_t* x_bf16_ = nullptr;  // a bf16 x, or null
  const float* W_ = nullptr;
  const int32_t* targets_ = nullptr;
  float* lse_ = nullptr;
};

// unembedCrossEntropy({ ..., lse, losses }): lse and losses [rows] written.
class UnembedCrossEntropyWorker : public UnembedCeWorker {
 public:
  UnembedCrossEntropyWorker(Napi::Env env, const Napi::Object& a) : UnembedCeWorker(env, a) {
    losses_ = static_cast<float*>(operands_.take_f32(a, "losses", size_t(rows_)));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->unembed_cross_entropy(rows_, V_, C_, precision_, x_, x_bf16_, W_, targets_, lse_, losses_,
                                     indices_checked_, err);
  }

 private:
  float* losses_ = nullptr;
};

// unembedCrossEntropyBackward({ ..., lse, scale, dlogits }): dlogits bf16 [rows, V] written from lse.
class UnembedCrossEntropyBackwardWorker : public UnembedCeWorker {
 public:
  UnembedCrossEntropyBackwardWorker(Napi::Env env, const Napi::Object& a) : UnembedCeWorker(env, a) {
    scale_ = float(num_field(a, "scale"));
    dlogits_ = static_cast<uint16_t*>(
        operands_.take(a, "dlogits", MS_BF16, product(env, size_t(rows_), size_t(V_), "dlogits")));
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->unembed_cross_entropy_backward(rows_, V_, C_, precision_, x_, x_bf16_, W_, targets_, lse_, scale_,
                                              dlogits_, indices_checked_, err);
  }

 private:
  float scale_ = 0;
  uint16_t* dlogits_ = nullptr;
};

Napi::Value UnembedCrossEntropy(const Napi::CallbackInfo& info) {
  return start_worker<UnembedCrossEntropyWorker>(info);
}
Napi::Value UnembedCrossEntropyBackward(const Napi::CallbackInfo& info) {
  return start_worker<UnembedCrossEntropyBackwardWorker>(info);
}

}  // namespace

void register_unembed_ce_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("unembedCrossEntropy", Napi::Function::New<UnembedCrossEntropy>(env, "unembedCrossEntropy"));
  exports.Set("unembedCrossEntropyBackward",
              Napi::Function::New<UnembedCrossEntropyBackward>(env, "unembedCrossEntropyBackward"));
}

}  // namespace ms::core
