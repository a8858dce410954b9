/*
 * backend_cpu.cpp — the CPU backend's ms_backend table (backend.h): host memory, copies,
 * fill/cast, the SAE ops from sae_cpu.cpp, the transformer ops from transformer_cpu.cpp and their
 * backward ops and AdamW from transformer_grad_cpu.cpp, the unembedding product fused with the
 * cross-entropy from unembed_ce_cpu.cpp.
 * "Device" memory here is 64-byte aligned host memory.
 */
#include "backend_cpu.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "analysis_cpu.h"
#include "attention_cpu.h"
#include "convert.h"
#include "cpu_features.h"
#include "resample_cpu.h"
#include "sae_cpu.h"
#include "status.h"
#include "thread_pool.h"
#include "transformer_cpu.h"
#include "transformer_grad_cpu.h"
#include "unembed_ce_cpu.h"
#include "vector_cpu.h"

namespace ms::cpu {
namespace {

constexpr size_t kAlignment = 64;

int cpu_init(ms_error*) { return MS_OK; }

int cpu_runtime_info(ms_runtime_info* out, ms_error*) {
  out->driver_version = 0;
  out->runtime_version = 0;
  out->device_count = 1;
  out->hopper_gemm = 0;
  return MS_OK;
}

int cpu_device_info(int device, ms_device_info* out, ms_error* err) {
  if (device != 0) return fail(err, MS_ERR_INVALID, "device_info", "the CPU backend has one device");
  std::memset(out, 0, sizeof *out);
  std::snprintf(out->name, sizeof out->name, "%s", cpu_model_name().c_str());
  out->multiprocessors = num_threads();
  return MS_OK;
}

// Tensors of at least kHugeFrom bytes are placed on 2 MiB boundaries and, on Linux, offered to
// transparent huge pages: a fresh 64 MiB tensor (a batch's logits) then takes 32 page faults on
// first touch instead of 16,384, which made its first write 8x slower than the product writing it.
// From 8 MiB, the last huge page's unused part is at most a quarter of the tensor.
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugeFrom = size_t(8) << 20;

int cpu_alloc(size_t bytes, void** out, ms_error* err) {
  const size_t align = bytes >= kHugeFrom ? kHugePage : kAlignment;
  const size_t rounded = (bytes + align - 1) / align * align;
  void* ptr = std::aligned_alloc(align, rounded ? rounded : align);
  if (!ptr) return fail(err, MS_ERR_OOM, "alloc", "out of host memory allocating %zu bytes", bytes);
#ifdef MADV_HUGEPAGE
  if (align == kHugePage) (void)madvise(ptr, rounded, MADV_HUGEPAGE);  // a hint: refused is fine
#endif
  *out = ptr;
  return MS_OK;
}

void cpu_free(void* ptr) { std::free(ptr); }

int cpu_copy(void* dst, const void* src, size_t bytes, ms_error*) {
  if (bytes) std::memcpy(dst, src, bytes);
  return MS_OK;
}

int cpu_fill(void* dst, int dtype, size_t count, double value, ms_error* err) {
  switch (dtype) {
    case MS_F32: {
      float* p = static_cast<float*>(dst);
      const float v = float(value);
      for (size_t i = 0; i < count; ++i) p[i] = v;
      return MS_OK;
    }
    case MS_BF16: {
      uint16_t* p = static_cast<uint16_t*>(dst);
      const uint16_t v = float_to_bf16(float(value));
      for (size_t i = 0; i < count; ++i) p[i] = v;
      return MS_OK;
    }
    case MS_I32: {
      int32_t* p = static_cast<int32_t*>(dst);
      const int32_t v = double_to_i32(value);
      for (size_t i = 0; i < count; ++i) p[i] = v;
      return MS_OK;
    }
    default:
      return fail(err, MS_ERR_INVALID, "fill", "unknown dtype %d", dtype);
  }
}

float load_as_float(const void* src, int dtype, size_t i) {
  switch (dtype) {
    case MS_F32: return static_cast<const float*>(src)[i];
    case MS_BF16: return bf16_to_float(static_cast<const uint16_t*>(src)[i]);
    default: return float(static_cast<const int32_t*>(src)[i]);
  }
}

int cpu_cast(void* dst, int dst_dtype, const void* src, int src_dtype, size_t count, ms_error* err) {
  for (int dt : {dst_dtype, src_dtype})
    if (dt != MS_F32 && dt != MS_BF16 && dt != MS_I32)
      return fail(err, MS_ERR_INVALID, "cast", "unknown dtype %d", dt);
  if (dst_dtype == src_dtype) return cpu_copy(dst, src, count * (dst_dtype == MS_BF16 ? 2 : 4), err);
  for (size_t i = 0; i < count; ++i) {
    const float v = load_as_float(src, src_dtype, i);
    switch (dst_dtype) {
      case MS_F32: static_cast<float*>(dst)[i] = v; break;
      case MS_BF16: static_cast<uint16_t*>(dst)[i] = float_to_bf16(v); break;
      default: static_cast<int32_t*>(dst)[i] = float_to_i32(v); break;
    }
  }
  return MS_OK;
}

int cpu_synchronize(ms_error*) { return MS_OK; }

const ms_backend kCpuBackend = {
    MS_BACKEND_ABI_VERSION,
    "cpu",
    cpu_init,
    cpu_runtime_info,
    cpu_device_info,
    cpu_alloc,
    cpu_free,
    cpu_copy,  // upload: host to host
    cpu_copy,  // download
    cpu_copy,
    cpu_fill,
    cpu_cast,
    cpu_synchronize,
    sae_workspace_bytes,
    sae_encode,
    sae_decode,
    sae_grads,
    decoder_remove_parallel_grad,
    decoder_renormalize,
    adam_update,
    sum_squares,
    scale,
    row_sq_dist,
    resample_candidates,
    sae_resample,
    layernorm,
    linear,
    activation,
    add,
    embed,
    split_qkv,
    attention,
    cross_entropy,
    argmax_rows,
    gather_rows,
    attention_train,
    attention_backward,
    layernorm_backward,
    linear_backward,
    activation_backward,
    cross_entropy_backward,
    embed_backward,
    adamw_update,
    sparse_rows,
    column_stats,
    sae_update,
    kl_rows,
    reduce_sum_into,
    linear_qkv,
    unembed_cross_entropy,
    unembed_cross_entropy_backward,
    relu_linear_backward,
};

}  // namespace

const ms_backend* cpu_backend() { return &kCpuBackend; }

}  // namespace ms::cpu
