/*
 * memory.cuh — the CUDA backend's memory entry points (backend.h "Memory"): device allocation,
 * host<->device and device<->device copies, fill, dtype casts, synchronize.
 */
#ifndef MONOSEMANTIC_CUDA_MEMORY_CUH
#define MONOSEMANTIC_CUDA_MEMORY_CUH

#include <cstddef>

#include "backend.h"

namespace ms::cuda {

int mem_alloc(size_t bytes, void** out, ms_error* err);
void mem_free(void* ptr);
int mem_upload(void* dst_device, const void* src_host, size_t bytes, ms_error* err);
int mem_download(void* dst_host, const void* src_device, size_t bytes, ms_error* err);
int mem_copy(void* dst_device, const void* src_device, size_t bytes, ms_error* err);
int mem_fill(void* dst_device, int dtype, size_t count, double value, ms_error* err);
int mem_cast(void* dst_device, int dst_dtype, const void* src_device, int src_dtype, size_t count,
             ms_error* err);
int mem_synchronize(ms_error* err);

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_MEMORY_CUH
