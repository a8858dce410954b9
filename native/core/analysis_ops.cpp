/*
 * analysis_ops.cpp — the feature-analysis ops exposed to JS (backend.h, ABI 6): a device tensor's
 * entries above a threshold as CSR rows, and its per-column sums, both returned as new typed
 * arrays. Shapes are checked in TypeScript first (lib/ops.ts); the checks here keep every access
 * inside its allocation.
 */
#include "analysis_ops.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <new>
#include <vector>

#include "backend_worker.h"

namespace ms::core {
namespace {

int out_of_memory(ms_error* err, const char* op, size_t entries) {
  err->code = MS_ERR_OOM;
  err->device_code = 0;
  std::snprintf(err->op, sizeof err->op, "%s", op);
  std::snprintf(err->message, sizeof err->message, "no host memory for %zu sparse entries", entries);
  return MS_ERR_OOM;
}

template <typename T>
void copy_into(T* dst, const std::vector<T>& src, size_t count) {
  for (size_t i = 0; i < count; ++i) dst[i] = src[i];
}

// The largest float <= t: for a float x, x > float_below(t) exactly when x > t (rounding t to the
// nearest float instead could move it above an entry that exceeds t, e.g. 0.1f > 0.1).
float float_below(double t) {
  float f = float(t);
  if (double(f) > t) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

// sparseRows({ rows, n, x, threshold, capacity }) -> { rowPtr: Int32Array [rows + 1], cols: Int32Array,
// values: Float32Array }: x [rows, n]'s entries above threshold, row by row. capacity is a guess of
// the entry count; when it is short the op runs again with the exact count.
class SparseRowsWorker : public BackendWorker {
 public:
  SparseRowsWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 0, kMaxDim);
    n_ = int_field(a, "n", 1, kMaxDim);
    x_ = static_cast<const float*>(operands_.take_f32(a, "x", product(env, size_t(rows_), size_t(n_), "x")));
    threshold_ = float_below(num_field(a, "threshold"));
    capacity_ = size_t(int_field(a, "capacity", 0, kMaxDim));
  }
  int run(const ms_backend* be, ms_error* err) override {
    try {
      row_ptr_.assign(size_t(rows_) + 1, 0);
      cols_.resize(capacity_);
      vals_.resize(capacity_);
    } catch (const std::bad_alloc&) {
      return out_of_memory(err, "sparse_rows", capacity_);
    }
    int rc = be->sparse_rows(rows_, n_, x_, threshold_, row_ptr_.data(), cols_.size(), cols_.data(), vals_.data(), err);
    if (rc != MS_OK) return rc;
    nnz_ = size_t(row_ptr_[size_t(rows_)]);
    if (nnz_ > size_t(INT32_MAX)) {
      err->code = MS_ERR_INVALID;
      err->device_code = 0;
      std::snprintf(err->op, sizeof err->op, "sparse_rows");
      std::snprintf(err->message, sizeof err->message, "%zu entries are above the threshold; at most 2^31 - 1 per call (pass fewer rows)", nnz_);
      return MS_ERR_INVALID;
    }
    if (nnz_ <= cols_.size()) return MS_OK;
    try {
      cols_.resize(nnz_);
      vals_.resize(nnz_);
    } catch (const std::bad_alloc&) {
      return out_of_memory(err, "sparse_rows", nnz_);
    }
    return be->sparse_rows(rows_, n_, x_, threshold_, row_ptr_.data(), cols_.size(), cols_.data(), vals_.data(), err);
  }
  Napi::Value result(Napi::Env env) override {
    Napi::Int32Array row_ptr = Napi::Int32Array::New(env, row_ptr_.size());
    for (size_t r = 0; r < row_ptr_.size(); ++r) row_ptr[r] = int32_t(row_ptr_[r]);
    Napi::Int32Array cols = Napi::Int32Array::New(env, nnz_);
    Napi::Float32Array values = Napi::Float32Array::New(env, nnz_);
    copy_into(cols.Data(), cols_, nnz_);
    copy_into(values.Data(), vals_, nnz_);
    Napi::Object out = Napi::Object::New(env);
    out.Set("rowPtr", row_ptr);
    out.Set("cols", cols);
    out.Set("values", values);
    return out;
  }

 private:
  int rows_ = 0, n_ = 0;
  const float* x_ = nullptr;
  float threshold_ = 0;
  size_t capacity_ = 0, nnz_ = 0;
  std::vector<int64_t> row_ptr_;
  std::vector<int32_t> cols_;
  std::vector<float> vals_;
};

// columnStats({ rows, n, x }) -> { sum, sumsq, nonzero: Float64Array [n] } over the rows of x [rows, n].
class ColumnStatsWorker : public BackendWorker {
 public:
  ColumnStatsWorker(Napi::Env env, const Napi::Object& a) : BackendWorker(env, Operands{}) {
    rows_ = int_field(a, "rows", 0, kMaxDim);
    n_ = int_field(a, "n", 1, kMaxDim);
    x_ = static_cast<const float*>(operands_.take_f32(a, "x", product(env, size_t(rows_), size_t(n_), "x")));
  }
  int run(const ms_backend* be, ms_error* err) override {
    try {
      sum_.resize(size_t(n_));
      sumsq_.resize(size_t(n_));
      nonzero_.resize(size_t(n_));
    } catch (const std::bad_alloc&) {
      return out_of_memory(err, "column_stats", size_t(n_) * 3);
    }
    return be->column_stats(rows_, n_, x_, sum_.data(), sumsq_.data(), nonzero_.data(), err);
  }
  Napi::Value result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    const std::vector<double>* stats[3] = {&sum_, &sumsq_, &nonzero_};
    const char* names[3] = {"sum", "sumsq", "nonzero"};
    for (int s = 0; s < 3; ++s) {
      Napi::Float64Array a = Napi::Float64Array::New(env, size_t(n_));
      copy_into(a.Data(), *stats[s], size_t(n_));
      out.Set(names[s], a);
    }
    return out;
  }

 private:
  int rows_ = 0, n_ = 0;
  const float* x_ = nullptr;
  std::vector<double> sum_, sumsq_, nonzero_;
};

Napi::Value SparseRows(const Napi::CallbackInfo& info) { return start_worker<SparseRowsWorker>(info); }
Napi::Value ColumnStats(const Napi::CallbackInfo& info) { return start_worker<ColumnStatsWorker>(info); }

}  // namespace

void register_analysis_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("sparseRows", Napi::Function::New<SparseRows>(env, "sparseRows"));
  exports.Set("columnStats", Napi::Function::New<ColumnStats>(env, "columnStats"));
}

}  // namespace ms::core
