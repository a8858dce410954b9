/*
 * memory.cu — device memory for the CUDA backend: alloc/free, copies, fill, cast, synchronize.
 *
 * Copies are queued on the backend stream. A download is waited for before returning; an upload
 * or a device copy is an op like any other (finish(): waited for only when ops complete one by
 * one). An upload's host memory may be pageable and reused at once: uploads up to half of a
 * 32 MiB pinned staging ring (staging_ring.h) are first copied there, so the copy is queued
 * without waiting for the stream; larger ones (and all of them when ops complete one by one, when
 * pinned memory cannot be had, or with MONOSEMANTIC_CUDA_UPLOAD=pageable) go from the pageable
 * source, for which cudaMemcpyAsync returns only once the source has been read (staged, or the
 * copy done). Conversions follow the CPU
 * backend exactly: f32 -> bf16 rounds to nearest even; i32 -> f32 rounds to nearest; f32 -> i32
 * truncates toward zero and saturates with NaN -> 0 (__float2int_rz); bf16 <-> i32 goes via f32.
 * fill converts its double value the way the CPU backend does: to float first, then to the dtype.
 */
#include "memory.cuh"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.cuh"
#include "convert.h"
#include "staging_ring.h"

namespace ms::cuda {

// ---- kernels ------------------------------------------------------------------------------------

// dst[i] = value for i < count; W is the 16- or 32-bit word of the dtype.
template <typename W>
static __global__ void fill_kernel(W* __restrict__ dst, size_t count, W value) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += size_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

static __device__ __forceinline__ float load_as_float(float v) { return v; }
static __device__ __forceinline__ float load_as_float(__nv_bfloat16 v) { return __bfloat162float(v); }
static __device__ __forceinline__ float load_as_float(int32_t v) { return __int2float_rn(v); }

// dst[i] = (D) src[i] through fp32, for i < count.
template <typename S, typename D>
static __global__ void cast_kernel(D* __restrict__ dst, const S* __restrict__ src, size_t count) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += size_t(gridDim.x) * blockDim.x)
    dst[i] = from_float<D>(load_as_float(src[i]));
}

// ---- launchers ----------------------------------------------------------------------------------

template <typename W>
static int launch_fill(const Op& op, void* dst, size_t count, W value) {
  fill_kernel<W><<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(static_cast<W*>(dst), count,
                                                                         value);
  return check_launch(op, "fill_kernel");
}

template <typename S, typename D>
static int launch_cast(const Op& op, void* dst, const void* src, size_t count) {
  cast_kernel<S, D><<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(
      static_cast<D*>(dst), static_cast<const S*>(src), count);
  return check_launch(op, "cast_kernel");
}

// ---- host-side conversions (same results as the CPU backend) ------------------------------------

static bool valid_dtype(int dtype) { return dtype == MS_F32 || dtype == MS_BF16 || dtype == MS_I32; }
static size_t dtype_bytes(int dtype) { return dtype == MS_BF16 ? 2 : 4; }

// Queues the copy; waits for it (and everything before it) when the host reads the result.
static int memcpy_on_stream(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* name,
                            ms_error* err) {
  if (bytes == 0) return MS_OK;
  if (!dst || !src) return invalid(err, name, "%s pointer is null", !dst ? "destination" : "source");
  Op op;
  MS_TRY(begin(op, err, name));
  MS_TRY(check(op, cudaMemcpyAsync(dst, src, bytes, kind, op.stream), "cudaMemcpyAsync"));
  return kind == cudaMemcpyDeviceToHost ? wait_host(op) : finish(op);
}

int mem_alloc(size_t bytes, void** out, ms_error* err) {
  if (!out) return invalid(err, "alloc", "out is null");
  *out = nullptr;
  Op op;
  MS_TRY(begin(op, err, "alloc"));
  void* ptr = nullptr;
  // alloc(0) must return a valid unique pointer: give it one alignment unit.
  const cudaError_t e = device_malloc(&ptr, bytes ? bytes : kAlign, op.stream);
  if (e != cudaSuccess) {
    const int rc = cuda_error(err, e, "alloc", state().pool ? "cudaMallocAsync" : "cudaMalloc");
    append_message(err, "; %zu bytes requested", bytes);
    return rc;
  }
  *out = ptr;
  return MS_OK;
}

void mem_free(void* ptr) {
  if (!ptr || !state().ready) return;
  // No error channel here (backend.h): failures (only possible after a sticky error, when the
  // context is lost anyway) are dropped and the last-error state is cleared.
  if (cudaSetDevice(state().device) == cudaSuccess) (void)device_free(ptr, state().stream);
  (void)cudaGetLastError();
}

// The pinned staging ring of uploads: its memory (allocated at the first upload that uses it), the
// regions in flight with the events recorded after their copies, and spare events.
struct Staging {
  static constexpr size_t kBytes = size_t(32) << 20;
  char* host = nullptr;
  bool unavailable = false;  // cudaHostAlloc failed: uploads stay pageable
  StagingRing<cudaEvent_t> ring{kBytes};
  std::vector<cudaEvent_t> spare;
};

static Staging& staging() {
  static Staging s;
  return s;
}

// MONOSEMANTIC_CUDA_UPLOAD=pageable (read at each upload): every upload from pageable memory.
static bool pageable_uploads() {
  const char* v = std::getenv("MONOSEMANTIC_CUDA_UPLOAD");
  return v && std::strcmp(v, "pageable") == 0;
}

int mem_upload(void* dst_device, const void* src_host, size_t bytes, ms_error* err) {
  Staging& s = staging();
  if (bytes == 0 || !dst_device || !src_host || s.unavailable || !s.ring.fits(bytes) || state().sync_each_op ||
      pageable_uploads())
    return memcpy_on_stream(dst_device, src_host, bytes, cudaMemcpyHostToDevice, "upload", err);
  Op op;
  MS_TRY(begin(op, err, "upload"));
  if (!s.host && cudaHostAlloc(reinterpret_cast<void**>(&s.host), Staging::kBytes, cudaHostAllocDefault) != cudaSuccess) {
    (void)cudaGetLastError();  // no pinned memory: this and later uploads go from pageable memory
    s.host = nullptr;
    s.unavailable = true;
    return memcpy_on_stream(dst_device, src_host, bytes, cudaMemcpyHostToDevice, "upload", err);
  }
  int rc = MS_OK;
  const auto done = [&](cudaEvent_t e) {
    const cudaError_t q = cudaEventQuery(e);
    if (q == cudaErrorNotReady) (void)cudaGetLastError();  // not an error: the copy is still queued
    return q == cudaSuccess;
  };
  const auto wait = [&](cudaEvent_t e) {
    if (rc == MS_OK) rc = check(op, cudaEventSynchronize(e), "cudaEventSynchronize");
  };
  const auto release = [&](cudaEvent_t e) { s.spare.push_back(e); };
  // The region's event comes first: once the copy is queued, nothing may fail before the event
  // that guards the region is recorded (or the copy waited for).
  cudaEvent_t event = nullptr;
  if (s.spare.empty()) {
    MS_TRY(check(op, cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreateWithFlags"));
  } else {
    event = s.spare.back();
    s.spare.pop_back();
  }
  const size_t offset = s.ring.acquire(bytes, done, wait, release);
  if (rc == MS_OK) {
    std::memcpy(s.host + offset, src_host, bytes);
    rc = check(op, cudaMemcpyAsync(dst_device, s.host + offset, bytes, cudaMemcpyHostToDevice, op.stream),
               "cudaMemcpyAsync");
  }
  if (rc != MS_OK) {
    s.spare.push_back(event);  // nothing was queued from the region: it is free again
    return rc;
  }
  const int recorded = check(op, cudaEventRecord(event, op.stream), "cudaEventRecord");
  if (recorded != MS_OK) {
    // Without its event the region could be reused before its copy runs: wait for the copy here.
    s.spare.push_back(event);
    (void)cudaStreamSynchronize(op.stream);
    return recorded;
  }
  s.ring.commit(offset, bytes, event);
  return finish(op);
}

int mem_download(void* dst_host, const void* src_device, size_t bytes, ms_error* err) {
  return memcpy_on_stream(dst_host, src_device, bytes, cudaMemcpyDeviceToHost, "download", err);
}

int mem_copy(void* dst_device, const void* src_device, size_t bytes, ms_error* err) {
  return memcpy_on_stream(dst_device, src_device, bytes, cudaMemcpyDeviceToDevice, "copy", err);
}

int mem_fill(void* dst_device, int dtype, size_t count, double value, ms_error* err) {
  if (!valid_dtype(dtype)) return invalid(err, "fill", "dtype: unknown dtype %d", dtype);
  if (count == 0) return MS_OK;
  if (!dst_device) return invalid(err, "fill", "dst_device is null");
  Op op;
  MS_TRY(begin(op, err, "fill"));
  const float v = static_cast<float>(value);
  switch (dtype) {
    case MS_F32: {
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      MS_TRY(launch_fill<uint32_t>(op, dst_device, count, bits));
      break;
    }
    case MS_BF16:
      MS_TRY(launch_fill<uint16_t>(op, dst_device, count, float_to_bf16(v)));
      break;
    default: {
      const int32_t i = double_to_i32(value);
      uint32_t bits;
      std::memcpy(&bits, &i, sizeof bits);
      MS_TRY(launch_fill<uint32_t>(op, dst_device, count, bits));
      break;
    }
  }
  return finish(op);
}

int mem_cast(void* dst_device, int dst_dtype, const void* src_device, int src_dtype, size_t count,
             ms_error* err) {
  if (!valid_dtype(dst_dtype)) return invalid(err, "cast", "dst_dtype: unknown dtype %d", dst_dtype);
  if (!valid_dtype(src_dtype)) return invalid(err, "cast", "src_dtype: unknown dtype %d", src_dtype);
  if (count == 0) return MS_OK;
  if (!dst_device || !src_device)
    return invalid(err, "cast", "%s is null", !dst_device ? "dst_device" : "src_device");
  if (dst_dtype == src_dtype) return mem_copy(dst_device, src_device, count * dtype_bytes(dst_dtype), err);
  Op op;
  MS_TRY(begin(op, err, "cast"));
  using bf16 = __nv_bfloat16;
  int rc = MS_OK;
  if (src_dtype == MS_F32 && dst_dtype == MS_BF16) rc = launch_cast<float, bf16>(op, dst_device, src_device, count);
  else if (src_dtype == MS_F32) rc = launch_cast<float, int32_t>(op, dst_device, src_device, count);
  else if (src_dtype == MS_BF16 && dst_dtype == MS_F32) rc = launch_cast<bf16, float>(op, dst_device, src_device, count);
  else if (src_dtype == MS_BF16) rc = launch_cast<bf16, int32_t>(op, dst_device, src_device, count);
  else if (dst_dtype == MS_F32) rc = launch_cast<int32_t, float>(op, dst_device, src_device, count);
  else rc = launch_cast<int32_t, bf16>(op, dst_device, src_device, count);
  MS_TRY(rc);
  return finish(op);
}

int mem_synchronize(ms_error* err) {
  Op op;
  MS_TRY(begin(op, err, "synchronize"));
  return wait_host(op);
}

}  // namespace ms::cuda
