/* tensor.cpp — see tensor.h. */
#include "tensor.h"

#include <cmath>

#include <string>

#include "addon_state.h"
#include "errors.h"

namespace ms::core {
namespace {

// Tag that marks objects created by this addon as NativeTensors.
const napi_type_tag kTensorTag = {0x6d6f6e6f73656d61ULL, 0x74656e736f720001ULL};

// Typed-array element type each dtype travels as between JS and native memory.
napi_typedarray_type js_array_type(int dtype) {
  switch (dtype) {
    case MS_F32: return napi_float32_array;
    case MS_BF16: return napi_uint16_array;
    default: return napi_int32_array;
  }
}

const char* js_array_name(int dtype) {
  switch (dtype) {
    case MS_F32: return "Float32Array";
    case MS_BF16: return "Uint16Array";
    default: return "Int32Array";
  }
}

}  // namespace

DeviceBuffer::~DeviceBuffer() {
  if (accounted) {
    int64_t unused = 0;
    (void)napi_adjust_external_memory(accounted, -int64_t(bytes), &unused);
  }
  if (backend->host_memory) {
    backend->table->free(ptr);
    return;
  }
  std::lock_guard<std::mutex> lock(backend->mutex);
  backend->table->free(ptr);
}

size_t dtype_size(int dtype) { return dtype == MS_BF16 ? 2 : 4; }

const char* dtype_name(int dtype) {
  switch (dtype) {
    case MS_F32: return "f32";
    case MS_BF16: return "bf16";
    case MS_I32: return "i32";
    default: return "?";
  }
}

Napi::Function Tensor::Define(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {
                         InstanceMethod<&Tensor::Upload>("upload"),
                         InstanceMethod<&Tensor::Download>("download"),
                         InstanceMethod<&Tensor::Fill>("fill"),
                         InstanceMethod<&Tensor::CopyFrom>("copyFrom"),
                         InstanceMethod<&Tensor::Overlaps>("overlaps"),
                         InstanceMethod<&Tensor::Dispose>("dispose"),
                         InstanceAccessor<&Tensor::GetDisposed>("disposed"),
                         InstanceAccessor<&Tensor::GetByteLength>("byteLength"),
                     });
}

// new NativeTensor(backend: 'cpu' | 'cuda', dtype: 0 | 1 | 2, numel: number), or
// new NativeTensor(base: NativeTensor, elementOffset: number, numel: number) for a view.
Tensor::Tensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tensor>(info) {
  Napi::Env env = info.Env();
  if (info.Length() == 3 && info[0].IsObject()) {
    InitView(info);
    info.This().As<Napi::Object>().TypeTag(&kTensorTag);
    return;
  }
  if (info.Length() != 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "NativeTensor(backend, dtype, numel): bad arguments");
  const std::string name = info[0].As<Napi::String>();
  Backend* backend = backend_by_name(name);
  if (!backend) throw Napi::Error::New(env, "backend '" + name + "' is not available");
  dtype_ = info[1].As<Napi::Number>().Int32Value();
  if (dtype_ != MS_F32 && dtype_ != MS_BF16 && dtype_ != MS_I32)
    throw Napi::TypeError::New(env, "NativeTensor: unknown dtype " + std::to_string(dtype_));
  const double numel = info[2].As<Napi::Number>().DoubleValue();
  if (!(numel >= 0) || numel != std::floor(numel))
    throw Napi::RangeError::New(env, "NativeTensor: element count must be a non-negative integer");
  if (numel > 9.0e15)  // beyond what the JS layer counts exactly (a smaller one that fails is E_OOM)
    throw Napi::RangeError::New(env, "NativeTensor: the element count is too large (above 9e15)");
  numel_ = size_t(numel);
  const size_t bytes = numel_ * dtype_size(dtype_);
  void* ptr = nullptr;
  ms_error err{};
  if (backend->host_memory) {
    if (backend->table->alloc(bytes, &ptr, &err) != MS_OK) throw_error(env, err);
  } else {
    std::lock_guard<std::mutex> lock(backend->mutex);
    if (backend->table->alloc(bytes, &ptr, &err) != MS_OK) throw_error(env, err);
  }
  buffer_ = std::make_shared<DeviceBuffer>(backend, ptr, bytes);
  if (backend->host_memory && bytes > 0) {
    // The garbage collector learns what the tensor holds, so handles dropped without dispose()
    // are collected before the heap they hold grows without bound.
    int64_t unused = 0;
    if (napi_adjust_external_memory(env, int64_t(bytes), &unused) == napi_ok) buffer_->accounted = env;
  }
  info.This().As<Napi::Object>().TypeTag(&kTensorTag);
}

void Tensor::InitView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Tensor* base = From(info[0], "NativeTensor view: base");
  if (!info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "NativeTensor(base, elementOffset, numel): bad arguments");
  const double offset = info[1].As<Napi::Number>().DoubleValue();
  const double numel = info[2].As<Napi::Number>().DoubleValue();
  const auto whole = [](double v) { return v >= 0 && v <= 9.0e15 && v == double(size_t(v)); };
  if (!whole(offset) || !whole(numel))
    throw Napi::RangeError::New(env, "NativeTensor view: element offset and count must be non-negative integers");
  if (size_t(offset) > base->numel_ || size_t(numel) > base->numel_ - size_t(offset))
    throw Napi::RangeError::New(env, "NativeTensor view: elements [" + std::to_string(size_t(offset)) + ", " +
                                         std::to_string(size_t(offset) + size_t(numel)) + ") exceed the base's " +
                                         std::to_string(base->numel_));
  const size_t offset_bytes = base->offset_bytes_ + size_t(offset) * dtype_size(base->dtype_);
  if (offset_bytes % kViewAlign != 0)
    throw Napi::RangeError::New(env, "NativeTensor view: element offset " + std::to_string(size_t(offset)) +
                                         " does not start a " + std::to_string(kViewAlign) +
                                         "-byte aligned view");
  buffer_ = base->buffer_;
  offset_bytes_ = offset_bytes;
  dtype_ = base->dtype_;
  numel_ = size_t(numel);
}

Tensor* Tensor::From(Napi::Value value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().CheckTypeTag(&kTensorTag))
    throw Napi::TypeError::New(env, std::string(what) + " must be a Tensor");
  Tensor* t = Unwrap(value.As<Napi::Object>());
  if (!t->buffer_) throw Napi::Error::New(env, std::string(what) + " has been disposed");
  return t;
}

void Tensor::RequireLive(Napi::Env env, const char* op) const {
  if (!buffer_) throw Napi::Error::New(env, std::string("Tensor.") + op + ": tensor has been disposed");
}

Tensor::HostSpan Tensor::CheckTransfer(const Napi::CallbackInfo& info, const char* op, const char* role) const {
  Napi::Env env = info.Env();
  RequireLive(env, op);
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != js_array_type(dtype_))
    throw Napi::TypeError::New(env, std::string("Tensor.") + op + ": " + role + " must be a " +
                                        js_array_name(dtype_) + " for dtype " + dtype_name(dtype_));
  Napi::TypedArray array = info[0].As<Napi::TypedArray>();
  double offset = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    offset = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
    if (!(offset >= 0) || offset != double(size_t(offset)))
      throw Napi::RangeError::New(env, std::string("Tensor.") + op + ": element offset must be a non-negative integer");
  }
  const size_t first = size_t(offset), count = array.ElementLength();
  if (first > numel_ || count > numel_ - first)
    throw Napi::RangeError::New(env, std::string("Tensor.") + op + ": " + std::to_string(count) +
                                         " elements at offset " + std::to_string(first) +
                                         " exceed the tensor's " + std::to_string(numel_));
  const size_t esize = dtype_size(dtype_);
  return HostSpan{static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset(),
                  static_cast<uint8_t*>(data()) + first * esize, count * esize};
}

// upload(src: TypedArray matching dtype, elementOffset = 0): copies src into elements
// [offset, offset + src.length).
Napi::Value Tensor::Upload(const Napi::CallbackInfo& info) {
  const HostSpan span = CheckTransfer(info, "upload", "source");
  ms_error err{};
  Backend* be = buffer_->backend;
  std::lock_guard<std::mutex> lock(be->mutex);
  if (be->table->upload(span.device, span.host, span.bytes, &err) != MS_OK) throw_error(info.Env(), err);
  return info.Env().Undefined();
}

// download(dst: TypedArray matching dtype, elementOffset = 0): copies elements
// [offset, offset + dst.length) into dst.
Napi::Value Tensor::Download(const Napi::CallbackInfo& info) {
  const HostSpan span = CheckTransfer(info, "download", "destination");
  ms_error err{};
  Backend* be = buffer_->backend;
  std::lock_guard<std::mutex> lock(be->mutex);
  if (be->table->download(span.host, span.device, span.bytes, &err) != MS_OK) throw_error(info.Env(), err);
  return info.Env().Undefined();
}

// fill(value: number)
Napi::Value Tensor::Fill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireLive(env, "fill");
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "Tensor.fill: value must be a number");
  ms_error err{};
  Backend* be = buffer_->backend;
  std::lock_guard<std::mutex> lock(be->mutex);
  if (be->table->fill(data(), dtype_, numel_, info[0].As<Napi::Number>().DoubleValue(), &err) !=
      MS_OK)
    throw_error(env, err);
  return env.Undefined();
}

// copyFrom(src: NativeTensor): same backend and element count; converts dtype when they differ.
// overlaps(other): whether the two tensors share any byte of memory (views of one buffer whose
// ranges meet, or one tensor twice). Disposed and empty tensors share nothing.
Napi::Value Tensor::Overlaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor* other = From(info[0], "Tensor.overlaps: other");
  if (!buffer_ || !other->buffer_ || buffer_ != other->buffer_ || bytes() == 0 || other->bytes() == 0)
    return Napi::Boolean::New(env, false);
  const size_t a0 = offset_bytes_, a1 = a0 + bytes(), b0 = other->offset_bytes_, b1 = b0 + other->bytes();
  return Napi::Boolean::New(env, a0 < b1 && b0 < a1);
}

Napi::Value Tensor::CopyFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireLive(env, "copyFrom");
  Tensor* src = From(info[0], "Tensor.copyFrom: source");
  if (src->backend() != backend())
    throw Napi::TypeError::New(env, "Tensor.copyFrom: source is on another backend");
  if (src->numel_ != numel_)
    throw Napi::RangeError::New(env, "Tensor.copyFrom: element counts differ (" +
                                         std::to_string(src->numel_) + " vs " + std::to_string(numel_) + ")");
  if (src->buffer_ == buffer_) {  // views of one buffer: the same elements, or disjoint ones
    if (src->offset_bytes_ == offset_bytes_ && src->dtype_ == dtype_) return env.Undefined();
    const size_t a0 = offset_bytes_, a1 = a0 + bytes(), b0 = src->offset_bytes_, b1 = b0 + src->bytes();
    if (a0 < b1 && b0 < a1)
      throw Napi::RangeError::New(env, "Tensor.copyFrom: source and destination overlap (views of one buffer)");
  }
  ms_error err{};
  Backend* be = buffer_->backend;
  std::lock_guard<std::mutex> lock(be->mutex);
  if (be->table->cast(data(), dtype_, src->data(), src->dtype_, numel_, &err) != MS_OK)
    throw_error(env, err);
  return env.Undefined();
}

Napi::Value Tensor::Dispose(const Napi::CallbackInfo& info) {
  buffer_.reset();
  return info.Env().Undefined();
}

Napi::Value Tensor::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !buffer_);
}

Napi::Value Tensor::GetByteLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), buffer_ ? double(bytes()) : 0.0);
}

}  // namespace ms::core
