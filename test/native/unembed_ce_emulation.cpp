// Host emulation of the fused unembedding cross-entropy kernels (native/cuda/unembed_ce_kernels.h),
// run by test/unit/unembed-ce-emulation.test.ts. The kernel source is compiled for the host under the
// shim of mma_emulation.h (a std::thread per CUDA thread; mma.sync rebuilt from the lanes' fragments;
// cp.async copies landing only at the thread's wait). Every block of the grids runs, and what the
// kernels write is compared with float64 of the same bf16 operands:
//   - lse (after the combine kernel): 1e-5 absolute (fp32 sums of exact products);
//   - losses: 1e-4 absolute; rows without a target give 0;
//   - dlogits: each element within 2^-8 of the reference relative, plus 1e-6 · scale (the bf16
//     rounding of a probability), and the padding after the last row untouched.
// Cases cover C = 32, 64 and 128, ragged rows and vocabularies (a last tile of one column), each store
// width (4 columns with the lanes' swap, pairs, single columns for an odd V), one split and several
// (the last holding fewer tiles), and ignored rows.
// Prints "ok ..." per case and "ok" at the end; exits 1 on the first mismatch.
#include "mma_emulation.h"

#include <random>

#include "cuda/unembed_ce_kernels.h"

namespace {

using namespace ms::cuda::unembed_ce;

struct Case {
  int C, rows, V, per_split;
  int width;  // the backward's StoreWidth: columns a store (4: V % 4 == 0, 2: V even)
};

uint16_t random_bf16(std::mt19937& rng, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  return float_to_bf16(normal(rng));
}

[[noreturn]] void fail(const Case& c, const char* what, long long at, double got, double want) {
  std::printf("FAIL %s (C %d, rows %d, V %d, per split %d): at %lld got %.9g, want %.9g\n", what, c.C, c.rows, c.V,
              c.per_split, at, got, want);
  std::exit(1);
}

template <int C>
void run_case(const Case& c, unsigned seed) {
  std::mt19937 rng(seed);
  const int rows = c.rows, V = c.V;
  if (V % c.width != 0) fail(c, "case: the store width must divide V", 0, 0, 0);
  // x rows of norm about 3 and W rows of norm about 1: logits of a few units, as a trained model's.
  std::vector<uint16_t> x(size_t(rows) * C), w(size_t(V) * C);
  for (auto& e : x) e = random_bf16(rng, 3.0f / std::sqrt(float(C)));
  for (auto& e : w) e = random_bf16(rng, 1.0f);
  std::vector<int32_t> targets(rows);
  std::uniform_int_distribution<int> pick(0, V - 1);
  for (int r = 0; r < rows; ++r) targets[r] = r % 7 == 3 ? -1 : r % 11 == 5 ? V - 1 : r % 13 == 6 ? 0 : pick(rng);
  const float scale = 1.0f / 37.0f;

  // float64 reference: logits[r][v] = x[r] . w[v] of the bf16 values (exact products).
  std::vector<double> logits(size_t(rows) * V), lse(rows), loss(rows), grad(size_t(rows) * V);
  for (int r = 0; r < rows; ++r) {
    double m = -INFINITY;
    for (int v = 0; v < V; ++v) {
      double s = 0.0;
      for (int k = 0; k < C; ++k) s += double(bf16_to_float(x[size_t(r) * C + k])) * bf16_to_float(w[size_t(v) * C + k]);
      logits[size_t(r) * V + v] = s;
      m = std::max(m, s);
    }
    double sum = 0.0;
    for (int v = 0; v < V; ++v) sum += std::exp(logits[size_t(r) * V + v] - m);
    lse[r] = m + std::log(sum);
    loss[r] = targets[r] < 0 ? 0.0 : lse[r] - logits[size_t(r) * V + targets[r]];
    for (int v = 0; v < V; ++v) {
      const double p = std::exp(logits[size_t(r) * V + v] - lse[r]);
      grad[size_t(r) * V + v] = targets[r] < 0 ? 0.0 : ((v == targets[r] ? p - 1.0 : p) * scale);
    }
  }

  const int tiles = tile_count(V);
  const int splits = (tiles + c.per_split - 1) / c.per_split;
  const unsigned row_blocks = unsigned((rows + kRows - 1) / kRows);
  const float nan = std::nanf("");
  std::vector<float> partial(size_t(splits) * rows, nan), target_logit(rows, nan), got_lse(rows, nan),
      got_loss(rows, nan);
  launch_grid(row_blocks, unsigned(splits), kThreads, [&] {
    unembed_ce_forward_kernel<C>(rows, V, c.per_split, x.data(), w.data(), targets.data(), partial.data(),
                                 target_logit.data());
  });
  launch_grid(unsigned((rows + 63) / 64), 1, 64, [&] {
    unembed_ce_combine_kernel(rows, splits, partial.data(), target_logit.data(), targets.data(), got_lse.data(),
                              got_loss.data());
  });
  for (int r = 0; r < rows; ++r) {
    if (!(std::fabs(got_lse[r] - lse[r]) <= 1e-5)) fail(c, "lse", r, got_lse[r], lse[r]);
    if (!(std::fabs(got_loss[r] - loss[r]) <= 1e-4)) fail(c, "loss", r, got_loss[r], loss[r]);
  }

  // The gradient from the kernel's own lse (NaN for rows without a target, which must not read it),
  // into a buffer with 16 canary elements after the rows.
  for (int r = 0; r < rows; ++r)
    if (targets[r] < 0) got_lse[r] = nan;
  constexpr uint16_t kCanary = 0x7FC1;  // a NaN no kernel writes
  std::vector<uint16_t> dlogits(size_t(rows) * V + 16, kCanary);
  launch_grid(row_blocks, unsigned(splits), kThreads, [&] {
    unembed_ce_backward_kernel<C>(rows, V, c.per_split, x.data(), w.data(), targets.data(), got_lse.data(), scale,
                                  c.width, dlogits.data());
  });
  for (size_t i = 0; i < size_t(rows) * V; ++i) {
    const double got = bf16_to_float(dlogits[i]), want = grad[i];
    if (dlogits[i] == kCanary || !(std::fabs(got - want) <= std::ldexp(std::fabs(want), -8) + 1e-6 * scale))
      fail(c, "dlogits", (long long)i, got, want);
  }
  for (size_t i = size_t(rows) * V; i < dlogits.size(); ++i)
    if (dlogits[i] != kCanary) fail(c, "dlogits padding", (long long)i, bf16_to_float(dlogits[i]), nan);
  std::printf("ok   C %3d rows %3d V %4d per split %d (%d splits) stores of %d columns\n", c.C, rows, V, c.per_split,
              splits, c.width);
}

}  // namespace

int main() {
  const Case cases[] = {
      {32, 37, 301, 1, 1},    // five splits of one tile, the last of 45 columns
      {32, 37, 300, 5, 4},    // one split of every tile; a last tile of 44 columns
      {64, 130, 65, 1, 1},    // two row blocks; the second split is one column
      {64, 64, 126, 1, 2},    // V even, not a multiple of 4
      {128, 129, 200, 3, 4},  // splits of 3 and 1 tiles; a row block of one row
      {128, 5, 1, 1, 1},      // one column
      {128, 20, 132, 2, 2},   // pairs where quads would fit
      {64, 200, 4, 1, 4},     // one quad a row
  };
  unsigned seed = 1;
  for (const Case& c : cases) {
    if (c.C == 32) run_case<32>(c, seed++);
    else if (c.C == 64) run_case<64>(c, seed++);
    else run_case<128>(c, seed++);
  }
  std::printf("ok\n");
  return 0;
}
