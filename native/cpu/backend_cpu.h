/* backend_cpu.h — the CPU backend's ms_backend table (always present, built into the core addon). */
#ifndef MONOSEMANTIC_CPU_BACKEND_H
#define MONOSEMANTIC_CPU_BACKEND_H

#include "backend.h"

namespace ms::cpu {
const ms_backend* cpu_backend();
}

#endif
