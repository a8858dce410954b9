// The CUDA shim of the host emulations of mma.sync kernels (attention_mma_emulation.cpp,
// unembed_ce_emulation.cpp): each CUDA thread of a block is a std::thread, __syncthreads is a block
// barrier, __shared__ arrays are function statics (one block runs at a time), and the
// warp-collective primitives (mma.sync m16n8k16, __shfl_sync) exchange registers through per-warp
// buffers between two warp barriers. mma_bf16 rebuilds the 16x16 A and 16x8 B matrices from the
// 32 lanes' fragments with the layouts of the PTX ISA written out independently below, so a
// fragment index a kernel gets wrong moves elements and fails its comparison. pack_bf16x2 rounds to
// nearest even like __floats2bfloat162_rn. cp.async copies are held per thread and land only at
// that thread's cp_async_wait_all (the latest the hardware may deliver them), so a read before the
// wait sees the old bytes.
#ifndef MONOSEMANTIC_TEST_MMA_EMULATION_H
#define MONOSEMANTIC_TEST_MMA_EMULATION_H

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
struct uint2 {
  uint32_t x, y;
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
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __restrict__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

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

uint32_t shfl_xor_u32(uint32_t v, int mask) {
  float f, r;
  std::memcpy(&f, &v, sizeof f);
  r = shfl_xor(f, mask);
  uint32_t u;
  std::memcpy(&u, &r, sizeof u);
  return u;
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

// cp.async of 16 bytes: src_bytes (16 or 0) from src, the rest zero; held until cp_async_wait_all.
struct PendingCopy {
  void* dst;
  unsigned char bytes[16];
};
thread_local std::vector<PendingCopy> pending_copies;
inline void cp_async16(void* dst, const void* src, int src_bytes) {
  PendingCopy c{dst, {}};
  if (src_bytes > 0) std::memcpy(c.bytes, src, size_t(src_bytes));
  pending_copies.push_back(c);
}
inline void cp_async_commit() {}
inline void cp_async_wait_all() {
  for (const PendingCopy& c : pending_copies) std::memcpy(c.dst, c.bytes, sizeof c.bytes);
  pending_copies.clear();
}

// Runs body() as every thread of every block of a (gx, gy) grid of `threads`-thread blocks, one
// block at a time; a thread's copies still pending when it ends are dropped.
inline void launch_grid(unsigned gx, unsigned gy, int threads, const std::function<void()>& body) {
  blockDim = Dim3{unsigned(threads), 1, 1};
  gridDim = Dim3{gx, gy, 1};
  for (unsigned y = 0; y < gy; ++y)
    for (unsigned x = 0; x < gx; ++x) {
      blockIdx = Dim3{x, y, 0};
      std::barrier<> barrier(threads);
      block_barrier = &barrier;
      warp_barriers.clear();
      for (int w = 0; w < (threads + 31) / 32; ++w) warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([t, &body] {
          threadIdx = Dim3{unsigned(t), 0, 0};
          pending_copies.clear();
          body();
        });
      for (auto& th : pool) th.join();
    }
}

#endif  // MONOSEMANTIC_TEST_MMA_EMULATION_H
