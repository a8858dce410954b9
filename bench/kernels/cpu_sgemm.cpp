/*
 * cpu_sgemm.cpp — playground for the CPU sgemm (native/cpu/gemm*.cpp), in the style of llm.c's
 * dev/cuda: every version in one file, a double-precision reference, a correctness sweep, and a
 * timing sweep against OpenBLAS measured in the same process. x86-64 only (OpenBLAS reference,
 * AVX peak loops); the library itself also builds elsewhere.
 *
 * Build (from the repository root; lists only the sgemm's own files, each with its own flags):
 *   mkdir -p build/bench && cd build/bench &&
 *   g++ -O3 -std=c++17 -pthread -c -mavx2 -mfma ../../native/cpu/gemm_kernel_avx2.cpp &&
 *   g++ -O3 -std=c++17 -pthread -c -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma \
 *       ../../native/cpu/gemm_kernel_avx512.cpp &&
 *   g++ -O3 -std=c++17 -pthread -I../../native -o cpu_sgemm ../../bench/kernels/cpu_sgemm.cpp \
 *       ../../native/cpu/gemm.cpp ../../native/cpu/thread_pool.cpp ../../native/cpu/cpu_features.cpp \
 *       gemm_kernel_avx2.o gemm_kernel_avx512.o -lopenblas && cd ../..
 * Run:
 *   build/bench/cpu_sgemm check            correctness sweep: every SIMD level x 1,2 threads
 *   build/bench/cpu_sgemm bench [v]        timing sweep of version v (default 3) vs OpenBLAS, 1 and 2 threads
 *   build/bench/cpu_sgemm bench-large [v]  the same on larger SAE shapes (d=2048, n=16384)
 *   build/bench/cpu_sgemm shape M N K ta tb [reps] [v]   one shape, 1 and 2 threads
 *   build/bench/cpu_sgemm peak             FMA-throughput floor (machine peak), 1 and 2 threads
 *   build/bench/cpu_sgemm kernel           the active microkernel alone (packed A in L2, B panel in L1), 1 thread
 * MONOSEMANTIC_SIMD=scalar|avx2|avx512 caps the level used by version 3 (bench, shape).
 *
 * Versions (1-2 live in this file; 3 is the library, and 3a-3g are the steps it went through —
 * timings of each are in bench/kernels/NOTES-cpu-sgemm.md; only the last state is kept):
 *   1. naive i-j-k triple loop, strided op(A)/op(B) access, one thread.
 *   2. rows of C split over threads (parallel_for); i-k-j loop (C row += A[i,k] * B row,
 *      auto-vectorised) or, for transposed B, row-by-row dot products.
 *   3. the library sgemm (native/cpu/gemm.cpp + gemm_kernel_*.cpp): BLIS loop nest, packed
 *      zero-padded panels, register-blocked microkernel picked by active_simd().
 *      3a. AVX-512 14x32 ZMM kernel, mc 168 / kc 256 / nc 4096; AVX2 6x16 kernel; packing panel
 *          by panel with vmaskmovps for partial vectors; threads split the tile grid, B shared.
 *      3b. partial-vector stores with plain 16/8/4-byte stores (vmaskmovps stores are microcoded
 *          on AMD).
 *      3c. k-major packing row by row across all panels (sequential reads) instead of panel by
 *          panel (a 56-byte read per row per panel, striding through memory).
 *      3d. AVX2 kernel: unroll pragmas so GCC keeps the 12 accumulators in registers (it stored
 *          them to the stack every k step: 49 -> ~110 GFLOP/s in cache).
 *      3e. kc 256 -> 512 (half the C read-modify-write passes).
 *      3f. tile-shape sweep at kc 512 (ZMM 14x32, 12x32, 8x48, 6x64, 4x64; YMM 12x16, 8x24):
 *          14x32 kept.
 *      3g. thread pool: a worker started for a job now takes part in that job.
 *      3h. scalar packer reads the source in memory order too.
 */
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <cblas.h>

#include "cpu/cpu_features.h"
#include "cpu/gemm.h"
#include "cpu/thread_pool.h"

using ms::cpu::SimdLevel;

namespace {

// ------------------------------------------------------------------------------------------------
// Versions

using GemmFn = void (*)(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int);

// op(A)[i, k]: A stored [M,K] -> A[i*lda + k]; transposed, stored [K,M] -> A[k*lda + i].
inline float op_a(const float* A, int lda, bool ta, int i, int k) {
  return ta ? A[size_t(k) * lda + i] : A[size_t(i) * lda + k];
}
// op(B)[k, j]: B stored [K,N] -> B[k*ldb + j]; transposed, stored [N,K] -> B[j*ldb + k].
inline float op_b(const float* B, int ldb, bool tb, int k, int j) {
  return tb ? B[size_t(j) * ldb + k] : B[size_t(k) * ldb + j];
}

// Version 1: naive.
void sgemm_v1(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
              int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = 0.0f;
      for (int k = 0; k < K; ++k) s += op_a(A, lda, ta, i, k) * op_b(B, ldb, tb, k, j);
      float& c = C[size_t(i) * ldc + j];  // C[i, j]
      c = beta == 0.0f ? alpha * s : alpha * s + beta * c;
    }
}

// Version 2: rows of C split over threads; i-k-j order (C row += A[i,k] * B row, vectorised)
// when B rows are contiguous, dot products of A and B rows when B is used transposed.
void sgemm_v2(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
              int ldb, float beta, float* C, int ldc) {
  ms::cpu::parallel_for(size_t(M), 1, [&](size_t i0, size_t i1) {
    std::vector<float> acc(N), arow(K);
    for (size_t i = i0; i < i1; ++i) {
      for (int k = 0; k < K; ++k) arow[k] = op_a(A, lda, ta, int(i), k);
      if (tb) {
        for (int j = 0; j < N; ++j) {
          const float* bj = B + size_t(j) * ldb;  // op(B)[:, j] = B[j, :] (stored [N,K])
          float s = 0.0f;
          for (int k = 0; k < K; ++k) s += arow[k] * bj[k];
          acc[j] = s;
        }
      } else {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int k = 0; k < K; ++k) {
          const float* bk = B + size_t(k) * ldb;  // op(B)[k, :] = B[k, :] (stored [K,N])
          for (int j = 0; j < N; ++j) acc[j] += arow[k] * bk[j];
        }
      }
      float* c = C + i * ldc;  // C[i, :]
      for (int j = 0; j < N; ++j) c[j] = beta == 0.0f ? alpha * acc[j] : alpha * acc[j] + beta * c[j];
    }
  });
}

GemmFn version_fn(int v) {
  switch (v) {
    case 1: return sgemm_v1;
    case 2: return sgemm_v2;
    case 3: return ms::cpu::sgemm;
    default: std::fprintf(stderr, "unknown version %d (1..3)\n", v); std::exit(2);
  }
}

// ------------------------------------------------------------------------------------------------
// Helpers

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Uniform in [-1, 1], never zero.
void fill_uniform(std::vector<float>& x, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& v : x) {
    do v = dist(rng);
    while (v == 0.0f);
  }
}

std::vector<SimdLevel> levels_up_to_detected() {
  std::vector<SimdLevel> out;
  for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512})
    if (int(l) <= int(ms::cpu::detected_simd())) out.push_back(l);
  return out;
}

// Runs fn(i) for i in [0, n) on `threads` std::threads (independent of the pool under test).
void reference_parallel(int n, int threads, const std::function<void(int)>& fn) {
  std::vector<std::thread> pool;
  std::atomic<int> next{0};
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < n;) fn(i);
    });
  for (auto& t : pool) t.join();
}

// ------------------------------------------------------------------------------------------------
// Correctness

constexpr float kSentinel = 12345.0f;  // value of C's padding columns and guard tail
constexpr int kGuard = 64;              // floats after C's last row, checked like padding

struct Case {
  bool ta, tb;
  int M, N, K;
  int lda, ldb, ldc;
  std::vector<float> A, B, C0;  // A, B as stored; C0 the initial C (ldc stride)
  std::vector<double> ab;       // ab[i*N + j] = sum_k op(A)[i,k] op(B)[k,j] in double
  std::vector<double> bound;    // bound[i*N + j] = max_k |op(A)[i,k]| max_k |op(B)[k,j]| (>= max |term|)
};

Case make_case(bool ta, bool tb, int M, int N, int K, int pad, std::mt19937& rng) {
  Case c{ta, tb, M, N, K, (ta ? M : K) + pad, (tb ? K : N) + pad, N + pad, {}, {}, {}, {}, {}};
  c.A.resize(size_t(ta ? K : M) * c.lda);  // [M,K] or [K,M] rows of lda
  c.B.resize(size_t(tb ? N : K) * c.ldb);  // [K,N] or [N,K] rows of ldb
  c.C0.resize(size_t(M) * c.ldc + kGuard);  // + a guard tail that must stay untouched
  fill_uniform(c.A, rng);
  fill_uniform(c.B, rng);
  fill_uniform(c.C0, rng);
  // Double copies: a[i*K + k] = op(A)[i,k], bt[j*K + k] = op(B)[k,j].
  std::vector<double> a(size_t(M) * K), bt(size_t(N) * K), amax(M, 0.0), bmax(N, 0.0);
  for (int i = 0; i < M; ++i)
    for (int k = 0; k < K; ++k) {
      a[size_t(i) * K + k] = op_a(c.A.data(), c.lda, ta, i, k);
      amax[i] = std::max(amax[i], std::fabs(a[size_t(i) * K + k]));
    }
  for (int j = 0; j < N; ++j)
    for (int k = 0; k < K; ++k) {
      bt[size_t(j) * K + k] = op_b(c.B.data(), c.ldb, tb, k, j);
      bmax[j] = std::max(bmax[j], std::fabs(bt[size_t(j) * K + k]));
    }
  c.ab.resize(size_t(M) * N);
  c.bound.resize(size_t(M) * N);
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  reference_parallel(M, double(M) * N * K > 1e6 ? threads : 1, [&](int i) {
    for (int j = 0; j < N; ++j) {
      const double* ai = &a[size_t(i) * K];
      const double* bj = &bt[size_t(j) * K];
      double s = 0.0;
      for (int k = 0; k < K; ++k) s += ai[k] * bj[k];
      c.ab[size_t(i) * N + j] = s;
      c.bound[size_t(i) * N + j] = amax[i] * bmax[j];
    }
  });
  return c;
}


struct CheckResult {
  bool ok = true;
  double worst_ratio = 0;  // max |C - ref| / tolerance
  double frob = 0;         // ||C - ref||_F / ||ref||_F
  std::string why;
};

// Runs sgemm on case c with (alpha, beta) and checks every element and the padding.
CheckResult run_check(GemmFn fn, const Case& c, float alpha, float beta) {
  std::vector<float> C(c.C0);
  for (int i = 0; i < c.M; ++i)
    for (int j = 0; j < c.ldc; ++j) {
      float& v = C[size_t(i) * c.ldc + j];  // C[i, j]
      if (j >= c.N) v = kSentinel;
      else if (beta == 0.0f) v = std::nanf("");  // must be written, never read
    }
  std::fill(C.end() - kGuard, C.end(), kSentinel);
  fn(c.ta, c.tb, c.M, c.N, c.K, alpha, c.A.data(), c.lda, c.B.data(), c.ldb, beta, C.data(), c.ldc);
  CheckResult r;
  double err2 = 0, ref2 = 0;
  for (int i = 0; i < c.M; ++i)
    for (int j = 0; j < c.ldc; ++j) {
      const float got = C[size_t(i) * c.ldc + j];
      if (j >= c.N) {
        if (got != kSentinel && r.ok) {
          r.ok = false;
          r.why = "padding C[" + std::to_string(i) + "," + std::to_string(j) + "] overwritten";
        }
        continue;
      }
      const double c0 = c.C0[size_t(i) * c.ldc + j];
      const double ref = alpha * c.ab[size_t(i) * c.N + j] + (beta == 0.0f ? 0.0 : beta * c0);
      const double max_term = std::max(std::fabs(alpha) * c.bound[size_t(i) * c.N + j], std::fabs(beta * c0));
      const double tol = 1e-5 * std::max(c.K, 1) * max_term + 1e-30;
      const double err = std::fabs(double(got) - ref);
      err2 += err * err;
      ref2 += ref * ref;
      if (!(err <= tol) && r.ok) {  // also catches NaN
        r.ok = false;
        r.why = "C[" + std::to_string(i) + "," + std::to_string(j) + "] = " + std::to_string(got) +
                ", reference " + std::to_string(ref);
      }
      if (err == err) r.worst_ratio = std::max(r.worst_ratio, err / tol);
    }
  for (size_t g = C.size() - kGuard; g < C.size(); ++g)
    if (C[g] != kSentinel && r.ok) {
      r.ok = false;
      r.why = "write past the end of C";
    }
  r.frob = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  return r;
}

// Checks of the thread pool's contract.
bool check_pool() {
  bool ok = true;
  auto expect = [&](bool cond, const char* what) {
    if (!cond) std::printf("  pool FAIL: %s\n", what);
    ok = ok && cond;
  };
  for (int threads : {1, 2, 3, 8}) {
    ms::cpu::set_num_threads(threads);
    for (size_t count : {1, 2, 5, 63, 1000}) {
      for (size_t grain : {0, 1, 7, 64, 5000}) {
        std::vector<std::atomic<int>> hits(count);
        std::atomic<int> chunks{0}, small{0};
        ms::cpu::parallel_for(count, grain, [&](size_t b, size_t e) {
          chunks++;
          if (e - b < std::max<size_t>(grain, 1) && e - b != count) small++;
          for (size_t i = b; i < e; ++i) hits[i]++;
        });
        bool once = true;
        for (auto& h : hits) once = once && h == 1;
        expect(once, "every index exactly once");
        expect(small == 0, "chunks >= grain");
        expect(chunks <= threads, "at most num_threads() chunks");
      }
    }
  }
  ms::cpu::set_num_threads(2);
  std::atomic<int> inner{0};
  ms::cpu::parallel_for(4, 1, [&](size_t, size_t) {
    const auto self = std::this_thread::get_id();
    ms::cpu::parallel_for(100, 1, [&](size_t b, size_t e) {
      if (std::this_thread::get_id() == self && b == 0 && e == 100) inner++;
    });
  });
  expect(inner == 2, "nested parallel_for runs inline as one chunk");
  bool caught = false;
  std::atomic<int> finished{0};
  try {
    ms::cpu::parallel_for(2, 1, [&](size_t b, size_t) {
      if (b == 0) throw std::runtime_error("boom");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      finished++;
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "boom";
  }
  expect(caught && finished == 1, "exception rethrown after all chunks finish");
  std::atomic<long> total{0};
  std::vector<std::thread> outside;
  for (int t = 0; t < 4; ++t)
    outside.emplace_back([&] {
      for (int r = 0; r < 200; ++r)
        ms::cpu::parallel_for(1000, 10, [&](size_t b, size_t e) { total += long(e - b); });
    });
  for (auto& t : outside) t.join();
  expect(total == 4L * 200 * 1000, "concurrent calls from outside threads");
  return ok;
}

int run_check_sweep() {
  std::printf("cpu: %s, detected %s\n", ms::cpu::cpu_model_name().c_str(), ms::cpu::simd_name(ms::cpu::detected_simd()));
  const bool pool_ok = check_pool();
  std::printf("thread pool contract: %s\n", pool_ok ? "ok" : "FAILED");

  const int dims[] = {1, 2, 3, 7, 16, 17, 31, 33, 64, 65, 127, 200};
  const float alpha_beta[][2] = {{1, 0}, {0.5f, 0}, {1, 1}, {-2, 0.25f}};
  struct Big {
    bool ta, tb;
    int M, N, K;
  };
  const Big big[] = {{false, false, 1024, 4096, 512}, {false, false, 1024, 512, 4096},
                     {true, false, 4096, 512, 1024},  {false, true, 1024, 4096, 512},
                     {true, false, 512, 4096, 1024}};
  std::mt19937 rng(1234);
  long runs = 0, failures = 0;
  double worst_ratio = 0, worst_frob = 0;
  std::string worst_frob_case;
  auto run_all = [&](const Case& c, const float (*abs)[2], int n_ab) {
    for (SimdLevel level : levels_up_to_detected()) {
      ms::cpu::set_simd_cap(level);
      for (int threads : {1, 2}) {
        ms::cpu::set_num_threads(threads);
        for (int t = 0; t < n_ab; ++t) {
          const CheckResult r = run_check(ms::cpu::sgemm, c, abs[t][0], abs[t][1]);
          ++runs;
          worst_ratio = std::max(worst_ratio, r.worst_ratio);
          if (r.frob > worst_frob) {
            worst_frob = r.frob;
            char buf[160];
            std::snprintf(buf, sizeof buf, "%s ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g", ms::cpu::simd_name(level),
                          c.ta, c.tb, c.M, c.N, c.K, abs[t][0], abs[t][1]);
            worst_frob_case = buf;
          }
          if (!r.ok && ++failures <= 20)
            std::printf("FAIL %s threads=%d ta=%d tb=%d M=%d N=%d K=%d ld=(%d,%d,%d) alpha=%g beta=%g: %s\n",
                        ms::cpu::simd_name(level), threads, c.ta, c.tb, c.M, c.N, c.K, c.lda, c.ldb, c.ldc,
                        abs[t][0], abs[t][1], r.why.c_str());
        }
      }
    }
  };
  const double t0 = now_ms();
  int shape_index = 0;
  for (int M : dims)
    for (int N : dims)
      for (int K : dims) {
        const int pad = (shape_index++ % 3 == 0) ? 3 + shape_index % 5 : 0;  // a third with ld > width
        for (int tt = 0; tt < 4; ++tt) run_all(make_case(tt & 1, tt >> 1, M, N, K, pad, rng), alpha_beta, 4);
      }
  // Ragged shapes past one cache block: several uneven k passes (kc = 512), several nc blocks
  // (nc = 4096), several mc blocks per thread.
  const int ragged[][3] = {{77, 4500, 33}, {333, 65, 1100}, {3, 9000, 700}, {515, 129, 1537}, {1000, 40, 1025}};
  for (const auto& r : ragged)
    for (int tt = 0; tt < 4; ++tt) run_all(make_case(tt & 1, tt >> 1, r[0], r[1], r[2], tt, rng), alpha_beta, 4);
  const double t_small = now_ms() - t0;
  const float big_ab[][2] = {{1, 0}, {-2, 0.25f}};
  for (const Big& b : big) run_all(make_case(b.ta, b.tb, b.M, b.N, b.K, 0, rng), big_ab, 2);
  run_all(make_case(false, true, 1024, 4096, 512, 5, rng), big_ab, 2);  // a big one with ld > width
  // Thread-count independence: bitwise equal results with 1, 2 and 3 threads.
  bool deterministic = true;
  const int det_shapes[][3] = {{1024, 512, 4096}, {333, 65, 1100}, {77, 4500, 33}, {515, 129, 1537}};
  for (SimdLevel level : levels_up_to_detected()) {
    ms::cpu::set_simd_cap(level);
    for (const auto& d : det_shapes) {
      const Case c = make_case(false, true, d[0], d[1], d[2], 0, rng);
      std::vector<float> first;
      for (int threads : {1, 2, 3}) {
        ms::cpu::set_num_threads(threads);
        std::vector<float> C(c.C0);
        ms::cpu::sgemm(c.ta, c.tb, c.M, c.N, c.K, 0.5f, c.A.data(), c.lda, c.B.data(), c.ldb, 0.25f, C.data(), c.ldc);
        if (first.empty()) first = C;
        else if (std::memcmp(first.data(), C.data(), C.size() * sizeof(float)) != 0) {
          deterministic = false;
          std::printf("FAIL %s M=%d N=%d K=%d: %d threads differ from 1 thread\n", ms::cpu::simd_name(level), c.M, c.N,
                      c.K, threads);
        }
      }
    }
  }
  std::printf("results bitwise independent of the thread count (1, 2, 3): %s\n", deterministic ? "yes" : "NO");
  ms::cpu::set_simd_cap(SimdLevel::AVX512);
  std::printf("sgemm: %ld runs (%d^3 small + 5 ragged shapes x 4 transposes x 4 alpha/beta, 6 big; each at", runs,
              int(sizeof dims / sizeof dims[0]));
  for (SimdLevel l : levels_up_to_detected()) std::printf(" %s", ms::cpu::simd_name(l));
  std::printf(" x 1,2 threads), %ld failures; worst |err|/tol %.3g, worst rel. Frobenius %.3g (%.1f s + %.1f s)\n",
              failures, worst_ratio, worst_frob, t_small / 1e3, (now_ms() - t0 - t_small) / 1e3);
  std::printf("(worst rel. Frobenius at %s)\n", worst_frob_case.c_str());
  return failures == 0 && pool_ok && deterministic ? 0 : 1;
}

// ------------------------------------------------------------------------------------------------
// Timing

struct Shape {
  const char* label;
  bool ta, tb;
  int M, N, K;
};

struct Timing {
  double ours_ms, blas_ms;
};

// Times ours and OpenBLAS in alternating blocks (3 rounds of reps/3 calls each, after one
// warm-up call each) so that drift in the shared VM's speed hits both alike; returns the medians.
// Each block is followed by a 300 ms pause, so that the idle threads of one library are asleep
// while the other runs: OpenBLAS's poll with sched_yield for ~100 ms after each call, and a
// worker of ours woken meanwhile can end up sharing the caller's core while OpenBLAS's poller
// holds the other (call-by-call alternation measured ours at ~50% on 2 threads that way).
Timing time_shape(GemmFn fn, const Shape& s, int threads, int reps) {
  std::mt19937 rng(42);
  std::vector<float> A(size_t(s.M) * s.K), B(size_t(s.K) * s.N), C(size_t(s.M) * s.N);
  fill_uniform(A, rng);
  fill_uniform(B, rng);
  const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
  ms::cpu::set_num_threads(threads);
  openblas_set_num_threads(threads);
  auto ours = [&] { fn(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), ldc); };
  auto blas = [&] {
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.M, s.N, s.K,
                1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), ldc);
  };
  auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); };
  auto block = [](const std::function<void()>& call, int calls, std::vector<double>& times) {
    for (int r = 0; r < calls; ++r) {
      const double t = now_ms();
      call();
      times.push_back(now_ms() - t);
    }
  };
  std::vector<double> t_ours, t_blas, warm;
  const int per_round = (std::max(reps, 3) + 2) / 3;
  block(ours, 1, warm);
  pause();
  block(blas, 1, warm);
  pause();
  for (int round = 0; round < 3; ++round) {
    block(ours, per_round, t_ours);
    pause();
    block(blas, per_round, t_blas);
    pause();
  }
  return {median(t_ours), median(t_blas)};
}

void print_row(const Shape& s, int threads, const Timing& t) {
  const double gflop = 2.0 * s.M * s.N * s.K * 1e-9;
  std::printf("%-22s %5d %5d %5d  %c%c  %2d  %9.3f %8.1f  %9.3f %8.1f  %6.1f%%\n", s.label, s.M, s.N, s.K,
              s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', threads, t.ours_ms, gflop / (t.ours_ms * 1e-3), t.blas_ms,
              gflop / (t.blas_ms * 1e-3), 100.0 * t.blas_ms / t.ours_ms);
}

void print_header(int version) {
  std::printf("cpu: %s | version %d | kernel set: %s | openblas: %s\n", ms::cpu::cpu_model_name().c_str(), version,
              version == 3 ? ms::cpu::gemm_detail::active_kernel_set().name : "-", openblas_get_config());
  std::printf("%-22s %5s %5s %5s  %2s  %2s  %9s %8s  %9s %8s  %7s\n", "shape", "M", "N", "K", "op", "th", "ours ms",
              "GFLOP/s", "blas ms", "GFLOP/s", "ratio");
}

// CPU time (clock ticks) used by the whole machine and by this process, from /proc: what other
// processes used during a timing run shows how much the numbers may be disturbed.
struct CpuTicks {
  long long machine = 0, self = 0;
};

CpuTicks cpu_ticks() {
  CpuTicks t;
  if (FILE* f = std::fopen("/proc/stat", "r")) {
    long long v[8] = {};  // user nice system idle iowait irq softirq steal
    if (std::fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                    &v[6], &v[7]) == 8)
      t.machine = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    std::fclose(f);
  }
  if (FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[1024] = {};
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    std::fclose(f);
    const char* p = std::strrchr(buf, ')');  // fields after the command name; utime, stime are 14, 15
    long long utime = 0, stime = 0;
    if (p && std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime, &stime) == 2)
      t.self = utime + stime;
  }
  return t;
}

int run_bench(const std::vector<Shape>& shapes, int version, double budget_ms_per_case) {
  const CpuTicks start = cpu_ticks();
  const double t_start = now_ms();
  const GemmFn fn = version_fn(version);
  print_header(version);
  std::vector<double> step_ours(3, 0), step_blas(3, 0);
  for (int threads : {1, 2}) {
    for (const Shape& s : shapes) {
      // Enough repetitions for ~budget_ms of ours + OpenBLAS, between 5 and 200.
      const double est_ms = 2.0 * s.M * s.N * s.K / (threads * 60e9) * 1e3 * (version == 3 ? 1 : 20);
      const int reps = int(std::clamp(budget_ms_per_case / (2 * est_ms), 5.0, 200.0));
      const Timing t = time_shape(fn, s, threads, reps);
      print_row(s, threads, t);
      step_ours[threads] += t.ours_ms;
      step_blas[threads] += t.blas_ms;
    }
    std::printf("%-22s %29d  %9.3f %8s  %9.3f %8s  %6.1f%%\n", "sum (one SAE step)", threads, step_ours[threads], "",
                step_blas[threads], "", 100.0 * step_blas[threads] / step_ours[threads]);
  }
  const CpuTicks end = cpu_ticks();
  const double others = double(end.machine - start.machine - (end.self - start.self)) / 100.0;
  std::printf("other processes used %.1f CPU-seconds during this %.0f s run (%.1f%% of one core)\n", others,
              (now_ms() - t_start) / 1e3, 100.0 * others / ((now_ms() - t_start) / 1e3));
  return 0;
}

// The five products of an SAE training step with (d, n, B).
std::vector<Shape> sae_shapes(int d, int n, int B) {
  return {{"1 pre = X W_enc", false, false, B, n, d},
          {"2 xhat = F W_dec", false, false, B, d, n},
          {"3 dW_dec = F^T G", true, false, n, d, B},
          {"4 gF = G W_dec^T", false, true, B, n, d},
          {"5 dW_enc = X^T gPre", true, false, d, n, B}};
}

// ------------------------------------------------------------------------------------------------
// Peak: independent FMA chains only (no loads), the ceiling any kernel can reach.

__attribute__((target("avx512f,fma"))) double fma_loop_zmm(long iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  alignas(64) float out[16];
  float s = 0;
  for (int i = 0; i < 12; ++i) {
    _mm512_store_ps(out, acc[i]);
    for (float v : out) s += v;
  }
  return s;
}

__attribute__((target("avx2,fma"))) double fma_loop_ymm(long iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i));
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  alignas(32) float out[8];
  float s = 0;
  for (int i = 0; i < 12; ++i) {
    _mm256_store_ps(out, acc[i]);
    for (float v : out) s += v;
  }
  return s;
}

int run_peak() {
  std::printf("cpu: %s\n", ms::cpu::cpu_model_name().c_str());
  const long iters = 20000000;
  struct Variant {
    const char* name;
    double (*fn)(long);
    int lanes;
    SimdLevel need;
  };
  const Variant variants[] = {{"ymm (AVX2 FMA)", fma_loop_ymm, 8, SimdLevel::AVX2},
                              {"zmm (AVX-512 FMA)", fma_loop_zmm, 16, SimdLevel::AVX512}};
  for (const Variant& v : variants) {
    if (int(ms::cpu::detected_simd()) < int(v.need)) continue;
    for (int threads : {1, 2}) {
      std::vector<double> rates;
      for (int rep = 0; rep < 7; ++rep) {
        std::vector<std::thread> ts;
        std::atomic<double> sink{0};
        const double t0 = now_ms();
        for (int t = 0; t < threads; ++t) ts.emplace_back([&] { sink = sink + v.fn(iters); });
        for (auto& t : ts) t.join();
        const double ms = now_ms() - t0;
        rates.push_back(2.0 * 12 * v.lanes * double(iters) * threads / (ms * 1e6));
      }
      std::printf("%-18s %d thread(s): median %.1f GFLOP/s (max %.1f)\n", v.name, threads, median(rates),
                  *std::max_element(rates.begin(), rates.end()));
    }
  }
  return 0;
}

// Microkernel alone, one thread: the ir loop over an L2-resident packed A block against one
// L1-resident packed B panel, C tiles in L1 (beta = 1). The ceiling for the blocked sgemm.
int run_kernel_only() {
  const auto& ks = ms::cpu::gemm_detail::active_kernel_set();
  std::printf("kernel set %s (mr %d, nr %d, mc %d, kc %d, nc %d)\n", ks.name, ks.mr, ks.nr, ks.mc, ks.kc, ks.nc);
  for (int kc : {64, 128, 256, 384, 512}) {
    const int panels = std::max(1, ks.mc / ks.mr);
    std::vector<float> a(size_t(panels) * ks.mr * kc + 16), b(size_t(kc) * ks.nr + 16);
    std::vector<float> c(size_t(panels) * ks.mr * ks.nr);
    std::mt19937 rng(7);
    fill_uniform(a, rng);
    fill_uniform(b, rng);
    std::fill(c.begin(), c.end(), 0.0f);
    float* ap = a.data() + (16 - reinterpret_cast<uintptr_t>(a.data()) / 4 % 16) % 16;  // 64-byte aligned
    float* bp = b.data() + (16 - reinterpret_cast<uintptr_t>(b.data()) / 4 % 16) % 16;
    std::vector<double> rates;
    for (int rep = 0; rep < 9; ++rep) {
      const int sweeps = int(std::max(1.0, 2e8 / (double(panels) * ks.mr * ks.nr * kc)));
      const double t0 = now_ms();
      for (int s = 0; s < sweeps; ++s)
        for (int p = 0; p < panels; ++p)
          ks.micro(kc, ap + size_t(p) * ks.mr * kc, bp, c.data() + size_t(p) * ks.mr * ks.nr, ks.nr, 1.0f, 1.0f);
      rates.push_back(2.0 * sweeps * panels * ks.mr * ks.nr * kc / ((now_ms() - t0) * 1e6));
    }
    std::printf("  kc %3d: median %.1f GFLOP/s (max %.1f)\n", kc, median(rates), *std::max_element(rates.begin(), rates.end()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "check") return run_check_sweep();
  if (mode == "peak") return run_peak();
  if (mode == "kernel") return run_kernel_only();
  if (mode == "bench") return run_bench(sae_shapes(512, 4096, 1024), argc > 2 ? std::atoi(argv[2]) : 3, 2000);
  if (mode == "bench-large") return run_bench(sae_shapes(2048, 16384, 1024), argc > 2 ? std::atoi(argv[2]) : 3, 6000);
  if (mode == "shape" && argc >= 7) {
    const Shape s{"shape", std::atoi(argv[5]) != 0, std::atoi(argv[6]) != 0, std::atoi(argv[2]), std::atoi(argv[3]),
                  std::atoi(argv[4])};
    const int reps = argc > 7 ? std::atoi(argv[7]) : 20;
    const int version = argc > 8 ? std::atoi(argv[8]) : 3;
    print_header(version);
    for (int threads : {1, 2}) print_row(s, threads, time_shape(version_fn(version), s, threads, reps));
    return 0;
  }
  std::fprintf(stderr,
               "usage: %s check | peak | kernel | bench [version] | bench-large [version] | shape M N K ta tb [reps] [version]\n",
               argv[0]);
  return 2;
}
