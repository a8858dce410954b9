// Host emulation of the tensor-core attention kernels (native/cuda/attention_mma_kernels.h), run by
// test/unit/attention-emulation.test.ts. The kernel source is compiled for the host under a shim: each
// CUDA thread of a block is a std::thread, __syncthreads is a block barrier, __shared__ arrays are
// function statics (one block runs at a time), and the warp-collective primitives (mma.sync
// m16n8k16, __shfl_sync) exchange registers through per-warp buffers between two warp barriers.
// mma_bf16 rebuilds the 16x16 A and 16x8 B matrices from the 32 lanes' fragments with the layouts
// of the PTX ISA written out independently below, so a fragment index the kernels get wrong moves
// elements and fails the comparison. pack_bf16x2 rounds to nearest even like __floats2bfloat162_rn.
// The forward (out, log-sum-exp) and the gradients (dq, dk, dv) are compared with float64 causal
// attention of the same inputs rounded to bf16 (the kernels' operands), on ragged sizes. What is
// left is the rounding of P and dS to bf16 before their products (kTolerance) and fp32 sums (the
// log-sum-exp, whose scores are exact products of bf16 operands: kLseTolerance).
// Prints "ok ..." per case and "ok" at the end; exits 1 on the first mismatch.
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

// ---- the CUDA shim ---------------------------------------------------------------------------------
struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
struct float4 {
  float x, y, z, w;
};
thread_local Dim3 threadIdx;  // this emulated thread's index in its block
Dim3 blockIdx;                // the block being run (set before its threads start)
Dim3 blockDim;
Dim3 gridDim;
std::barrier<>* block_barrier = nullptr;
std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;  // one per warp of the block
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline void __syncwarp() { warp_barriers[threadIdx.x / 32]->arrive_and_wait(); }
using std::max;
using std::min;
using std::fmaxf;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __restrict__
#define __shared__ static

constexpr int kMaxWarps = 32;

// Registers exchanged by a warp-collective call: slot [warp][lane].
struct WarpExchange {
  float value[kMaxWarps][32];
  uint32_t a[kMaxWarps][32][4];
  uint32_t b[kMaxWarps][32][2];
} exchange;

float shfl_xor(float v, int mask) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  exchange.value[w][lane] = v;
  __syncwarp();
  const float r = exchange.value[w][lane ^ mask];
  __syncwarp();
  return r;
}

float shfl(float v, int src) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  exchange.value[w][lane] = v;
  __syncwarp();
  const float r = exchange.value[w][src & 31];
  __syncwarp();
  return r;
}

float bf16_to_float(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t float_to_bf16(float f) {  // round to nearest even (finite inputs)
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

uint32_t pack_bf16x2(float lo, float hi) { return uint32_t(float_to_bf16(lo)) | (uint32_t(float_to_bf16(hi)) << 16); }

// mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32, g = lane / 4, t = lane % 4:
//   A: reg 0 = (g, 2t), (g, 2t + 1); reg 1 = row g + 8; reg 2 = columns + 8; reg 3 = both;
//   B: reg 0 = (k 2t, n g), (k 2t + 1, n g); reg 1 = k + 8;
//   C/D: d0, d1 = (g, 2t), (g, 2t + 1); d2, d3 = (g + 8, 2t), (g + 8, 2t + 1).
void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  std::memcpy(exchange.a[w][lane], a, sizeof a);
  exchange.b[w][lane][0] = b0;
  exchange.b[w][lane][1] = b1;
  __syncwarp();
  float A[16][16], B[16][8];
  auto lo = [](uint32_t r) { return bf16_to_float(uint16_t(r & 0xffffu)); };
  auto hi = [](uint32_t r) { return bf16_to_float(uint16_t(r >> 16)); };
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    const uint32_t* ra = exchange.a[w][l];
    A[g][2 * t] = lo(ra[0]), A[g][2 * t + 1] = hi(ra[0]);
    A[g + 8][2 * t] = lo(ra[1]), A[g + 8][2 * t + 1] = hi(ra[1]);
    A[g][2 * t + 8] = lo(ra[2]), A[g][2 * t + 9] = hi(ra[2]);
    A[g + 8][2 * t + 8] = lo(ra[3]), A[g + 8][2 * t + 9] = hi(ra[3]);
    const uint32_t* rb = exchange.b[w][l];
    B[2 * t][g] = lo(rb[0]), B[2 * t + 1][g] = hi(rb[0]);
    B[2 * t + 8][g] = lo(rb[1]), B[2 * t + 9][g] = hi(rb[1]);
  }
  __syncwarp();
  const int g = lane / 4, t = lane % 4;
  for (int r = 0; r < 4; ++r) {
    const int row = g + 8 * (r / 2), col = 2 * t + r % 2;
    double s = 0.0;
    for (int k = 0; k < 16; ++k) s += double(A[row][k]) * B[k][col];
    d[r] += float(s);
  }
}

#include "cuda/attention_mma_kernels.h"
#include "attention_reference.h"

namespace {

using namespace ms::cuda::attention_mma;

// Runs body() as every thread of every block of a (gx, gy) grid of kThreads-thread blocks.
void launch(unsigned gx, unsigned gy, const std::function<void()>& body) {
  blockDim = Dim3{unsigned(kThreads), 1, 1};
  gridDim = Dim3{gx, gy, 1};
  for (unsigned y = 0; y < gy; ++y)
    for (unsigned x = 0; x < gx; ++x) {
      blockIdx = Dim3{x, y, 0};
      std::barrier<> barrier(kThreads);
      block_barrier = &barrier;
      warp_barriers.clear();
      for (int w = 0; w < kWarps; ++w) warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
      std::vector<std::thread> pool;
      for (int t = 0; t < kThreads; ++t)
        pool.emplace_back([t, &body] {
          threadIdx = Dim3{unsigned(t), 0, 0};
          body();
        });
      for (auto& th : pool) th.join();
    }
}

struct Case {
  int B, T, n_head;
};

// P and dS rounded to bf16 (2^-9 relative) before the products with v, k, q and dout.
constexpr double kTolerance = 1e-2;
constexpr double kLseTolerance = 1e-5;

float round_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

template <int HD>
void run_case(const Case& c, unsigned seed) {
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
    attention_mma_forward_kernel<HD>(c.T, C, c.n_head, scale, q.data(), k.data(), v.data(), out.data(), lse.data());
  });
  check("forward out", out, ref.out);
  check("forward lse", lse, ref.lse, kLseTolerance);
  launch(gx, gy, [&] {
    attention_mma_dq_kernel<HD>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), out.data(),
                                lse.data(), dq.data(), D.data());
  });
  check("dq", dq, ref.dq);
  launch(gx, gy, [&] {
    attention_mma_dkdv_kernel<HD>(c.T, C, c.n_head, scale, dout.data(), q.data(), k.data(), v.data(), lse.data(),
                                  D.data(), dk.data(), dv.data());
  });
  check("dk", dk, ref.dk);
  check("dv", dv, ref.dv);
  std::printf("ok   B %d T %4d heads %2d hd %2d  worst relative error %.2e\n", c.B, c.T, c.n_head, HD, worst);
}

}  // namespace

int main() {
  // T below, at and across the 64-row tiles; several sequences and heads; both head sizes.
  run_case<32>(Case{1, 1, 1}, 1);
  run_case<32>(Case{2, 63, 3}, 2);
  run_case<32>(Case{1, 200, 3}, 3);
  run_case<32>(Case{2, 129, 2}, 4);
  run_case<64>(Case{1, 150, 2}, 5);
  run_case<64>(Case{2, 64, 3}, 6);
  std::printf("ok\n");
  return 0;
}
