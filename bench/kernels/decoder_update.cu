/*
 * decoder_update.cu — playground for the SAE's update after the gradients (backend.h
 * sae_update), through the CUDA backend's own table:
 *
 *   1  separate  decoder_remove_parallel_grad, adam_update x 4, decoder_renormalize: six calls,
 *                each waiting for the stream (what a step did before sae_update)
 *   2  fused     sae_update: one call; each W_dec row goes through removal, Adam and
 *                renormalisation in one kernel (sae_update.cu)
 *
 * Correctness: both versions start from the same random state and must end bitwise equal
 * (parameters, moments, and the decoder gradient after removal). Timing: median wall time of
 * --iters updates after warm-up, each followed by a device synchronisation inside the timed region
 * (the backend's calls return once their work is queued), GB/s of the minimum traffic of one update (read W, grad, m, v and write W, m, v and
 * the projected decoder gradient: 32 B per decoder parameter, 28 B per other parameter), and the
 * fraction of --peak-gbps (a measured device copy rate).
 *
 * Build: bash bench/kernels/build.sh -> build/kernels/decoder_update
 * Run:   build/kernels/decoder_update [--check-only] [--iters 50] [--peak-gbps 3000]
 */
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend.h"

extern "C" const ms_backend* monosemantic_cuda_backend(int abi_version);

namespace {

const ms_backend* be = nullptr;
ms_error err{};

void must(int rc, const char* what) {
  if (rc != MS_OK) {
    std::fprintf(stderr, "%s failed: %s (%s)\n", what, err.message, err.op);
    std::exit(1);
  }
}

// The four tensors of one SAE, each with gradient and moments, on the device.
struct State {
  int n, d;
  size_t counts[4];  // W_enc d*n, b_enc n, W_dec n*d, b_dec d
  float* buf[4][4] = {};  // [tensor][param, grad, m, v]

  State(int n_, int d_, unsigned seed) : n(n_), d(d_), counts{size_t(d_) * n_, size_t(n_), size_t(n_) * d_, size_t(d_)} {
    for (int t = 0; t < 4; ++t) {
      std::vector<float> host(counts[t]);
      for (int k = 0; k < 4; ++k) {
        for (float& v : host) {
          seed = seed * 1664525u + 1013904223u;
          const float u = float(seed >> 8) / float(1 << 24);  // [0, 1)
          v = k == 3 ? 1e-4f * u : (u - 0.5f) * (k == 0 ? 0.1f : 1e-2f);  // v (second moment) >= 0
        }
        must(be->alloc(counts[t] * sizeof(float), reinterpret_cast<void**>(&buf[t][k]), &err), "alloc");
        must(be->upload(buf[t][k], host.data(), counts[t] * sizeof(float), &err), "upload");
      }
    }
  }
  ~State() {
    for (auto& t : buf)
      for (float* p : t) be->free(p);
  }
  ms_adam_slot slot(int t) const { return ms_adam_slot{buf[t][0], buf[t][1], buf[t][2], buf[t][3], counts[t]}; }
  std::vector<float> download(int t, int k) const {
    std::vector<float> host(counts[t]);
    must(be->download(host.data(), buf[t][k], counts[t] * sizeof(float), &err), "download");
    return host;
  }
};

ms_adam_hparams hparams() {
  ms_adam_hparams hp{};
  hp.lr = 1e-3f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.999f;
  hp.eps = 1e-8f;
  hp.bias1 = 1.0f - 0.9f * 0.9f;  // step 2
  hp.bias2 = 1.0f - 0.999f * 0.999f;
  hp.grad_scale = 1.0f;
  return hp;
}

void separate(State& s, const ms_adam_hparams& hp) {
  must(be->decoder_remove_parallel_grad(s.n, s.d, s.buf[2][0], s.buf[2][1], &err), "decoder_remove_parallel_grad");
  for (int t = 0; t < 4; ++t) {
    const ms_adam_slot a = s.slot(t);
    must(be->adam_update(a.count, a.param, a.grad, a.m, a.v, &hp, &err), "adam_update");
  }
  must(be->decoder_renormalize(s.n, s.d, s.buf[2][0], &err), "decoder_renormalize");
}

void fused(State& s, const ms_adam_hparams& hp) {
  ms_sae_update_args u{};
  u.n = s.n;
  u.d = s.d;
  u.constrain_decoder = 1;
  u.W_enc = s.slot(0);
  u.b_enc = s.slot(1);
  u.W_dec = s.slot(2);
  u.b_dec = s.slot(3);
  u.hp = hp;
  must(be->sae_update(&u, &err), "sae_update");
}

template <typename Fn>
double median_ms(Fn fn, int iters) {
  ms_error err{};
  for (int w = 0; w < 3; ++w) fn();
  must(be->synchronize(&err), "synchronize");
  std::vector<double> ms(iters);
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    must(be->synchronize(&err), "synchronize");  // the update's work done, not just queued
    ms[i] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  std::sort(ms.begin(), ms.end());
  return ms[iters / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 50;
  double peak_gbps = 0;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--check-only") check_only = true;
    else if (a == "--iters" && i + 1 < argc) iters = std::atoi(argv[++i]);
    else if (a == "--peak-gbps" && i + 1 < argc) peak_gbps = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: decoder_update [--check-only] [--iters N] [--peak-gbps G]\n");
      return 2;
    }
  }
  be = monosemantic_cuda_backend(MS_BACKEND_ABI_VERSION);
  must(be ? be->init(&err) : MS_ERR_UNAVAILABLE, "init");
  const ms_adam_hparams hp = hparams();

  // Correctness: same start, both versions, bitwise equal ends (ragged shapes, and d beyond the
  // fused kernel's row capacity).
  int failures = 0;
  const int check_shapes[][2] = {{83, 29}, {1031, 257}, {4096, 512}, {3, 4100}};
  std::printf("correctness: separate vs fused, bitwise\n");
  for (const auto& sh : check_shapes) {
    State a(sh[0], sh[1], 7), b(sh[0], sh[1], 7);
    separate(a, hp);
    fused(b, hp);
    bool same = true;
    for (int t = 0; t < 4; ++t)
      for (int k = 0; k < 4; ++k) {
        const std::vector<float> x = a.download(t, k), y = b.download(t, k);
        same = same && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
      }
    std::printf("  n %6d d %5d  %s\n", sh[0], sh[1], same ? "equal" : "DIFFERENT");
    failures += same ? 0 : 1;
  }

  const int time_shapes[][2] = {{16384, 512}, {131072, 512}, {24576, 768}};
  if (check_only) {
    std::printf("\n%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
  }
  std::printf("\ntiming: median ms of %d calls\n%-18s %-9s %9s %9s %9s\n", iters, "(n, d)", "version", "ms", "GB/s",
              "of peak");
  for (const auto& sh : time_shapes) {
    const int n = sh[0], d = sh[1];
    const double bytes = 32.0 * n * d + 28.0 * (double(n) * d + n + d);
    for (int v = 1; v <= 2; ++v) {
      // Repeated updates with the same gradients: lr 1e-3 moves the weights by about 1e-3 per call
      // and the decoder rows stay unit-norm, so values stay in range for any --iters.
      State s(n, d, 11);
      const double ms = median_ms([&] { v == 1 ? separate(s, hp) : fused(s, hp); }, iters);
      const double gbps = bytes / (ms * 1e-3) / 1e9;
      char shape[32];
      std::snprintf(shape, sizeof shape, "(%d, %d)", n, d);
      std::printf("%-18s %-9s %9.3f %9.1f %9s\n", shape, v == 1 ? "separate" : "fused", ms, gbps,
                  peak_gbps > 0 ? (std::to_string(int(100 * gbps / peak_gbps)) + "%").c_str() : "-");
    }
  }
  std::printf("\n%s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
