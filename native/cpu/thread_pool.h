/*
 * thread_pool.h — a persistent worker pool and parallel_for for the CPU kernels.
 *
 * Workers are started on first use and live for the rest of the process, so a parallel_for costs
 * a hand-off rather than a thread creation: about a microsecond while the workers still poll
 * (they do for 1 ms after each job), ~80 us to wake them from sleep. One job runs at a time:
 * calls from different outside threads queue on a mutex, and a parallel_for issued from inside a
 * running chunk runs inline on its thread.
 */
#ifndef MONOSEMANTIC_CPU_THREAD_POOL_H
#define MONOSEMANTIC_CPU_THREAD_POOL_H

#include <cstddef>
#include <functional>

namespace ms::cpu {

// Default: env MONOSEMANTIC_THREADS if a positive int, else std::thread::hardware_concurrency()
// (at least 1).
int num_threads();

// n >= 1 (smaller values are treated as 1); takes effect for the next parallel_for.
void set_num_threads(int n);

// Calls fn(begin, end) over disjoint chunks covering [0, count) — each chunk at least `grain`
// items except when count < grain (then one chunk of count) — on up to num_threads() threads
// including the caller, and returns when all chunks are done. Chunks are contiguous, of
// near-equal size, and there are at most num_threads() of them; a thread that is free takes the
// next unclaimed chunk, so a slow-to-wake worker never delays the job. Nested calls (from inside
// fn) run inline as one chunk. Concurrent calls from different outside threads are serialized.
// If fn throws, the first exception is rethrown in the caller after all chunks finish.
void parallel_for(size_t count, size_t grain, const std::function<void(size_t, size_t)>& fn);

}  // namespace ms::cpu

#endif
