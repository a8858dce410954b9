/*
 * sae.cu — SAE encode / decode / loss-and-gradients on the GPU (sae.cuh).
 *
 * Shapes (row-major): x [B, d], W_enc [d, n], b_enc [n], W_dec [n, d], b_dec [d], f [B, n];
 * d = d_in, n = d_sae, B = batch rows. The five matrix products go to gemm<T> (gemm.cuh), T =
 * float, or __nv_bfloat16 in MS_PREC_BF16 mode, where each product's operands are first rounded
 * to bf16 into workspace buffers and products accumulate in fp32; all elementwise math stays fp32
 * and reductions run in double. The steps and every elementwise expression follow the CPU
 * backend (sae_cpu.cpp) so the two agree up to summation order; expressions of the form a*b + c
 * use __fmul_rn / __fadd_rn so nvcc does not fuse them (the CPU code has no FMA contraction).
 *
 * sae_grads, with c_i = 1 (L1) or ||W_dec[i, :]|| (L1_DECNORM):
 *   1. xc = x - b_dec; f = ReLU(xc W_enc + b_enc)                                  [B, n]
 *   2. e = (f W_dec + b_dec) - x; g = (2/B) e; per-block sums of e^2                [B, d]
 *   3. g_colsum = sum_b g[b, :] (before rounding g)                                  [d]
 *   4. dW_dec = f^T g  (+ DECNORM: (lambda/B) (sum_b f_bi) W_dec[i, :] / c_i)        [n, d]
 *      f column pass: f_colsum = sum_b f[b, :] and fire_counts += #{b : f_bi > 0}
 *   5. gp = g W_dec^T; gp = f > 0 ? gp + (lambda/B) c_i : 0; per-block sums of
 *      f_bi c_i and of [f_bi > 0]                                                    [B, n]
 *   6. db_enc = sum_b gp[b, :] (before rounding gp)                                  [n]
 *   7. dW_enc = xc^T gp                                                              [d, n]
 *   8. db_dec = g_colsum - W_enc db_enc   (b_dec enters through xhat and xc = x - b_dec)
 *   9. the per-block statistic partials are reduced by one block and copied to the host.
 * Every reduction has a fixed order (fixed grids, fixed trees, no float atomics), so results are
 * bitwise reproducible run to run; fire counts use integer atomics.
 *
 * Fused path (MS_PREC_BF16 with the tensor-core kernels, gemm_tensor.cuh): step 1's bias and ReLU
 * run in the encoder GEMM's epilogue, which writes only bf16(f) and reduces f over each 128-row
 * tile into column partials and this batch's firing counts (tile_partial, fired); step 5's mask
 * (from bf16(f), whose sign is f's) and penalty run in the gp GEMM's epilogue, which writes only
 * bf16(gp) and its column partials. Neither f nor gp reaches memory in fp32. The column sums are
 * the partials summed over tiles in order; the sparsity and L0 statistics come from them
 * (sum_i c_i f_colsum_i and the firing counts). MONOSEMANTIC_CUDA_KERNELS=simple keeps the
 * separate passes above. On Hopper, gemm_tensor runs x̂, dW_dec and dW_enc (long K) on wgmma + TMA
 * (gemm_wgmma.cuh), reading each operand in the order it is stored; with MONOSEMANTIC_CUDA_GEMM=
 * wgmma all five, with the same epilogues.
 *
 * sae_encode / sae_decode get no workspace from the caller (backend.h), so they take their
 * temporaries (x - b_dec, and the bf16 operand copies) from the memory pool for the duration of
 * the call (DeviceScratch, common.cuh).
 */
#include "sae.cuh"

#include <cstdint>

#include "common.cuh"
#include "gemm.cuh"
#include "gemm_tensor.cuh"

#include <type_traits>

namespace ms::cuda {

using bf16 = __nv_bfloat16;

constexpr int kStatBlocks = 1024;    // fixed grid of the kernels producing statistic partials
constexpr int kColsumMaxChunks = 32;  // column sums split the rows into at most this many chunks
constexpr int kColsumMinRows = 128;   // ... of at least this many rows (except the last)
static_assert(kStatBlocks % kThreads == 0, "stats_final_kernel reads kStatBlocks / kThreads each");

// ---- workspace ----------------------------------------------------------------------------------

// Row chunking of the column sums; depends only on the row count, so results are deterministic.
struct ColsumPlan {
  int chunks;
  int rows_per_chunk;
};

static ColsumPlan colsum_plan(int rows) {
  int64_t chunks = (int64_t(rows) + kColsumMinRows - 1) / kColsumMinRows;
  if (chunks > kColsumMaxChunks) chunks = kColsumMaxChunks;
  if (chunks < 1) chunks = 1;
  const int64_t per = (int64_t(rows) + chunks - 1) / chunks;
  return ColsumPlan{static_cast<int>(chunks), static_cast<int>(per)};
}

// sae_grads workspace, carved in this order (each sub-buffer 256-byte aligned from the base).
struct GradsWorkspace {
  float* f;              // [B, n] xc W_enc, then f = ReLU(. + b_enc)
  float* gp;             // [B, n] g W_dec^T, then the masked gradient wrt the pre-activations
  float* g;              // [B, d] f W_dec, then g = (2/B)(xhat - x)
  float* xc;             // [B, d] x - b_dec                         (F32 mode only)
  float* c;              // [n]    ||W_dec[i, :]||                   (used in DECNORM mode)
  double* g_colsum;      // [d]    sum_b g[b, :]
  double* f_colsum;      // [n]    sum_b f[b, :]
  double* gp_colsum;     // [n]    sum_b gp[b, :]  (= db_enc in double)
  int32_t* fired;        // [n]    #{b : f[b, i] > 0} in this batch  (fused path)
  double* tile_partial;  // [ceil(B / kTensorTileRows), n] column sums of f, then of gp, per row tile (fused)
  double* partial;       // [chunks(B), max(d, n)] column-sum partials, reused by each column sum
  double* stat_partial;  // [3, kStatBlocks] per-block sums of e^2, f c, [f > 0]
  double* stat_out;      // [3] their totals
  bf16* xc_bf;           // [B, d] bf16(x - b_dec)                   (BF16 mode only, as below)
  bf16* W_enc_bf;        // [d, n] bf16(W_enc)
  bf16* W_dec_bf;        // [n, d] bf16(W_dec)
  bf16* f_bf;            // [B, n] bf16(f); its last reader is the dW_dec product (step 4) ...
  bf16* gp_bf;           // [B, n] ... so bf16(gp) (written in step 5) reuses the same memory
  bf16* g_bf;            // [B, d] bf16(g)
};

static GradsWorkspace carve_grads(void* base, size_t B, size_t d, size_t n, bool bf16_mode,
                                  size_t* bytes) {
  Carver cv(base);
  GradsWorkspace ws{};
  const size_t cols = d > n ? d : n;
  ws.f = cv.take<float>(B * n);
  ws.gp = cv.take<float>(B * n);
  ws.g = cv.take<float>(B * d);
  if (!bf16_mode) ws.xc = cv.take<float>(B * d);
  ws.c = cv.take<float>(n);
  ws.g_colsum = cv.take<double>(d);
  ws.f_colsum = cv.take<double>(n);
  ws.gp_colsum = cv.take<double>(n);
  ws.fired = cv.take<int32_t>(n);
  ws.tile_partial = cv.take<double>((B + kTensorTileRows - 1) / kTensorTileRows * n);
  ws.partial = cv.take<double>(size_t(colsum_plan(static_cast<int>(B)).chunks) * cols);
  ws.stat_partial = cv.take<double>(3 * size_t(kStatBlocks));
  ws.stat_out = cv.take<double>(3);
  if (bf16_mode) {
    ws.xc_bf = cv.take<bf16>(B * d);
    ws.W_enc_bf = cv.take<bf16>(d * n);
    ws.W_dec_bf = cv.take<bf16>(n * d);
    ws.f_bf = cv.take<bf16>(B * n);
    ws.gp_bf = ws.f_bf;  // aliased: see the struct comment
    ws.g_bf = cv.take<bf16>(B * d);
  }
  if (bytes) *bytes = cv.used();
  return ws;
}

// ---- kernels ------------------------------------------------------------------------------------

#define MS_GRID_STRIDE(idx, total)                                                  \
  for (size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < (total); \
       idx += size_t(gridDim.x) * blockDim.x)

// dst[k] = bf16(src[k]) for k < count (round to nearest even).
static __global__ void to_bf16_kernel(const float* __restrict__ src, bf16* __restrict__ dst,
                                      size_t count) {
  MS_GRID_STRIDE(k, count) dst[k] = __float2bfloat16_rn(src[k]);
}

// xc[b, j] = x[b, j] - b_dec[j], stored as T; idx = b*d + j.
template <typename T>
static __global__ void center_kernel(const float* __restrict__ x, const float* __restrict__ b_dec,
                                     T* __restrict__ xc, size_t total, int d) {
  MS_GRID_STRIDE(idx, total) {
    const size_t j = idx % size_t(d);
    xc[idx] = from_float<T>(x[idx] - b_dec[j]);  // xc[b, j] at xc[b*d + j]
  }
}

// f[b, i] = ReLU(f[b, i] + b_enc[i]) in place (f holds xc W_enc); f_bf[b, i] = bf16(f[b, i]) when
// f_bf is non-null; idx = b*n + i.
static __global__ void bias_relu_kernel(float* __restrict__ f, const float* __restrict__ b_enc,
                                        bf16* __restrict__ f_bf, size_t total, int n) {
  MS_GRID_STRIDE(idx, total) {
    const size_t i = idx % size_t(n);
    const float v = f[idx] + b_enc[i];   // f[b, i] at f[b*n + i]
    const float r = v > 0.0f ? v : 0.0f;  // NaN -> 0, as the CPU backend
    f[idx] = r;
    if (f_bf) f_bf[idx] = __float2bfloat16_rn(r);
  }
}

// y[r, j] += bias[j] for y [rows, cols]; idx = r*cols + j.
static __global__ void add_row_bias_kernel(float* __restrict__ y, const float* __restrict__ bias,
                                           size_t total, int cols) {
  MS_GRID_STRIDE(idx, total) y[idx] += bias[idx % size_t(cols)];
}

// out[i] = ||W[i, :]|| for W [rows, cols]; block i = row i; double accumulation.
static __global__ void __launch_bounds__(kThreads)
    row_norms_kernel(int rows, int cols, const float* __restrict__ W, float* __restrict__ out) {
  __shared__ double scratch[33];
  const int i = blockIdx.x;
  if (i >= rows) return;
  const float* w = W + size_t(i) * cols;  // W[i, :] at W[i*cols]
  double ss = 0.0;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    const double v = w[j];
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  if (threadIdx.x == 0) out[i] = float(sqrt(ss));
}

// Step 2. In: g[b, j] = (f W_dec)[b, j]. Out: g[b, j] = g_scale * e[b, j] with
// e = (g + b_dec[j]) - x[b, j]; g_bf = bf16(g) when non-null; sse_partial[block] = sum e^2 over
// this block's elements. Launched with exactly kStatBlocks blocks; idx = b*d + j.
static __global__ void __launch_bounds__(kThreads)
    residual_kernel(float* __restrict__ g, const float* __restrict__ x, const float* __restrict__ b_dec,
                    bf16* __restrict__ g_bf, size_t total, int d, float g_scale,
                    double* __restrict__ sse_partial) {
  __shared__ double scratch[33];
  double sse = 0.0;
  MS_GRID_STRIDE(idx, total) {
    const size_t j = idx % size_t(d);
    const float e = g[idx] + b_dec[j] - x[idx];  // xhat[b, j] - x[b, j], both at [b*d + j]
    sse += double(e) * double(e);
    const float gv = g_scale * e;
    g[idx] = gv;
    if (g_bf) g_bf[idx] = __float2bfloat16_rn(gv);
  }
  sse = block_sum(sse, scratch);
  if (threadIdx.x == 0) sse_partial[blockIdx.x] = sse;
}

// Step 5. In: gp[b, i] = (g W_dec^T)[b, i]. Out: gp[b, i] = f[b, i] > 0 ? gp + l1_scale * c_i : 0
// (c_i = c[i], or 1 when c is null); gp_bf = bf16(gp) when non-null; per-block partials of
// sum f_bi c_i and #{f_bi > 0}. Launched with exactly kStatBlocks blocks; idx = b*n + i.
static __global__ void __launch_bounds__(kThreads)
    feature_grad_kernel(float* __restrict__ gp, const float* __restrict__ f, const float* __restrict__ c,
                        bf16* __restrict__ gp_bf, size_t total, int n, float l1_scale,
                        double* __restrict__ sparsity_partial, double* __restrict__ l0_partial) {
  __shared__ double scratch[33];
  double sparsity = 0.0, l0 = 0.0;
  MS_GRID_STRIDE(idx, total) {
    const size_t i = idx % size_t(n);
    const float ci = c ? c[i] : 1.0f;
    const float fv = f[idx];  // f[b, i] at f[b*n + i]
    sparsity += double(fv) * double(ci);
    const bool on = fv > 0.0f;
    l0 += on ? 1.0 : 0.0;
    const float v = on ? __fadd_rn(gp[idx], __fmul_rn(l1_scale, ci)) : 0.0f;
    gp[idx] = v;
    if (gp_bf) gp_bf[idx] = __float2bfloat16_rn(v);
  }
  sparsity = block_sum(sparsity, scratch);
  l0 = block_sum(l0, scratch);
  if (threadIdx.x == 0) {
    sparsity_partial[blockIdx.x] = sparsity;
    l0_partial[blockIdx.x] = l0;
  }
}

// count + more, saturating at INT32_MAX rather than wrapping (both are >= 0).
static __device__ __forceinline__ int32_t saturating_count(int32_t count, int32_t more) {
  return more > INT32_MAX - count ? INT32_MAX : count + more;
}

// Unfused path: fire_counts[i] += fired[i] (saturating); feature i by one thread.
static __global__ void add_counts_kernel(int n, const int32_t* __restrict__ fired, int32_t* __restrict__ fire_counts) {
  MS_GRID_STRIDE(i, size_t(n)) fire_counts[i] = saturating_count(fire_counts[i], fired[i]);
}

// Fused path, after the f column pass: per-block partials of sum_i c_i f_colsum[i] (c_i = 1 when
// c is null) and of sum_i fired[i]; fire_counts[i] += fired[i] (saturating) when non-null. Launched with exactly
// kStatBlocks blocks; feature i is handled by one thread, so the counts need no atomics.
static __global__ void __launch_bounds__(kThreads)
    feature_stats_kernel(int n, const double* __restrict__ f_colsum, const float* __restrict__ c,
                         const int32_t* __restrict__ fired, int32_t* __restrict__ fire_counts,
                         double* __restrict__ sparsity_partial, double* __restrict__ l0_partial) {
  __shared__ double scratch[33];
  double sparsity = 0.0, l0 = 0.0;
  MS_GRID_STRIDE(i, size_t(n)) {
    sparsity += f_colsum[i] * (c ? double(c[i]) : 1.0);
    l0 += double(fired[i]);
    if (fire_counts) fire_counts[i] = saturating_count(fire_counts[i], fired[i]);
  }
  sparsity = block_sum(sparsity, scratch);
  l0 = block_sum(l0, scratch);
  if (threadIdx.x == 0) {
    sparsity_partial[blockIdx.x] = sparsity;
    l0_partial[blockIdx.x] = l0;
  }
}

// Column sums of X [rows, cols], first pass: thread (j, chunk) sums rows
// [chunk*rows_per_chunk, min(rows, (chunk+1)*rows_per_chunk)) of column j in order into
// partial[chunk, j]; counts[j] (when non-null) += how many of those entries are > 0.
// grid = (ceil(cols / kThreads), chunks).
static __global__ void __launch_bounds__(kThreads)
    colsum_partial_kernel(const float* __restrict__ X, int rows, int cols, int rows_per_chunk,
                          double* __restrict__ partial, int32_t* __restrict__ counts) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  const int chunk = blockIdx.y;
  const int r0 = chunk * rows_per_chunk;
  const int r1 = rows - r0 < rows_per_chunk ? rows : r0 + rows_per_chunk;
  double s = 0.0;
  int fired = 0;
  for (int r = r0; r < r1; ++r) {
    const float v = X[size_t(r) * cols + j];  // X[r, j] at X[r*cols + j]
    s += v;
    fired += v > 0.0f ? 1 : 0;
  }
  partial[size_t(chunk) * cols + j] = s;  // partial[chunk, j]
  if (counts && fired) atomicAdd(counts + j, fired);
}

// Column sums, second pass: out[j] = sum over chunks in order of partial[chunk, j];
// out_f[j] = float(out[j]) when out_f is non-null.
static __global__ void colsum_final_kernel(const double* __restrict__ partial, int chunks, int cols,
                                           double* __restrict__ out, float* __restrict__ out_f) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  double s = 0.0;
  for (int k = 0; k < chunks; ++k) s += partial[size_t(k) * cols + j];  // partial[k, j]
  out[j] = s;
  if (out_f) out_f[j] = float(s);
}

// DECNORM term of dW_dec (step 4): for c_i != 0,
// dW_dec[i, :] += float(scale * f_colsum[i] / c_i) * W_dec[i, :]; block i = row i.
static __global__ void __launch_bounds__(kThreads)
    decnorm_grad_kernel(int n, int d, const float* __restrict__ W_dec, const float* __restrict__ c,
                        const double* __restrict__ f_colsum, double scale, float* __restrict__ dW_dec) {
  const int i = blockIdx.x;
  if (i >= n) return;
  const float ci = c[i];
  if (ci == 0.0f) return;
  const float k = float(scale * f_colsum[i] / double(ci));
  const float* w = W_dec + size_t(i) * d;  // W_dec[i, :] at W_dec[i*d]
  float* dw = dW_dec + size_t(i) * d;      // dW_dec[i, :] at dW_dec[i*d]
  for (int j = threadIdx.x; j < d; j += blockDim.x) dw[j] = __fadd_rn(dw[j], __fmul_rn(k, w[j]));
}

// Step 8: db_dec[j] = float(g_colsum[j] - sum_i W_enc[j, i] * gp_colsum[i]); block j = row j of
// W_enc [d, n]; double accumulation, fixed tree.
static __global__ void __launch_bounds__(kThreads)
    db_dec_kernel(int d, int n, const float* __restrict__ W_enc, const double* __restrict__ gp_colsum,
                  const double* __restrict__ g_colsum, float* __restrict__ db_dec) {
  __shared__ double scratch[33];
  const int j = blockIdx.x;
  if (j >= d) return;
  const float* w = W_enc + size_t(j) * n;  // W_enc[j, :] at W_enc[j*n]
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += double(w[i]) * gp_colsum[i];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) db_dec[j] = float(g_colsum[j] - acc);
}

// out[s] = sum over blocks of stat_partial[s, block], s = 0 (sse), 1 (sparsity), 2 (l0);
// one block of kThreads threads, thread t summing entries t, t + kThreads, ... in order.
static __global__ void __launch_bounds__(kThreads)
    stats_final_kernel(const double* __restrict__ stat_partial, double* __restrict__ out) {
  __shared__ double scratch[33];
  for (int s = 0; s < 3; ++s) {
    double v = 0.0;
    for (int k = threadIdx.x; k < kStatBlocks; k += blockDim.x) v += stat_partial[s * kStatBlocks + k];
    v = block_sum(v, scratch);
    if (threadIdx.x == 0) out[s] = v;
  }
}

// ---- launchers ----------------------------------------------------------------------------------

static int launch_to_bf16(const Op& op, const float* src, bf16* dst, size_t count) {
  to_bf16_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(src, dst, count);
  return check_launch(op, "to_bf16_kernel");
}

template <typename T>
static int launch_center(const Op& op, const float* x, const float* b_dec, T* xc, size_t B, int d) {
  const size_t total = B * size_t(d);
  center_kernel<T><<<grid_stride_blocks(total), kThreads, 0, op.stream>>>(x, b_dec, xc, total, d);
  return check_launch(op, "center_kernel");
}

static int launch_bias_relu(const Op& op, float* f, const float* b_enc, bf16* f_bf, size_t B, int n) {
  const size_t total = B * size_t(n);
  bias_relu_kernel<<<grid_stride_blocks(total), kThreads, 0, op.stream>>>(f, b_enc, f_bf, total, n);
  return check_launch(op, "bias_relu_kernel");
}

static int launch_add_row_bias(const Op& op, float* y, const float* bias, size_t rows, int cols) {
  const size_t total = rows * size_t(cols);
  add_row_bias_kernel<<<grid_stride_blocks(total), kThreads, 0, op.stream>>>(y, bias, total, cols);
  return check_launch(op, "add_row_bias_kernel");
}

static int launch_row_norms(const Op& op, int rows, int cols, const float* W, float* out) {
  row_norms_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, op.stream>>>(rows, cols, W, out);
  return check_launch(op, "row_norms_kernel");
}

static int launch_residual(const Op& op, float* g, const float* x, const float* b_dec, bf16* g_bf,
                           size_t B, int d, float g_scale, double* sse_partial) {
  residual_kernel<<<kStatBlocks, kThreads, 0, op.stream>>>(g, x, b_dec, g_bf, B * size_t(d), d,
                                                           g_scale, sse_partial);
  return check_launch(op, "residual_kernel");
}

static int launch_feature_grad(const Op& op, float* gp, const float* f, const float* c, bf16* gp_bf,
                               size_t B, int n, float l1_scale, double* sparsity_partial,
                               double* l0_partial) {
  feature_grad_kernel<<<kStatBlocks, kThreads, 0, op.stream>>>(gp, f, c, gp_bf, B * size_t(n), n,
                                                               l1_scale, sparsity_partial, l0_partial);
  return check_launch(op, "feature_grad_kernel");
}

// out[j] = sum over chunks in order of partial[chunk, j] (out_f: also as float): the second pass of
// colsum, and the sum of the column partials a tensor-core GEMM epilogue writes per row tile.
static int sum_partials(const Op& op, const double* partial, int chunks, int cols, double* out, float* out_f) {
  const unsigned int col_blocks = static_cast<unsigned int>((size_t(cols) + kThreads - 1) / kThreads);
  colsum_final_kernel<<<col_blocks, kThreads, 0, op.stream>>>(partial, chunks, cols, out, out_f);
  return check_launch(op, "colsum_final_kernel");
}

// out[j] = sum_r X[r, j] (double; out_f: also as float), counts[j] += #{r : X[r, j] > 0}.
static int colsum(const Op& op, const float* X, int rows, int cols, double* partial, double* out,
                  float* out_f, int32_t* counts) {
  const ColsumPlan plan = colsum_plan(rows);
  const unsigned int col_blocks = static_cast<unsigned int>((size_t(cols) + kThreads - 1) / kThreads);
  const dim3 grid(col_blocks, static_cast<unsigned int>(plan.chunks));
  colsum_partial_kernel<<<grid, kThreads, 0, op.stream>>>(X, rows, cols, plan.rows_per_chunk, partial,
                                                          counts);
  MS_TRY(check_launch(op, "colsum_partial_kernel"));
  return sum_partials(op, partial, plan.chunks, cols, out, out_f);
}

static int launch_feature_stats(const Op& op, int n, const double* f_colsum, const float* c,
                                const int32_t* fired, int32_t* fire_counts, double* sparsity_partial,
                                double* l0_partial) {
  feature_stats_kernel<<<kStatBlocks, kThreads, 0, op.stream>>>(n, f_colsum, c, fired, fire_counts,
                                                                sparsity_partial, l0_partial);
  return check_launch(op, "feature_stats_kernel");
}

static int launch_decnorm_grad(const Op& op, int n, int d, const float* W_dec, const float* c,
                               const double* f_colsum, double scale, float* dW_dec) {
  decnorm_grad_kernel<<<static_cast<unsigned int>(n), kThreads, 0, op.stream>>>(n, d, W_dec, c,
                                                                                 f_colsum, scale, dW_dec);
  return check_launch(op, "decnorm_grad_kernel");
}

static int launch_db_dec(const Op& op, int d, int n, const float* W_enc, const double* gp_colsum,
                         const double* g_colsum, float* db_dec) {
  db_dec_kernel<<<static_cast<unsigned int>(d), kThreads, 0, op.stream>>>(d, n, W_enc, gp_colsum,
                                                                           g_colsum, db_dec);
  return check_launch(op, "db_dec_kernel");
}

static int launch_stats_final(const Op& op, const double* stat_partial, double* out) {
  stats_final_kernel<<<1, kThreads, 0, op.stream>>>(stat_partial, out);
  return check_launch(op, "stats_final_kernel");
}

// ---- validation ---------------------------------------------------------------------------------

static int check_dims(ms_error* err, const char* name, int batch, int d, int n, int precision) {
  if (batch <= 0) return invalid(err, name, "batch must be positive (got %d)", batch);
  if (d <= 0) return invalid(err, name, "d must be positive (got %d)", d);
  if (n <= 0) return invalid(err, name, "n must be positive (got %d)", n);
  if (precision != MS_PREC_F32 && precision != MS_PREC_BF16)
    return invalid(err, name, "precision: unknown value %d", precision);
  return MS_OK;
}

// ---- public entry points ------------------------------------------------------------------------

size_t sae_workspace_bytes(int batch, int d, int n, int precision) {
  if (batch <= 0 || d <= 0 || n <= 0 || (precision != MS_PREC_F32 && precision != MS_PREC_BF16))
    return 0;  // sae_grads rejects these dimensions anyway
  size_t bytes = 0;
  carve_grads(nullptr, size_t(batch), size_t(d), size_t(n), precision == MS_PREC_BF16, &bytes);
  return bytes;
}

int sae_encode(int batch, int d, int n, int precision, const float* x, const float* W_enc,
               const float* b_enc, const float* b_dec, float* f, ms_error* err) {
  const char* name = "sae_encode";
  MS_TRY(check_dims(err, name, batch, d, n, precision));
  MS_REQUIRE(x);
  MS_REQUIRE(W_enc);
  MS_REQUIRE(b_enc);
  MS_REQUIRE(b_dec);
  MS_REQUIRE(f);
  const size_t B = size_t(batch), D = size_t(d), N = size_t(n);
  const bool bf16_mode = precision == MS_PREC_BF16;
  Op op;
  MS_TRY(begin(op, err, name));

  // Temporaries: xc [B, d] (fp32, or bf16 with bf16(W_enc) [d, n] in BF16 mode).
  auto carve = [&](void* base, float** xc, bf16** xc_bf, bf16** W_enc_bf) {
    Carver cv(base);
    if (bf16_mode) {
      *xc_bf = cv.take<bf16>(B * D);
      *W_enc_bf = cv.take<bf16>(D * N);
    } else {
      *xc = cv.take<float>(B * D);
    }
    return cv.used();
  };
  float* xc = nullptr;
  bf16 *xc_bf = nullptr, *W_enc_bf = nullptr;
  DeviceScratch scratch;
  MS_TRY(scratch.allocate(op, carve(nullptr, &xc, &xc_bf, &W_enc_bf)));
  carve(scratch.get(), &xc, &xc_bf, &W_enc_bf);

  // f[B, n] = (x - b_dec)[B, d] W_enc[d, n], then f = ReLU(f + b_enc)
  if (bf16_mode) {
    MS_TRY(launch_to_bf16(op, W_enc, W_enc_bf, D * N));
    MS_TRY(launch_center<bf16>(op, x, b_dec, xc_bf, B, d));
    if (use_tensor_kernels()) {  // bias and ReLU in the GEMM's epilogue
      MS_TRY(gemm_tensor(op, false, false, batch, n, d, xc_bf, d, W_enc_bf, n,
                         EpilogueBiasAct{b_enc, f, nullptr, n}));
    } else {
      MS_TRY(gemm<bf16>(op, false, false, batch, n, d, 1.0f, xc_bf, d, W_enc_bf, n, 0.0f, f, n));
      MS_TRY(launch_bias_relu(op, f, b_enc, nullptr, B, n));
    }
  } else {
    MS_TRY(launch_center<float>(op, x, b_dec, xc, B, d));
    MS_TRY(gemm<float>(op, false, false, batch, n, d, 1.0f, xc, d, W_enc, n, 0.0f, f, n));
    MS_TRY(launch_bias_relu(op, f, b_enc, nullptr, B, n));
  }
  MS_TRY(finish(op));
  return scratch.release(op);
}

int sae_decode(int batch, int d, int n, int precision, const float* f, const float* W_dec,
               const float* b_dec, float* xhat, ms_error* err) {
  const char* name = "sae_decode";
  MS_TRY(check_dims(err, name, batch, d, n, precision));
  MS_REQUIRE(f);
  MS_REQUIRE(W_dec);
  MS_REQUIRE(b_dec);
  MS_REQUIRE(xhat);
  const size_t B = size_t(batch), D = size_t(d), N = size_t(n);
  Op op;
  MS_TRY(begin(op, err, name));

  // xhat[B, d] = f[B, n] W_dec[n, d], then += b_dec
  DeviceScratch scratch;
  if (precision == MS_PREC_BF16) {
    // Temporaries: bf16(f) [B, n], bf16(W_dec) [n, d].
    const size_t f_bytes = align_up(B * N * sizeof(bf16));
    MS_TRY(scratch.allocate(op, f_bytes + align_up(N * D * sizeof(bf16))));
    bf16* f_bf = static_cast<bf16*>(scratch.get());
    bf16* W_dec_bf = reinterpret_cast<bf16*>(static_cast<char*>(scratch.get()) + f_bytes);
    MS_TRY(launch_to_bf16(op, f, f_bf, B * N));
    MS_TRY(launch_to_bf16(op, W_dec, W_dec_bf, N * D));
    MS_TRY(gemm<bf16>(op, false, false, batch, d, n, 1.0f, f_bf, n, W_dec_bf, d, 0.0f, xhat, d));
  } else {
    MS_TRY(gemm<float>(op, false, false, batch, d, n, 1.0f, f, n, W_dec, d, 0.0f, xhat, d));
  }
  MS_TRY(launch_add_row_bias(op, xhat, b_dec, B, d));
  MS_TRY(finish(op));
  return scratch.release(op);
}

// The four products of sae_grads for one operand type T (float or bf16).
template <typename T>
struct GradOperands {
  const T* xc;     // [B, d]
  const T* W_enc;  // [d, n]
  const T* f;      // [B, n]
  const T* W_dec;  // [n, d]
  const T* g;      // [B, d]
  const T* gp;     // [B, n]
};

// Steps 1-9 (see the header comment) for operand type T; `fused` (bf16 only) takes the fused path.
template <typename T>
static int grads_pass(const Op& op, const ms_sae_grads_args* a, const GradsWorkspace& ws,
                      const GradOperands<T>& o, T* xc_out, bf16* f_bf, bf16* g_bf, bf16* gp_bf,
                      bool fused) {
  const int b_i = a->batch, d_i = a->d, n_i = a->n;
  const size_t B = size_t(b_i);
  const bool decnorm = a->penalty == MS_PENALTY_L1_DECNORM;
  const float lambda = a->l1_coeff;
  const float* c = decnorm ? ws.c : nullptr;  // null: c_i = 1
  const float l1_scale = lambda / float(b_i);
  double* sparsity_partial = ws.stat_partial + kStatBlocks;
  double* l0_partial = ws.stat_partial + 2 * kStatBlocks;
  const int row_tiles = (b_i + kTensorTileRows - 1) / kTensorTileRows;  // rows of tile_partial

  // c[i] = ||W_dec[i, :]|| (DECNORM only)
  if (decnorm) MS_TRY(launch_row_norms(op, n_i, d_i, a->W_dec, ws.c));

  // 1. xc = x - b_dec; f = ReLU(xc W_enc + b_enc)      f [B, n] = xc [B, d] . W_enc [d, n]
  MS_TRY(launch_center<T>(op, a->x, a->b_dec, xc_out, B, d_i));
  if constexpr (std::is_same_v<T, bf16>) {
    if (fused) {
      MS_TRY(check(op, cudaMemsetAsync(ws.fired, 0, size_t(n_i) * sizeof(int32_t), op.stream),
                   "cudaMemsetAsync"));
      MS_TRY(gemm_tensor(op, false, false, b_i, n_i, d_i, o.xc, d_i, o.W_enc, n_i,
                         EpilogueBiasAct{a->b_enc, nullptr, f_bf, n_i, ws.tile_partial, ws.fired}));
    }
  }
  if (!fused) {
    MS_TRY(gemm<T>(op, false, false, b_i, n_i, d_i, 1.0f, o.xc, d_i, o.W_enc, n_i, 0.0f, ws.f, n_i));
    MS_TRY(launch_bias_relu(op, ws.f, a->b_enc, f_bf, B, n_i));
  }

  // 2. g [B, d] = f [B, n] . W_dec [n, d]; then e = g + b_dec - x, g = (2/B) e, sse partials
  MS_TRY(gemm<T>(op, false, false, b_i, d_i, n_i, 1.0f, o.f, n_i, o.W_dec, d_i, 0.0f, ws.g, d_i));
  const float g_scale = 2.0f / float(b_i);
  MS_TRY(launch_residual(op, ws.g, a->x, a->b_dec, g_bf, B, d_i, g_scale, ws.stat_partial));

  // 3. g_colsum = sum_b g[b, :] (from fp32 g)
  MS_TRY(colsum(op, ws.g, b_i, d_i, ws.partial, ws.g_colsum, nullptr, nullptr));

  // 4. dW_dec [n, d] = f^T [n, B] . g [B, d]   (f stored [B, n]: trans_a, lda = n)
  MS_TRY(gemm<T>(op, true, false, n_i, d_i, b_i, 1.0f, o.f, n_i, o.g, d_i, 0.0f, a->dW_dec, d_i));
  if (fused) {
    // f_colsum from the encoder's tile partials; sparsity / l0 / fire_counts from it and the counts.
    MS_TRY(sum_partials(op, ws.tile_partial, row_tiles, n_i, ws.f_colsum, nullptr));
    MS_TRY(launch_feature_stats(op, n_i, ws.f_colsum, c, ws.fired, a->fire_counts, sparsity_partial,
                                l0_partial));
  } else if (decnorm || a->fire_counts) {
    // This batch's counts into ws.fired, then added to fire_counts saturating.
    if (a->fire_counts)
      MS_TRY(check(op, cudaMemsetAsync(ws.fired, 0, size_t(n_i) * sizeof(int32_t), op.stream), "cudaMemsetAsync"));
    MS_TRY(colsum(op, ws.f, b_i, n_i, ws.partial, ws.f_colsum, nullptr, a->fire_counts ? ws.fired : nullptr));
    if (a->fire_counts) {
      add_counts_kernel<<<grid_stride_blocks(size_t(n_i)), kThreads, 0, op.stream>>>(n_i, ws.fired, a->fire_counts);
      MS_TRY(check_launch(op, "add_counts_kernel"));
    }
  }
  if (decnorm) {
    const double scale = double(lambda) / double(b_i);
    MS_TRY(launch_decnorm_grad(op, n_i, d_i, a->W_dec, ws.c, ws.f_colsum, scale, a->dW_dec));
  }

  // 5. gp [B, n] = g [B, d] . W_dec^T [d, n]   (W_dec stored [n, d]: trans_b, ldb = d);
  //    then the ReLU mask and the penalty term (with the sparsity / l0 partials unless fused).
  //    (In BF16 mode gp_bf overwrites f_bf, whose last reader was the dW_dec product above.)
  if constexpr (std::is_same_v<T, bf16>) {
    if (fused) {  // the mask reads bf16(f) from the memory bf16(gp) overwrites, element by element
      MS_TRY(gemm_tensor(op, false, true, b_i, n_i, d_i, o.g, d_i, o.W_dec, d_i,
                         EpilogueFeatureGrad{f_bf, c, l1_scale, nullptr, gp_bf, n_i, ws.tile_partial}));
    }
  }
  if (!fused) {
    MS_TRY(gemm<T>(op, false, true, b_i, n_i, d_i, 1.0f, o.g, d_i, o.W_dec, d_i, 0.0f, ws.gp, n_i));
    MS_TRY(launch_feature_grad(op, ws.gp, ws.f, c, gp_bf, B, n_i, l1_scale, sparsity_partial, l0_partial));
  }

  // 6. db_enc = sum_b gp[b, :] (from fp32 gp), kept in double as gp_colsum for step 8
  if (fused)
    MS_TRY(sum_partials(op, ws.tile_partial, row_tiles, n_i, ws.gp_colsum, a->db_enc));
  else
    MS_TRY(colsum(op, ws.gp, b_i, n_i, ws.partial, ws.gp_colsum, a->db_enc, nullptr));

  // 7. dW_enc [d, n] = xc^T [d, B] . gp [B, n]   (xc stored [B, d]: trans_a, lda = d)
  MS_TRY(gemm<T>(op, true, false, d_i, n_i, b_i, 1.0f, o.xc, d_i, o.gp, n_i, 0.0f, a->dW_enc, n_i));

  // 8. db_dec = g_colsum - W_enc [d, n] . gp_colsum [n]   (fp32 W_enc, double accumulation)
  MS_TRY(launch_db_dec(op, d_i, n_i, a->W_enc, ws.gp_colsum, ws.g_colsum, a->db_dec));

  // 9. statistics totals
  return launch_stats_final(op, ws.stat_partial, ws.stat_out);
}

int sae_grads(const ms_sae_grads_args* a, ms_sae_stats* stats_host, ms_error* err) {
  const char* name = "sae_grads";
  if (!a) return invalid(err, name, "args is null");
  MS_TRY(check_dims(err, name, a->batch, a->d, a->n, a->precision));
  if (a->penalty != MS_PENALTY_L1 && a->penalty != MS_PENALTY_L1_DECNORM)
    return invalid(err, name, "penalty: unknown value %d", a->penalty);
  MS_REQUIRE(a->x);
  MS_REQUIRE(a->W_enc);
  MS_REQUIRE(a->b_enc);
  MS_REQUIRE(a->W_dec);
  MS_REQUIRE(a->b_dec);
  MS_REQUIRE(a->dW_enc);
  MS_REQUIRE(a->db_enc);
  MS_REQUIRE(a->dW_dec);
  MS_REQUIRE(a->db_dec);
  MS_REQUIRE(a->workspace);
  if (reinterpret_cast<uintptr_t>(a->workspace) % kAlign != 0)
    return invalid(err, name, "workspace must be %zu-byte aligned (as alloc returns it)", kAlign);
  const size_t B = size_t(a->batch), D = size_t(a->d), N = size_t(a->n);
  const bool bf16_mode = a->precision == MS_PREC_BF16;
  Op op;
  MS_TRY(begin(op, err, name));
  const GradsWorkspace ws = carve_grads(a->workspace, B, D, N, bf16_mode, nullptr);

  if (bf16_mode) {
    MS_TRY(launch_to_bf16(op, a->W_enc, ws.W_enc_bf, D * N));
    MS_TRY(launch_to_bf16(op, a->W_dec, ws.W_dec_bf, N * D));
    const GradOperands<bf16> o{ws.xc_bf, ws.W_enc_bf, ws.f_bf, ws.W_dec_bf, ws.g_bf, ws.gp_bf};
    MS_TRY(grads_pass<bf16>(op, a, ws, o, ws.xc_bf, ws.f_bf, ws.g_bf, ws.gp_bf, use_tensor_kernels()));
  } else {
    const GradOperands<float> o{ws.xc, a->W_enc, ws.f, a->W_dec, ws.g, ws.gp};
    MS_TRY(grads_pass<float>(op, a, ws, o, ws.xc, nullptr, nullptr, nullptr, false));
  }

  if (!stats_host) return finish(op);  // nothing to read back: the work stays queued
  double totals[3] = {0.0, 0.0, 0.0};  // sum e^2, sum f c, #{f > 0}
  MS_TRY(check(op, cudaMemcpyAsync(totals, ws.stat_out, sizeof totals, cudaMemcpyDeviceToHost, op.stream),
               "cudaMemcpyAsync"));
  MS_TRY(wait_host(op));
  const double Bd = double(a->batch);
  stats_host->mse = totals[0] / Bd;
  stats_host->sparsity = totals[1] / Bd;
  stats_host->l0 = totals[2] / Bd;
  stats_host->loss = stats_host->mse + double(a->l1_coeff) * stats_host->sparsity;
  return MS_OK;
}

}  // namespace ms::cuda
