/*
 * resample_cpu.cpp — resample_candidates and sae_resample on the CPU (resample_cpu.h).
 *
 * Candidates: the chunk's keys are ordered (stable, descending) and merged with the k kept
 * candidates, candidates first on ties — the order a stable sort of [candidates, chunk] gives,
 * which is what the CUDA backend does, so both keep the same inputs in the same slots.
 * Re-initialisation uses double arithmetic for norms and scales and rounds once to fp32, with the
 * same expressions as the CUDA backend.
 */
#include "resample_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "counter_rng.h"
#include "status.h"
#include "thread_pool.h"

namespace ms::cpu {
namespace {

// key = log(u) / loss^2 (Efraimidis–Spirakis with weight loss^2); -inf when the weight is 0 or NaN.
float sample_key(uint64_t seed, uint64_t index, float loss) {
  const double w = double(loss) * double(loss);
  if (!(w > 0.0)) return -std::numeric_limits<float>::infinity();
  return float(std::log(ms_uniform_open(seed, index)) / w);
}

}  // namespace

int resample_candidates(const ms_resample_candidates_args* a, ms_error* err) {
  const char* op = "resample_candidates";
  if (!a) return fail(err, MS_ERR_INVALID, op, "args is null");
  if (a->k <= 0 || a->batch <= 0 || a->d <= 0)
    return fail(err, MS_ERR_INVALID, op, "k, batch and d must be positive (got %d, %d, %d)", a->k, a->batch, a->d);
  if (!a->x || !a->loss || !a->cand_keys || !a->cand_rows) return fail(err, MS_ERR_INVALID, op, "null pointer");
  const size_t k = size_t(a->k), B = size_t(a->batch), D = size_t(a->d);

  std::vector<float> chunk_keys(B);
  for (size_t r = 0; r < B; ++r) chunk_keys[r] = sample_key(a->seed, a->offset + r, a->loss[r]);
  std::vector<size_t> order(B);  // chunk rows by key, descending; equal keys in row order
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t p, size_t q) { return chunk_keys[p] > chunk_keys[q]; });

  // Merge the two descending lists into the top k. src[i] < k: old candidate; else chunk row src - k.
  std::vector<float> keys(k);
  std::vector<size_t> src(k);
  size_t ci = 0, ri = 0;
  for (size_t i = 0; i < k; ++i) {
    const bool take_old = ri >= B || (ci < k && a->cand_keys[ci] >= chunk_keys[order[ri]]);
    if (take_old) {
      keys[i] = a->cand_keys[ci];
      src[i] = ci++;
    } else {
      keys[i] = chunk_keys[order[ri]];
      src[i] = k + order[ri++];
    }
  }
  // Gather rows into a copy (old candidates move between slots), then write back.
  std::vector<float> rows(k * D);
  parallel_for(k, 16, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const float* from = src[i] < k ? a->cand_rows + src[i] * D : a->x + (src[i] - k) * D;  // [., d] rows
      std::memcpy(rows.data() + i * D, from, D * sizeof(float));
    }
  });
  std::memcpy(a->cand_rows, rows.data(), k * D * sizeof(float));
  std::memcpy(a->cand_keys, keys.data(), k * sizeof(float));
  return MS_OK;
}

int sae_resample(const ms_sae_resample_args* a, ms_sae_resample_stats* stats, ms_error* err) {
  const char* op = "sae_resample";
  if (!a || !stats) return fail(err, MS_ERR_INVALID, op, "args or stats is null");
  if (a->d <= 0 || a->n <= 0 || a->count < 0 || a->count > a->n)
    return fail(err, MS_ERR_INVALID, op, "bad sizes d %d, n %d, count %d", a->d, a->n, a->count);
  const float* ptrs[] = {a->W_enc, a->b_enc, a->W_dec, a->m_W_enc, a->v_W_enc, a->m_b_enc, a->v_b_enc, a->m_W_dec, a->v_W_dec};
  for (const float* p : ptrs)
    if (!p) return fail(err, MS_ERR_INVALID, op, "null parameter or moment pointer");
  if (a->count > 0 && (!a->dead || !a->cand_keys || !a->cand_rows))
    return fail(err, MS_ERR_INVALID, op, "null dead, cand_keys or cand_rows");
  const size_t D = size_t(a->d), N = size_t(a->n), count = size_t(a->count);

  std::vector<char> is_dead(N, 0);
  for (size_t i = 0; i < count; ++i) {
    const int32_t j = a->dead[i];
    if (j < 0 || size_t(j) >= N) return fail(err, MS_ERR_INVALID, op, "dead[%zu] = %d is not in [0, %d)", i, j, a->n);
    if (is_dead[size_t(j)]) return fail(err, MS_ERR_INVALID, op, "dead[%zu] = %d is listed twice", i, j);
    is_dead[size_t(j)] = 1;
  }

  // Encoder column norms: sq[j] = sum_r W_enc[r, j]^2 (W_enc is [d, n], column j strided by n).
  std::vector<double> sq(N, 0.0);
  parallel_for(N, 256, [&](size_t j0, size_t j1) {
    for (size_t r = 0; r < D; ++r) {
      const float* row = a->W_enc + r * N;  // W_enc[r, :]
      for (size_t j = j0; j < j1; ++j) sq[j] += double(row[j]) * double(row[j]);
    }
  });
  double norm_sum = 0.0, all_sum = 0.0;
  int live = 0;
  for (size_t j = 0; j < N; ++j) {
    all_sum += std::sqrt(sq[j]);
    if (!is_dead[j]) {
      norm_sum += std::sqrt(sq[j]);
      ++live;
    }
  }
  // With every feature dead, the scale of the encoder's columns is the mean over all of them.
  const double mean_norm = live > 0 ? norm_sum / live : all_sum / double(N);
  const double enc_scale = double(a->enc_norm_factor) * mean_norm;

  std::vector<char> applied(count, 0);
  parallel_for(count, 1, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      if (!std::isfinite(a->cand_keys[i])) continue;
      const float* r = a->cand_rows + i * D;  // cand_rows[i, :]
      double ss = 0.0;
      for (size_t c = 0; c < D; ++c) ss += double(r[c]) * double(r[c]);
      if (!(ss > 0.0) || !std::isfinite(ss)) continue;
      const double inv = 1.0 / std::sqrt(ss);
      const size_t j = size_t(a->dead[i]);
      for (size_t c = 0; c < D; ++c) {
        const double unit = double(r[c]) * inv;
        a->W_dec[j * D + c] = float(unit);           // W_dec[j, c]
        a->W_enc[c * N + j] = float(unit * enc_scale);  // W_enc[c, j]
        a->m_W_dec[j * D + c] = 0.0f;
        a->v_W_dec[j * D + c] = 0.0f;
        a->m_W_enc[c * N + j] = 0.0f;
        a->v_W_enc[c * N + j] = 0.0f;
      }
      a->b_enc[j] = 0.0f;
      a->m_b_enc[j] = 0.0f;
      a->v_b_enc[j] = 0.0f;
      applied[i] = 1;
    }
  });
  stats->mean_live_encoder_norm = mean_norm;
  stats->live = live;
  stats->resampled = int(std::count(applied.begin(), applied.end(), char(1)));
  return MS_OK;
}

}  // namespace ms::cpu
