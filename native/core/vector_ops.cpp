/*
 * vector_ops.cpp — small promise-returning tensor ops exposed to JS (backend.h: sum_squares,
 * reduce_sum_into, scale, row_sq_dist, gather_rows). Shapes are checked in TypeScript first; the checks here keep every
 * access inside its allocation.
 */
#include "vector_ops.h"

#include "backend_worker.h"

namespace ms::core {
namespace {

// sumSquares({ x }) -> number: the sum of squares of all of x's elements.
class SumSquaresWorker : public BackendWorker {
 public:
  SumSquaresWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    Tensor* t = Tensor::From(a.Get("x"), "x");
    count_ = t->numel();
    x_ = static_cast<const float*>(operands_.take_f32(a, "x", count_));
  }
  int run(const ms_backend* be, ms_error* err) override { return be->sum_squares(count_, x_, &sum_, err); }
  Napi::Value result(Napi::Env env) override { return Napi::Number::New(env, sum_); }

 private:
  size_t count_ = 0;
  const float* x_ = nullptr;
  double sum_ = 0;
};

// reduceSumInto({ x, square, scale, out, index, accumulate }): out[index] = (accumulate ? out[index] : 0)
// + scale * sum of x (or of x^2), left on the backend (out: an f32 tensor).
class ReduceSumIntoWorker : public BackendWorker {
 public:
  ReduceSumIntoWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    Tensor* t = Tensor::From(a.Get("x"), "x");
    count_ = t->numel();
    x_ = static_cast<const float*>(operands_.take_f32(a, "x", count_));
    const int index = int_field(a, "index", 0, 1 << 30);
    out_ = static_cast<float*>(operands_.take_f32(a, "out", size_t(index) + 1)) + index;
    square_ = bool_field(a, "square") ? 1 : 0;
    accumulate_ = bool_field(a, "accumulate") ? 1 : 0;
    scale_ = num_field(a, "scale");
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->reduce_sum_into(count_, x_, square_, scale_, out_, accumulate_, err);
  }

 private:
  size_t count_ = 0;
  const float* x_ = nullptr;
  float* out_ = nullptr;
  int square_ = 0, accumulate_ = 0;
  double scale_ = 1.0;
};

// scaleInPlace({ x, alpha }): x *= alpha.
class ScaleWorker : public BackendWorker {
 public:
  ScaleWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    Tensor* t = Tensor::From(a.Get("x"), "x");
    count_ = t->numel();
    x_ = static_cast<float*>(operands_.take_f32(a, "x", count_));
    alpha_ = float(num_field(a, "alpha"));
  }
  int run(const ms_backend* be, ms_error* err) override { return be->scale(count_, x_, alpha_, err); }

 private:
  size_t count_ = 0;
  float* x_ = nullptr;
  float alpha_ = 1;
};

// rowSqDist({ rows, d, a, b?, out }): out[r] = ||a[r] - b[r]||^2 (||a[r]||^2 without b).
class RowSqDistWorker : public BackendWorker {
 public:
  RowSqDistWorker(Napi::Env env, const Napi::Object& args) : BackendWorker(env, Operands{}) {
    rows_ = int_field(args, "rows", 1, 1 << 30);
    d_ = int_field(args, "d", 1, 1 << 30);
    const size_t R = size_t(rows_), D = size_t(d_);
    a_ = static_cast<const float*>(operands_.take_f32(args, "a", R * D));
    const Napi::Value b = args.Get("b");
    b_ = b.IsUndefined() || b.IsNull() ? nullptr : static_cast<const float*>(operands_.take_f32(args, "b", R * D));
    out_ = static_cast<float*>(operands_.take_f32(args, "out", R));
  }
  int run(const ms_backend* be, ms_error* err) override { return be->row_sq_dist(rows_, d_, a_, b_, out_, err); }

 private:
  int rows_ = 0, d_ = 0;
  const float *a_ = nullptr, *b_ = nullptr;
  float* out_ = nullptr;
};

// gatherRows({ count, d, src, srcRows, idx, idxOffset?, dst, dstRow, indicesChecked? }):
// dst[dstRow + i, :] = src[idx[idxOffset + i], :].
class GatherRowsWorker : public BackendWorker {
 public:
  GatherRowsWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    count_ = int_field(a, "count", 0, 1 << 30);
    d_ = int_field(a, "d", 1, 1 << 30);
    src_rows_ = int_field(a, "srcRows", 0, 1 << 30);
    const int dst_row = int_field(a, "dstRow", 0, 1 << 30);
    const int idx_offset = absent(a, "idxOffset") ? 0 : int_field(a, "idxOffset", 0, 1 << 30);
    const size_t D = size_t(d_);
    src_ = static_cast<const float*>(operands_.take_f32(a, "src", size_t(src_rows_) * D));
    idx_ = static_cast<const int32_t*>(operands_.take(a, "idx", MS_I32, size_t(idx_offset) + size_t(count_))) + idx_offset;
    dst_ = static_cast<float*>(operands_.take_f32(a, "dst", (size_t(dst_row) + size_t(count_)) * D)) + size_t(dst_row) * D;
    indices_checked_ = indices_checked_field(a);
  }
  int run(const ms_backend* be, ms_error* err) override {
    return be->gather_rows(count_, d_, src_, src_rows_, idx_, dst_, indices_checked_, err);
  }

 private:
  int count_ = 0, d_ = 0, src_rows_ = 0, indices_checked_ = 0;
  const float* src_ = nullptr;
  const int32_t* idx_ = nullptr;
  float* dst_ = nullptr;
};

Napi::Value SumSquares(const Napi::CallbackInfo& info) { return start_worker<SumSquaresWorker>(info); }
Napi::Value ReduceSumInto(const Napi::CallbackInfo& info) { return start_worker<ReduceSumIntoWorker>(info); }
Napi::Value ScaleInPlace(const Napi::CallbackInfo& info) { return start_worker<ScaleWorker>(info); }
Napi::Value RowSqDist(const Napi::CallbackInfo& info) { return start_worker<RowSqDistWorker>(info); }
Napi::Value GatherRows(const Napi::CallbackInfo& info) { return start_worker<GatherRowsWorker>(info); }

}  // namespace

void register_vector_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("sumSquares", Napi::Function::New<SumSquares>(env, "sumSquares"));
  exports.Set("reduceSumInto", Napi::Function::New<ReduceSumInto>(env, "reduceSumInto"));
  exports.Set("scaleInPlace", Napi::Function::New<ScaleInPlace>(env, "scaleInPlace"));
  exports.Set("rowSqDist", Napi::Function::New<RowSqDist>(env, "rowSqDist"));
  exports.Set("gatherRows", Napi::Function::New<GatherRows>(env, "gatherRows"));
}

}  // namespace ms::core
