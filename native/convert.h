/*
 * convert.h — host-side scalar conversions shared by both backends, so that fill/cast and bf16
 * rounding mean the same thing everywhere:
 *   bfloat16 <-> float: round to nearest even, NaN kept quiet (bf16 is the upper 16 bits of an
 *   IEEE float32; matches CUDA's __float2bfloat16_rn on non-NaN values);
 *   float -> int32: truncate toward zero, saturate, NaN -> 0 (as CUDA's __float2int_rz).
 */
#ifndef MONOSEMANTIC_CONVERT_H
#define MONOSEMANTIC_CONVERT_H

#include <cmath>
#include <cstdint>
#include <cstring>

namespace ms {

inline uint16_t float_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

inline float bf16_to_float(uint16_t value) {
  const uint32_t bits = static_cast<uint32_t>(value) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// The float nearest to value that bf16 can represent (what a bf16 operand holds).
inline float round_to_bf16(float value) { return bf16_to_float(float_to_bf16(value)); }

// A fill value as an int32: from the double itself (a float holds integers exactly only to 2^24),
// saturated at the int32 range, NaN as 0, the fraction dropped.
inline int32_t double_to_i32(double v) {
  if (std::isnan(v)) return 0;
  if (v >= 2147483647.0) return INT32_MAX;
  if (v <= -2147483648.0) return INT32_MIN;
  return int32_t(v);
}

inline int32_t float_to_i32(float v) {
  if (std::isnan(v)) return 0;
  if (v >= 2147483647.0f) return INT32_MAX;
  if (v <= -2147483648.0f) return INT32_MIN;
  return int32_t(v);
}

}  // namespace ms

#endif
