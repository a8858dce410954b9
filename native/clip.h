/*
 * clip.h — the gradient-clipping factor, shared by both backends' AdamW (backend.h adamw_update)
 * and compiled for the host and the device, so that both clip alike: a gradient whose squared
 * global norm is sum_sq is scaled by clip_norm / sqrt(sum_sq) when clip_norm > 0 and the norm
 * exceeds it, else by 1 (a NaN norm is not clipped). In double, rounded to float once.
 */
#ifndef MONOSEMANTIC_CLIP_H
#define MONOSEMANTIC_CLIP_H

#include <cmath>

#if defined(__CUDACC__)
#define MS_CLIP_FN __host__ __device__ __forceinline__
#else
#define MS_CLIP_FN inline
#endif

namespace ms {

MS_CLIP_FN float clip_factor(float sum_sq, float clip_norm) {
  const double norm = sqrt(double(sum_sq));
  return clip_norm > 0.0f && norm > double(clip_norm) ? float(double(clip_norm) / norm) : 1.0f;
}

}  // namespace ms

#undef MS_CLIP_FN

#endif  // MONOSEMANTIC_CLIP_H
