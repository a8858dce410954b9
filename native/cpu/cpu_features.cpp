/*
 * cpu_features.cpp — run-time CPU detection (see cpu_features.h).
 *
 * x86: CPUID says what the CPU implements and XGETBV says which register state the OS saves on
 * context switches; a level is usable only if both agree (an OS without AVX state support would
 * corrupt YMM/ZMM registers). Detection runs once; the cap is an atomic so tests may change it
 * while other threads read it.
 */
#include "cpu_features.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>

#if defined(__x86_64__) || defined(_M_X64)
#define MS_X86_64 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace ms::cpu {
namespace {

#ifdef MS_X86_64
struct CpuidRegs {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs cpuid(unsigned leaf, unsigned subleaf) {
  CpuidRegs r;
#if defined(_MSC_VER)
  int out[4];
  __cpuidex(out, int(leaf), int(subleaf));
  r = {unsigned(out[0]), unsigned(out[1]), unsigned(out[2]), unsigned(out[3])};
#else
  __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
#endif
  return r;
}

// XCR0: the register state components the OS has enabled (only valid when CPUID says OSXSAVE).
unsigned long long xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}

bool bit(unsigned value, int index) { return (value >> index) & 1u; }

SimdLevel detect() {
  const unsigned max_leaf = cpuid(0, 0).eax;
  if (max_leaf < 7) return SimdLevel::Scalar;
  const CpuidRegs l1 = cpuid(1, 0);
  const CpuidRegs l7 = cpuid(7, 0);
  // CPUID.1:ECX bit 12 FMA, 27 OSXSAVE, 28 AVX; CPUID.7.0:EBX bit 5 AVX2.
  if (!bit(l1.ecx, 12) || !bit(l1.ecx, 27) || !bit(l1.ecx, 28) || !bit(l7.ebx, 5)) return SimdLevel::Scalar;
  const unsigned long long xcr0 = xgetbv0();
  // XCR0 bit 1 SSE state, bit 2 AVX (upper YMM) state.
  if ((xcr0 & 0x6) != 0x6) return SimdLevel::Scalar;
  // CPUID.7.0:EBX bit 16 AVX512F, 17 AVX512DQ, 30 AVX512BW, 31 AVX512VL;
  // XCR0 bits 5-7: opmask, upper halves of ZMM0-15, ZMM16-31.
  const bool avx512 = bit(l7.ebx, 16) && bit(l7.ebx, 17) && bit(l7.ebx, 30) && bit(l7.ebx, 31) &&
                      (xcr0 & 0xE0) == 0xE0;
  return avx512 ? SimdLevel::AVX512 : SimdLevel::AVX2;
}
#else
SimdLevel detect() { return SimdLevel::Scalar; }
#endif

SimdLevel detected_once() {
  static const SimdLevel level = detect();
  return level;
}

// The cap from env MONOSEMANTIC_SIMD, or AVX512 (no cap) if unset or unknown.
int env_cap() {
  const char* value = std::getenv("MONOSEMANTIC_SIMD");
  if (value) {
    for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512})
      if (std::strcmp(value, simd_name(level)) == 0) return int(level);
  }
  return int(SimdLevel::AVX512);
}

std::atomic<int>& cap_storage() {
  static std::atomic<int> cap{env_cap()};
  return cap;
}

std::string trim(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  const size_t end = s.find_last_not_of(" \t\r\n");
  return s.substr(begin, end - begin + 1);
}

}  // namespace

SimdLevel detected_simd() { return detected_once(); }

SimdLevel active_simd() {
  return SimdLevel(std::min(int(detected_once()), cap_storage().load(std::memory_order_relaxed)));
}

void set_simd_cap(SimdLevel cap) { cap_storage().store(int(cap), std::memory_order_relaxed); }

const char* simd_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::AVX2: return "avx2";
    case SimdLevel::AVX512: return "avx512";
    default: return "scalar";
  }
}

std::string cpu_model_name() {
#ifdef MS_X86_64
  // Brand string: 48 bytes from CPUID leaves 0x80000002..0x80000004.
  if (cpuid(0x80000000u, 0).eax >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      const CpuidRegs r = cpuid(0x80000002u + i, 0);
      std::memcpy(brand + 16 * i + 0, &r.eax, 4);
      std::memcpy(brand + 16 * i + 4, &r.ebx, 4);
      std::memcpy(brand + 16 * i + 8, &r.ecx, 4);
      std::memcpy(brand + 16 * i + 12, &r.edx, 4);
    }
    const std::string name = trim(brand);
    if (!name.empty()) return name;
  }
#endif
  // Linux fallback (and the usual source on non-x86): "model name" in /proc/cpuinfo.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.compare(0, 10, "model name") != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) return trim(line.substr(colon + 1));
  }
  return "";
}

}  // namespace ms::cpu
