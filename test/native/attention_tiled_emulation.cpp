// Host emulation of the tiled attention kernels (native/cuda/attention_tiled_kernels.h), run by
// test/unit/attention-emulation.test.ts. The kernel source is compiled for the host under a small
// shim: each CUDA thread of a block is a std::thread, __syncthreads is a std::barrier, __shared__
// arrays are function statics (one block runs at a time, and its threads share them). The
// forward, dq and dk/dv kernels run over every block of the grid; their outputs are compared with
// a float64 reference of causal attention and its gradients (attention_reference.h) on random
// inputs of ragged sizes. The gradients go to [rows, C] arrays (ld_grad = C), and in one case also
// interleaved in a [rows, 3C] buffer (dq | dk | dv, ld_grad = 3C, the layout of the q/k/v
// product's gradient), which must hold the same bits and be written everywhere.
// Prints "ok ..." per case and "ok" at the end; exits 1 on the first mismatch.
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

// ---- the CUDA shim ---------------------------------------------------------------------------------
struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
thread_local Dim3 threadIdx;  // this emulated thread's index in its block
Dim3 blockIdx;                // the block being run (set before its threads start)
Dim3 blockDim;
std::barrier<>* block_barrier = nullptr;
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
using std::max;
using std::min;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __restrict__
#define __shared__ static

#include "cuda/attention_tiled_kernels.h"
#include "attention_reference.h"

namespace {

using namespace ms::cuda::attention_tiled;

// Runs body() as every thread of every block of a (gx, gy) grid of `threads`-thread blocks.
void launch(unsigned gx, unsigned gy, unsigned threads, const std::function<void()>& body) {
  blockDim = Dim3{threads, 1, 1};
  for (unsigned y = 0; y < gy; ++y)
    for (unsigned x = 0; x < gx; ++x) {
      blockIdx = Dim3{x, y, 0};
      std::barrier<> barrier(threads);
      block_barrier = &barrier;
      std::vector<std::thread> pool;
      for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([t, &body] {
          threadIdx = Dim3{t, 0, 0};
          body();
        });
      for (auto& th : pool) th.join();
    }
}

struct Case {
  int B, T, n_head, hd;
};

[[noreturn]] void fail(const char* what, const Case& c, double err) {
  std::printf("FAIL %s (B %d, T %d, heads %d, hd %d): relative error %.3g\n", what, c.B, c.T, c.n_head, c.hd, err);
  std::exit(1);
}

template <int HD>
void run_case(const Case& c, unsigned seed) {
  const int C = c.n_head * HD, rows = c.B * c.T, heads = c.B * c.n_head;
  const auto [q, k, v, dout] = random_attention_inputs(rows, C, seed);
  const float scale = 1.0f / std::sqrt(float(HD));

  const AttentionReference ref = attention_reference(c.B, c.T, c.n_head, HD, q, k, v, dout, dout);

  const float nan = std::nanf("");
  std::vector<float> out(q.size(), nan), lse(size_t(heads) * c.T, nan), dq(q.size(), nan), dk(q.size(), nan),
      dv(q.size(), nan), D(size_t(heads) * c.T, nan);
  const unsigned gx = unsigned((c.T + kRowsPerBlock - 1) / kRowsPerBlock), gy = unsigned(heads);
  launch(gx, gy, kRowsPerBlock, [&] {
    attention_train_tiled_kernel<HD>(c.T, C, c.n_head, scale, q.data(), k.data(), v.data(), out.data(), lse.data());
  });
  if (double e = rel_err(out, ref.out); !(e < 1e-5)) fail("forward out", c, e);
  if (double e = rel_err(lse, ref.lse); !(e < 1e-5)) fail("forward lse", c, e);
  launch(gx, gy, kRowsPerBlock, [&] {
    attention_dq_tiled_kernel<HD>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), out.data(),
                                  lse.data(), dq.data(), C, D.data());
  });
  if (double e = rel_err(dq, ref.dq); !(e < 1e-5)) fail("dq", c, e);
  launch(gx, gy, kRowsPerBlock, [&] {
    attention_dkdv_tiled_kernel<HD>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), lse.data(),
                                    D.data(), dk.data(), dv.data(), C);
  });
  if (double e = rel_err(dk, ref.dk); !(e < 1e-5)) fail("dk", c, e);
  if (double e = rel_err(dv, ref.dv); !(e < 1e-5)) fail("dv", c, e);
  std::printf("ok   B %d T %4d heads %2d hd %2d\n", c.B, c.T, c.n_head, HD);
}

// dq, dk, dv written with row stride 3C into one [rows, 3C] buffer at offsets 0, C and 2C (filled
// with NaN first): every element written, each with the bits the same kernels write into separate
// [rows, C] arrays (ld_grad = C), and D the same.
template <int HD>
void run_interleaved(const Case& c, unsigned seed) {
  const int C = c.n_head * HD, rows = c.B * c.T, heads = c.B * c.n_head, ld = 3 * C;
  const auto [q, k, v, dout] = random_attention_inputs(rows, C, seed);
  const float scale = 1.0f / std::sqrt(float(HD));
  const float nan = std::nanf("");
  std::vector<float> out(q.size(), nan), lse(size_t(heads) * c.T, nan), dq(q.size(), nan), dk(q.size(), nan),
      dv(q.size(), nan), D(size_t(heads) * c.T, nan), dqkv(size_t(rows) * ld, nan), D3(D.size(), nan);
  const unsigned gx = unsigned((c.T + kRowsPerBlock - 1) / kRowsPerBlock), gy = unsigned(heads);
  launch(gx, gy, kRowsPerBlock, [&] {
    attention_train_tiled_kernel<HD>(c.T, C, c.n_head, scale, q.data(), k.data(), v.data(), out.data(), lse.data());
  });
  launch(gx, gy, kRowsPerBlock, [&] {
    attention_dq_tiled_kernel<HD>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), out.data(),
                                  lse.data(), dq.data(), C, D.data());
  });
  launch(gx, gy, kRowsPerBlock, [&] {
    attention_dkdv_tiled_kernel<HD>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), lse.data(),
                                    D.data(), dk.data(), dv.data(), C);
  });
  launch(gx, gy, kRowsPerBlock, [&] {
    attention_dq_tiled_kernel<HD>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), out.data(),
                                  lse.data(), dqkv.data(), ld, D3.data());
  });
  launch(gx, gy, kRowsPerBlock, [&] {
    attention_dkdv_tiled_kernel<HD>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), lse.data(),
                                    D3.data(), dqkv.data() + C, dqkv.data() + 2 * C, ld);
  });
  char what[96];
  std::snprintf(what, sizeof what, "B %d, T %d, heads %d, hd %d", c.B, c.T, c.n_head, HD);
  expect_interleaved(dqkv, ld, rows, C, dq, dk, dv, D, D3, what);
  std::printf("ok   interleaved dq|dk|dv [rows, 3C]: B %d T %4d heads %2d hd %2d bits equal [rows, C]\n", c.B, c.T,
              c.n_head, HD);
}

}  // namespace

int main() {
  // T below, at and across the 64-row tiles and 128-query blocks; several sequences and heads.
  run_case<32>(Case{1, 1, 1, 32}, 1);
  run_case<32>(Case{2, 63, 3, 32}, 2);
  run_case<32>(Case{1, 300, 3, 32}, 3);
  run_case<32>(Case{2, 129, 2, 32}, 4);
  run_case<64>(Case{1, 200, 2, 64}, 5);
  run_case<64>(Case{2, 64, 3, 64}, 6);
  // The gradients interleaved in one [rows, 3C] buffer (ld_grad = 3C), across blocks and tiles.
  run_interleaved<32>(Case{2, 150, 3, 32}, 7);
  std::printf("ok\n");
  return 0;
}
