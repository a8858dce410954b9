/*
 * transformer_grad.cu — the GPT-2 backward ops on the GPU (transformer_grad.cuh; math in
 * backend.h, ABI 5).
 *
 * Simple kernels, chosen to be obviously correct rather than fast:
 *   - attention backward: two warp-per-task kernels shaped like the forward's attention_kernel
 *     (lane l owns head dimensions l, l + 32, ...). The first takes one query t per warp: it
 *     computes D_t = dout_t . out_t (kept in a scratch array [B, n_head, T]) and dq_t, walking keys
 *     j <= t; the second takes one key j per warp and computes dk_j and dv_j, walking queries
 *     t >= j. Both recompute P_tj = exp(s_tj - lse_t) from the saved log-sum-exp, with the scores
 *     reduced exactly as the forward reduces them, so no T x T matrix exists and no output is
 *     shared between warps (no atomics, deterministic). Head size 32 uses the tiled kernels of
 *     attention_tiled.cu instead, and at bf16 (heads of 32 or 64) the tensor-core kernels of
 *     attention_mma.cu where they are on;
 *   - row ops: the cross-entropy, over fp32 or bf16 logits, one block of kThreads threads per row
 *     with block_sum / block_max reductions (common.cuh), keeping rows of up to 8,192 logits in
 *     registers, so they are read once (in 16-byte chunks where the row's length is a multiple of
 *     8), and writing its gradient in place or as bf16 (the operand
 *     of the unembedding's backward products, which then skip their cast of it); layer-norm dx a
 *     warp per row up to 1,024 columns (the row in registers, shuffle sums), a block per row above;
 *   - sums over rows into parameter gradients (layer-norm weight and bias, linear bias): blocks of
 *     32 columns x 8 row lanes over chunks of rows, one atomicAdd per block and column;
 *   - embedding backward: a grid-stride scatter-add with atomicAdd (order not deterministic);
 *   - linear backward: gemm<T> (gemm.cuh) with beta = 1 for accumulation, on bf16 copies of the
 *     operands in MS_PREC_BF16 mode (as linear), or on the bf16 gradient given (dout_bf16);
 *   - elementwise ops (activation backward, q/k/v merge, AdamW): grid-stride loops; AdamW uses
 *     __fmul_rn / __fadd_rn like adam.cu so that it matches the CPU backend's arithmetic.
 * Index checks (token ids, targets) run before anything is written (find_out_of_range), unless the
 * caller checked them on the host (indices_checked).
 */
#include "transformer_grad.cuh"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "activation.cuh"
#include "attention_mma.cuh"
#include "clip.h"
#include "attention_tiled.cuh"
#include "common.cuh"
#include "gemm.cuh"
#include "gemm_tensor.cuh"
#include "transformer.cuh"

namespace ms::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kAttnWarps = 4;                         // tasks per attention block
constexpr int kAttnDimsPerLane = 8;                   // head size <= 32 * 8 = 256, as the forward
constexpr int kColX = 32;                             // columns per column-sum block
constexpr int kColY = 8;                              // row lanes per column-sum block
constexpr int kColChunkRows = 256;                    // rows per column-sum block (at most 65535 chunks)

// ---- kernels ------------------------------------------------------------------------------------

// Warp w of block blk: task = blk*kAttnWarps + w = (b*n_head + h)*T + t, the query t of head h in
// sequence b. Rows of q, k, v, dout, out [B*T, C], of dq B*T rows of ld_grad floats; head h =
// columns h*hd .. (h+1)*hd - 1.
// D[task] = dout_t . out_t;  dq_t = scale * sum_{j <= t} P_tj (dout_t . v_j - D_t) k_j.
__global__ void __launch_bounds__(kAttnWarps * 32)
    attention_backward_dq_kernel(size_t tasks, int T, int C, int n_head, int hd, float scale,
                                 const float* __restrict__ dout, const float* __restrict__ q,
                                 const float* __restrict__ k, const float* __restrict__ v,
                                 const float* __restrict__ out, const float* __restrict__ lse,
                                 float* __restrict__ dq, int ld_grad, float* __restrict__ D) {
  const int lane = threadIdx.x & 31;
  const size_t task = size_t(blockIdx.x) * kAttnWarps + (threadIdx.x >> 5);
  if (task >= tasks) return;  // uniform per warp
  const size_t t = task % size_t(T);
  const size_t h = (task / size_t(T)) % size_t(n_head);
  const size_t b = task / (size_t(T) * size_t(n_head));
  const size_t base = b * size_t(T) * C + h * hd;  // [b*T, h*hd]; row j of the sequence at + j*C
  const size_t row_t = base + t * C;                // [b*T + t, h*hd]
  const size_t out_t = (b * size_t(T) + t) * ld_grad + h * hd;  // dq[b*T + t, h*hd ..] in rows of ld_grad
  float qv[kAttnDimsPerLane], gv[kAttnDimsPerLane], acc[kAttnDimsPerLane];
  float dp_part = 0.0f;
#pragma unroll
  for (int i = 0; i < kAttnDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < hd ? q[row_t + d] : 0.0f;
    gv[i] = d < hd ? dout[row_t + d] : 0.0f;
    if (d < hd) dp_part += gv[i] * out[row_t + d];
    acc[i] = 0.0f;
  }
  const float Dt = warp_allsum(dp_part);
  const float l = lse[task];
  for (size_t j = 0; j <= t; ++j) {
    const float* kr = k + base + j * C;  // k[b*T + j, head h]
    const float* vr = v + base + j * C;  // v[b*T + j, head h]
    float kv[kAttnDimsPerLane];
    float s = 0.0f, dp = 0.0f;
#pragma unroll
    for (int i = 0; i < kAttnDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      kv[i] = d < hd ? kr[d] : 0.0f;
      if (d < hd) {
        s += qv[i] * kv[i];
        dp += gv[i] * vr[d];
      }
    }
    s = warp_allsum(s) * scale;
    dp = warp_allsum(dp);
    const float ds = expf(s - l) * (dp - Dt);  // dS_tj = P_tj (dP_tj - D_t)
#pragma unroll
    for (int i = 0; i < kAttnDimsPerLane; ++i) acc[i] += ds * kv[i];
  }
#pragma unroll
  for (int i = 0; i < kAttnDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) dq[out_t + d] = acc[i] * scale;
  }
  if (lane == 0) D[task] = Dt;
}

// Warp w of block blk: task = blk*kAttnWarps + w = (b*n_head + h)*T + j, the key j of head h in
// sequence b. dk_j = scale * sum_{t >= j} dS_tj q_t;  dv_j = sum_{t >= j} P_tj dout_t, dk and dv
// B*T rows of ld_grad floats. lse and D are [B, n_head, T]: the entries of query t at
// (b*n_head + h)*T + t.
__global__ void __launch_bounds__(kAttnWarps * 32)
    attention_backward_dkdv_kernel(size_t tasks, int T, int C, int n_head, int hd, float scale,
                                   const float* __restrict__ dout, const float* __restrict__ q,
                                   const float* __restrict__ k, const float* __restrict__ v,
                                   const float* __restrict__ lse, const float* __restrict__ D,
                                   float* __restrict__ dk, float* __restrict__ dv, int ld_grad) {
  const int lane = threadIdx.x & 31;
  const size_t task = size_t(blockIdx.x) * kAttnWarps + (threadIdx.x >> 5);
  if (task >= tasks) return;  // uniform per warp
  const size_t j = task % size_t(T);
  const size_t bh = task / size_t(T);  // b*n_head + h
  const size_t h = bh % size_t(n_head);
  const size_t b = bh / size_t(n_head);
  const size_t base = b * size_t(T) * C + h * hd;  // [b*T, h*hd]; row t of the sequence at + t*C
  const size_t row_j = base + j * C;                // [b*T + j, h*hd]
  const size_t out_j = (b * size_t(T) + j) * ld_grad + h * hd;  // dk, dv[b*T + j, h*hd ..] in rows of ld_grad
  const float* lse_bh = lse + bh * T;               // lse[b, h, :]
  const float* D_bh = D + bh * T;                   // D[b, h, :]
  float kv[kAttnDimsPerLane], vv[kAttnDimsPerLane], acc_k[kAttnDimsPerLane], acc_v[kAttnDimsPerLane];
#pragma unroll
  for (int i = 0; i < kAttnDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    kv[i] = d < hd ? k[row_j + d] : 0.0f;
    vv[i] = d < hd ? v[row_j + d] : 0.0f;
    acc_k[i] = 0.0f;
    acc_v[i] = 0.0f;
  }
  for (size_t t = j; t < size_t(T); ++t) {
    const float* qr = q + base + t * C;     // q[b*T + t, head h]
    const float* gr = dout + base + t * C;  // dout[b*T + t, head h]
    float qt[kAttnDimsPerLane], gt[kAttnDimsPerLane];
    float s = 0.0f, dp = 0.0f;
#pragma unroll
    for (int i = 0; i < kAttnDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      qt[i] = d < hd ? qr[d] : 0.0f;
      gt[i] = d < hd ? gr[d] : 0.0f;
      if (d < hd) {
        s += qt[i] * kv[i];
        dp += gt[i] * vv[i];
      }
    }
    s = warp_allsum(s) * scale;
    dp = warp_allsum(dp);
    const float p = expf(s - lse_bh[t]);  // P_tj
    const float ds = p * (dp - D_bh[t]);  // dS_tj
#pragma unroll
    for (int i = 0; i < kAttnDimsPerLane; ++i) {
      acc_k[i] += ds * qt[i];
      acc_v[i] += p * gt[i];
    }
  }
#pragma unroll
  for (int i = 0; i < kAttnDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) {
      dk[out_j + d] = acc_k[i] * scale;
      dv[out_j + d] = acc_v[i];
    }
  }
}

// Block r = row r of [rows, C] (rows wider than kWarpRowMaxC): with n = (x - mean_r) rstd_r and
// g = dout * weight, dx[r, j] (= or +=) = rstd_r (g_j - mean(g) - n_j mean(g n)).
__global__ void __launch_bounds__(kThreads)
    layernorm_backward_dx_kernel(int C, const float* __restrict__ dout, const float* __restrict__ x,
                                 const float* __restrict__ weight, const float* __restrict__ mean,
                                 const float* __restrict__ rstd, float* __restrict__ dx, int accumulate) {
  __shared__ float scratch[33];
  const size_t r = blockIdx.x;
  const float* xr = x + r * C;     // x[r, :]
  const float* gr = dout + r * C;  // dout[r, :]
  float* dxr = dx + r * C;         // dx[r, :]
  const float m = mean[r], rs = rstd[r];
  float sg = 0.0f, sgn = 0.0f;
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    const float g = gr[j] * weight[j];
    sg += g;
    sgn += g * ((xr[j] - m) * rs);
  }
  const float mg = block_sum(sg, scratch) / float(C);
  const float mgn = block_sum(sgn, scratch) / float(C);
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    const float n = (xr[j] - m) * rs;
    const float val = (gr[j] * weight[j] - mg - n * mgn) * rs;
    dxr[j] = accumulate ? dxr[j] + val : val;
  }
}

// layernorm_backward_dx_kernel for rows of C <= 32 PER, a warp per row (r = b kRowsPerWarpBlock + w),
// lane l holding g and n of columns l + 32 i (i < PER) in registers: dout and x are read once, and
// the two means are warp shuffles.
template <int PER>
__global__ void __launch_bounds__(kThreads)
    layernorm_backward_dx_warp_kernel(int rows, int C, const float* __restrict__ dout, const float* __restrict__ x,
                                      const float* __restrict__ weight, const float* __restrict__ mean,
                                      const float* __restrict__ rstd, float* __restrict__ dx, int accumulate) {
  const int lane = threadIdx.x & 31;
  const size_t r = size_t(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / 32;
  if (r >= size_t(rows)) return;  // whole warps only
  const float* xr = x + r * C;     // x[r, :]
  const float* gr = dout + r * C;  // dout[r, :]
  float* dxr = dx + r * C;         // dx[r, :]
  const float m = mean[r], rs = rstd[r];
  float g[PER], n[PER];  // g[i] = dout[r, j] weight[j], n[i] = (x[r, j] - m) rs for j = lane + 32 i < C; else 0
  float sg = 0.0f, sgn = 0.0f;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int j = lane + 32 * i;
    g[i] = j < C ? gr[j] * weight[j] : 0.0f;
    n[i] = j < C ? (xr[j] - m) * rs : 0.0f;
    sg += g[i];
    sgn += g[i] * n[i];
  }
  const float mg = warp_allsum(sg) / float(C);
  const float mgn = warp_allsum(sgn) / float(C);
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int j = lane + 32 * i;
    if (j < C) {
      const float val = (g[i] - mg - n[i] * mgn) * rs;
      dxr[j] = accumulate ? dxr[j] + val : val;
    }
  }
}

// Block (bx, by), threads (tx, ty): column c = bx*kColX + tx over rows [by*chunk, (by+1)*chunk),
// row lane ty taking every kColY-th row. dbias[c] += sum_r dout[r, c] (when dbias); with x (layer
// norm), dweight[c] += sum_r dout[r, c] (x[r, c] - mean[r]) rstd[r]. One atomicAdd per block and column.
__global__ void __launch_bounds__(kColX * kColY)
    column_grads_kernel(int rows, int C, int chunk, const float* __restrict__ dout, const float* __restrict__ x,
                        const float* __restrict__ mean, const float* __restrict__ rstd,
                        float* __restrict__ dweight, float* __restrict__ dbias) {
  __shared__ float part_w[kColY][kColX], part_b[kColY][kColX];
  const int c = blockIdx.x * kColX + threadIdx.x;
  const int r0 = blockIdx.y * chunk;
  const int r1 = min(rows, r0 + chunk);
  float aw = 0.0f, ab = 0.0f;
  if (c < C) {
    for (int r = r0 + threadIdx.y; r < r1; r += kColY) {
      const size_t at = size_t(r) * C + c;  // [r, c]
      const float g = dout[at];
      ab += g;
      if (x) aw += g * ((x[at] - mean[r]) * rstd[r]);
    }
  }
  part_w[threadIdx.y][threadIdx.x] = aw;
  part_b[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int i = 1; i < kColY; ++i) {
      aw += part_w[i][threadIdx.x];
      ab += part_b[i][threadIdx.x];
    }
    if (dbias) atomicAdd(dbias + c, ab);
    if (x) atomicAdd(dweight + c, aw);
  }
}

// dpre[i] = dpost[i] * act'(pre[i]), pre as In (float or bf16); dpre may equal dpost (each element
// read, then written).
template <typename In>
__global__ void activation_backward_kernel(int kind, size_t count, const float* dpost, const In* __restrict__ pre,
                                           float* dpre) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) {
    const float x = to_float(pre[i]);
    if (kind == MS_ACT_GELU_TANH) {
      // 0.5 (1 + tanh u) + 0.5 x sech^2(u) s (1 + 3 c x^2), u = s (x + c x^3); the second term is 0
      // where sech^2 rounds to 0 (also where x^2 would overflow).
      const float th = tanhf(kSqrt2OverPi * (x + kGeluCubic * x * x * x));
      const float sech2 = 1.0f - th * th;
      const float tail = sech2 == 0.0f ? 0.0f : 0.5f * x * sech2 * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
      dpre[i] = dpost[i] * (0.5f * (1.0f + th) + tail);
    } else if (kind == MS_ACT_GELU_ERF) {
      // 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)
      const float slope = isinf(x) ? (x > 0.0f ? 1.0f : 0.0f) : 0.5f * (1.0f + erff(x * kInvSqrt2)) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
      dpre[i] = dpost[i] * slope;  // ±inf: the limits 1 and 0, not inf * 0 = NaN
    } else {
      dpre[i] = x > 0.0f ? dpost[i] : 0.0f;
    }
  }
}

// out[j] = float(out[j] + sum over tiles t in order of partial[t, j]) for j < cols, in double: the
// column sums of a tensor-core epilogue's per-tile partials added into a bias gradient. A thread a
// column.
__global__ void add_column_partials_kernel(int tiles, int cols, const double* __restrict__ partial,
                                           float* __restrict__ out) {
  const int j = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (j >= cols) return;
  double sum = 0.0;
  for (int t = 0; t < tiles; ++t) sum += partial[size_t(t) * cols + j];  // partial[t, j]
  out[j] = float(double(out[j]) + sum);
}

// Block r = row r of logits [rows, V] (In: float or bf16, computed with in fp32): losses[r] =
// logsumexp - logits[r, target]; then grad[r, v] = (softmax_v - [v == target]) * scale, as Out
// (rounded to nearest even for bf16); grad may be logits (in place, Out = In). Row 0 and loss 0
// for target < 0; targets >= V were rejected before the launch.
template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_backward_kernel(int V, const In* logits, const int32_t* __restrict__ targets,
                                  float* __restrict__ losses, float scale, Out* grad) {
  __shared__ float scratch[33];
  const size_t r = blockIdx.x;
  const In* lr = logits + r * V;  // logits[r, :] at logits[r*V]
  Out* gr = grad + r * V;            // grad[r, :]
  const int32_t target = targets[r];
  if (target < 0) {  // uniform per block, before any synchronisation
    for (int v = threadIdx.x; v < V; v += blockDim.x) gr[v] = from_float<Out>(0.0f);
    if (threadIdx.x == 0) losses[r] = 0.0f;
    return;
  }
  const float lt = to_float(lr[target]);  // read by every thread before the barriers below, so before any write
  float m = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, to_float(lr[v]));
  m = block_max(m, scratch);
  float s = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(to_float(lr[v]) - m);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) losses[r] = m + logf(s) - lt;
  const float inv_s = 1.0f / s;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float p = expf(to_float(lr[v]) - m) * inv_s;
    gr[v] = from_float<Out>((v == target ? p - 1.0f : p) * scale);
  }
}

// cross_entropy_backward_kernel for rows of V <= PER * kThreads logits: thread x keeps logits[r, x +
// kThreads i] (i < PER) in registers, so the row is read once and written once instead of read
// three times. Same reductions in the same order as the kernel above, so the same bits.
template <int PER, typename In, typename Out>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_backward_cached_kernel(int V, const In* logits, const int32_t* __restrict__ targets,
                                         float* __restrict__ losses, float scale, Out* grad) {
  __shared__ float scratch[33];
  const size_t r = blockIdx.x;
  const In* lr = logits + r * V;  // logits[r, :] at logits[r*V]
  Out* gr = grad + r * V;            // grad[r, :]
  const int32_t target = targets[r];
  if (target < 0) {  // uniform per block, before any synchronisation
    for (int v = threadIdx.x; v < V; v += blockDim.x) gr[v] = from_float<Out>(0.0f);
    if (threadIdx.x == 0) losses[r] = 0.0f;
    return;
  }
  const float lt = to_float(lr[target]);  // read by every thread before the barriers below, so before any write
  float held[PER];                        // held[i] = logits[r, threadIdx.x + kThreads i], -inf past V
  float m = -INFINITY;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int v = threadIdx.x + i * kThreads;
    held[i] = v < V ? to_float(lr[v]) : -INFINITY;
    m = fmaxf(m, held[i]);
  }
  m = block_max(m, scratch);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < PER; ++i)
    if (threadIdx.x + i * kThreads < V) s += expf(held[i] - m);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) losses[r] = m + logf(s) - lt;
  const float inv_s = 1.0f / s;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int v = threadIdx.x + i * kThreads;
    if (v < V) {
      const float p = expf(held[i] - m) * inv_s;
      gr[v] = from_float<Out>((v == target ? p - 1.0f : p) * scale);
    }
  }
}

// cross_entropy_backward_cached_kernel for rows that can be read in 16-byte chunks (rows_in_chunks8
// of logits and grad) of V <= 8 CHUNKS kThreads values: thread x keeps chunks x + kThreads i (i <
// CHUNKS; chunk c = values 8c .. 8c + 7) in registers and writes its gradient chunk by chunk, in
// as few load and store instructions as the row allows. The same reductions for fp32 and bf16
// logits, so equal values give equal bits.
template <int CHUNKS, typename In, typename Out>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_backward_chunked_kernel(int V, const In* logits, const int32_t* __restrict__ targets,
                                          float* __restrict__ losses, float scale, Out* grad) {
  __shared__ float scratch[33];
  const size_t r = blockIdx.x;
  const In* lr = logits + r * V;  // logits[r, :] at logits[r*V]
  Out* gr = grad + r * V;         // grad[r, :]
  const int chunks = V / 8;
  const int32_t target = targets[r];
  if (target < 0) {  // uniform per block, before any synchronisation
    const float zero[8] = {};
    for (int c = threadIdx.x; c < chunks; c += kThreads) store8(gr + 8 * c, zero);
    if (threadIdx.x == 0) losses[r] = 0.0f;
    return;
  }
  const float lt = to_float(lr[target]);  // read by every thread before the barriers below, so before any write
  float held[CHUNKS][8];                  // held[i] = logits[r, 8c .. 8c + 7], c = threadIdx.x + kThreads i; -inf past V
  float m = -INFINITY;
#pragma unroll
  for (int i = 0; i < CHUNKS; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c < chunks) {
      load8(lr + 8 * c, held[i]);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) held[i][e] = -INFINITY;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) m = fmaxf(m, held[i][e]);
  }
  m = block_max(m, scratch);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < CHUNKS; ++i)
    if (threadIdx.x + i * kThreads < chunks)
#pragma unroll
      for (int e = 0; e < 8; ++e) s += expf(held[i][e] - m);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) losses[r] = m + logf(s) - lt;
  const float inv_s = 1.0f / s;
#pragma unroll
  for (int i = 0; i < CHUNKS; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c >= chunks) continue;
    float g[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float p = expf(held[i][e] - m) * inv_s;
      g[e] = (8 * c + e == target ? p - 1.0f : p) * scale;
    }
    store8(gr + 8 * c, g);
  }
}

// idx = r*C + c over rows = B*T, r = b*T + t: dwte[ids[r], c] += dtok[r, c]; dwpe[t, c] += dpos[r, c].
__global__ void embed_backward_kernel(size_t total, int T, int C, const int32_t* __restrict__ ids,
                                      const float* dtok, const float* dpos, float* __restrict__ dwte,
                                      float* __restrict__ dwpe) {
  for (size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const size_t r = idx / size_t(C), c = idx % size_t(C);
    const size_t t = r % size_t(T);
    atomicAdd(dwte + size_t(ids[r]) * C + c, dtok[idx]);  // dwte[ids[r], c]
    atomicAdd(dwpe + t * C + c, dpos[idx]);               // dwpe[t, c]
  }
}

// p = decay p, then adam_kernel's step (adam.cu), with its rounding.
__global__ void adamw_kernel(size_t count, float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, float lr, float b1, float b2, float eps,
                             float inv_bias1, float inv_bias2, float grad_scale, float decay,
                             const float* __restrict__ clip_sum_sq, float clip_norm) {
  if (clip_sum_sq) grad_scale *= clip_factor(*clip_sum_sq, clip_norm);  // the norm, computed on the device
  const float one_minus_b1 = 1.0f - b1;
  const float one_minus_b2 = 1.0f - b2;
  for (size_t k = size_t(blockIdx.x) * blockDim.x + threadIdx.x; k < count; k += size_t(gridDim.x) * blockDim.x) {
    const float g = __fmul_rn(grad[k], grad_scale);
    const float mk = __fadd_rn(__fmul_rn(b1, m[k]), __fmul_rn(one_minus_b1, g));
    const float vk = __fadd_rn(__fmul_rn(b2, v[k]), __fmul_rn(__fmul_rn(one_minus_b2, g), g));
    m[k] = mk;
    v[k] = vk;
    const float p = __fmul_rn(param[k], decay);
    const float step = __fmul_rn(lr, __fmul_rn(mk, inv_bias1)) / (sqrtf(__fmul_rn(vk, inv_bias2)) + eps);
    param[k] = __fsub_rn(p, step);
  }
}

// ---- host helpers -------------------------------------------------------------------------------

// Queues column_grads_kernel over dout [rows, C] (see there); x == nullptr: dbias only.
int launch_column_grads(const Op& op, int rows, int C, const float* dout, const float* x, const float* mean,
                        const float* rstd, float* dweight, float* dbias) {
  const int chunks = int(std::min<long long>((rows + kColChunkRows - 1) / kColChunkRows, 65535));
  const int chunk = (rows + chunks - 1) / chunks;
  const dim3 grid(static_cast<unsigned int>((C + kColX - 1) / kColX), static_cast<unsigned int>(chunks));
  column_grads_kernel<<<grid, dim3(kColX, kColY), 0, op.stream>>>(rows, C, chunk, dout, x, mean, rstd, dweight,
                                                                  dbias);
  return check_launch(op, "column_grads_kernel");
}

}  // namespace

// ---- public entry points ------------------------------------------------------------------------

int attention_train(int batch, int T, int C, int n_head, int precision, const float* q, const float* k,
                    const float* v, float* out, float* lse, ms_error* err) {
  const char* name = "attention_train";
  MS_REQUIRE(lse);
  // Keys and values [B*T, C] are a cache [B, Tmax = T, C] filled from offset 0.
  return attention_lse(name, batch, T, T, 0, C, n_head, precision, q, k, v, out, nullptr, lse, err);
}

int attention_backward(int batch, int T, int C, int n_head, int precision, const float* dout, const float* q,
                       const float* k, const float* v, const float* out, const float* lse, float* dq, float* dk,
                       float* dv, int ld_grad, ms_error* err) {
  const char* name = "attention_backward";
  if (batch <= 0 || T <= 0 || C <= 0 || n_head <= 0)
    return invalid(err, name, "bad shape: batch %d, T %d, C %d, n_head %d", batch, T, C, n_head);
  if (C % n_head != 0) return invalid(err, name, "C %d is not a multiple of n_head %d", C, n_head);
  if (ld_grad < C) return invalid(err, name, "ld_grad %d is less than C %d", ld_grad, C);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16) return invalid(err, name, "unknown precision %d", precision);
  const int hd = C / n_head;
  if (hd > 32 * kAttnDimsPerLane)
    return set_error(err, MS_ERR_UNSUPPORTED, 0, name, "head size %d exceeds this kernel's limit of %d", hd,
                     32 * kAttnDimsPerLane);
  MS_REQUIRE(dout);
  MS_REQUIRE(q);
  MS_REQUIRE(k);
  MS_REQUIRE(v);
  MS_REQUIRE(out);
  MS_REQUIRE(lse);
  MS_REQUIRE(dq);
  MS_REQUIRE(dk);
  MS_REQUIRE(dv);
  const size_t tasks = size_t(batch) * size_t(n_head) * size_t(T);  // (b*n_head + h)*T + t
  const size_t blocks = (tasks + kAttnWarps - 1) / kAttnWarps;
  if (blocks > size_t(INT_MAX)) return invalid(err, name, "too many queries (%zu)", tasks);
  Op op;
  MS_TRY(begin(op, err, name));
  DeviceScratch scratch;  // D [B, n_head, T]
  MS_TRY(scratch.allocate(op, tasks * sizeof(float)));
  float* D = static_cast<float*>(scratch.get());
  const float scale = 1.0f / sqrtf(float(hd));
  // The kernels attention_train chose (transformer.cu attention_lse), by the same rules.
  if (use_tensor_kernels() && precision == MS_PREC_BF16 && mma_attention_enabled() &&
      mma_attention_supported(hd, (long long)batch * n_head, {dout, q, k, v, out, dq, dk, dv})) {
    MS_TRY(attention_backward_mma(op, batch, T, C, n_head, scale, dout, q, k, v, out, lse, dq, dk, dv, ld_grad, D));
    MS_TRY(finish(op));
    return scratch.release(op);
  }
  if (use_tensor_kernels() && tiled_attention_supported(false, hd, (long long)batch * n_head)) {
    MS_TRY(attention_backward_tiled(op, batch, T, C, n_head, scale, dout, q, k, v, out, lse, dq, dk, dv, ld_grad, D));
    MS_TRY(finish(op));
    return scratch.release(op);
  }
  const unsigned int grid = static_cast<unsigned int>(blocks);
  attention_backward_dq_kernel<<<grid, kAttnWarps * 32, 0, op.stream>>>(tasks, T, C, n_head, hd, scale, dout, q,
                                                                        k, v, out, lse, dq, ld_grad, D);
  MS_TRY(check_launch(op, "attention_backward_dq_kernel"));
  attention_backward_dkdv_kernel<<<grid, kAttnWarps * 32, 0, op.stream>>>(tasks, T, C, n_head, hd, scale, dout,
                                                                          q, k, v, lse, D, dk, dv, ld_grad);
  MS_TRY(check_launch(op, "attention_backward_dkdv_kernel"));
  MS_TRY(finish(op));
  return scratch.release(op);
}

int layernorm_backward(int rows, int C, const float* dout, const float* x, const float* weight, const float* mean,
                       const float* rstd, float* dx, float* dweight, float* dbias, int accumulate, ms_error* err) {
  const char* name = "layernorm_backward";
  if (rows <= 0 || C <= 0) return invalid(err, name, "bad shape [%d, %d]", rows, C);
  MS_REQUIRE(dout);
  MS_REQUIRE(x);
  MS_REQUIRE(weight);
  MS_REQUIRE(mean);
  MS_REQUIRE(rstd);
  MS_REQUIRE(dx);
  MS_REQUIRE(dweight);
  MS_REQUIRE(dbias);
  Op op;
  MS_TRY(begin(op, err, name));
  MS_TRY(launch_column_grads(op, rows, C, dout, x, mean, rstd, dweight, dbias));
  if (C <= kWarpRowMaxC) {  // a warp per row
    const unsigned int blocks = static_cast<unsigned int>((size_t(rows) + kRowsPerWarpBlock - 1) / kRowsPerWarpBlock);
    with_lane_count(C, [&](auto per) {
      layernorm_backward_dx_warp_kernel<decltype(per)::value><<<blocks, kThreads, 0, op.stream>>>(
          rows, C, dout, x, weight, mean, rstd, dx, accumulate);
    });
    MS_TRY(check_launch(op, "layernorm_backward_dx_warp_kernel"));
  } else {
    layernorm_backward_dx_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, op.stream>>>(
        C, dout, x, weight, mean, rstd, dx, accumulate);
    MS_TRY(check_launch(op, "layernorm_backward_dx_kernel"));
  }
  return finish(op);
}

int linear_backward(int rows, int n_in, int n_out, int trans_w, int precision, const float* dout, const float* x,
                    const uint16_t* x_bf16, const float* W, float* dx, float* dW, float* dbias, int accumulate,
                    const uint16_t* dout_bf16, ms_error* err) {
  const char* name = "linear_backward";
  if (rows <= 0 || n_in <= 0 || n_out <= 0)
    return invalid(err, name, "bad shape: rows %d, n_in %d, n_out %d", rows, n_in, n_out);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16)
    return invalid(err, name, "precision: unknown value %d", precision);
  if ((dout_bf16 || x_bf16) && precision != MS_PREC_BF16)
    return invalid(err, name, "a bf16 dout or x needs BF16 precision");
  if (dout_bf16 && dbias) return invalid(err, name, "dbias needs the fp32 dout");
  if (!dout_bf16) MS_REQUIRE(dout);
  if (dx) MS_REQUIRE(W);
  if (dW && !x && !x_bf16) return invalid(err, name, "x is null");
  const size_t R = size_t(rows), K = size_t(n_in), N = size_t(n_out);
  const bool tw = trans_w != 0;
  Op op;
  MS_TRY(begin(op, err, name));
  DeviceScratch scratch;
  if (precision == MS_PREC_BF16 && (dx || dW)) {
    // Temporaries: bf16(dout) [R, N] unless given; bf16(W) [K*N] when dx; bf16(x) [R, K] when dW,
    // unless given.
    Carver sizes(nullptr);
    if (!dout_bf16) sizes.take<bf16>(R * N);
    if (dx) sizes.take<bf16>(K * N);
    if (dW && !x_bf16) sizes.take<bf16>(R * K);
    MS_TRY(scratch.allocate(op, sizes.used()));
    Carver cv(scratch.get());
    bf16* dout_cast = dout_bf16 ? nullptr : cv.take<bf16>(R * N);
    const bf16* dout_bf = dout_bf16 ? reinterpret_cast<const bf16*>(dout_bf16) : dout_cast;
    bf16* W_bf = dx ? cv.take<bf16>(K * N) : nullptr;
    bf16* x_cast = dW && !x_bf16 ? cv.take<bf16>(R * K) : nullptr;
    const bf16* x_bf = x_bf16 ? reinterpret_cast<const bf16*>(x_bf16) : x_cast;
    if (dout_cast) MS_TRY(launch_to_bf16(op, dout, dout_cast, R * N));
    if (dx) {
      MS_TRY(launch_to_bf16(op, W, W_bf, K * N));
      // dx[R, K] = dout[R, N] op(W)^T: W [K, N] used transposed (ldb = N), or W [N, K] as is (ldb = K).
      MS_TRY(gemm<bf16>(op, false, !tw, rows, n_in, n_out, 1.0f, dout_bf, n_out, W_bf, tw ? n_in : n_out,
                        accumulate ? 1.0f : 0.0f, dx, n_in));
    }
    if (dW) {
      if (x_cast) MS_TRY(launch_to_bf16(op, x, x_cast, R * K));
      if (tw)  // dW[N, K] += dout^T x: dout stored [R, N] (lda = N), x [R, K] (ldb = K)
        MS_TRY(gemm<bf16>(op, true, false, n_out, n_in, rows, 1.0f, dout_bf, n_out, x_bf, n_in, 1.0f, dW, n_in));
      else  // dW[K, N] += x^T dout: x stored [R, K] (lda = K), dout [R, N] (ldb = N)
        MS_TRY(gemm<bf16>(op, true, false, n_in, n_out, rows, 1.0f, x_bf, n_in, dout_bf, n_out, 1.0f, dW, n_out));
    }
  } else {
    if (dx)
      MS_TRY(gemm<float>(op, false, !tw, rows, n_in, n_out, 1.0f, dout, n_out, W, tw ? n_in : n_out,
                         accumulate ? 1.0f : 0.0f, dx, n_in));
    if (dW) {
      if (tw)
        MS_TRY(gemm<float>(op, true, false, n_out, n_in, rows, 1.0f, dout, n_out, x, n_in, 1.0f, dW, n_in));
      else
        MS_TRY(gemm<float>(op, true, false, n_in, n_out, rows, 1.0f, x, n_in, dout, n_out, 1.0f, dW, n_out));
    }
  }
  if (dbias) MS_TRY(launch_column_grads(op, rows, n_out, dout, nullptr, nullptr, nullptr, nullptr, dbias));
  MS_TRY(finish(op));
  return scratch.release(op);
}

int activation_backward(int kind, size_t count, const float* dpost, const float* pre, const uint16_t* pre_bf16,
                        float* dpre, ms_error* err) {
  const char* name = "activation_backward";
  if (kind != MS_ACT_GELU_TANH && kind != MS_ACT_GELU_ERF && kind != MS_ACT_RELU)
    return invalid(err, name, "unknown activation %d", kind);
  if (count == 0) return MS_OK;
  MS_REQUIRE(dpost);
  if (!pre && !pre_bf16) return invalid(err, name, "pre is null");
  MS_REQUIRE(dpre);
  Op op;
  MS_TRY(begin(op, err, name));
  if (pre_bf16)
    activation_backward_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(
        kind, count, dpost, reinterpret_cast<const bf16*>(pre_bf16), dpre);
  else
    activation_backward_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(kind, count, dpost, pre, dpre);
  MS_TRY(check_launch(op, "activation_backward_kernel"));
  return finish(op);
}

int relu_linear_backward(int rows, int n_in, int n_out, int trans_w, const float* dout, const uint16_t* dout_bf16,
                         const uint16_t* x_bf16, const float* W, float* dW, float* dbias, uint16_t* dpre_bf16,
                         float* dpre_bias, ms_error* err) {
  const char* name = "relu_linear_backward";
  if (rows <= 0 || n_in <= 0 || n_out <= 0)
    return invalid(err, name, "bad shape: rows %d, n_in %d, n_out %d", rows, n_in, n_out);
  if (!dout && !dout_bf16) return invalid(err, name, "dout is null");
  if (dout_bf16 && dbias) return invalid(err, name, "dbias needs the fp32 dout");
  MS_REQUIRE(x_bf16);
  MS_REQUIRE(W);
  MS_REQUIRE(dpre_bf16);
  const size_t R = size_t(rows), K = size_t(n_in), N = size_t(n_out);
  const bool tw = trans_w != 0;
  // W [n_in, n_out] is the product's B stored [n, k]: the NT order the feature-gradient epilogue
  // is compiled for. Elsewhere (W [n_out, n_in], or the simple kernels) an fp32 gradient and passes.
  const bool fused = !tw && use_tensor_kernels();
  const int row_tiles = int((R + kTensorTileRows - 1) / kTensorTileRows);
  Op op;
  MS_TRY(begin(op, err, name));
  // Temporaries: bf16(dout) [R, N] unless given; bf16(W) [K, N]; fused, the column partials
  // [row_tiles, K] (with dpre_bias), else the fp32 gradient [R, K].
  Carver sizes(nullptr);
  if (!dout_bf16) sizes.take<bf16>(R * N);
  sizes.take<bf16>(K * N);
  if (fused && dpre_bias) sizes.take<double>(size_t(row_tiles) * K);
  if (!fused) sizes.take<float>(R * K);
  DeviceScratch scratch;
  MS_TRY(scratch.allocate(op, sizes.used()));
  Carver cv(scratch.get());
  bf16* dout_cast = dout_bf16 ? nullptr : cv.take<bf16>(R * N);
  const bf16* dout_bf = dout_bf16 ? reinterpret_cast<const bf16*>(dout_bf16) : dout_cast;
  bf16* W_bf = cv.take<bf16>(K * N);
  double* partial = fused && dpre_bias ? cv.take<double>(size_t(row_tiles) * K) : nullptr;
  float* dpre = fused ? nullptr : cv.take<float>(R * K);
  const bf16* x_bf = reinterpret_cast<const bf16*>(x_bf16);
  bf16* dpre_bf = reinterpret_cast<bf16*>(dpre_bf16);
  if (dout_cast) MS_TRY(launch_to_bf16(op, dout, dout_cast, R * N));
  MS_TRY(launch_to_bf16(op, W, W_bf, K * N));
  if (dW) {
    if (tw)  // dW[N, K] += dout^T x: dout stored [R, N] (lda = N), x [R, K] (ldb = K)
      MS_TRY(gemm<bf16>(op, true, false, n_out, n_in, rows, 1.0f, dout_bf, n_out, x_bf, n_in, 1.0f, dW, n_in));
    else  // dW[K, N] += x^T dout: x stored [R, K] (lda = K), dout [R, N] (ldb = N)
      MS_TRY(gemm<bf16>(op, true, false, n_in, n_out, rows, 1.0f, x_bf, n_in, dout_bf, n_out, 1.0f, dW, n_out));
  }
  if (dbias) MS_TRY(launch_column_grads(op, rows, n_out, dout, nullptr, nullptr, nullptr, nullptr, dbias));
  if (fused) {
    // dpre [R, K] = dout [R, N] W^T (W stored [K, N]: trans_b, ldb = N); the epilogue keeps the
    // entries where x > 0 (l1_scale 0: no penalty term), writes them in bf16 and sums each 128-row
    // tile's columns before rounding.
    MS_TRY(gemm_tensor(op, false, true, rows, n_in, n_out, dout_bf, n_out, W_bf, n_out,
                       EpilogueFeatureGrad{x_bf, nullptr, 0.0f, nullptr, dpre_bf, n_in, partial}));
    if (dpre_bias) {
      add_column_partials_kernel<<<static_cast<unsigned int>((K + kThreads - 1) / kThreads), kThreads, 0, op.stream>>>(
          row_tiles, n_in, partial, dpre_bias);
      MS_TRY(check_launch(op, "add_column_partials_kernel"));
    }
  } else {
    // dpre [R, K] = dout [R, N] op(W)^T as linear_backward's dx, then the mask in place, its column
    // sums and its rounding.
    MS_TRY(gemm<bf16>(op, false, !tw, rows, n_in, n_out, 1.0f, dout_bf, n_out, W_bf, tw ? n_in : n_out, 0.0f, dpre,
                      n_in));
    activation_backward_kernel<<<grid_stride_blocks(R * K), kThreads, 0, op.stream>>>(MS_ACT_RELU, R * K, dpre, x_bf,
                                                                                      dpre);
    MS_TRY(check_launch(op, "activation_backward_kernel"));
    if (dpre_bias) MS_TRY(launch_column_grads(op, rows, n_in, dpre, nullptr, nullptr, nullptr, nullptr, dpre_bias));
    MS_TRY(launch_to_bf16(op, dpre, dpre_bf, R * K));
  }
  MS_TRY(finish(op));
  return scratch.release(op);
}

// The cross-entropy backward kernel for rows of V logits (In), writing its gradient as Out to grad.
template <typename In, typename Out>
void launch_cross_entropy_backward(const Op& op, int rows, int V, const In* logits, const int32_t* targets,
                                   float* losses, float scale, Out* grad) {
  const unsigned int grid = static_cast<unsigned int>(rows);
  // Rows that fit in registers (vocabularies up to 8,192) are read once, in 16-byte chunks where
  // they can be; larger ones three times.
  if (rows_in_chunks8(V, logits, grad) && V <= 8 * kThreads)
    cross_entropy_backward_chunked_kernel<1><<<grid, kThreads, 0, op.stream>>>(V, logits, targets, losses, scale, grad);
  else if (rows_in_chunks8(V, logits, grad) && V <= 16 * kThreads)
    cross_entropy_backward_chunked_kernel<2><<<grid, kThreads, 0, op.stream>>>(V, logits, targets, losses, scale, grad);
  else if (rows_in_chunks8(V, logits, grad) && V <= 32 * kThreads)
    cross_entropy_backward_chunked_kernel<4><<<grid, kThreads, 0, op.stream>>>(V, logits, targets, losses, scale, grad);
  else if (V <= 4 * kThreads)
    cross_entropy_backward_cached_kernel<4><<<grid, kThreads, 0, op.stream>>>(V, logits, targets, losses, scale, grad);
  else if (V <= 16 * kThreads)
    cross_entropy_backward_cached_kernel<16><<<grid, kThreads, 0, op.stream>>>(V, logits, targets, losses, scale, grad);
  else if (V <= 32 * kThreads)
    cross_entropy_backward_cached_kernel<32><<<grid, kThreads, 0, op.stream>>>(V, logits, targets, losses, scale, grad);
  else
    cross_entropy_backward_kernel<<<grid, kThreads, 0, op.stream>>>(V, logits, targets, losses, scale, grad);
}

int cross_entropy_backward(int rows, int V, float* logits, uint16_t* logits_bf16, const int32_t* targets,
                           float* losses, float scale, uint16_t* grad_bf16, int indices_checked, ms_error* err) {
  const char* name = "cross_entropy_backward";
  if (rows <= 0 || V <= 0) return invalid(err, name, "bad shape [%d, %d]", rows, V);
  if (!logits && !logits_bf16) return invalid(err, name, "logits is null");
  MS_REQUIRE(targets);
  MS_REQUIRE(losses);
  Op op;
  MS_TRY(begin(op, err, name));
  // The index check waits for the device; the caller may have checked the indices on the host.
  MS_TRY(check_targets(op, name, targets, rows, V, indices_checked));
  if (logits_bf16)  // bf16 logits: the gradient into grad_bf16, or in place
    launch_cross_entropy_backward(op, rows, V, reinterpret_cast<const bf16*>(logits_bf16), targets, losses, scale,
                                  reinterpret_cast<bf16*>(grad_bf16 ? grad_bf16 : logits_bf16));
  else if (grad_bf16)  // the gradient in bf16 for linear_backward's dout_bf16; logits stay
    launch_cross_entropy_backward(op, rows, V, static_cast<const float*>(logits), targets, losses, scale,
                                  reinterpret_cast<bf16*>(grad_bf16));
  else
    launch_cross_entropy_backward(op, rows, V, static_cast<const float*>(logits), targets, losses, scale, logits);
  MS_TRY(check_launch(op, "cross_entropy_backward (a cached, chunked or three-pass kernel)"));
  return finish(op);
}

int embed_backward(int batch, int T, int C, int V, int n_positions, const int32_t* ids, const float* dtok,
                   const float* dpos, float* dwte, float* dwpe, int indices_checked, ms_error* err) {
  const char* name = "embed_backward";
  if (batch <= 0 || T <= 0 || C <= 0 || V <= 0 || n_positions <= 0)
    return invalid(err, name, "bad shape: batch %d, T %d, C %d, V %d, n_positions %d", batch, T, C, V,
                   n_positions);
  if (T > n_positions) return invalid(err, name, "T %d exceeds n_positions %d", T, n_positions);
  MS_REQUIRE(ids);
  MS_REQUIRE(dtok);
  MS_REQUIRE(dpos);
  MS_REQUIRE(dwte);
  MS_REQUIRE(dwpe);
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
  embed_backward_kernel<<<grid_stride_blocks(total), kThreads, 0, op.stream>>>(total, T, C, ids, dtok, dpos, dwte,
                                                                               dwpe);
  MS_TRY(check_launch(op, "embed_backward_kernel"));
  return finish(op);
}

int adamw_update(size_t count, float* param, const float* grad, float* m, float* v, const ms_adam_hparams* hp,
                 float decay, const float* clip_sum_sq, float clip_norm, ms_error* err) {
  const char* name = "adamw_update";
  MS_REQUIRE(hp);
  if (count == 0) return MS_OK;
  MS_REQUIRE(param);
  MS_REQUIRE(grad);
  MS_REQUIRE(m);
  MS_REQUIRE(v);
  Op op;
  MS_TRY(begin(op, err, name));
  const float inv_bias1 = 1.0f / hp->bias1;  // as the CPU backend: fp32 reciprocals, taken once
  const float inv_bias2 = 1.0f / hp->bias2;
  adamw_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(count, param, grad, m, v, hp->lr, hp->beta1,
                                                                      hp->beta2, hp->eps, inv_bias1, inv_bias2,
                                                                      hp->grad_scale, decay, clip_sum_sq, clip_norm);
  MS_TRY(check_launch(op, "adamw_kernel"));
  return finish(op);
}

}  // namespace ms::cuda
