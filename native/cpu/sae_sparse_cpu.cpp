/*
 * sae_sparse_cpu.cpp — the SAE step's products over the active entries of f (sae_sparse_cpu.h).
 *
 * Work split and determinism: rows of g in parallel over rows, each walking its features in order;
 * the per-feature gradients in parallel over blocks of kFeatureBlock features, each feature
 * walking its rows in order. Every output element has one writer and a fixed summation order,
 * whatever the thread count. A block's dW_enc columns are summed as rows of a small buffer and
 * written out a row of dW_enc at a time (kFeatureBlock floats: one cache line).
 */
#include "sae_sparse_cpu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "convert.h"
#include "kernel_common.h"
#include "thread_pool.h"

namespace ms::cpu {
namespace {

constexpr size_t kFeatureBlock = 16;

}  // namespace

bool use_sparse_products(size_t active, size_t B, size_t n) {
  const char* mode = std::getenv("MONOSEMANTIC_CPU_SAE_SPARSE");
  if (mode && std::strcmp(mode, "always") == 0) return true;
  if (mode && std::strcmp(mode, "never") == 0) return false;
  return double(active) <= kSparseDensity * double(B) * double(n);
}

ActiveEntries gather_active(size_t B, size_t n, const float* f, bool bf16, const std::vector<size_t>& per_row) {
  ActiveEntries a;
  a.row_start.assign(B + 1, 0);
  for (size_t b = 0; b < B; ++b) a.row_start[b + 1] = a.row_start[b] + per_row[b];
  const size_t nnz = a.row_start[B];
  a.row_feature.resize(nnz);
  a.row_value.resize(nnz);
  parallel_for(B, row_grain(n), [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      const float* fr = f + b * n;  // f[b, :]
      size_t k = a.row_start[b];
      for (size_t i = 0; i < n; ++i) {
        if (!(fr[i] > 0.0f)) continue;
        a.row_feature[k] = int32_t(i);
        a.row_value[k] = bf16 ? round_to_bf16(fr[i]) : fr[i];
        ++k;
      }
    }
  });
  // By feature: counts, offsets, then the entries in row order.
  a.col_start.assign(n + 1, 0);
  for (size_t k = 0; k < nnz; ++k) ++a.col_start[size_t(a.row_feature[k]) + 1];
  for (size_t i = 0; i < n; ++i) a.col_start[i + 1] += a.col_start[i];
  a.col_row.resize(nnz);
  a.col_f.resize(nnz);
  a.col_value.resize(nnz);
  std::vector<size_t> next(a.col_start.begin(), a.col_start.end() - 1);  // next free slot of each feature
  for (size_t b = 0; b < B; ++b) {
    for (size_t k = a.row_start[b]; k < a.row_start[b + 1]; ++k) {
      const size_t i = size_t(a.row_feature[k]);
      const size_t at = next[i]++;
      a.col_row[at] = int32_t(b);
      a.col_f[at] = f[b * n + i];  // f[b, i]
      a.col_value[at] = a.row_value[k];
    }
  }
  return a;
}

void decode_active(const ActiveEntries& a, size_t B, size_t d, const float* W_dec_op, float* g) {
  parallel_for(B, row_grain(d), [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      float* __restrict__ gr = g + b * d;  // g[b, :]
      std::fill_n(gr, d, 0.0f);
      for (size_t k = a.row_start[b]; k < a.row_start[b + 1]; ++k) {
        const float v = a.row_value[k];
        const float* __restrict__ w = W_dec_op + size_t(a.row_feature[k]) * d;  // W_dec_op[i, :]
        for (size_t j = 0; j < d; ++j) gr[j] += v * w[j];
      }
    }
  });
}

void feature_grads_active(const ActiveEntries& a, size_t d, size_t n, const float* g, const float* W_dec_op,
                          const float* xc, const float* c, float l1_scale, bool bf16, float* dW_dec, float* dW_enc,
                          double* f_colsum, int32_t* fired, double* gp_colsum) {
  const size_t blocks = (n + kFeatureBlock - 1) / kFeatureBlock;
  parallel_for(blocks, 1, [&](size_t q0, size_t q1) {
    std::vector<float> acc(kFeatureBlock * d);  // dW_enc[:, i] of the block's features: acc[(i - i0)*d + j]
    for (size_t q = q0; q < q1; ++q) {
      const size_t i0 = q * kFeatureBlock, i1 = std::min(i0 + kFeatureBlock, n);  // features [i0, i1)
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (size_t i = i0; i < i1; ++i) {
        float* __restrict__ dwd = dW_dec + i * d;      // dW_dec[i, :]
        float* __restrict__ de = acc.data() + (i - i0) * d;  // dW_enc[:, i]
        const float* w = W_dec_op + i * d;             // W_dec_op[i, :]
        std::fill_n(dwd, d, 0.0f);
        double f_sum = 0.0, gp_sum = 0.0;
        for (size_t k = a.col_start[i]; k < a.col_start[i + 1]; ++k) {
          const size_t b = size_t(a.col_row[k]);
          const float* __restrict__ gb = g + b * d;   // g[b, :]
          const float* __restrict__ xb = xc + b * d;  // xc[b, :]
          const float fo = a.col_value[k];
          for (size_t j = 0; j < d; ++j) dwd[j] += fo * gb[j];
          const float gv = dot(gb, w, d) + l1_scale * c[i];  // gp[b, i]
          const float go = bf16 ? round_to_bf16(gv) : gv;     // its product operand
          for (size_t j = 0; j < d; ++j) de[j] += go * xb[j];
          f_sum += a.col_f[k];
          gp_sum += gv;
        }
        f_colsum[i] = f_sum;
        fired[i] = int32_t(a.col_start[i + 1] - a.col_start[i]);
        gp_colsum[i] = gp_sum;
      }
      for (size_t j = 0; j < d; ++j) {
        float* out = dW_enc + j * n;  // dW_enc[j, :]
        for (size_t i = i0; i < i1; ++i) out[i] = acc[(i - i0) * d + j];
      }
    }
  });
}

}  // namespace ms::cpu
