/*
 * bf16.h — bfloat16 <-> float conversion on the CPU (round to nearest even, NaN kept quiet).
 * bf16 is the upper 16 bits of an IEEE float32; the CPU backend uses it for bf16 tensors and to
 * round matrix-product operands in MS_PREC_BF16 mode, matching the CUDA backend's __float2bfloat16_rn.
 */
#ifndef MONOSEMANTIC_CPU_BF16_H
#define MONOSEMANTIC_CPU_BF16_H

#include <cstdint>
#include <cstring>

namespace ms::cpu {

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

}  // namespace ms::cpu

#endif
