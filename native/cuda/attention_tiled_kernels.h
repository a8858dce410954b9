/*
 * attention_tiled_kernels.h — the kernels of attention_tiled.cu, in a header of their own so that
 * test/native/attention_tiled_emulation.cpp can compile them for the host, with one host thread
 * per CUDA thread and a barrier for __syncthreads, and check them against a float64 reference
 * without a GPU. Device code only: no CUDA runtime calls, no launches.
 */
#ifndef MONOSEMANTIC_CUDA_ATTENTION_TILED_KERNELS_H
#define MONOSEMANTIC_CUDA_ATTENTION_TILED_KERNELS_H

namespace ms::cuda::attention_tiled {

constexpr int kRowsPerBlock = 128;  // threads per block = queries (forward, dq) or keys (dk, dv)
constexpr int kTile = 64;           // rows of the other side per shared-memory tile

// rows[r][d] = src[base + (r0 + r) * C + d] for r < kTile, d < HD (0 past row T - 1): rows r0..
// of one head, whose columns start at base. Every thread of the block takes part.
template <int HD>
__device__ __forceinline__ void stage_rows(float (*rows)[HD], const float* __restrict__ src, size_t base, int C,
                                           int r0, int T) {
  for (int e = threadIdx.x; e < kTile * HD; e += blockDim.x) {
    const int r = e / HD, d = e % HD;  // e = r * HD + d
    rows[r][d] = r0 + r < T ? src[base + size_t(r0 + r) * C + d] : 0.0f;
  }
}

// Where head h = blockIdx.y % n_head of sequence b = blockIdx.y / n_head starts in B*T rows of ld
// floats (ld = C: q, k, v, dout, out [B*T, C]; ld = ld_grad: dq, dk, dv): row t of the head is at
// the returned offset + t*ld.
template <int HD>
__device__ __forceinline__ size_t head_base(int T, int ld, int n_head) {
  const int h = blockIdx.y % n_head, b = blockIdx.y / n_head;
  return size_t(b) * T * ld + size_t(h) * HD;
}

// sum_d row[d] x[d] over four interleaved partial sums (four independent chains of fused
// multiply-adds instead of one), added as (p0 + p1) + (p2 + p3).
template <int HD>
__device__ __forceinline__ float dot(const float* row, const float (&x)[HD]) {
  static_assert(HD % 4 == 0, "head size must be a multiple of 4");
  float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int d = 0; d < HD; d += 4)
#pragma unroll
    for (int i = 0; i < 4; ++i) p[i] = fmaf(row[d + i], x[d + i], p[i]);
  return (p[0] + p[1]) + (p[2] + p[3]);
}

// Block (blockIdx.x, blockIdx.y = b*n_head + h): queries t = blockIdx.x * kRowsPerBlock + threadIdx.x of
// head h of sequence b. Row t of q, k, v, out [B*T, C] is at base + t*C, base = b*T*C + h*HD.
template <int HD>
__global__ void __launch_bounds__(kRowsPerBlock)
    attention_train_tiled_kernel(int T, int C, int n_head, float scale, const float* __restrict__ q,
                                 const float* __restrict__ k, const float* __restrict__ v, float* __restrict__ out,
                                 float* __restrict__ lse) {
  __shared__ float ks[kTile][HD];  // k[b*T + j0 + r, head h]
  __shared__ float vs[kTile][HD];  // v[b*T + j0 + r, head h]
  const int bh = blockIdx.y;  // b*n_head + h
  const size_t base = head_base<HD>(T, C, n_head);
  const int q0 = blockIdx.x * kRowsPerBlock;
  const int t = q0 + threadIdx.x;
  const bool active = t < T;
  float qv[HD], acc[HD];
#pragma unroll
  for (int d = 0; d < HD; ++d) {
    qv[d] = active ? q[base + size_t(t) * C + d] : 0.0f;
    acc[d] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int last = min(T, q0 + kRowsPerBlock) - 1;  // the block's last query sees keys 0..last
  for (int j0 = 0; j0 <= last; j0 += kTile) {
    __syncthreads();  // the previous tile is no longer read
    stage_rows<HD>(ks, k, base, C, j0, T);
    stage_rows<HD>(vs, v, base, C, j0, T);
    __syncthreads();
    const int count = active ? min(kTile, t - j0 + 1) : 0;  // keys j0 .. min(t, j0 + kTile - 1)
    for (int r = 0; r < count; ++r) {
      const float s = dot<HD>(ks[r], qv) * scale;
      if (s > m) {  // a new maximum: rescale what was summed so far (exp(-inf) = 0 at the first key)
        const float c = expf(m - s);
        l *= c;
#pragma unroll
        for (int d = 0; d < HD; ++d) acc[d] *= c;
        m = s;
      }
      const float p = expf(s - m);
      l += p;
#pragma unroll
      for (int d = 0; d < HD; ++d) acc[d] = fmaf(p, vs[r][d], acc[d]);
    }
  }
  if (!active) return;
  const float inv = 1.0f / l;
#pragma unroll
  for (int d = 0; d < HD; ++d) out[base + size_t(t) * C + d] = acc[d] * inv;
  if (lse) lse[size_t(bh) * T + t] = m + logf(l);  // lse[b, h, t]
}

// Queries as in the forward kernel. D[(b*n_head + h)*T + t] = dout_t . out_t and
// dq_t = scale sum_{j <= t} dS_tj k_j, dq B*T rows of ld_grad floats (the inputs' rows of C).
template <int HD>
__global__ void __launch_bounds__(kRowsPerBlock)
    attention_dq_tiled_kernel(int T, int C, int n_head, float scale, const float* __restrict__ dout,
                              const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                              const float* __restrict__ out, const float* __restrict__ lse, float* __restrict__ dq,
                              int ld_grad, float* __restrict__ D) {
  __shared__ float ks[kTile][HD];
  __shared__ float vs[kTile][HD];
  const int bh = blockIdx.y;  // b*n_head + h
  const size_t base = head_base<HD>(T, C, n_head);
  const int q0 = blockIdx.x * kRowsPerBlock;
  const int t = q0 + threadIdx.x;
  const bool active = t < T;
  const size_t row_t = base + size_t(active ? t : 0) * C;  // [b*T + t, h*HD]
  float qv[HD], gv[HD], acc[HD];
  float Dt = 0.0f;
#pragma unroll
  for (int d = 0; d < HD; ++d) {
    qv[d] = active ? q[row_t + d] : 0.0f;
    gv[d] = active ? dout[row_t + d] : 0.0f;
    Dt = fmaf(gv[d], active ? out[row_t + d] : 0.0f, Dt);
    acc[d] = 0.0f;
  }
  const float lt = active ? lse[size_t(bh) * T + t] : 0.0f;
  const int last = min(T, q0 + kRowsPerBlock) - 1;
  for (int j0 = 0; j0 <= last; j0 += kTile) {
    __syncthreads();
    stage_rows<HD>(ks, k, base, C, j0, T);
    stage_rows<HD>(vs, v, base, C, j0, T);
    __syncthreads();
    const int count = active ? min(kTile, t - j0 + 1) : 0;
    for (int r = 0; r < count; ++r) {
      const float s = dot<HD>(ks[r], qv), dp = dot<HD>(vs[r], gv);
      const float ds = expf(s * scale - lt) * (dp - Dt);  // dS_tj
#pragma unroll
      for (int d = 0; d < HD; ++d) acc[d] = fmaf(ds, ks[r][d], acc[d]);
    }
  }
  if (!active) return;
  const size_t out_t = head_base<HD>(T, ld_grad, n_head) + size_t(t) * ld_grad;  // dq[b*T + t, h*HD ..] in rows of ld_grad
#pragma unroll
  for (int d = 0; d < HD; ++d) dq[out_t + d] = acc[d] * scale;
  D[size_t(bh) * T + t] = Dt;
}

// Block (blockIdx.x, blockIdx.y = b*n_head + h): keys j = blockIdx.x * kRowsPerBlock + threadIdx.x.
// dk_j = scale sum_{t >= j} dS_tj q_t and dv_j = sum_{t >= j} P_tj dout_t (dk, dv B*T rows of
// ld_grad floats), the queries staged kTile at a time from the block's first key on (earlier
// queries do not see these keys).
template <int HD>
__global__ void __launch_bounds__(kRowsPerBlock)
    attention_dkdv_tiled_kernel(int T, int C, int n_head, float scale, const float* __restrict__ dout,
                                const float* __restrict__ q, const float* __restrict__ k,
                                const float* __restrict__ v, const float* __restrict__ lse,
                                const float* __restrict__ D, float* __restrict__ dk, float* __restrict__ dv,
                                int ld_grad) {
  __shared__ float qs[kTile][HD];  // q[b*T + t0 + r, head h]
  __shared__ float gs[kTile][HD];  // dout[b*T + t0 + r, head h]
  __shared__ float ls[kTile];      // lse[b, h, t0 + r]
  __shared__ float Ds[kTile];      // D[b, h, t0 + r]
  const int bh = blockIdx.y;  // b*n_head + h
  const size_t base = head_base<HD>(T, C, n_head);
  const int j0 = blockIdx.x * kRowsPerBlock;
  const int j = j0 + threadIdx.x;
  const bool active = j < T;
  const size_t row_j = base + size_t(active ? j : 0) * C;  // [b*T + j, h*HD]
  float kv[HD], vv[HD], acc_k[HD], acc_v[HD];
#pragma unroll
  for (int d = 0; d < HD; ++d) {
    kv[d] = active ? k[row_j + d] : 0.0f;
    vv[d] = active ? v[row_j + d] : 0.0f;
    acc_k[d] = 0.0f;
    acc_v[d] = 0.0f;
  }
  const float* lse_bh = lse + size_t(bh) * T;  // lse[b, h, :]
  const float* D_bh = D + size_t(bh) * T;      // D[b, h, :]
  for (int t0 = j0; t0 < T; t0 += kTile) {
    __syncthreads();
    stage_rows<HD>(qs, q, base, C, t0, T);
    stage_rows<HD>(gs, dout, base, C, t0, T);
    for (int r = threadIdx.x; r < kTile; r += blockDim.x) {
      ls[r] = t0 + r < T ? lse_bh[t0 + r] : 0.0f;
      Ds[r] = t0 + r < T ? D_bh[t0 + r] : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
    const int first = max(0, j - t0);      // queries t >= j
    const int end = min(kTile, T - t0);    // rows of the tile inside the sequence
    for (int r = first; r < end; ++r) {
      const float s = dot<HD>(qs[r], kv), dp = dot<HD>(gs[r], vv);
      const float p = expf(s * scale - ls[r]);  // P_tj
      const float ds = p * (dp - Ds[r]);         // dS_tj
#pragma unroll
      for (int d = 0; d < HD; ++d) {
        acc_k[d] = fmaf(ds, qs[r][d], acc_k[d]);
        acc_v[d] = fmaf(p, gs[r][d], acc_v[d]);
      }
    }
  }
  if (!active) return;
  const size_t out_j = head_base<HD>(T, ld_grad, n_head) + size_t(j) * ld_grad;  // dk, dv[b*T + j, h*HD ..] in rows of ld_grad
#pragma unroll
  for (int d = 0; d < HD; ++d) {
    dk[out_j + d] = acc_k[d] * scale;
    dv[out_j + d] = acc_v[d];
  }
}

}  // namespace ms::cuda::attention_tiled

#endif  // MONOSEMANTIC_CUDA_ATTENTION_TILED_KERNELS_H
