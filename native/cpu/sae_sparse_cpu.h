/*
 * sae_sparse_cpu.h — the standard SAE's products after the encoder, on the CPU, when few features
 * fire: they touch only the active entries of f (sae_grads in sae_cpu.cpp chooses this or sgemm).
 *
 * With L0 active features per input out of n, the decoder product, dW_dec = fᵀ g, the masked
 * ∂f = (g W_decᵀ) ∘ [f > 0] and dW_enc = xcᵀ ∂f cost 2·B·L0·d FLOP each instead of 2·B·n·d, so
 * once a dictionary is sparse (L0 of tens out of thousands) the step is the encoder's product.
 */
#ifndef MONOSEMANTIC_CPU_SAE_SPARSE_H
#define MONOSEMANTIC_CPU_SAE_SPARSE_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ms::cpu {

// The active entries (f > 0) of f [B, n], by row and by feature. Within a row the features
// increase; within a feature the rows increase.
struct ActiveEntries {
  std::vector<size_t> row_start;     // [B + 1]: row b's entries are [row_start[b], row_start[b + 1])
  std::vector<int32_t> row_feature;  // the feature of each entry, by row
  std::vector<float> row_value;      // its product operand (f, bf16-rounded in bf16 mode), by row
  std::vector<size_t> col_start;     // [n + 1]: feature i's entries are [col_start[i], col_start[i + 1])
  std::vector<int32_t> col_row;      // the row of each entry, by feature
  std::vector<float> col_f;          // f itself, by feature
  std::vector<float> col_value;      // the product operand, by feature
};

// Whether sae_grads takes the sparse products for `active` entries of a B x n f:
// MONOSEMANTIC_CPU_SAE_SPARSE=always or never (read at each call), else when the fraction active
// is at most kSparseDensity.
constexpr double kSparseDensity = 0.05;
bool use_sparse_products(size_t active, size_t B, size_t n);

// The entries of f [B, n] with f > 0, their product operands rounded to bf16 when `bf16`.
// per_row[b] = #{i : f[b, i] > 0} (sae_cpu.cpp counts them while applying the ReLU).
ActiveEntries gather_active(size_t B, size_t n, const float* f, bool bf16, const std::vector<size_t>& per_row);

// g[b, :] = sum_i f_op[b, i] W_dec_op[i, :] over the row's active features   (g [B, d], W_dec_op [n, d])
void decode_active(const ActiveEntries& a, size_t B, size_t d, const float* W_dec_op, float* g);

// What the dense path's products 3-5 and its column pass give, from the active entries only:
//   dW_dec[i, :] = sum_b f_op[b, i] g[b, :]                        [n, d]
//   gp[b, i]     = g[b, :] . W_dec_op[i, :] + l1_scale c[i]        (active entries; 0 elsewhere)
//   dW_enc[:, i] = sum_b round(gp[b, i]) xc[b, :]                  [d, n] (round: bf16 in bf16 mode)
//   f_colsum[i] = sum_b f[b, i], fired[i] = #active, gp_colsum[i] = sum_b gp[b, i] (rows in order)
// g is the scaled residual (already bf16-rounded in bf16 mode), xc the centred input operand.
void feature_grads_active(const ActiveEntries& a, size_t d, size_t n, const float* g, const float* W_dec_op,
                          const float* xc, const float* c, float l1_scale, bool bf16, float* dW_dec, float* dW_enc,
                          double* f_colsum, int32_t* fired, double* gp_colsum);

}  // namespace ms::cpu

#endif
