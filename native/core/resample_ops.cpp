/*
 * resample_ops.cpp — dead-feature resampling exposed to JS as promise-returning ops
 * (backend.h: resample_candidates, sae_resample). The trainer decides which features are dead
 * and streams inputs through resampleCandidates; saeResample then rewrites the dead features.
 */
#include "resample_ops.h"

#include "backend_worker.h"

namespace ms::core {
namespace {

// obj[key] as an integer in [0, 2^53) (seeds and stream offsets).
uint64_t u53_field(const Napi::Object& obj, const char* key) {
  const double d = num_field(obj, key);
  if (d < 0 || d >= 9007199254740992.0 || d != std::floor(d))
    throw Napi::RangeError::New(obj.Env(), std::string(key) + " must be an integer in [0, 2^53)");
  return uint64_t(d);
}

// resampleCandidates({ k, batch, d, seed, offset, x, loss, candKeys, candRows })
class CandidatesWorker : public BackendWorker {
 public:
  CandidatesWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    args_.k = int_field(a, "k", 1, 1 << 30);
    args_.batch = int_field(a, "batch", 1, 1 << 30);
    args_.d = int_field(a, "d", 1, 1 << 30);
    args_.seed = u53_field(a, "seed");
    args_.offset = u53_field(a, "offset");
    const size_t K = size_t(args_.k), B = size_t(args_.batch), D = size_t(args_.d);
    args_.x = static_cast<const float*>(operands_.take_f32(a, "x", B * D));
    args_.loss = static_cast<const float*>(operands_.take_f32(a, "loss", B));
    args_.cand_keys = static_cast<float*>(operands_.take_f32(a, "candKeys", K));
    args_.cand_rows = static_cast<float*>(operands_.take_f32(a, "candRows", K * D));
  }
  int run(const ms_backend* be, ms_error* err) override { return be->resample_candidates(&args_, err); }

 private:
  ms_resample_candidates_args args_{};
};

// saeResample({ d, n, count, dead, candKeys, candRows, encNormFactor, W_enc, b_enc, W_dec,
//               m_W_enc, v_W_enc, m_b_enc, v_b_enc, m_W_dec, v_W_dec })
//   -> { meanLiveEncoderNorm, live, resampled }
class ResampleWorker : public BackendWorker {
 public:
  ResampleWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    args_.d = int_field(a, "d", 1, 1 << 30);
    args_.n = int_field(a, "n", 1, 1 << 30);
    args_.count = int_field(a, "count", 0, args_.n);
    args_.enc_norm_factor = float(num_field(a, "encNormFactor"));
    const size_t D = size_t(args_.d), N = size_t(args_.n), C = size_t(args_.count);
    args_.W_enc = static_cast<float*>(operands_.take_f32(a, "W_enc", D * N));
    args_.b_enc = static_cast<float*>(operands_.take_f32(a, "b_enc", N));
    args_.W_dec = static_cast<float*>(operands_.take_f32(a, "W_dec", N * D));
    args_.m_W_enc = static_cast<float*>(operands_.take_f32(a, "m_W_enc", D * N));
    args_.v_W_enc = static_cast<float*>(operands_.take_f32(a, "v_W_enc", D * N));
    args_.m_b_enc = static_cast<float*>(operands_.take_f32(a, "m_b_enc", N));
    args_.v_b_enc = static_cast<float*>(operands_.take_f32(a, "v_b_enc", N));
    args_.m_W_dec = static_cast<float*>(operands_.take_f32(a, "m_W_dec", N * D));
    args_.v_W_dec = static_cast<float*>(operands_.take_f32(a, "v_W_dec", N * D));
    args_.dead = static_cast<const int32_t*>(operands_.take(a, "dead", MS_I32, C));
    args_.cand_keys = static_cast<const float*>(operands_.take_f32(a, "candKeys", C));
    args_.cand_rows = static_cast<const float*>(operands_.take_f32(a, "candRows", C * D));
  }
  int run(const ms_backend* be, ms_error* err) override { return be->sae_resample(&args_, &stats_, err); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("meanLiveEncoderNorm", stats_.mean_live_encoder_norm);
    out.Set("live", stats_.live);
    out.Set("resampled", stats_.resampled);
    return out;
  }

 private:
  ms_sae_resample_args args_{};
  ms_sae_resample_stats stats_{};
};

Napi::Value ResampleCandidates(const Napi::CallbackInfo& info) { return start_worker<CandidatesWorker>(info); }
Napi::Value SaeResample(const Napi::CallbackInfo& info) { return start_worker<ResampleWorker>(info); }

}  // namespace

void register_resample_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("resampleCandidates", Napi::Function::New<ResampleCandidates>(env, "resampleCandidates"));
  exports.Set("saeResample", Napi::Function::New<SaeResample>(env, "saeResample"));
}

}  // namespace ms::core
