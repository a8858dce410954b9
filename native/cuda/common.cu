/*
 * common.cu — the CUDA backend's error plumbing, per-entry-point bracketing, scratch memory and the
 * device-side index check (see common.cuh).
 */
#include "common.cuh"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ms::cuda {
namespace {

void vset_error(ms_error* err, int code, int device_code, const char* op, const char* fmt,
                va_list args) {
  if (!err) return;
  err->code = code;
  err->device_code = device_code;
  std::snprintf(err->op, sizeof err->op, "%s", op ? op : "");
  std::vsnprintf(err->message, sizeof err->message, fmt, args);
}

}  // namespace

State& state() {
  static State s;
  return s;
}

int set_error(ms_error* err, int code, int device_code, const char* op, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vset_error(err, code, device_code, op, fmt, args);
  va_end(args);
  return code;
}

int invalid(ms_error* err, const char* op, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vset_error(err, MS_ERR_INVALID, 0, op, fmt, args);
  va_end(args);
  return MS_ERR_INVALID;
}

void append_message(ms_error* err, const char* fmt, ...) {
  if (!err) return;
  const size_t len = std::strlen(err->message);
  if (len + 1 >= sizeof err->message) return;
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(err->message + len, sizeof err->message - len, fmt, args);
  va_end(args);
}

int cuda_error(ms_error* err, cudaError_t e, const char* entry, const char* call) {
  const int code = e == cudaErrorMemoryAllocation ? MS_ERR_OOM : MS_ERR_DEVICE;
  set_error(err, code, static_cast<int>(e), call, "%s: %s (in %s)", cudaGetErrorName(e),
            cudaGetErrorString(e), entry);
  // Reset the per-thread last error so a non-sticky failure is not reported again later by an
  // unrelated cudaGetLastError(). (Sticky errors stay: the context is unusable after them.)
  (void)cudaGetLastError();
  return code;
}

int begin(Op& op, ms_error* err, const char* name) {
  op.err = err;
  op.name = name;
  const State& s = state();
  if (!s.ready)
    return set_error(err, MS_ERR_UNAVAILABLE, 0, name,
                     "the CUDA backend is not initialised (init() was not called or failed)");
  op.stream = s.stream;
  // Drop a stale last-error of this thread: every failure we report has already cleared it, so
  // this only matters for errors raised outside this library on the same thread.
  (void)cudaGetLastError();
  return check(op, cudaSetDevice(s.device), "cudaSetDevice");
}

int check(const Op& op, cudaError_t e, const char* call) {
  return e == cudaSuccess ? MS_OK : cuda_error(op.err, e, op.name, call);
}

int check_launch(const Op& op, const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return MS_OK;
  char call[64];
  std::snprintf(call, sizeof call, "launch %s", kernel);
  return cuda_error(op.err, e, op.name, call);
}

int finish(const Op& op) {
  if (state().sync_each_op) return wait_host(op);
  return check(op, cudaPeekAtLastError(), "an earlier asynchronous operation");
}

int wait_host(const Op& op) { return check(op, cudaStreamSynchronize(op.stream), "cudaStreamSynchronize"); }

cudaMemPool_t open_memory_pool(int device) {
  const char* mode = std::getenv("MONOSEMANTIC_CUDA_ALLOC");
  if (mode && std::strcmp(mode, "plain") == 0) return nullptr;
  int supported = 0;
  if (cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device) != cudaSuccess || !supported) {
    (void)cudaGetLastError();
    return nullptr;
  }
  cudaMemPool_t pool = nullptr;
  uint64_t keep_everything = UINT64_MAX;  // never hand freed blocks back at a synchronisation
  if (cudaDeviceGetDefaultMemPool(&pool, device) != cudaSuccess ||
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_everything) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return pool;
}

cudaError_t device_malloc(void** p, size_t bytes, cudaStream_t stream) {
  const cudaMemPool_t pool = state().pool;
  if (!pool) return cudaMalloc(p, bytes);
  cudaError_t e = cudaMallocAsync(p, bytes, stream);
  if (e != cudaErrorMemoryAllocation) return e;
  // The pool may hold enough freed blocks of other sizes: give them back and try once more.
  (void)cudaGetLastError();
  if (cudaStreamSynchronize(stream) == cudaSuccess && cudaMemPoolTrimTo(pool, 0) == cudaSuccess)
    e = cudaMallocAsync(p, bytes, stream);
  return e;
}

cudaError_t device_free(void* p, cudaStream_t stream) {
  return state().pool ? cudaFreeAsync(p, stream) : cudaFree(p);
}

DeviceScratch::~DeviceScratch() {
  if (ptr_) {
    // Error path only (release() was not reached): an error is already reported; a failure to
    // free here (e.g. a sticky error) has nowhere better to go.
    (void)device_free(ptr_, stream_);
    (void)cudaGetLastError();
  }
}

int DeviceScratch::allocate(const Op& op, size_t bytes) {
  if (ptr_) return set_error(op.err, MS_ERR_INVALID, 0, op.name, "internal: scratch allocated twice");
  void* p = nullptr;
  const cudaError_t e = device_malloc(&p, bytes ? bytes : kAlign, op.stream);
  if (e != cudaSuccess) {
    const int rc = cuda_error(op.err, e, op.name, state().pool ? "cudaMallocAsync" : "cudaMalloc");
    append_message(op.err, "; %zu bytes of temporary device memory requested", bytes);
    return rc;
  }
  ptr_ = p;
  stream_ = op.stream;
  return MS_OK;
}

int DeviceScratch::release(const Op& op) {
  if (!ptr_) return MS_OK;
  void* p = ptr_;
  ptr_ = nullptr;
  return check(op, device_free(p, stream_), state().pool ? "cudaFreeAsync" : "cudaFree");
}

namespace {
constexpr unsigned long long kNoIndex = ~0ull;

// *first = the smallest i < count with v[i] < lo or v[i] >= hi (untouched when there is none).
__global__ void first_out_of_range_kernel(const int32_t* __restrict__ v, size_t count, int lo, int hi,
                                          unsigned long long* __restrict__ first) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    if (v[i] < lo || v[i] >= hi) atomicMin(first, static_cast<unsigned long long>(i));
}
}  // namespace

int find_out_of_range(const Op& op, const int32_t* v, size_t count, int lo, int hi, long long* index,
                      int32_t* value) {
  DeviceScratch scratch;  // one unsigned long long: the smallest bad index found
  MS_TRY(scratch.allocate(op, sizeof(unsigned long long)));
  auto* first = static_cast<unsigned long long*>(scratch.get());
  MS_TRY(check(op, cudaMemsetAsync(first, 0xff, sizeof *first, op.stream), "cudaMemsetAsync"));  // kNoIndex
  first_out_of_range_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(v, count, lo, hi, first);
  MS_TRY(check_launch(op, "first_out_of_range_kernel"));
  unsigned long long host = kNoIndex;
  MS_TRY(check(op, cudaMemcpyAsync(&host, first, sizeof host, cudaMemcpyDeviceToHost, op.stream), "cudaMemcpyAsync"));
  MS_TRY(wait_host(op));
  *index = -1;
  if (host != kNoIndex) {
    MS_TRY(check(op, cudaMemcpyAsync(value, v + host, sizeof *value, cudaMemcpyDeviceToHost, op.stream),
                 "cudaMemcpyAsync"));
    MS_TRY(wait_host(op));
    *index = static_cast<long long>(host);
  }
  return scratch.release(op);
}

}  // namespace ms::cuda
