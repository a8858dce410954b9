/*
 * backend.cu — the CUDA backend's ms_backend table (backend.h) and the library's only exported
 * symbol, monosemantic_cuda_backend(). Also start-up and facts: init, runtime_info, device_info.
 *
 * The library links the CUDA runtime statically and nothing else from CUDA, so it needs only the
 * NVIDIA driver (libcuda.so.1). init() turns every way that can be missing or wrong into
 * MS_ERR_UNAVAILABLE with a message that names the cause; the core shows that message as the
 * reason the CUDA backend is unavailable.
 */
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "adam.cuh"
#include "analysis.cuh"
#include "common.cuh"
#include "decoder_norm.cuh"
#include "gemm_wgmma.cuh"
#include "memory.cuh"
#include "resample.cuh"
#include "sae.cuh"
#include "sae_update.cuh"

#ifndef MS_CUDA_ARCHS_TEXT
#define MS_CUDA_ARCHS_TEXT "sm_80, sm_86, sm_89, sm_90 and compute_90 PTX"
#endif
#include "transformer.cuh"
#include "transformer_grad.cuh"
#include "unembed_ce.cuh"
#include "vector.cuh"

namespace ms::cuda {

// Does nothing; init() asks the runtime for its attributes to prove that this library holds a
// kernel image the device can run (SASS for sm_80/86/89/90, or PTX the driver can JIT).
static __global__ void probe_kernel() {}

static void version_string(int v, char* out, size_t size) {
  std::snprintf(out, size, "%d.%d", v / 1000, (v % 1000) / 10);  // 13000 -> "13.0"
}

// MS_ERR_UNAVAILABLE from a failed start-up call; clears the runtime's last error.
static int unavailable(ms_error* err, cudaError_t e, const char* call, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int unavailable(ms_error* err, cudaError_t e, const char* call, const char* fmt, ...) {
  char detail[400];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(detail, sizeof detail, fmt, args);
  va_end(args);
  if (e == cudaSuccess) {
    set_error(err, MS_ERR_UNAVAILABLE, 0, call, "CUDA backend unavailable: %s", detail);
  } else {
    set_error(err, MS_ERR_UNAVAILABLE, static_cast<int>(e), call, "CUDA backend unavailable: %s (%s: %s)",
              detail, cudaGetErrorName(e), cudaGetErrorString(e));
    (void)cudaGetLastError();
  }
  return MS_ERR_UNAVAILABLE;
}

static const char* visible_devices() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  return v ? v : "(unset)";
}

static int cuda_init(ms_error* err) {
  State& s = state();
  if (s.ready) return MS_OK;  // idempotent; a failed init may be retried

  int driver = 0, runtime = 0;
  cudaError_t e = cudaDriverGetVersion(&driver);
  if (e != cudaSuccess)
    return unavailable(err, e, "cudaDriverGetVersion", "could not query the NVIDIA driver version");
  e = cudaRuntimeGetVersion(&runtime);
  if (e != cudaSuccess)
    return unavailable(err, e, "cudaRuntimeGetVersion", "could not query the CUDA runtime version");
  char drv_s[32], rt_s[32];
  version_string(driver, drv_s, sizeof drv_s);
  version_string(runtime, rt_s, sizeof rt_s);
  if (driver == 0)
    return unavailable(err, cudaSuccess, "cudaDriverGetVersion",
                       "no NVIDIA driver (libcuda.so.1) found; install the NVIDIA driver (one supporting "
                       "CUDA %s or newer) or use the CPU backend",
                       rt_s);

  int count = 0;
  e = cudaGetDeviceCount(&count);
  switch (e) {
    case cudaSuccess:
      break;
    case cudaErrorStubLibrary:
      return unavailable(err, e, "cudaGetDeviceCount",
                         "found the CUDA toolkit's stub libcuda.so, not a real driver; remove the stubs "
                         "directory from LD_LIBRARY_PATH or install the NVIDIA driver");
    case cudaErrorInsufficientDriver:
      return unavailable(err, e, "cudaGetDeviceCount",
                         "the NVIDIA driver supports CUDA %s but this library needs CUDA %s; update "
                         "the driver",
                         drv_s, rt_s);
    case cudaErrorNoDevice:
      return unavailable(err, e, "cudaGetDeviceCount",
                         "no CUDA device visible (CUDA_VISIBLE_DEVICES=%s)", visible_devices());
    default:
      return unavailable(err, e, "cudaGetDeviceCount",
                         "CUDA could not start (driver %s, runtime %s, CUDA_VISIBLE_DEVICES=%s)", drv_s,
                         rt_s, visible_devices());
  }
  if (count <= 0)
    return unavailable(err, cudaSuccess, "cudaGetDeviceCount",
                       "no CUDA device visible (CUDA_VISIBLE_DEVICES=%s)", visible_devices());

  const int device = 0;
  e = cudaSetDevice(device);
  if (e != cudaSuccess)
    return unavailable(err, e, "cudaSetDevice", "could not open CUDA device %d (busy, or in exclusive or "
                       "prohibited compute mode?)", device);
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess)
    return unavailable(err, e, "cudaGetDeviceProperties", "could not query CUDA device %d", device);
  cudaFuncAttributes attr;
  e = cudaFuncGetAttributes(&attr, probe_kernel);
  if (e != cudaSuccess)
    return unavailable(err, e, "cudaFuncGetAttributes",
                       "device %d (%s, compute capability %d.%d) cannot run this library's kernels, "
                       "built for %s (CMake architectures; PTX needs a driver supporting CUDA %s)",
                       device, prop.name, prop.major, prop.minor, MS_CUDA_ARCHS_TEXT, rt_s);
  cudaStream_t stream = nullptr;
  e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (e != cudaSuccess) return unavailable(err, e, "cudaStreamCreateWithFlags", "could not create a stream");

  s.device = device;
  s.stream = stream;
  s.pool = open_memory_pool(device);
  const char* async_ops = std::getenv("MONOSEMANTIC_CUDA_ASYNC");
  s.sync_each_op = async_ops && std::strcmp(async_ops, "0") == 0;
  s.ready = true;
  return MS_OK;
}

static int cuda_runtime_info(ms_runtime_info* out, ms_error* err) {
  const char* name = "runtime_info";
  if (!out) return invalid(err, name, "out is null");
  std::memset(out, 0, sizeof *out);
  int driver = 0, runtime = 0, count = 0;
  cudaError_t e = cudaDriverGetVersion(&driver);
  if (e != cudaSuccess) return cuda_error(err, e, name, "cudaDriverGetVersion");
  e = cudaRuntimeGetVersion(&runtime);
  if (e != cudaSuccess) return cuda_error(err, e, name, "cudaRuntimeGetVersion");
  if (driver != 0) {  // without a driver the count is 0 (cudaGetDeviceCount would fail)
    e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return cuda_error(err, e, name, "cudaGetDeviceCount");
  }
  out->driver_version = driver;
  out->runtime_version = runtime;
  out->device_count = count;
  out->hopper_gemm = count > 0 && wgmma_runs() ? 1 : 0;
  return MS_OK;
}

static int cuda_device_info(int device, ms_device_info* out, ms_error* err) {
  const char* name = "device_info";
  if (!out) return invalid(err, name, "out is null");
  Op op;
  MS_TRY(begin(op, err, name));
  int count = 0;
  MS_TRY(check(op, cudaGetDeviceCount(&count), "cudaGetDeviceCount"));
  if (device < 0 || device >= count)
    return invalid(err, name, "device %d out of range (%d visible)", device, count);
  cudaDeviceProp prop;
  MS_TRY(check(op, cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties"));
  std::memset(out, 0, sizeof *out);
  std::snprintf(out->name, sizeof out->name, "%s", prop.name);
  out->total_bytes = prop.totalGlobalMem;
  out->multiprocessors = prop.multiProcessorCount;
  out->cc_major = prop.major;
  out->cc_minor = prop.minor;

  // cudaMemGetInfo reports on the current device.
  size_t free_bytes = 0, total_bytes = 0;
  const int own = state().device;
  if (device == own) {
    MS_TRY(check(op, cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  } else {
    // Another GPU: making it current creates its primary context. If it cannot be opened (busy
    // in exclusive-process mode, say) report free memory as 0 rather than failing the query.
    if (cudaSetDevice(device) != cudaSuccess || cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      free_bytes = 0;
      total_bytes = prop.totalGlobalMem;
    }
    (void)cudaGetLastError();  // the tolerated failure above must not resurface later
    MS_TRY(check(op, cudaSetDevice(own), "cudaSetDevice"));
  }
  out->free_bytes = free_bytes;
  if (total_bytes) out->total_bytes = total_bytes;
  return MS_OK;
}

static const ms_backend kCudaBackend = {
    MS_BACKEND_ABI_VERSION,
    "cuda",
    cuda_init,
    cuda_runtime_info,
    cuda_device_info,
    mem_alloc,
    mem_free,
    mem_upload,
    mem_download,
    mem_copy,
    mem_fill,
    mem_cast,
    mem_synchronize,
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

}  // namespace ms::cuda

extern "C" __attribute__((visibility("default"))) const ms_backend* monosemantic_cuda_backend(int abi_version) {
  return abi_version == MS_BACKEND_ABI_VERSION ? &ms::cuda::kCudaBackend : nullptr;
}
