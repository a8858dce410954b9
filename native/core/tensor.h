/*
 * tensor.h — NativeTensor: a handle to a backend allocation (dtype + element count). Shapes live
 * in the TypeScript wrapper. Memory is owned by a shared DeviceBuffer: dispose() drops the
 * handle's reference at once; an async operation still using the buffer keeps it alive until it
 * finishes. The garbage collector's finalizer only frees what was never disposed.
 *
 * A view (new NativeTensor(base, elementOffset, numel)) is a handle to elements [elementOffset,
 * elementOffset + numel) of its base's buffer, with the base's dtype: it shares the DeviceBuffer,
 * so the memory lives until the base and every view of it are disposed. Its first byte lies a
 * multiple of kViewAlign bytes into the buffer, so kernels' vector loads stay aligned.
 */
#ifndef MONOSEMANTIC_CORE_TENSOR_H
#define MONOSEMANTIC_CORE_TENSOR_H

#include <napi.h>

#include <cstdint>
#include <memory>

#include "backends.h"

namespace ms::core {

struct DeviceBuffer {
  Backend* backend;
  void* ptr;
  size_t bytes;
  // The JS environment told of `bytes` as external memory (host-memory backends), or null. The
  // buffer is freed on that environment's thread: its last reference is a tensor handle's or an
  // operation's, both dropped there.
  napi_env accounted = nullptr;
  DeviceBuffer(Backend* b, void* p, size_t n) : backend(b), ptr(p), bytes(n) {}
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

size_t dtype_size(int dtype);
const char* dtype_name(int dtype);

// Alignment of a view's first byte inside its buffer.
constexpr size_t kViewAlign = 256;

class Tensor : public Napi::ObjectWrap<Tensor> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Tensor(const Napi::CallbackInfo& info);

  // Validates that `value` is a live NativeTensor (type-tagged), else throws TypeError naming `what`.
  static Tensor* From(Napi::Value value, const char* what);

  const std::shared_ptr<DeviceBuffer>& buffer() const { return buffer_; }
  // The tensor's first element (the buffer's start but for a view) and its size in bytes.
  void* data() const { return static_cast<uint8_t*>(buffer_->ptr) + offset_bytes_; }
  size_t bytes() const { return numel_ * dtype_size(dtype_); }
  int dtype() const { return dtype_; }
  size_t numel() const { return numel_; }
  Backend* backend() const { return buffer_->backend; }

 private:
  Napi::Value Upload(const Napi::CallbackInfo& info);
  Napi::Value Download(const Napi::CallbackInfo& info);
  Napi::Value Fill(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);
  Napi::Value Overlaps(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value GetByteLength(const Napi::CallbackInfo& info);

  void RequireLive(Napi::Env env, const char* op) const;

  // A checked host <-> device transfer: the typed array (argument 0) must match the dtype and,
  // from the element offset (argument 1, default 0), fit inside the tensor.
  struct HostSpan {
    uint8_t* host;
    uint8_t* device;
    size_t bytes;
  };
  HostSpan CheckTransfer(const Napi::CallbackInfo& info, const char* op, const char* role) const;

  // new NativeTensor(base, elementOffset, numel): the view's fields from base, checked.
  void InitView(const Napi::CallbackInfo& info);

  std::shared_ptr<DeviceBuffer> buffer_;
  size_t offset_bytes_ = 0;  // where element 0 lies in buffer_ (0 but for a view)
  int dtype_ = MS_F32;
  size_t numel_ = 0;
};

}  // namespace ms::core

#endif
