/*
 * gelu_constants.h — the constants of the GELU activations and their derivatives (backend.h
 * ms_activation), one definition for the host (the CPU backend) and the device (the CUDA backend).
 */
#ifndef MONOSEMANTIC_GELU_CONSTANTS_H
#define MONOSEMANTIC_GELU_CONSTANTS_H

namespace ms {

constexpr float kSqrt2OverPi = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kInvSqrt2 = 0.7071067811865476f;     // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.3989422804014327f;   // 1 / sqrt(2 pi)
constexpr float kGeluCubic = 0.044715f;              // gelu_new's cubic coefficient

}  // namespace ms

#endif  // MONOSEMANTIC_GELU_CONSTANTS_H
