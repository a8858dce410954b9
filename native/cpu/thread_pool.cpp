/*
 * thread_pool.cpp — persistent worker pool behind parallel_for (see thread_pool.h).
 *
 * A job is published through one 64-bit atomic "claim word": generation (32 bits) | chunk count
 * (16 bits) | next unclaimed chunk (16 bits). Participants claim a chunk with a CAS that only
 * succeeds for the current generation, so a worker that wakes late can never take a chunk of a
 * newer job by mistake; and a successful claim means the job is still live (its caller waits for
 * every chunk), so the job's fields may be read after it. Workers spin for a short while after
 * each job (back-to-back parallel_fors are the common case) and then sleep on a condition
 * variable. The pool is created on first use and deliberately never destroyed: workers may still
 * be blocked in it while the process exits, and this avoids static-destruction-order problems.
 */
#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ms::cpu {
namespace {

// Hard limit on threads (the claim word has 16 bits for the chunk count).
constexpr int kMaxThreads = 1024;
// How long an idle worker polls for the next job before it sleeps. Waking a sleeping worker
// costs ~80 us here (median; a few ms at worst on a busy VM host), so workers stay awake across
// the short gaps between the parallel_fors of one training step, and give the core back after.
constexpr auto kSpinTime = std::chrono::milliseconds(1);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

int clamp_threads(long n) { return int(std::min<long>(std::max<long>(n, 1), kMaxThreads)); }

int default_threads() {
  if (const char* env = std::getenv("MONOSEMANTIC_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0) return clamp_threads(n);
  }
  return clamp_threads(long(std::thread::hardware_concurrency()));
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> n{default_threads()};
  return n;
}

// True on pool workers, and on a caller while it runs chunks: parallel_for then runs inline.
thread_local bool t_in_parallel = false;

constexpr uint64_t pack_claim(uint64_t gen, uint64_t chunks, uint64_t next) {
  return (gen << 32) | (chunks << 16) | next;
}
constexpr uint32_t claim_gen(uint64_t w) { return uint32_t(w >> 32); }
constexpr uint32_t claim_chunks(uint64_t w) { return uint32_t((w >> 16) & 0xFFFF); }
constexpr uint32_t claim_next(uint64_t w) { return uint32_t(w & 0xFFFF); }

class Pool {
 public:
  void run(size_t count, size_t chunks, const std::function<void(size_t, size_t)>& fn) {
    std::lock_guard<std::mutex> submit(submit_mutex_);
    grow(int(chunks) - 1);
    fn_ = &fn;
    count_ = count;
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    ++gen_;
    claim_.store(pack_claim(gen_, chunks, 0), std::memory_order_release);
    { std::lock_guard<std::mutex> lock(sleep_mutex_); }  // a worker between its check and wait sees gen_
    wake_.notify_all();

    t_in_parallel = true;
    work(gen_);
    t_in_parallel = false;
    for (int spins = 0; done_.load(std::memory_order_acquire) < chunks; ++spins) {
      if (spins < 4096) cpu_relax();
      else std::this_thread::yield();
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Starts workers until there are `wanted`; if the OS refuses, the pool stays smaller and the
  // callers take the chunks no worker claims. Called before the next job is published, so a new
  // worker that starts from the current generation joins that job.
  void grow(int wanted) {
    while (int(workers_.size()) < wanted) {
      try {
        workers_.emplace_back([this, seen = gen_] { worker_loop(seen); });
      } catch (const std::system_error&) {
        return;
      }
    }
  }

  // Claims and runs chunks of job `gen` until none is left.
  void work(uint32_t gen) {
    uint64_t w = claim_.load(std::memory_order_acquire);
    for (;;) {
      if (claim_gen(w) != gen || claim_next(w) >= claim_chunks(w)) return;
      if (!claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      // Chunk i of n covers [i*base + min(i, rem), ...): sizes differ by at most one.
      const size_t n = claim_chunks(w), i = claim_next(w);
      const size_t base = count_ / n, rem = count_ % n;
      const size_t begin = i * base + std::min(i, rem);
      const size_t end = begin + base + (i < rem ? 1 : 0);
      try {
        (*fn_)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
      done_.fetch_add(1, std::memory_order_release);
      w = claim_.load(std::memory_order_acquire);
    }
  }

  void worker_loop(uint32_t seen) {
    t_in_parallel = true;
    for (;;) {
      const auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
      uint32_t gen;
      for (int spins = 0; (gen = claim_gen(claim_.load(std::memory_order_acquire))) == seen; ++spins) {
        if ((spins & 63) != 63 || std::chrono::steady_clock::now() < spin_until) {
          cpu_relax();
          continue;
        }
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        wake_.wait(lock, [&] { return claim_gen(claim_.load(std::memory_order_acquire)) != seen; });
      }
      seen = gen;
      work(gen);
    }
  }

  std::mutex submit_mutex_;  // one job at a time
  std::vector<std::thread> workers_;
  uint32_t gen_ = 0;
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t count_ = 0;
  std::atomic<uint64_t> claim_{0};
  std::atomic<size_t> done_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed (see the file comment)
  return *p;
}

}  // namespace

int num_threads() { return thread_setting().load(std::memory_order_relaxed); }

void set_num_threads(int n) { thread_setting().store(clamp_threads(n), std::memory_order_relaxed); }

void parallel_for(size_t count, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (count == 0) return;
  const size_t g = std::max<size_t>(grain, 1);
  // Every chunk has at least count / chunks >= grain items.
  const size_t chunks = std::min<size_t>(size_t(num_threads()), std::max<size_t>(count / g, 1));
  if (chunks <= 1 || t_in_parallel) {
    fn(0, count);
    return;
  }
  pool().run(count, chunks, fn);
}

}  // namespace ms::cpu
