/*
 * resample.cu — resample_candidates and sae_resample (resample.cuh), the paper's dead-feature
 * resampling on the device.
 *
 * Candidates: the k kept keys and the chunk's keys go into one array [candidates, chunk] with
 * their source index, CUB's stable radix sort orders it descending, and the top k are gathered
 * (rows from the old candidates or the chunk) into a copy that replaces the candidates. Stability
 * gives the CPU backend's tie order (candidates first, then rows in order). Keys use the same
 * counter-based uniforms and double arithmetic as the CPU (counter_rng.h).
 *
 * Re-initialisation: mark the dead features (checking range and duplicates on the device), take
 * every live encoder column's norm in double (every column's when none is live), average them with
 * one fixed-tree block, then one
 * block per dead slot writes the new decoder row, encoder column, bias and zeroed moments.
 */
#include "resample.cuh"

#include <cub/device/device_radix_sort.cuh>

#include <cmath>

#include "common.cuh"
#include "counter_rng.h"

namespace ms::cuda {
namespace {

// keys[0, k) = cand_keys, keys[k, k + B) = chunk keys; src[i] = i.
__global__ void gather_keys_kernel(int k, int batch, uint64_t seed, uint64_t offset,
                                   const float* __restrict__ cand_keys, const float* __restrict__ loss,
                                   float* __restrict__ keys, int* __restrict__ src) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= k + batch) return;
  float key;
  if (i < k) {
    key = cand_keys[i];
  } else {
    const int r = i - k;  // chunk row
    const double w = double(loss[r]) * double(loss[r]);
    key = w > 0.0 ? float(log(ms_uniform_open(seed, offset + uint64_t(r))) / w) : -INFINITY;
  }
  keys[i] = key;
  src[i] = i;
}

// new_rows[i, :] = row that src_sorted[i] names (old candidate or chunk row); new_keys[i] = keys_sorted[i].
__global__ void gather_rows_kernel(int k, int d, const float* __restrict__ keys_sorted, const int* __restrict__ src_sorted,
                                   const float* __restrict__ cand_rows, const float* __restrict__ x,
                                   float* __restrict__ new_keys, float* __restrict__ new_rows) {
  const int i = blockIdx.x;  // one block per kept slot
  const int s = src_sorted[i];
  const float* from = s < k ? cand_rows + size_t(s) * d : x + size_t(s - k) * d;  // [., d] row
  float* to = new_rows + size_t(i) * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) to[c] = from[c];
  if (threadIdx.x == 0) new_keys[i] = keys_sorted[i];
}

// marks[dead[i]] += 1; flag |= 1 for an index out of range, |= 2 for a repeated one.
__global__ void mark_dead_kernel(int count, int n, const int32_t* __restrict__ dead, int* __restrict__ marks,
                                 int* __restrict__ flag) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const int j = dead[i];
  if (j < 0 || j >= n) {
    atomicOr(flag, 1);
    return;
  }
  if (atomicAdd(marks + j, 1) != 0) atomicOr(flag, 2);
}

// norms[j] = ||W_enc[:, j]|| for live j (every j when none is live), 0 for the others; thread j
// walks column j (stride n).
__global__ void column_norms_kernel(int d, int n, const float* __restrict__ W_enc, const int* __restrict__ marks,
                                    bool all, double* __restrict__ norms) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const bool counted = all || marks[j] == 0;
  double s = 0.0;
  if (counted)
    for (int r = 0; r < d; ++r) {
      const double w = W_enc[size_t(r) * n + j];  // W_enc[r, j]
      s += w * w;
    }
  norms[j] = counted ? sqrt(s) : 0.0;
}

// out[0] = the mean of norms over live features (over all n when none is live: the encoder's
// scale), out[1] = factor * out[0].
__global__ void __launch_bounds__(kThreads) mean_norm_kernel(int n, int live, float factor,
                                                             const double* __restrict__ norms,
                                                             double* __restrict__ out) {
  __shared__ double scratch[33];
  double s = 0.0;
  for (int j = threadIdx.x; j < n; j += blockDim.x) s += norms[j];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) {
    const double mean = s / (live > 0 ? live : n);
    out[0] = mean;
    out[1] = double(factor) * mean;
  }
}

// One block per dead slot i: the paper's re-initialisation of feature dead[i] from cand_rows[i].
__global__ void __launch_bounds__(kThreads) apply_kernel(ms_sae_resample_args a, const double* __restrict__ scales,
                                                         int* __restrict__ applied) {
  __shared__ double scratch[33];
  const int i = blockIdx.x;
  if (!isfinite(a.cand_keys[i])) return;  // no input sampled for this slot (block-uniform)
  const size_t D = size_t(a.d), N = size_t(a.n);
  const float* r = a.cand_rows + size_t(i) * D;  // cand_rows[i, :]
  double ss = 0.0;
  for (size_t c = threadIdx.x; c < D; c += blockDim.x) ss += double(r[c]) * double(r[c]);
  ss = block_sum(ss, scratch);
  if (!(ss > 0.0) || !isfinite(ss)) return;
  const double inv = 1.0 / sqrt(ss);
  const double enc_scale = scales[1];
  const size_t j = size_t(a.dead[i]);
  for (size_t c = threadIdx.x; c < D; c += blockDim.x) {
    const double unit = double(r[c]) * inv;
    a.W_dec[j * D + c] = float(unit);              // W_dec[j, c]
    a.W_enc[c * N + j] = float(unit * enc_scale);  // W_enc[c, j]
    a.m_W_dec[j * D + c] = 0.0f;
    a.v_W_dec[j * D + c] = 0.0f;
    a.m_W_enc[c * N + j] = 0.0f;
    a.v_W_enc[c * N + j] = 0.0f;
  }
  if (threadIdx.x == 0) {
    a.b_enc[j] = 0.0f;
    a.m_b_enc[j] = 0.0f;
    a.v_b_enc[j] = 0.0f;
    atomicAdd(applied, 1);
  }
}

}  // namespace

int resample_candidates(const ms_resample_candidates_args* a, ms_error* err) {
  const char* name = "resample_candidates";
  if (!a) return invalid(err, name, "args is null");
  if (a->k <= 0 || a->batch <= 0 || a->d <= 0)
    return invalid(err, name, "k, batch and d must be positive (got %d, %d, %d)", a->k, a->batch, a->d);
  if (size_t(a->k) + size_t(a->batch) > size_t(INT32_MAX))
    return invalid(err, name, "k + batch must be below 2^31 (got %d + %d)", a->k, a->batch);
  if (!a->x || !a->loss || !a->cand_keys || !a->cand_rows) return invalid(err, name, "null pointer");
  const int k = a->k, total = a->k + a->batch;
  const size_t D = size_t(a->d);
  Op op;
  MS_TRY(begin(op, err, name));

  size_t sort_bytes = 0;
  MS_TRY(check(op, cub::DeviceRadixSort::SortPairsDescending(nullptr, sort_bytes, static_cast<const float*>(nullptr),
                                                             static_cast<float*>(nullptr), static_cast<const int*>(nullptr),
                                                             static_cast<int*>(nullptr), total, 0, 32, op.stream),
               "cub::DeviceRadixSort::SortPairsDescending"));
  // Scratch: keys, keys_sorted [total] f32; src, src_sorted [total] i32; new_keys [k]; new_rows [k, d]; sort temp.
  const auto carve = [&](void* base, float** keys, float** keys_sorted, int** src, int** src_sorted, float** new_keys,
                         float** new_rows, void** sort_temp) {
    Carver cv(base);
    *keys = cv.take<float>(size_t(total));
    *keys_sorted = cv.take<float>(size_t(total));
    *src = cv.take<int>(size_t(total));
    *src_sorted = cv.take<int>(size_t(total));
    *new_keys = cv.take<float>(size_t(k));
    *new_rows = cv.take<float>(size_t(k) * D);
    *sort_temp = cv.take<char>(sort_bytes);
    return cv.used();
  };
  float *keys, *keys_sorted, *new_keys, *new_rows;
  int *src, *src_sorted;
  void* sort_temp;
  DeviceScratch scratch;
  MS_TRY(scratch.allocate(op, carve(nullptr, &keys, &keys_sorted, &src, &src_sorted, &new_keys, &new_rows, &sort_temp)));
  carve(scratch.get(), &keys, &keys_sorted, &src, &src_sorted, &new_keys, &new_rows, &sort_temp);

  gather_keys_kernel<<<(total + kThreads - 1) / kThreads, kThreads, 0, op.stream>>>(
      k, a->batch, a->seed, a->offset, a->cand_keys, a->loss, keys, src);
  MS_TRY(check_launch(op, "gather_keys_kernel"));
  MS_TRY(check(op, cub::DeviceRadixSort::SortPairsDescending(sort_temp, sort_bytes, keys, keys_sorted, src, src_sorted,
                                                             total, 0, 32, op.stream),
               "cub::DeviceRadixSort::SortPairsDescending"));
  gather_rows_kernel<<<static_cast<unsigned int>(k), kThreads, 0, op.stream>>>(k, a->d, keys_sorted, src_sorted,
                                                                               a->cand_rows, a->x, new_keys, new_rows);
  MS_TRY(check_launch(op, "gather_rows_kernel"));
  MS_TRY(check(op, cudaMemcpyAsync(a->cand_rows, new_rows, size_t(k) * D * sizeof(float), cudaMemcpyDeviceToDevice, op.stream),
               "cudaMemcpyAsync"));
  MS_TRY(check(op, cudaMemcpyAsync(a->cand_keys, new_keys, size_t(k) * sizeof(float), cudaMemcpyDeviceToDevice, op.stream),
               "cudaMemcpyAsync"));
  MS_TRY(finish(op));
  return scratch.release(op);
}

int sae_resample(const ms_sae_resample_args* a, ms_sae_resample_stats* stats_host, ms_error* err) {
  const char* name = "sae_resample";
  if (!a || !stats_host) return invalid(err, name, "args or stats is null");
  if (a->d <= 0 || a->n <= 0 || a->count < 0 || a->count > a->n)
    return invalid(err, name, "bad sizes d %d, n %d, count %d", a->d, a->n, a->count);
  const float* ptrs[] = {a->W_enc, a->b_enc, a->W_dec, a->m_W_enc, a->v_W_enc, a->m_b_enc, a->v_b_enc, a->m_W_dec, a->v_W_dec};
  for (const float* p : ptrs)
    if (!p) return invalid(err, name, "null parameter or moment pointer");
  if (a->count > 0 && (!a->dead || !a->cand_keys || !a->cand_rows))
    return invalid(err, name, "null dead, cand_keys or cand_rows");
  const size_t N = size_t(a->n);
  Op op;
  MS_TRY(begin(op, err, name));

  // Scratch: marks [n] i32, flag + applied (2 i32), norms [n] f64, scales (2 f64).
  const auto carve = [&](void* base, int** marks, int** counters, double** norms, double** scales) {
    Carver cv(base);
    *marks = cv.take<int>(N);
    *counters = cv.take<int>(2);
    *norms = cv.take<double>(N);
    *scales = cv.take<double>(2);
    return cv.used();
  };
  int *marks, *counters;
  double *norms, *scales;
  DeviceScratch scratch;
  MS_TRY(scratch.allocate(op, carve(nullptr, &marks, &counters, &norms, &scales)));
  carve(scratch.get(), &marks, &counters, &norms, &scales);
  MS_TRY(check(op, cudaMemsetAsync(marks, 0, N * sizeof(int), op.stream), "cudaMemsetAsync"));
  MS_TRY(check(op, cudaMemsetAsync(counters, 0, 2 * sizeof(int), op.stream), "cudaMemsetAsync"));

  int host_counters[2] = {0, 0};  // flag, applied
  if (a->count > 0) {
    mark_dead_kernel<<<(a->count + kThreads - 1) / kThreads, kThreads, 0, op.stream>>>(a->count, a->n, a->dead, marks,
                                                                                       counters);
    MS_TRY(check_launch(op, "mark_dead_kernel"));
    MS_TRY(check(op, cudaMemcpyAsync(host_counters, counters, sizeof(int), cudaMemcpyDeviceToHost, op.stream),
                 "cudaMemcpyAsync"));
    MS_TRY(wait_host(op));
    if (host_counters[0] & 1) return invalid(err, name, "dead holds an index outside [0, %d)", a->n);
    if (host_counters[0] & 2) return invalid(err, name, "dead lists a feature twice");
  }
  const int live = a->n - a->count;
  column_norms_kernel<<<(a->n + kThreads - 1) / kThreads, kThreads, 0, op.stream>>>(a->d, a->n, a->W_enc, marks, live == 0, norms);
  MS_TRY(check_launch(op, "column_norms_kernel"));
  mean_norm_kernel<<<1, kThreads, 0, op.stream>>>(a->n, live, a->enc_norm_factor, norms, scales);
  MS_TRY(check_launch(op, "mean_norm_kernel"));
  if (a->count > 0) {
    apply_kernel<<<static_cast<unsigned int>(a->count), kThreads, 0, op.stream>>>(*a, scales, counters + 1);
    MS_TRY(check_launch(op, "apply_kernel"));
  }
  double mean = 0.0;
  MS_TRY(check(op, cudaMemcpyAsync(&mean, scales, sizeof mean, cudaMemcpyDeviceToHost, op.stream), "cudaMemcpyAsync"));
  MS_TRY(check(op, cudaMemcpyAsync(host_counters + 1, counters + 1, sizeof(int), cudaMemcpyDeviceToHost, op.stream),
               "cudaMemcpyAsync"));
  MS_TRY(wait_host(op));
  stats_host->mean_live_encoder_norm = mean;
  stats_host->live = live;
  stats_host->resampled = host_counters[1];
  return scratch.release(op);
}

}  // namespace ms::cuda
