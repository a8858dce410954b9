/*
 * gemm_epilogue_ops.cuh — what the tensor-core GEMMs (gemm_tensor.cu: mma.sync; gemm_wgmma.cu:
 * wgmma) do with their accumulators: the epilogues of gemm_tensor.cuh as device functors, shared by
 * both kernels so that both paths compute the same expressions.
 *
 * Each is called for an in-range (row, col) of split K's part z (0 when K is not split) with the
 * accumulators of (row, col) and (row, col + 1); has1 says whether col + 1 < N (col is always even). It returns the two values the column
 * reduction takes (when kColumnSums and columns() say so); {0, 0} otherwise. An epilogue with
 * kReadsMask first gets live(row, col, has1) for every pair of the thread's tile, before any of
 * them is written, and then the two bits it returned as `mask` (bit 0: col, bit 1: col + 1).
 * StoreOp's split_stride places split K's partial products: split z writes at C + z * split_stride.
 * The kernels pass z (mma.sync: blockIdx.z; wgmma: the work item's z, its grid being 1-D).
 * StoreOp may also be staged by the mma.sync kernel (kStaged: the values through shared memory,
 * written a row at a time): staged_value() is its computation up to what the store does with the
 * output itself, and outputs(z) says where the values go and what is left: C's beta term and the
 * bias, applied to 4 consecutive values as they are written (store_staged, gemm_tensor.cu), so C
 * is read a row at a time too. The fused epilogues (bf16 outputs with column sums) store directly:
 * staged, the SAE step measured 3-5% slower.
 */
#ifndef MONOSEMANTIC_CUDA_GEMM_EPILOGUE_OPS_CUH
#define MONOSEMANTIC_CUDA_GEMM_EPILOGUE_OPS_CUH

#include <cuda_bf16.h>

#include "activation.cuh"
#include "gemm_tensor.cuh"

namespace ms::cuda {

// Writes (r0, r1) at dst + at (and at + 1 when has1), as a pair when pair_ok.
__device__ __forceinline__ void store_pair(float* dst, size_t at, float r0, float r1, bool has1, bool pair_ok) {
  if (has1 && pair_ok) {
    *reinterpret_cast<float2*>(dst + at) = make_float2(r0, r1);
  } else {
    dst[at] = r0;
    if (has1) dst[at + 1] = r1;
  }
}
__device__ __forceinline__ void store_pair(__nv_bfloat16* dst, size_t at, float r0, float r1, bool has1, bool pair_ok) {
  if (has1 && pair_ok) {
    *reinterpret_cast<__nv_bfloat162*>(dst + at) = __floats2bfloat162_rn(r0, r1);
  } else {
    dst[at] = __float2bfloat16_rn(r0);
    if (has1) dst[at + 1] = __float2bfloat16_rn(r1);
  }
}

// Where an epilogue's results go: an fp32 and a bf16 output (either may be null; not both) with
// leading dimension ld, [row, col] at row * ld + col; and what the store adds to a staged value v
// of [row, col]: bias[col] when bias is set, then fmaf(beta, f[row, col], v) when beta != 0 (f's old
// value; f alone then): with beta 1, f + (product + bias), linear's result added to f by add().
struct EpilogueOutputs {
  float* f;
  __nv_bfloat16* h;
  size_t ld;
  float beta = 0.0f;
  const float* bias = nullptr;
};

struct StoreOp {
  static constexpr bool kColumnSums = false;
  static constexpr bool kStaged = true;  // the mma.sync kernel may stage its stores (staged_value, outputs)
  EpilogueStore e;
  bool pair_ok;  // the output at row*ldc + col is pair-aligned for every even col (store_pair_ok)
  size_t split_stride = 0;  // split K: split z writes its partial product at C + z * split_stride
  static constexpr bool kReadsMask = false;
  __device__ __forceinline__ unsigned live(int, int, bool) const { return 0; }
  __device__ __forceinline__ float2 value(int z, int row, int col, float v0, float v1, bool has1, unsigned) const {
    v0 *= e.alpha;
    v1 *= e.alpha;
    if (e.bias) {  // linear's bias, added as its separate pass would: after the product
      v0 += e.bias[col];
      if (has1) v1 += e.bias[col + 1];
    }
    if (e.beta != 0.0f) {  // (beta 0: C is not read, it may hold NaN)
      const size_t at = size_t(z) * split_stride + size_t(row) * e.ldc + col;  // C[row, col] (of split z)
      v0 = fmaf(e.beta, e.C[at], v0);
      if (has1) v1 = fmaf(e.beta, e.C[at + 1], v1);
    }
    return make_float2(v0, v1);
  }
  __device__ __forceinline__ float2 staged_value(int, int, int, float v0, float v1, bool, unsigned) const {
    return make_float2(e.alpha * v0, e.alpha * v1);
  }
  __device__ __forceinline__ EpilogueOutputs outputs(int z) const {
    return e.C_bf ? EpilogueOutputs{nullptr, e.C_bf, size_t(e.ldc), 0.0f, e.bias}
                  : EpilogueOutputs{e.C + size_t(z) * split_stride, nullptr, size_t(e.ldc), e.beta, e.bias};
  }
  __device__ __forceinline__ float2 operator()(int z, int row, int col, float v0, float v1, bool has1, unsigned mask) const {
    const float2 v = value(z, row, col, v0, v1, has1, mask);
    const size_t at = size_t(z) * split_stride + size_t(row) * e.ldc + col;  // C[row, col] (of split z)
    if (e.C_bf) store_pair(e.C_bf, at, v.x, v.y, has1, pair_ok);
    else store_pair(e.C, at, v.x, v.y, has1, pair_ok);
    return make_float2(0.0f, 0.0f);
  }
  __device__ __forceinline__ bool columns() const { return false; }
  __device__ __forceinline__ double* partial() const { return nullptr; }
  __device__ __forceinline__ int32_t* fired() const { return nullptr; }
};

// linear_qkv's store (EpilogueSplitQkv): the value linear's store would write to qkv[row, col]
// (the bias added when there is one), written where split_qkv would copy it.
struct SplitQkvStoreOp {
  static constexpr bool kColumnSums = false;
  static constexpr bool kStaged = false;
  static constexpr bool kReadsMask = false;
  EpilogueSplitQkv e;
  bool pair_ok;  // C even, q and the caches 8-byte aligned: columns col, col + 1 (col even) are adjacent in one output
  __device__ __forceinline__ unsigned live(int, int, bool) const { return 0; }
  // Where qkv[row, col] goes: q[row, c], or cache[b, offset + t, c] for row = b*T + t (row itself
  // where T = Tmax, which makes offset 0: no division).
  __device__ __forceinline__ float* at(int row, int col) const {
    if (col < e.C) return e.q + size_t(row) * e.C + col;
    const bool key = col < 2 * e.C;
    const int c = col - (key ? e.C : 2 * e.C);
    const size_t cache_row = e.T == e.Tmax ? size_t(row) : size_t(row / e.T) * e.Tmax + e.offset + row % e.T;
    return (key ? e.k_cache : e.v_cache) + cache_row * e.C + c;
  }
  __device__ __forceinline__ float2 operator()(int, int row, int col, float v0, float v1, bool has1, unsigned) const {
    if (e.bias) {  // linear's bias, added as its store adds it
      v0 += e.bias[col];
      if (has1) v1 += e.bias[col + 1];
    }
    float* p0 = at(row, col);
    if (has1 && pair_ok) {
      *reinterpret_cast<float2*>(p0) = make_float2(v0, v1);
    } else {
      *p0 = v0;
      if (has1) *at(row, col + 1) = v1;
    }
    return make_float2(v0, v1);
  }
  __device__ __forceinline__ bool columns() const { return false; }
  __device__ __forceinline__ double* partial() const { return nullptr; }
  __device__ __forceinline__ int32_t* fired() const { return nullptr; }
};

// Act: the activation (ms_activation) as a compile-time constant, so each kernel holds only its own:
// MS_ACT_RELU (the SAE encoder, ReLU MLPs) or MS_ACT_GELU_TANH (GPT-2's gelu_new).
template <int Act>
struct BiasActOp {
  static constexpr bool kColumnSums = true;
  static constexpr bool kStaged = false;  // stores bf16 with column sums: staging measured slower
  EpilogueBiasAct e;
  bool pair_ok;  // f 8-aligned, f_bf 4-aligned, ld even
  static constexpr bool kReadsMask = false;
  __device__ __forceinline__ unsigned live(int, int, bool) const { return 0; }
  __device__ __forceinline__ float2 operator()(int, int row, int col, float v0, float v1, bool has1, unsigned) const {
    const size_t at = size_t(row) * e.ld + col;  // f[row, col] at f[row*ld + col]
    // The bias as linear's store adds it, then the activation pass's function (ReLU: NaN -> 0, as
    // the CPU backend).
    const float r0 = activate(Act, v0 + e.bias[col]);
    const float r1 = has1 ? activate(Act, v1 + e.bias[col + 1]) : 0.0f;
    if (e.f) store_pair(e.f, at, r0, r1, has1, pair_ok);
    if (e.f_bf) store_pair(e.f_bf, at, r0, r1, has1, pair_ok);
    return make_float2(r0, r1);
  }
  __device__ __forceinline__ bool columns() const { return e.col_partial != nullptr; }
  __device__ __forceinline__ double* partial() const { return e.col_partial; }
  __device__ __forceinline__ int32_t* fired() const { return e.col_fired; }
};

// The ReLU mask comes from bf16(f), which gp_bf may overwrite in place: the kernel reads the mask
// of all the thread's outputs (live) before writing any, so the loads are independent of the
// stores and can be in flight together; read between the stores, each waited for the last.
struct FeatureGradOp {
  static constexpr bool kColumnSums = true;
  static constexpr bool kStaged = false;
  static constexpr bool kReadsMask = true;
  EpilogueFeatureGrad e;
  bool pair_ok;  // gp 8-aligned, gp_bf 4-aligned, f_bf 4-aligned, ld even
  // Bit 0: f_bf[row, col] > 0; bit 1: f_bf[row, col + 1] > 0 (when has1). f_bf[row, col] is at
  // f_bf[row*ld + col].
  __device__ __forceinline__ unsigned live(int row, int col, bool has1) const {
    const size_t at = size_t(row) * e.ld + col;
    if (has1 && pair_ok) {
      const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(e.f_bf + at));
      return (f.x > 0.0f ? 1u : 0u) | (f.y > 0.0f ? 2u : 0u);
    }
    const unsigned b0 = __bfloat162float(e.f_bf[at]) > 0.0f ? 1u : 0u;
    return has1 && __bfloat162float(e.f_bf[at + 1]) > 0.0f ? b0 | 2u : b0;
  }
  __device__ __forceinline__ float grad(float acc, bool alive, int col) const {
    if (!alive) return 0.0f;
    const float ci = e.c ? e.c[col] : 1.0f;
    return __fadd_rn(acc, __fmul_rn(e.l1_scale, ci));  // unfused, as the CPU backend
  }
  __device__ __forceinline__ float2 operator()(int, int row, int col, float v0, float v1, bool has1, unsigned mask) const {
    const size_t at = size_t(row) * e.ld + col;
    const float r0 = grad(v0, (mask & 1u) != 0, col);
    const float r1 = has1 ? grad(v1, (mask & 2u) != 0, col + 1) : 0.0f;
    if (e.gp) store_pair(e.gp, at, r0, r1, has1, pair_ok);
    if (e.gp_bf) store_pair(e.gp_bf, at, r0, r1, has1, pair_ok);
    return make_float2(r0, r1);
  }
  __device__ __forceinline__ bool columns() const { return e.col_partial != nullptr; }
  __device__ __forceinline__ double* partial() const { return e.col_partial; }
  __device__ __forceinline__ int32_t* fired() const { return nullptr; }
};

// The store epilogue of either kernel, K split `splits` ways: run(epi, splits) launches the kernel
// with `epi`. One split stores into C directly; more write their partial products to scratch
// P [splits, M, N], which one pass then sums in order into C (deterministic for a given split
// count). Splitting is only for speed: where the device has no room for P, the product runs
// unsplit, summing K in another order (so its bits can then differ from a split run's).
// Whether the store epilogue may write pairs: fp32 C 8-byte aligned, or bf16 C_bf 4-byte aligned, and ldc even.
inline bool store_pair_ok(const EpilogueStore& e) {
  return (e.C_bf ? aligned(e.C_bf, 4) : aligned(e.C, 8)) && e.ldc % 2 == 0;
}

template <typename Run>
int store_with_splits(const Op& op, int M, int N, int splits, const EpilogueStore& epilogue, Run&& run) {
  if (splits == 1) return run(StoreOp{epilogue, store_pair_ok(epilogue)}, 1);
  DeviceScratch partials;
  const int allocated = partials.allocate(op, size_t(splits) * M * N * sizeof(float));
  if (allocated == MS_ERR_OOM) {
    if (op.err) *op.err = ms_error{};
    return run(StoreOp{epilogue, store_pair_ok(epilogue)}, 1);
  }
  MS_TRY(allocated);
  StoreOp part{EpilogueStore{1.0f, 0.0f, static_cast<float*>(partials.get()), N}, N % 2 == 0};
  part.split_stride = size_t(M) * N;
  MS_TRY(run(part, splits));
  MS_TRY(sum_split_partials(op, M, N, splits, static_cast<const float*>(partials.get()), epilogue));
  return partials.release(op);
}

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_GEMM_EPILOGUE_OPS_CUH
