/*
 * common.cuh — shared plumbing for the CUDA backend (backend.h): error reporting, the backend's
 * one device, stream and memory pool, workspace carving, launch geometry and small device helpers.
 *
 * Errors. Every CUDA call is checked; a failure becomes an ms_error (never exit/abort/throw):
 *   code        MS_ERR_OOM for cudaErrorMemoryAllocation, MS_ERR_DEVICE otherwise
 *   device_code the cudaError_t value
 *   op          the CUDA call that failed ("cudaMalloc", "cudaStreamSynchronize",
 *               "launch gemm_kernel", ...)
 *   message     cudaGetErrorName + cudaGetErrorString, and the public entry it happened in.
 * After a failure the runtime's per-thread "last error" is cleared, so a stale non-sticky error
 * (say, a failed cudaMalloc) is never reported again by the next launch's cudaGetLastError().
 *
 * Device and stream. init() selects device 0 and creates one non-blocking stream that every op
 * uses. The core serialises calls but may make them from different host threads, so each entry
 * point starts with cudaSetDevice(0) (cheap) through begin().
 *
 * Synchronisation policy. By default finish() only checks for errors already raised: the op's
 * work stays queued on the backend stream, in order with everything after it, and the core
 * launches ops from the calling thread instead of a worker (backend.h, synchronize()). With
 * MONOSEMANTIC_CUDA_ASYNC=0 (read at init) every public entry point ends with
 * cudaStreamSynchronize (finish()), so results are complete on return and an asynchronous failure
 * (an illegal address in a kernel, say) is reported by the op that caused it. Entry points that
 * read device results into host memory always wait for them (wait_host()), whatever the mode;
 * freed memory returns to the stream-ordered pool after the work queued before it.
 */
#ifndef MONOSEMANTIC_CUDA_COMMON_CUH
#define MONOSEMANTIC_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "backend.h"

namespace ms::cuda {

// ---- backend state ----------------------------------------------------------------------------

struct State {
  bool ready = false;             // init() succeeded
  int device = 0;                 // the device every op runs on
  cudaStream_t stream = nullptr;  // non-blocking stream used for everything
  cudaMemPool_t pool = nullptr;   // the device's stream-ordered pool, or null (plain cudaMalloc)
  bool sync_each_op = false;      // finish() waits (true: MONOSEMANTIC_CUDA_ASYNC=0)
};
State& state();

// ---- device memory ------------------------------------------------------------------------------
//
// Every allocation (tensors and the ops' scratch) comes from the device's default stream-ordered
// memory pool (cudaMallocAsync / cudaFreeAsync on the backend stream) with its release threshold
// raised, so freed blocks stay with the process and are reused without a driver call or a device
// synchronisation; cudaMalloc/cudaFree cost tens of microseconds each and cudaFree waits for the
// whole device. When an allocation fails, the pool's unused blocks are returned to the driver and
// it is tried once more. Plain cudaMalloc is used where the device has no memory pools, before
// init() (the kernel playgrounds), or with MONOSEMANTIC_CUDA_ALLOC=plain (read at init).

// Sets up the pool for `device` (init()); returns null where pools are unsupported or disabled.
cudaMemPool_t open_memory_pool(int device);
// *p = `bytes` (>= 1) of device memory usable in the order of `stream`.
cudaError_t device_malloc(void** p, size_t bytes, cudaStream_t stream);
// Frees p in the order of `stream`: work already queued on it may still use p.
cudaError_t device_free(void* p, cudaStream_t stream);

// ---- errors -------------------------------------------------------------------------------------

// Fills *err (when non-null) and returns code.
int set_error(ms_error* err, int code, int device_code, const char* op, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));

// Turns a failed CUDA call into an ms_error (see the header comment) and clears the runtime's
// last-error state. `entry` is the public entry point, `call` the CUDA call or kernel launch.
int cuda_error(ms_error* err, cudaError_t e, const char* entry, const char* call);

// Appends printf-style text to err->message (truncating at its size).
void append_message(ms_error* err, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// One public entry point in progress: where errors go, its name, the stream to use.
struct Op {
  ms_error* err = nullptr;
  const char* name = "";
  cudaStream_t stream = nullptr;
};

// Starts an entry point: requires a successful init(), makes the device current on this thread,
// drops any stale last-error left on this thread, and fills op.
int begin(Op& op, ms_error* err, const char* name);
// MS_OK when e == cudaSuccess, else the ms_error for `call`.
int check(const Op& op, cudaError_t e, const char* call);
// After a kernel launch: cudaGetLastError() (bad configuration, missing kernel image, ...).
int check_launch(const Op& op, const char* kernel);
// Ends an entry point: waits for the stream, or in the asynchronous mode only reports an error
// already raised (see "Synchronisation policy" above).
int finish(const Op& op);
// Waits for the stream in every mode: before host code reads what the queued work wrote.
int wait_host(const Op& op);

// MS_ERR_INVALID for a bad argument, naming it in the message.
int invalid(ms_error* err, const char* op, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

#define MS_TRY(expr)                             \
  do {                                           \
    const int ms_try_rc_ = (expr);               \
    if (ms_try_rc_ != MS_OK) return ms_try_rc_;  \
  } while (0)

// In an entry point with `err` and `name` in scope: MS_ERR_INVALID naming a null pointer argument.
#define MS_REQUIRE(ptr)                                        \
  do {                                                         \
    if (!(ptr)) return invalid(err, name, "%s is null", #ptr); \
  } while (0)

// Device memory owned for the duration of one entry point (temporaries of sae_encode/decode,
// which get no workspace from the caller). release() frees and reports; the destructor frees on
// early-return paths, where an error has already been reported, and ignores a second failure.
class DeviceScratch {
 public:
  DeviceScratch() = default;
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  ~DeviceScratch();
  int allocate(const Op& op, size_t bytes);
  int release(const Op& op);
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_ = nullptr;  // the stream it was allocated on, and is freed on
};

// *index = the first i < count with v[i] outside [lo, hi), and *value = v[i]; *index = -1 when
// every value is inside (an index check done on the device before an op writes anything). Waits
// for the stream.
int find_out_of_range(const Op& op, const int32_t* v, size_t count, int lo, int hi, long long* index,
                      int32_t* value);

// ---- workspace carving --------------------------------------------------------------------------

constexpr size_t kAlign = 256;
inline size_t align_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Hands out consecutive sub-buffers of a base pointer, each starting 256 bytes after the previous
// one rounded up. With base == nullptr it only measures (every take() returns nullptr), so one
// function both sizes and carves a workspace and the two can never disagree.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(size_t count) {
    T* p = base_ ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += align_up(count * sizeof(T));
    return p;
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

// ---- launch geometry ----------------------------------------------------------------------------

constexpr int kThreads = 256;          // threads per block of the elementwise / row kernels
constexpr size_t kMaxBlocks = 65535;   // cap for grid-stride loops (any count is covered)

// Whether p is a multiple of `bytes` (vector loads and stores, TMA).
inline bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Blocks for a grid-stride loop over `total` elements (total > 0).
inline unsigned int grid_stride_blocks(size_t total) {
  const size_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < kMaxBlocks ? (blocks ? blocks : 1) : kMaxBlocks);
}

// ---- device helpers -----------------------------------------------------------------------------

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);  // round to nearest even, as convert.h on the host
}
template <>
__device__ __forceinline__ int32_t from_float<int32_t>(float v) {
  return __float2int_rz(v);  // truncates, saturates at the int32 range, NaN -> 0
}

// Eight consecutive values of a row as floats, from one 16-byte load of bf16 or two of fp32 (p
// 16-byte aligned), and back (bf16 rounded to nearest even, as from_float).
__device__ __forceinline__ void load8(const float* p, float (&v)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float (&v)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float2 f = __bfloat1622float2(h[k]);
    v[2 * k] = f.x, v[2 * k + 1] = f.y;
  }
}
__device__ __forceinline__ void store8(float* p, const float (&v)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void store8(__nv_bfloat16* p, const float (&v)[8]) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int k = 0; k < 4; ++k) h[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

// Whether rows of V values at p (and q) can be read in 16-byte chunks of 8: V a multiple of 8 and
// the bases 16-byte aligned (every row then starts aligned: its byte length is a multiple of 16).
inline bool rows_in_chunks8(int V, const void* p, const void* q = nullptr) {
  return V % 8 == 0 && reinterpret_cast<uintptr_t>(p) % 16 == 0 && reinterpret_cast<uintptr_t>(q) % 16 == 0;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of v over the warp, returned to every lane. The xor butterfly adds the same pairs in the
// same tree on every lane (addition commutes), so all lanes hold the same bits.
template <typename T>
__device__ __forceinline__ T warp_allsum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Row kernels: a row of at most kWarpRowMaxC columns is one warp's (lane l holds columns l + 32 i,
// i < PER, in registers); a wider row is one block's.
constexpr int kWarpRowMaxC = 1024;
constexpr int kRowsPerWarpBlock = kThreads / 32;  // rows per block of a warp-per-row kernel

// Calls launch(std::integral_constant<int, PER>{}) with the smallest PER in {4, 8, 16, 32} such
// that 32 PER >= C (C <= kWarpRowMaxC): a warp-per-row kernel's values per lane.
template <typename Launch>
void with_lane_count(int C, Launch&& launch) {
  if (C <= 128) launch(std::integral_constant<int, 4>{});
  else if (C <= 256) launch(std::integral_constant<int, 8>{});
  else if (C <= 512) launch(std::integral_constant<int, 16>{});
  else launch(std::integral_constant<int, 32>{});
}

// Sum of v over the block, returned to every thread. blockDim.x must be a multiple of 32 (at most
// 1024); scratch is a __shared__ array of 33 entries. Every thread of the block must call it.
// The reduction tree is fixed, so the result is deterministic for a given blockDim.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < warps ? scratch[lane] : T(0);
    w = warp_sum(w);
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  const T total = scratch[32];
  __syncthreads();  // the caller may reuse scratch right away
  return total;
}

// Max of v over the block (NaN ignored unless every value is NaN), returned to every thread;
// same contract as block_sum.
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, offset));
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < warps ? scratch[lane] : -INFINITY;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) w = fmaxf(w, __shfl_down_sync(0xffffffffu, w, offset));
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  const float total = scratch[32];
  __syncthreads();
  return total;
}

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_COMMON_CUH
