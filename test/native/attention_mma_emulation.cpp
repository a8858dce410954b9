// Host emulation of the tensor-core attention kernels (native/cuda/attention_mma_kernels.h), run by
// test/unit/attention-emulation.test.ts. The kernel source is compiled for the host under the shim
// of mma_emulation.h (a std::thread per CUDA thread; mma.sync rebuilt from the lanes' fragments).
// The forward (out, log-sum-exp) and the gradients (dq, dk, dv) are compared with float64 causal
// attention of the same inputs rounded to bf16 (the kernels' operands), on ragged sizes. What is
// left is the rounding of P and dS to bf16 before their products (kTolerance) and fp32 sums (the
// log-sum-exp, whose scores are exact products of bf16 operands: kLseTolerance). Each case runs
// the kernels that read the next tile during the products (Prefetch) and those that read it when
// staging it, which must write the same bits; and the forward into a bf16 out, which must be the
// fp32 out rounded to nearest even. The gradients go to [rows, C] arrays (ld_grad = C), and in
// one case also interleaved in a [rows, 3C] buffer (dq | dk | dv, ld_grad = 3C, the layout of the
// q/k/v product's gradient), which must hold the same bits and be written everywhere.
// Prints "ok ..." per case and "ok" at the end; exits 1 on the first mismatch.
#include "mma_emulation.h"

#include "cuda/attention_mma_kernels.h"
#include "attention_reference.h"

namespace {

using namespace ms::cuda::attention_mma;

// Runs body() as every thread of every block of a (gx, gy) grid of kThreads-thread blocks.
void launch(unsigned gx, unsigned gy, const std::function<void()>& body) { launch_grid(gx, gy, kThreads, body); }

struct Case {
  int B, T, n_head;
};

// P and dS rounded to bf16 (2^-9 relative) before the products with v, k, q and dout.
constexpr double kTolerance = 1e-2;
constexpr double kLseTolerance = 1e-5;

float round_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

// What a case's kernels wrote: out, lse, dq, D, dk, dv, one after another.
using Outputs = std::vector<float>;

template <int HD, bool Prefetch>
Outputs run_case(const Case& c, unsigned seed) {
  const int C = c.n_head * HD, rows = c.B * c.T, heads = c.B * c.n_head;
  const auto [q, k, v, dout] = random_attention_inputs(rows, C, seed);
  const float scale = 1.0f / std::sqrt(float(HD));
  auto rounded = [](std::vector<float> x) {
    for (float& e : x) e = round_bf16(e);
    return x;
  };
  const std::vector<float> qr = rounded(q), kr = rounded(k), vr = rounded(v), doutr = rounded(dout);

  // float64 reference on the rounded operands; D_t = dout_t . out_t takes the fp32 dout, as the kernel does.
  const AttentionReference ref = attention_reference(c.B, c.T, c.n_head, HD, qr, kr, vr, doutr, dout);

  const float nan = std::nanf("");
  std::vector<float> out(q.size(), nan), lse(size_t(heads) * c.T, nan), dq(q.size(), nan), dk(q.size(), nan),
      dv(q.size(), nan), D(size_t(heads) * c.T, nan);
  const unsigned gx = unsigned((c.T + kRows - 1) / kRows), gy = unsigned(heads);
  double worst = 0.0;
  auto check = [&](const char* what, const std::vector<float>& got, const std::vector<double>& ref,
                   double tolerance = kTolerance) {
    const double e = rel_err(got, ref);
    if (!(e < tolerance)) {
      std::printf("FAIL %s (B %d, T %d, heads %d, hd %d): relative error %.3g\n", what, c.B, c.T, c.n_head, HD, e);
      std::exit(1);
    }
    worst = std::max(worst, e);
  };
  launch(gx, gy, [&] {
    attention_mma_forward_kernel<HD, Prefetch, float>(c.T, C, c.n_head, scale, q.data(), k.data(), v.data(), out.data(), lse.data());
  });
  check("forward out", out, ref.out);
  check("forward lse", lse, ref.lse, kLseTolerance);
  // A bf16 out: the fp32 out rounded to nearest even, every element.
  std::vector<uint16_t> out_bf16(q.size(), 0xFFFFu);
  launch(gx, gy, [&] {
    attention_mma_forward_kernel<HD, Prefetch, uint16_t>(c.T, C, c.n_head, scale, q.data(), k.data(), v.data(), out_bf16.data(), nullptr);
  });
  for (size_t i = 0; i < out.size(); ++i)
    if (out_bf16[i] != float_to_bf16(out[i])) {
      std::printf("FAIL forward bf16 out (B %d, T %d, heads %d, hd %d): element %zu is %04x, not bf16(%g)\n", c.B, c.T,
                  c.n_head, HD, i, unsigned(out_bf16[i]), double(out[i]));
      std::exit(1);
    }
  launch(gx, gy, [&] {
    attention_mma_dq_kernel<HD, Prefetch>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), out.data(),
                                lse.data(), dq.data(), C, D.data());
  });
  check("dq", dq, ref.dq);
  launch(gx, gy, [&] {
    attention_mma_dkdv_kernel<HD, Prefetch>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), lse.data(),
                                  D.data(), dk.data(), dv.data(), C);
  });
  check("dk", dk, ref.dk);
  check("dv", dv, ref.dv);
  std::printf("ok   B %d T %4d heads %2d hd %2d %-11s worst relative error %.2e\n", c.B, c.T, c.n_head, HD,
              Prefetch ? "prefetch" : "no prefetch", worst);
  Outputs all;
  for (const std::vector<float>* part : {&out, &lse, &dq, &D, &dk, &dv}) all.insert(all.end(), part->begin(), part->end());
  return all;
}

// Both ways of reading the tiles make the same sums in the same order: the same bits.
template <int HD>
void run_both(const Case& c, unsigned seed) {
  const Outputs ahead = run_case<HD, true>(c, seed), staged = run_case<HD, false>(c, seed);
  if (ahead.size() != staged.size() || std::memcmp(ahead.data(), staged.data(), ahead.size() * sizeof(float)) != 0) {
    std::printf("FAIL the prefetching kernels' bits differ from the others' (B %d, T %d, heads %d, hd %d)\n", c.B, c.T,
                c.n_head, HD);
    std::exit(1);
  }
}

// dq, dk, dv written with row stride 3C into one [rows, 3C] buffer at offsets 0, C and 2C (filled
// with NaN first): every element written, each with the bits the same kernels write into separate
// [rows, C] arrays (ld_grad = C), and D the same.
template <int HD, bool Prefetch>
void run_interleaved(const Case& c, unsigned seed) {
  const int C = c.n_head * HD, rows = c.B * c.T, heads = c.B * c.n_head, ld = 3 * C;
  const auto [q, k, v, dout] = random_attention_inputs(rows, C, seed);
  const float scale = 1.0f / std::sqrt(float(HD));
  const float nan = std::nanf("");
  std::vector<float> out(q.size(), nan), lse(size_t(heads) * c.T, nan), dq(q.size(), nan), dk(q.size(), nan),
      dv(q.size(), nan), D(size_t(heads) * c.T, nan), dqkv(size_t(rows) * ld, nan), D3(D.size(), nan);
  const unsigned gx = unsigned((c.T + kRows - 1) / kRows), gy = unsigned(heads);
  launch(gx, gy, [&] {
    attention_mma_forward_kernel<HD, Prefetch, float>(c.T, C, c.n_head, scale, q.data(), k.data(), v.data(), out.data(), lse.data());
  });
  launch(gx, gy, [&] {
    attention_mma_dq_kernel<HD, Prefetch>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), out.data(),
                                          lse.data(), dq.data(), C, D.data());
  });
  launch(gx, gy, [&] {
    attention_mma_dkdv_kernel<HD, Prefetch>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(),
                                            lse.data(), D.data(), dk.data(), dv.data(), C);
  });
  launch(gx, gy, [&] {
    attention_mma_dq_kernel<HD, Prefetch>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), out.data(),
                                          lse.data(), dqkv.data(), ld, D3.data());
  });
  launch(gx, gy, [&] {
    attention_mma_dkdv_kernel<HD, Prefetch>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(),
                                            lse.data(), D3.data(), dqkv.data() + C, dqkv.data() + 2 * C, ld);
  });
  char what[96];
  std::snprintf(what, sizeof what, "B %d, T %d, heads %d, hd %d", c.B, c.T, c.n_head, HD);
  expect_interleaved(dqkv, ld, rows, C, dq, dk, dv, D, D3, what);
  std::printf("ok   interleaved dq|dk|dv [rows, 3C]: B %d T %4d heads %2d hd %2d %-11s bits equal [rows, C]\n", c.B,
              c.T, c.n_head, HD, Prefetch ? "prefetch" : "no prefetch");
}

}  // namespace

int main() {
  // T below, at and across the 64-row tiles; several sequences and heads; both head sizes; the next
  // tile read during the products or when it is staged, with the same bits.
  run_both<32>(Case{1, 1, 1}, 1);
  run_both<32>(Case{2, 63, 3}, 2);
  run_both<32>(Case{1, 200, 3}, 3);
  run_both<32>(Case{2, 129, 2}, 4);
  run_both<64>(Case{1, 150, 2}, 5);
  run_both<64>(Case{2, 64, 3}, 6);
  // The gradients interleaved in one [rows, 3C] buffer (ld_grad = 3C), across tiles, both head sizes.
  run_interleaved<32, true>(Case{2, 129, 3}, 7);
  run_interleaved<64, false>(Case{2, 80, 2}, 8);
  std::printf("ok\n");
  return 0;
}
