/*
 * resample_cpu.h — dead-feature resampling on the CPU (backend.h: ms_resample_candidates_args,
 * ms_sae_resample_args): streamed loss^2-weighted sampling of inputs, then re-initialisation of
 * the dead features from them.
 */
#ifndef MONOSEMANTIC_CPU_RESAMPLE_H
#define MONOSEMANTIC_CPU_RESAMPLE_H

#include "backend.h"

namespace ms::cpu {

int resample_candidates(const ms_resample_candidates_args* args, ms_error* err);
int sae_resample(const ms_sae_resample_args* args, ms_sae_resample_stats* stats, ms_error* err);

}  // namespace ms::cpu

#endif
