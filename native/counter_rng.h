/*
 * counter_rng.h — a counter-based uniform random number shared by the CPU and CUDA backends:
 * the value for (seed, index) is a pure function of the two, so a stream can be split into
 * chunks, resumed, or computed in parallel, and both backends draw exactly the same numbers.
 * The mixer is SplitMix64's finaliser (Steele, Lea & Flood, 2014), applied twice.
 */
#ifndef MONOSEMANTIC_COUNTER_RNG_H
#define MONOSEMANTIC_COUNTER_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define MS_HOST_DEVICE __host__ __device__
#else
#define MS_HOST_DEVICE
#endif

MS_HOST_DEVICE inline uint64_t ms_mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in the open interval (0, 1): 53 random bits, centred in their cell (never 0, never 1). */
MS_HOST_DEVICE inline double ms_uniform_open(uint64_t seed, uint64_t index) {
  const uint64_t h = ms_mix64(ms_mix64(seed) ^ index);
  return (double(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);  /* 2^-53 */
}

#endif
