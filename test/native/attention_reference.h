// Float64 causal attention and its gradients, the random inputs, the error measure and the check of
// gradients written interleaved, shared by the
// host emulations of the CUDA attention kernels (attention_tiled_emulation.cpp, attention_mma_emulation.cpp).
#ifndef MONOSEMANTIC_TEST_ATTENTION_REFERENCE_H
#define MONOSEMANTIC_TEST_ATTENTION_REFERENCE_H

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

struct AttentionInputs {
  std::vector<float> q, k, v, dout;  // [rows, C] each
};

// Normal q, k (scaled by 1.5), v and dout [rows, C], drawn in that order from mt19937(seed).
inline AttentionInputs random_attention_inputs(int rows, int C, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random = [&](float scale) {
    std::vector<float> x(size_t(rows) * C);
    for (float& e : x) e = scale * normal(gen);
    return x;
  };
  AttentionInputs in;
  in.q = random(1.0f);
  in.k = random(1.5f);
  in.v = random(1.0f);
  in.dout = random(1.0f);
  return in;
}

struct AttentionReference {
  std::vector<double> out, lse, dq, dk, dv;
};

// For q, k, v, dout [B*T, C] with n_head heads of hd columns (row t of head h of sequence b at
// b*T*C + h*hd + t*C): P = softmax over j <= t of scale q_t . k_j, out = P v, lse [B, n_head, T], and
// the gradients with D_t = dout_d_t . out_t and dS_tj = P_tj (dout_t . v_j - D_t). dout_d is the
// dout that D reads: the kernels' fp32 one where their products take rounded operands.
inline AttentionReference attention_reference(int B, int T, int n_head, int hd, const std::vector<float>& q,
                                              const std::vector<float>& k, const std::vector<float>& v,
                                              const std::vector<float>& dout, const std::vector<float>& dout_d) {
  const int C = n_head * hd;
  const double scale = 1.0f / std::sqrt(float(hd));  // the kernels' fp32 scale
  AttentionReference r{std::vector<double>(q.size()), std::vector<double>(size_t(B) * n_head * T),
                       std::vector<double>(q.size(), 0.0), std::vector<double>(q.size(), 0.0),
                       std::vector<double>(q.size(), 0.0)};
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < n_head; ++h) {
      const size_t base = size_t(b) * T * C + size_t(h) * hd;  // row t of the head at base + t*C
      for (int t = 0; t < T; ++t) {
        std::vector<double> s(t + 1);
        double m = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          double dot = 0.0;
          for (int d = 0; d < hd; ++d) dot += double(q[base + t * C + d]) * k[base + j * C + d];
          s[j] = scale * dot;
          m = std::max(m, s[j]);
        }
        double l = 0.0;
        for (int j = 0; j <= t; ++j) l += std::exp(s[j] - m);
        const double lse = m + std::log(l);
        r.lse[(size_t(b) * n_head + h) * T + t] = lse;
        double Dt = 0.0;
        std::vector<double> o(hd, 0.0);
        for (int j = 0; j <= t; ++j)
          for (int d = 0; d < hd; ++d) o[d] += std::exp(s[j] - lse) * v[base + j * C + d];
        for (int d = 0; d < hd; ++d) {
          r.out[base + t * C + d] = o[d];
          Dt += double(dout_d[base + t * C + d]) * o[d];
        }
        for (int j = 0; j <= t; ++j) {
          const double p = std::exp(s[j] - lse);
          double dp = 0.0;
          for (int d = 0; d < hd; ++d) dp += double(dout[base + t * C + d]) * v[base + j * C + d];
          const double ds = p * (dp - Dt);
          for (int d = 0; d < hd; ++d) {
            r.dq[base + t * C + d] += scale * ds * k[base + j * C + d];
            r.dk[base + j * C + d] += scale * ds * q[base + t * C + d];
            r.dv[base + j * C + d] += p * dout[base + t * C + d];
          }
        }
      }
    }
  return r;
}

// max |a - ref| / max |ref| over the array; infinite when a holds a non-finite value.
inline double rel_err(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num = std::max(num, std::fabs(double(a[i]) - ref[i]));
    den = std::max(den, std::fabs(ref[i]));
  }
  return den > 0 ? num / den : num;
}

// dq, dk, dv [rows, C] written a second time into one dqkv [rows, ld] at columns 0, C and 2C (filled
// with NaN first), with D3 the second run's D: every element written, with the same bits, and D3
// the same as D. On a difference, prints "FAIL interleaved" with `what` (the case) and exits 1.
inline void expect_interleaved(const std::vector<float>& dqkv, int ld, int rows, int C, const std::vector<float>& dq,
                               const std::vector<float>& dk, const std::vector<float>& dv, const std::vector<float>& D,
                               const std::vector<float>& D3, const char* what) {
  auto fail = [&](const char* name, size_t r, int col) {
    std::printf("FAIL interleaved %s (%s): row %zu column %d\n", name, what, r, col);
    std::exit(1);
  };
  const char* names[3] = {"dq", "dk", "dv"};
  const std::vector<float>* separate[3] = {&dq, &dk, &dv};
  for (size_t r = 0; r < size_t(rows); ++r)
    for (int part = 0; part < 3; ++part)
      for (int col = 0; col < C; ++col) {
        const float got = dqkv[r * ld + size_t(part) * C + col];  // dqkv[r, part*C + col]
        const float want = (*separate[part])[r * C + col];         // dq, dk or dv[r, col]
        if (std::isnan(got)) fail(names[part], r, col);            // not written
        if (std::memcmp(&got, &want, sizeof got) != 0) fail(names[part], r, col);
      }
  if (std::memcmp(D.data(), D3.data(), D.size() * sizeof(float)) != 0) fail("D", 0, 0);
}

#endif
