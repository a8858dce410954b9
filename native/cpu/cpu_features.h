/*
 * cpu_features.h — run-time CPU detection for the CPU kernels' SIMD dispatch.
 *
 * The library is built for baseline x86-64 (or any other architecture); only the microkernel
 * files get ISA flags. Before calling into one of them, code asks active_simd(), which is what
 * the CPU and OS support (detected_simd()), capped by the env variable MONOSEMANTIC_SIMD and by
 * set_simd_cap() so tests can exercise every path on one machine.
 */
#ifndef MONOSEMANTIC_CPU_FEATURES_H
#define MONOSEMANTIC_CPU_FEATURES_H

#include <string>

namespace ms::cpu {

enum class SimdLevel { Scalar = 0, AVX2 = 1, AVX512 = 2 };

// What the CPU and OS support. AVX2 means AVX2 + FMA with the OS saving YMM state; AVX512 means
// AVX-512 F/VL/BW/DQ with the OS saving ZMM and opmask state. Scalar on non-x86 machines.
SimdLevel detected_simd();

// detected_simd() capped by env MONOSEMANTIC_SIMD=scalar|avx2|avx512 (read once; an unknown
// value is ignored) or by the last set_simd_cap().
SimdLevel active_simd();

// For tests: cap the active level (the result never exceeds detected_simd()). Replaces the env cap.
void set_simd_cap(SimdLevel cap);

// "scalar", "avx2", "avx512".
const char* simd_name(SimdLevel level);

// The CPU's marketing name, e.g. "AMD EPYC 9654 96-Core Processor"; "" if unknown.
std::string cpu_model_name();

}  // namespace ms::cpu

#endif
