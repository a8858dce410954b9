/*
 * transformer.cu — the GPT-2 forward ops on the GPU (transformer.cuh; math in backend.h).
 *
 * Simple kernels, chosen to be obviously correct rather than fast:
 *   - row ops (cross-entropy over fp32 or bf16 logits, argmax, the KL divergence of two rows of
 *     logits, layer norm of rows wider than 1,024): one block of kThreads threads per row, fp32
 *     accumulation through block_sum / block reductions with a fixed tree (deterministic); layer
 *     norm of narrower rows (the models' widths): a warp per row, the row in registers; the
 *     cross-entropy of rows of a multiple of 8 logits (the unembedding's output, a memory-bound
 *     read of B·T·V values) reads them once, in 16-byte chunks, with an online softmax;
 *   - elementwise ops (activations, add, embedding gathers, the q/k/v split): grid-stride loops;
 *   - linear: gemm<T> (gemm.cuh), T = float, or __nv_bfloat16 in MS_PREC_BF16 mode, where x and W
 *     are first rounded to bf16 copies in temporary device memory (as sae.cu does), then an fp32
 *     bias add (in the tensor GEMM's epilogue at bf16; a pass of its own otherwise); a bf16 output
 *     is written by the epilogue where it does the bias and activation, else rounded after them;
 *   - attention: one warp per (batch, head, query); lane l holds dimensions l, l + 32, ... of the
 *     query and of its output accumulator (head size <= 32 * kAttnDimsPerLane), and walks the
 *     cached keys 0 .. p with an online softmax (running max and sum), so no T x T matrix exists;
 *     attention_lse also stores each query's log-sum-exp m + log l for the backward pass. Whole
 *     sequences without a cache beyond them (training, a forward without generation) use the
 *     tiled kernels of attention_tiled.cu for head sizes 32 and 64, or at bf16 the tensor-core
 *     kernels of attention_mma.cu unless MONOSEMANTIC_CUDA_ATTENTION=tiled.
 * Index checks (token ids, targets) run as a kernel that finds the first bad index with an
 * integer atomicMin before anything is written, so a failing call leaves its outputs untouched.
 * Reading its result waits for the device, so callers that checked the indices on the host
 * (indices_checked: the model's forward, the trainer) skip it.
 */
#include "transformer.cuh"

#include <climits>
#include <cmath>
#include <cstdint>

#include "activation.cuh"
#include "attention_mma.cuh"
#include "attention_tiled.cuh"
#include "common.cuh"
#include "gemm.cuh"
#include "gemm_tensor.cuh"

namespace ms::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kAttnWarps = 4;                         // queries per attention block
constexpr int kAttnDimsPerLane = 8;                   // head size <= 32 * 8 = 256

// ---- device helpers -----------------------------------------------------------------------------

// NaN counts as larger than every number (torch.argmax); otherwise the usual order.
__device__ __forceinline__ bool beats(float a, float b) { return (isnan(a) && !isnan(b)) || a > b; }

// The better of two (value, index) candidates; index -1 = none. Equal values: the smaller index.
__device__ __forceinline__ void argmax_combine(float& v, int& i, float ov, int oi) {
  if (oi < 0) return;
  if (i < 0 || beats(ov, v) || (!beats(v, ov) && oi < i)) {
    v = ov;
    i = oi;
  }
}

// ---- kernels ------------------------------------------------------------------------------------

// Block r = row r of x [rows, C] (rows wider than kWarpRowMaxC), out as Out (float or bf16,
// rounded). out may equal x: every read of x[r, :] precedes the last block_sum, and each thread
// then reads x[r, j] before writing out[r, j] for its own j.
template <typename Out>
__global__ void __launch_bounds__(kThreads)
    layernorm_kernel(int C, float eps, const float* x, const float* __restrict__ weight,
                     const float* __restrict__ bias, Out* out, float* __restrict__ mean,
                     float* __restrict__ rstd) {
  __shared__ float scratch[33];
  const size_t r = blockIdx.x;
  const float* xr = x + r * C;  // x[r, :] at x[r*C]
  Out* yr = out + r * C;        // out[r, :] at out[r*C]
  float s = 0.0f;
  for (int j = threadIdx.x; j < C; j += blockDim.x) s += xr[j];
  const float m = block_sum(s, scratch) / float(C);
  float ss = 0.0f;
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    const float d = xr[j] - m;
    ss += d * d;
  }
  const float rs = 1.0f / sqrtf(block_sum(ss, scratch) / float(C) + eps);
  for (int j = threadIdx.x; j < C; j += blockDim.x) yr[j] = from_float<Out>((xr[j] - m) * rs * weight[j] + bias[j]);
  if (threadIdx.x == 0) {
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = rs;
  }
}

// layernorm_kernel for rows of C <= 32 PER (out as Out): warp w of block b takes row r = b kRowsPerWarpBlock + w,
// lane l holding x[r, l + 32 i] (i < PER) in registers, so the row is read once, and the sums are
// warp shuffles (no block barriers: a block-per-row kernel leaves most of its threads idle on
// narrow rows and waits on its barriers). out may equal x: a lane writes only its own elements,
// after reading them.
template <int PER, typename Out>
__global__ void __launch_bounds__(kThreads)
    layernorm_warp_kernel(int rows, int C, float eps, const float* x, const float* __restrict__ weight,
                          const float* __restrict__ bias, Out* out, float* __restrict__ mean,
                          float* __restrict__ rstd) {
  const int lane = threadIdx.x & 31;
  const size_t r = size_t(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / 32;
  if (r >= size_t(rows)) return;  // whole warps only: rows never split a warp
  const float* xr = x + r * C;  // x[r, :] at x[r*C]
  Out* yr = out + r * C;        // out[r, :] at out[r*C]
  float held[PER];              // held[i] = x[r, lane + 32 i], 0 past C
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int j = lane + 32 * i;
    held[i] = j < C ? xr[j] : 0.0f;
    s += held[i];
  }
  const float m = warp_allsum(s) / float(C);
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const float d = lane + 32 * i < C ? held[i] - m : 0.0f;
    ss += d * d;
  }
  const float rs = 1.0f / sqrtf(warp_allsum(ss) / float(C) + eps);
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int j = lane + 32 * i;
    if (j < C) yr[j] = from_float<Out>((held[i] - m) * rs * weight[j] + bias[j]);
  }
  if (lane == 0) {
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = rs;
  }
}

// dst[k] = bf16(src[k]) for k < count (round to nearest even).
__global__ void to_bf16_kernel(const float* __restrict__ src, bf16* __restrict__ dst, size_t count) {
  for (size_t k = size_t(blockIdx.x) * blockDim.x + threadIdx.x; k < count; k += size_t(gridDim.x) * blockDim.x)
    dst[k] = __float2bfloat16_rn(src[k]);
}

// y[r, j] += bias[j] for y [rows, cols]; idx = r*cols + j.
__global__ void add_row_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, size_t total, int cols) {
  for (size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x)
    y[idx] += bias[idx % size_t(cols)];
}

// out[i] = act(x[i]); out may equal x (each element is read once, then written).
__global__ void activation_kernel(int kind, size_t count, const float* x, float* out) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) {
    out[i] = activate(kind, x[i]);
  }
}

// out[i] = a[i] + b[i]; out may equal a or b.
__global__ void add_kernel(size_t count, const float* a, const float* b, float* out) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

// idx = r*C + c over rows = B*T token rows, r = b*T + t:
// tok_out[r, c] = wte[ids[r], c]; pos_out[r, c] = wpe[pos_offset + t, c]. ids already checked.
__global__ void embed_kernel(size_t total, int T, int C, int pos_offset, const int32_t* __restrict__ ids,
                             const float* __restrict__ wte, const float* __restrict__ wpe,
                             float* __restrict__ tok_out, float* __restrict__ pos_out) {
  for (size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const size_t r = idx / size_t(C), c = idx % size_t(C);
    const size_t t = r % size_t(T);
    const float tok = wte[size_t(ids[r]) * C + c];             // wte[ids[r], c]
    const float pos = wpe[(size_t(pos_offset) + t) * C + c];  // wpe[pos_offset + t, c]
    if (pos_out) {
      tok_out[idx] = tok;
      pos_out[idx] = pos;
    } else {  // their sum only
      tok_out[idx] = tok + pos;
    }
  }
}

// idx = r*C + c over rows = B*T, r = b*T + t: q[r, c] = qkv[r, c];
// k_cache[b, offset + t, c] = qkv[r, C + c]; v_cache[b, offset + t, c] = qkv[r, 2C + c].
__global__ void split_qkv_kernel(size_t total, int T, int C, int Tmax, int offset, const float* __restrict__ qkv,
                                 float* __restrict__ q, float* __restrict__ k_cache, float* __restrict__ v_cache) {
  for (size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const size_t r = idx / size_t(C), c = idx % size_t(C);
    const size_t b = r / size_t(T), t = r % size_t(T);
    const float* src = qkv + r * 3 * size_t(C);                           // qkv[r, :] at qkv[r*3C]
    const size_t cache = (b * size_t(Tmax) + size_t(offset) + t) * C + c;  // cache[b, offset + t, c]
    q[idx] = src[c];
    k_cache[cache] = src[C + c];
    v_cache[cache] = src[2 * size_t(C) + c];
  }
}

// Warp w of block blk handles task = blk*kAttnWarps + w = (b*n_head + h)*T + t (the query at
// position p = offset + t of head h in sequence b). Lane l owns head dimensions d = l + 32 i.
// lse (optional, [B, n_head, T]): the log of the softmax denominator, m + log l.
__global__ void __launch_bounds__(kAttnWarps * 32)
    attention_kernel(size_t tasks, int T, int Tmax, int offset, int C, int n_head, int hd, float scale,
                     const float* __restrict__ q, const float* __restrict__ k_cache,
                     const float* __restrict__ v_cache, float* __restrict__ out, float* __restrict__ lse) {
  const int lane = threadIdx.x & 31;
  const size_t task = size_t(blockIdx.x) * kAttnWarps + (threadIdx.x >> 5);
  if (task >= tasks) return;  // uniform per warp; no block-wide synchronisation below
  const size_t t = task % size_t(T);
  const size_t h = (task / size_t(T)) % size_t(n_head);
  const size_t b = task / (size_t(T) * size_t(n_head));
  const size_t p = size_t(offset) + t;
  const float* qr = q + (b * T + t) * C + h * hd;              // q[b*T + t, h*hd : (h+1)*hd]
  const float* kb = k_cache + b * size_t(Tmax) * C + h * hd;   // k_cache[b, 0, h*hd]; key j at + j*C
  const float* vb = v_cache + b * size_t(Tmax) * C + h * hd;   // v_cache[b, 0, h*hd]; value j at + j*C
  float qv[kAttnDimsPerLane], acc[kAttnDimsPerLane];
#pragma unroll
  for (int i = 0; i < kAttnDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < hd ? qr[d] : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (size_t j = 0; j <= p; ++j) {
    const float* kr = kb + j * C;
    const float* vr = vb + j * C;
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kAttnDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) s += qv[i] * kr[d];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    s = __shfl_sync(0xffffffffu, s, 0) * scale;  // every lane holds lane 0's score
    if (s > m) {  // new running maximum: rescale what has been accumulated
      const float c = expf(m - s);
      l *= c;
#pragma unroll
      for (int i = 0; i < kAttnDimsPerLane; ++i) acc[i] *= c;
      m = s;
    }
    const float e = expf(s - m);
    l += e;
#pragma unroll
    for (int i = 0; i < kAttnDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) acc[i] += e * vr[d];
    }
  }
  float* orow = out + (b * T + t) * C + h * hd;  // out[b*T + t, h*hd : (h+1)*hd]
#pragma unroll
  for (int i = 0; i < kAttnDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) orow[d] = acc[i] / l;
  }
  if (lse && lane == 0) lse[task] = m + logf(l);  // lse[b, h, t]: task = (b*n_head + h)*T + t
}

// Block r = row r of logits [rows, V] (float or bf16, computed with in fp32): out[r] =
// logsumexp(logits[r, :]) - logits[r, targets[r]], or 0 for targets[r] < 0. Targets >= V were
// rejected before the launch.
template <typename In>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(int V, const In* __restrict__ logits, const int32_t* __restrict__ targets,
                         float* __restrict__ out) {
  __shared__ float scratch[33];
  const size_t r = blockIdx.x;
  const int32_t target = targets[r];
  if (target < 0) {  // uniform per block, before any synchronisation
    if (threadIdx.x == 0) out[r] = 0.0f;
    return;
  }
  const In* lr = logits + r * V;  // logits[r, :] at logits[r*V]
  float m = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, to_float(lr[v]));
  m = block_max(m, scratch);
  float s = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(to_float(lr[v]) - m);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) out[r] = m + logf(s) - to_float(lr[target]);
}

// cross_entropy_kernel for rows that can be read in 16-byte chunks (rows_in_chunks8): one pass.
// Thread x walks chunks x, x + kThreads, ... (chunk c = values 8c .. 8c + 7) keeping a running
// maximum m and sum s of exp(value - m), rescaled when m grows; then the block's maximum M and
// sum of s exp(m - M). A chunk whose values are all -inf (masked) while m is -inf adds nothing; a
// NaN anywhere makes the loss NaN, as in cross_entropy_kernel (fmaxf would drop it from m).
template <typename In>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_chunked_kernel(int V, const In* __restrict__ logits, const int32_t* __restrict__ targets,
                                 float* __restrict__ out) {
  __shared__ float scratch[33];
  const size_t r = blockIdx.x;
  const int32_t target = targets[r];
  if (target < 0) {  // uniform per block, before any synchronisation
    if (threadIdx.x == 0) out[r] = 0.0f;
    return;
  }
  const In* lr = logits + r * V;  // logits[r, :] at logits[r*V]
  float m = -INFINITY, s = 0.0f;
  bool nan = false;
  for (int c = threadIdx.x; c < V / 8; c += blockDim.x) {
    float v[8];
    load8(lr + 8 * c, v);  // logits[r, 8c .. 8c + 7]
    float cm = v[0];
#pragma unroll
    for (int e = 1; e < 8; ++e) cm = fmaxf(cm, v[e]);
#pragma unroll
    for (int e = 0; e < 8; ++e) nan |= v[e] != v[e];
    if (cm > m) {
      s = m == -INFINITY ? 0.0f : s * expf(m - cm);
      m = cm;
    }
    if (m == -INFINITY) continue;
#pragma unroll
    for (int e = 0; e < 8; ++e) s += expf(v[e] - m);
  }
  const float M = block_max(m, scratch);
  s = nan ? NAN : m == -INFINITY ? 0.0f : s * expf(m - M);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) out[r] = M + logf(s) - to_float(lr[target]);
}

// Block r = row r of p, q [rows, V]: out[r] = KL(softmax(p[r]) || softmax(q[r])). With
// a_v = p_v - max p, b_v = q_v - max q, e_v = exp(a_v), sp = sum e_v, sq = sum exp(b_v):
// KL = sum_v (e_v / sp) (a_v - b_v) - log sp + log sq.
__global__ void __launch_bounds__(kThreads)
    kl_rows_kernel(int V, const float* __restrict__ p_logits, const float* __restrict__ q_logits,
                   float* __restrict__ out) {
  __shared__ float scratch[33];
  const size_t r = blockIdx.x;
  const float* p = p_logits + r * V;  // p[r, :] at p_logits[r*V]
  const float* q = q_logits + r * V;  // q[r, :] at q_logits[r*V]
  float mp = -INFINITY, mq = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    mp = fmaxf(mp, p[v]);
    mq = fmaxf(mq, q[v]);
  }
  mp = block_max(mp, scratch);
  mq = block_max(mq, scratch);
  float sp = 0.0f, sq = 0.0f, weighted = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float a = p[v] - mp, b = q[v] - mq;
    const float e = expf(a);
    sp += e;
    sq += expf(b);
    if (e != 0.0f) weighted += e * (a - b);  // a masked (-inf) entry of p adds nothing: not 0 * -inf = NaN
  }
  sp = block_sum(sp, scratch);
  sq = block_sum(sq, scratch);
  weighted = block_sum(weighted, scratch);
  if (threadIdx.x == 0) out[r] = weighted / sp - logf(sp) + logf(sq);
}

// Block r = row r of logits [rows, V]: out[r] = the first index of the largest value.
__global__ void __launch_bounds__(kThreads)
    argmax_rows_kernel(int V, const float* __restrict__ logits, int32_t* __restrict__ out) {
  __shared__ float best_v[32];
  __shared__ int best_i[32];
  const size_t r = blockIdx.x;
  const float* lr = logits + r * V;  // logits[r, :] at logits[r*V]
  float bv = 0.0f;
  int bi = -1;
  for (int v = threadIdx.x; v < V; v += blockDim.x)  // increasing v: strict beats keeps the first
    if (bi < 0 || beats(lr[v], bv)) {
      bv = lr[v];
      bi = v;
    }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_down_sync(0xffffffffu, bv, o);
    const int oi = __shfl_down_sync(0xffffffffu, bi, o);
    argmax_combine(bv, bi, ov, oi);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    best_v[warp] = bv;
    best_i[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    bv = lane < warps ? best_v[lane] : 0.0f;
    bi = lane < warps ? best_i[lane] : -1;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_down_sync(0xffffffffu, bv, o);
      const int oi = __shfl_down_sync(0xffffffffu, bi, o);
      argmax_combine(bv, bi, ov, oi);
    }
    if (lane == 0) out[r] = bi;
  }
}

// ---- host helpers -------------------------------------------------------------------------------

}  // namespace

// ---- host helpers shared with transformer_grad.cu (transformer.cuh) -----------------------------

int launch_to_bf16(const Op& op, const float* src, bf16* dst, size_t count) {
  to_bf16_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(src, dst, count);
  return check_launch(op, "to_bf16_kernel");
}

int check_targets(const Op& op, const char* name, const int32_t* targets, int rows, int V, int indices_checked) {
  if (indices_checked) return MS_OK;
  long long bad = -1;
  int32_t bad_value = 0;
  MS_TRY(find_out_of_range(op, targets, size_t(rows), INT_MIN, V, &bad, &bad_value));
  if (bad >= 0)
    return invalid(op.err, name, "targets[%lld] = %d is outside the vocabulary [0, %d)", bad, int(bad_value), V);
  return MS_OK;
}

// ---- public entry points ------------------------------------------------------------------------

int layernorm(int rows, int C, float eps, const float* x, const float* weight, const float* bias,
              float* out, uint16_t* out_bf16, float* mean, float* rstd, ms_error* err) {
  const char* name = "layernorm";
  if (rows <= 0 || C <= 0) return invalid(err, name, "bad shape [%d, %d]", rows, C);
  if (!(eps >= 0.0f)) return invalid(err, name, "eps must be >= 0 (got %g)", double(eps));
  MS_REQUIRE(x);
  MS_REQUIRE(weight);
  MS_REQUIRE(bias);
  if (!out && !out_bf16) return invalid(err, name, "out is null");
  Op op;
  MS_TRY(begin(op, err, name));
  const auto run = [&](auto* y) {  // y: out as float or bf16
    if (C <= kWarpRowMaxC) {  // a warp per row
      const unsigned int blocks = static_cast<unsigned int>((size_t(rows) + kRowsPerWarpBlock - 1) / kRowsPerWarpBlock);
      with_lane_count(C, [&](auto per) {
        layernorm_warp_kernel<decltype(per)::value><<<blocks, kThreads, 0, op.stream>>>(rows, C, eps, x, weight, bias, y,
                                                                                       mean, rstd);
      });
      return check_launch(op, "layernorm_warp_kernel");
    }
    layernorm_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, op.stream>>>(C, eps, x, weight, bias, y, mean,
                                                                                   rstd);
    return check_launch(op, "layernorm_kernel");
  };
  MS_TRY(out_bf16 ? run(reinterpret_cast<bf16*>(out_bf16)) : run(out));
  return finish(op);
}

int linear(int rows, int n_in, int n_out, int trans_w, int precision, const float* x, const uint16_t* x_bf16,
           const float* W, const float* bias, float* out, uint16_t* out_bf16, int act, int accumulate,
           ms_error* err) {
  const char* name = "linear";
  if (rows <= 0 || n_in <= 0 || n_out <= 0)
    return invalid(err, name, "bad shape: rows %d, n_in %d, n_out %d", rows, n_in, n_out);
  if (act != MS_ACT_NONE && act != MS_ACT_GELU_TANH && act != MS_ACT_GELU_ERF && act != MS_ACT_RELU)
    return invalid(err, name, "unknown activation %d", act);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16)
    return invalid(err, name, "precision: unknown value %d", precision);
  if ((out_bf16 || x_bf16) && precision != MS_PREC_BF16)
    return invalid(err, name, "a bf16 input or output needs BF16 precision");
  if (!x && !x_bf16) return invalid(err, name, "x is null");
  MS_REQUIRE(W);
  if (!out && !out_bf16) return invalid(err, name, "out is null");
  if (accumulate && (out_bf16 || !out || act != MS_ACT_NONE))
    return invalid(err, name, "accumulate needs an fp32 out and no activation");
  const size_t R = size_t(rows), K = size_t(n_in), N = size_t(n_out);
  const bool tw = trans_w != 0;
  const int ldw = tw ? n_in : n_out;  // W [n_out, n_in] (transposed use) or [n_in, n_out]
  bf16* y_bf = reinterpret_cast<bf16*>(out_bf16);
  Op op;
  MS_TRY(begin(op, err, name));
  // out[R, N] = x[R, K] op(W)[K, N]
  DeviceScratch scratch;
  bool bias_added = false, act_applied = false, rounded = false;  // by the product's epilogue
  // The fp32 result: out, or a temporary when a bf16 output is not written by the epilogue, or
  // when an accumulated one is not added to out's values by it (then added by add_kernel at the end).
  float* y = out;
  bool sum_apart = false;
  if (precision == MS_PREC_BF16) {
    // Temporaries: bf16(x) [R, K] (unless x is given in bf16), bf16(W) [K*N], and the fp32 result
    // [R, N] when the epilogue cannot write the bf16 output (simple kernels, an activation without a
    // bias, or a transposed weight with an activation) or add it to out (simple kernels).
    const bool tensor = use_tensor_kernels();
    const bool act_epilogue = tensor && epilogue_activation(act) && bias && !tw;
    sum_apart = accumulate && !tensor;
    const bool staged = (y_bf && !(tensor && (act == MS_ACT_NONE || act_epilogue))) || sum_apart;
    const size_t x_bytes = x_bf16 ? 0 : align_up(R * K * sizeof(bf16)), w_bytes = align_up(K * N * sizeof(bf16));
    MS_TRY(scratch.allocate(op, x_bytes + w_bytes + (staged ? R * N * sizeof(float) : 0)));
    char* base = static_cast<char*>(scratch.get());
    const bf16* x_bf = x_bf16 ? reinterpret_cast<const bf16*>(x_bf16) : reinterpret_cast<bf16*>(base);
    bf16* W_bf = reinterpret_cast<bf16*>(base + x_bytes);
    if (staged) y = reinterpret_cast<float*>(base + x_bytes + w_bytes);
    if (!x_bf16) MS_TRY(launch_to_bf16(op, x, reinterpret_cast<bf16*>(base), R * K));
    MS_TRY(launch_to_bf16(op, W, W_bf, K * N));
    bf16* epi_bf = staged ? nullptr : y_bf;  // the epilogue writes the bf16 output itself
    if (act_epilogue) {  // bias and activation in the epilogue
      EpilogueBiasAct epilogue{bias, epi_bf ? nullptr : y, epi_bf, n_out, nullptr, nullptr};
      epilogue.act = act;
      MS_TRY(gemm_tensor(op, false, false, rows, n_out, n_in, x_bf, n_in, W_bf, ldw, epilogue));
      bias_added = act_applied = true;
    } else if (tensor) {  // the bias add (and out's values when accumulating) in the product's epilogue
      EpilogueStore store{1.0f, accumulate ? 1.0f : 0.0f, epi_bf ? nullptr : y, n_out, bias};
      store.C_bf = epi_bf;
      MS_TRY(gemm_tensor(op, false, tw, rows, n_out, n_in, x_bf, n_in, W_bf, ldw, store));
      bias_added = true;
    } else {
      MS_TRY(gemm<bf16>(op, false, tw, rows, n_out, n_in, 1.0f, x_bf, n_in, W_bf, ldw, 0.0f, y, n_out));
    }
    rounded = epi_bf != nullptr;
  } else {
    sum_apart = accumulate != 0;
    if (sum_apart) {
      MS_TRY(scratch.allocate(op, R * N * sizeof(float)));
      y = static_cast<float*>(scratch.get());
    }
    MS_TRY(gemm<float>(op, false, tw, rows, n_out, n_in, 1.0f, x, n_in, W, ldw, 0.0f, y, n_out));
  }
  if (bias && !bias_added) {
    const size_t total = R * N;
    add_row_bias_kernel<<<grid_stride_blocks(total), kThreads, 0, op.stream>>>(y, bias, total, n_out);
    MS_TRY(check_launch(op, "add_row_bias_kernel"));
  }
  if (act != MS_ACT_NONE && !act_applied) {
    activation_kernel<<<grid_stride_blocks(R * N), kThreads, 0, op.stream>>>(act, R * N, y, y);
    MS_TRY(check_launch(op, "activation_kernel"));
  }
  if (y_bf && !rounded) MS_TRY(launch_to_bf16(op, y, y_bf, R * N));
  if (sum_apart) {  // out = out + y, add()'s addition
    add_kernel<<<grid_stride_blocks(R * N), kThreads, 0, op.stream>>>(R * N, out, y, out);
    MS_TRY(check_launch(op, "add_kernel"));
  }
  MS_TRY(finish(op));
  return scratch.release(op);
}

int activation(int kind, size_t count, const float* x, float* out, ms_error* err) {
  const char* name = "activation";
  if (kind != MS_ACT_GELU_TANH && kind != MS_ACT_GELU_ERF && kind != MS_ACT_RELU)
    return invalid(err, name, "unknown activation %d", kind);
  if (count == 0) return MS_OK;
  MS_REQUIRE(x);
  MS_REQUIRE(out);
  Op op;
  MS_TRY(begin(op, err, name));
  activation_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(kind, count, x, out);
  MS_TRY(check_launch(op, "activation_kernel"));
  return finish(op);
}

int add(size_t count, const float* a, const float* b, float* out, ms_error* err) {
  const char* name = "add";
  if (count == 0) return MS_OK;
  MS_REQUIRE(a);
  MS_REQUIRE(b);
  MS_REQUIRE(out);
  Op op;
  MS_TRY(begin(op, err, name));
  add_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(count, a, b, out);
  MS_TRY(check_launch(op, "add_kernel"));
  return finish(op);
}

int embed(int batch, int T, int C, int V, int n_positions, int pos_offset, const int32_t* ids,
          const float* wte, const float* wpe, float* tok_out, float* pos_out, int indices_checked, ms_error* err) {
  const char* name = "embed";
  if (batch <= 0 || T <= 0 || C <= 0 || V <= 0 || n_positions <= 0)
    return invalid(err, name, "bad shape: batch %d, T %d, C %d, V %d, n_positions %d", batch, T, C, V,
                   n_positions);
  if (pos_offset < 0 || int64_t(pos_offset) + T > n_positions)
    return invalid(err, name, "positions %d .. %lld are outside [0, %d)", pos_offset,
                   static_cast<long long>(pos_offset) + T - 1, n_positions);
  MS_REQUIRE(ids);
  MS_REQUIRE(wte);
  MS_REQUIRE(wpe);
  MS_REQUIRE(tok_out);
  const size_t rows = size_t(batch) * size_t(T);
  Op op;
  MS_TRY(begin(op, err, name));
  // The index check waits for the device; the caller may have checked the indices on the host.
  if (!indices_checked) {
    long long bad = -1;
    int32_t bad_value = 0;
    MS_TRY(find_out_of_range(op, ids, rows, 0, V, &bad, &bad_value));
    if (bad >= 0)
      return invalid(err, name, "ids[%lld] = %d is outside the vocabulary [0, %d)", bad, int(bad_value), V);
  }
  const size_t total = rows * size_t(C);
  embed_kernel<<<grid_stride_blocks(total), kThreads, 0, op.stream>>>(total, T, C, pos_offset, ids, wte, wpe,
                                                                      tok_out, pos_out);
  MS_TRY(check_launch(op, "embed_kernel"));
  return finish(op);
}

int split_qkv(int batch, int T, int C, int Tmax, int offset, const float* qkv, float* q, float* k_cache,
              float* v_cache, ms_error* err) {
  const char* name = "split_qkv";
  if (batch <= 0 || T <= 0 || C <= 0 || Tmax <= 0)
    return invalid(err, name, "bad shape: batch %d, T %d, C %d, Tmax %d", batch, T, C, Tmax);
  if (offset < 0 || int64_t(offset) + T > Tmax)
    return invalid(err, name, "offset %d + T %d exceeds Tmax %d", offset, T, Tmax);
  MS_REQUIRE(qkv);
  MS_REQUIRE(q);
  MS_REQUIRE(k_cache);
  MS_REQUIRE(v_cache);
  Op op;
  MS_TRY(begin(op, err, name));
  const size_t total = size_t(batch) * size_t(T) * size_t(C);
  split_qkv_kernel<<<grid_stride_blocks(total), kThreads, 0, op.stream>>>(total, T, C, Tmax, offset, qkv, q,
                                                                          k_cache, v_cache);
  MS_TRY(check_launch(op, "split_qkv_kernel"));
  return finish(op);
}

int linear_qkv(int batch, int T, int C, int Tmax, int offset, int precision, const float* x, const uint16_t* x_bf16,
               const float* W, const float* bias, float* q, float* k_cache, float* v_cache, ms_error* err) {
  const char* name = "linear_qkv";
  if (batch <= 0 || T <= 0 || C <= 0 || Tmax <= 0)
    return invalid(err, name, "bad shape: batch %d, T %d, C %d, Tmax %d", batch, T, C, Tmax);
  if (offset < 0 || int64_t(offset) + T > Tmax)
    return invalid(err, name, "offset %d + T %d exceeds Tmax %d", offset, T, Tmax);
  if (int64_t(batch) * T > INT_MAX || int64_t(C) * 3 > INT_MAX)
    return invalid(err, name, "batch %d * T %d rows or 3 * C %d columns overflow", batch, T, C);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16)
    return invalid(err, name, "precision: unknown value %d", precision);
  if (x_bf16 && precision != MS_PREC_BF16) return invalid(err, name, "a bf16 input needs BF16 precision");
  if (!x && !x_bf16) return invalid(err, name, "x is null");
  MS_REQUIRE(W);
  MS_REQUIRE(q);
  MS_REQUIRE(k_cache);
  MS_REQUIRE(v_cache);
  const int rows = batch * T, N = 3 * C;
  Op op;
  MS_TRY(begin(op, err, name));
  DeviceScratch scratch;
  if (precision == MS_PREC_BF16 && use_tensor_kernels()) {
    // Where linear's store would run the mma.sync kernel in one pass, the same kernel writes each
    // column where split_qkv would copy it: no [rows, 3C] temporary, no copy.
    const size_t x_bytes = x_bf16 ? 0 : align_up(size_t(rows) * C * sizeof(bf16)), w_bytes = align_up(size_t(C) * N * sizeof(bf16));
    MS_TRY(scratch.allocate(op, x_bytes + w_bytes));
    char* base = static_cast<char*>(scratch.get());
    const bf16* x_bf = x_bf16 ? reinterpret_cast<const bf16*>(x_bf16) : reinterpret_cast<bf16*>(base);
    bf16* W_bf = reinterpret_cast<bf16*>(base + x_bytes);
    if (store_on_general_kernel(false, false, rows, N, C, x_bf, C, W_bf, N)) {
      if (!x_bf16) MS_TRY(launch_to_bf16(op, x, reinterpret_cast<bf16*>(base), size_t(rows) * C));
      MS_TRY(launch_to_bf16(op, W, W_bf, size_t(C) * N));
      MS_TRY(gemm_tensor(op, false, false, rows, N, C, x_bf, C, W_bf, N, EpilogueSplitQkv{bias, q, k_cache, v_cache, C, T, Tmax, offset}));
      MS_TRY(finish(op));
      return scratch.release(op);
    }
    MS_TRY(scratch.release(op));
  }
  // Elsewhere linear into a temporary [rows, 3C], then split_qkv.
  MS_TRY(scratch.allocate(op, size_t(rows) * N * sizeof(float)));
  float* qkv = static_cast<float*>(scratch.get());
  MS_TRY(linear(rows, C, N, 0, precision, x, x_bf16, W, bias, qkv, nullptr, MS_ACT_NONE, 0, err));
  MS_TRY(split_qkv(batch, T, C, Tmax, offset, qkv, q, k_cache, v_cache, err));
  MS_TRY(finish(op));
  return scratch.release(op);
}

int attention(int batch, int T, int Tmax, int offset, int C, int n_head, int precision, const float* q,
              const float* k_cache, const float* v_cache, float* out, uint16_t* out_bf16, ms_error* err) {
  if (out_bf16 && precision != MS_PREC_BF16) return invalid(err, "attention", "a bf16 output needs BF16 precision");
  return attention_lse("attention", batch, T, Tmax, offset, C, n_head, precision, q, k_cache, v_cache,
                       out_bf16 ? nullptr : out, out_bf16, nullptr, err);
}

int attention_lse(const char* name, int batch, int T, int Tmax, int offset, int C, int n_head, int precision,
                  const float* q, const float* k_cache, const float* v_cache, float* out, uint16_t* out_bf16,
                  float* lse, ms_error* err) {
  if (batch <= 0 || T <= 0 || Tmax <= 0 || C <= 0 || n_head <= 0)
    return invalid(err, name, "bad shape: batch %d, T %d, Tmax %d, C %d, n_head %d", batch, T, Tmax, C, n_head);
  if (C % n_head != 0) return invalid(err, name, "C %d is not a multiple of n_head %d", C, n_head);
  if (offset < 0 || int64_t(offset) + T > Tmax)
    return invalid(err, name, "offset %d + T %d exceeds Tmax %d", offset, T, Tmax);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16) return invalid(err, name, "unknown precision %d", precision);
  const int hd = C / n_head;
  if (hd > 32 * kAttnDimsPerLane)
    return set_error(err, MS_ERR_UNSUPPORTED, 0, name, "head size %d exceeds this kernel's limit of %d", hd,
                     32 * kAttnDimsPerLane);
  MS_REQUIRE(q);
  MS_REQUIRE(k_cache);
  MS_REQUIRE(v_cache);
  if (!out && !out_bf16) return invalid(err, name, "out is null");
  Op op;
  MS_TRY(begin(op, err, name));
  const size_t tasks = size_t(batch) * size_t(n_head) * size_t(T);  // task = (b*n_head + h)*T + t
  const size_t blocks = (tasks + kAttnWarps - 1) / kAttnWarps;
  if (blocks > size_t(INT_MAX)) return invalid(err, name, "too many queries (%zu)", tasks);
  const float scale = 1.0f / sqrtf(float(hd));
  // Whole sequences (offset 0, no cache beyond them): at bf16 the tensor-core kernel where it is on
  // and has this head size (attention_mma.cuh), else the tiled kernel where it has it
  // (attention_tiled.cuh); neither with MONOSEMANTIC_CUDA_KERNELS=simple.
  // The tensor-core kernel writes a bf16 out itself; the others write fp32 (into a temporary when
  // the output is bf16, rounded after).
  const bool whole = offset == 0 && T == Tmax && use_tensor_kernels();
  if (whole && precision == MS_PREC_BF16 && mma_attention_enabled() &&
      mma_attention_supported(hd, (long long)batch * n_head, {q, k_cache, v_cache, out ? static_cast<const void*>(out) : out_bf16})) {
    MS_TRY(attention_forward_mma(op, batch, T, C, n_head, scale, q, k_cache, v_cache, out, out_bf16, lse));
    return finish(op);
  }
  DeviceScratch scratch;
  float* y = out;  // the fp32 result
  if (!out) {
    MS_TRY(scratch.allocate(op, tasks / size_t(n_head) * size_t(C) * sizeof(float)));  // [B*T, C]
    y = static_cast<float*>(scratch.get());
  }
  if (whole && tiled_attention_supported(true, hd, (long long)batch * n_head)) {
    MS_TRY(attention_train_tiled(op, batch, T, C, n_head, scale, q, k_cache, v_cache, y, lse));
  } else {
    attention_kernel<<<static_cast<unsigned int>(blocks), kAttnWarps * 32, 0, op.stream>>>(
        tasks, T, Tmax, offset, C, n_head, hd, scale, q, k_cache, v_cache, y, lse);
    MS_TRY(check_launch(op, "attention_kernel"));
  }
  if (!out) MS_TRY(launch_to_bf16(op, y, reinterpret_cast<bf16*>(out_bf16), tasks / size_t(n_head) * size_t(C)));
  MS_TRY(finish(op));
  return scratch.release(op);
}

int cross_entropy(int rows, int V, const float* logits, const uint16_t* logits_bf16, const int32_t* targets,
                  float* out, int indices_checked, ms_error* err) {
  const char* name = "cross_entropy";
  if (rows <= 0 || V <= 0) return invalid(err, name, "bad shape [%d, %d]", rows, V);
  if (!logits && !logits_bf16) return invalid(err, name, "logits is null");
  MS_REQUIRE(targets);
  MS_REQUIRE(out);
  Op op;
  MS_TRY(begin(op, err, name));
  // The index check waits for the device; the caller may have checked the indices on the host.
  MS_TRY(check_targets(op, name, targets, rows, V, indices_checked));
  const unsigned int grid = static_cast<unsigned int>(rows);
  const auto run = [&](const auto* in) {
    if (rows_in_chunks8(V, in)) cross_entropy_chunked_kernel<<<grid, kThreads, 0, op.stream>>>(V, in, targets, out);
    else cross_entropy_kernel<<<grid, kThreads, 0, op.stream>>>(V, in, targets, out);
  };
  if (logits_bf16) run(reinterpret_cast<const bf16*>(logits_bf16));
  else run(logits);
  MS_TRY(check_launch(op, "cross_entropy_kernel or cross_entropy_chunked_kernel"));
  return finish(op);
}

int argmax_rows(int rows, int V, const float* logits, int32_t* out, ms_error* err) {
  const char* name = "argmax_rows";
  if (rows <= 0 || V <= 0) return invalid(err, name, "bad shape [%d, %d]", rows, V);
  MS_REQUIRE(logits);
  MS_REQUIRE(out);
  Op op;
  MS_TRY(begin(op, err, name));
  argmax_rows_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, op.stream>>>(V, logits, out);
  MS_TRY(check_launch(op, "argmax_rows_kernel"));
  return finish(op);
}

int kl_rows(int rows, int V, const float* p_logits, const float* q_logits, float* out, ms_error* err) {
  const char* name = "kl_rows";
  if (rows <= 0 || V <= 0) return invalid(err, name, "bad shape [%d, %d]", rows, V);
  MS_REQUIRE(p_logits);
  MS_REQUIRE(q_logits);
  MS_REQUIRE(out);
  Op op;
  MS_TRY(begin(op, err, name));
  kl_rows_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, op.stream>>>(V, p_logits, q_logits, out);
  MS_TRY(check_launch(op, "kl_rows_kernel"));
  return finish(op);
}

}  // namespace ms::cuda
