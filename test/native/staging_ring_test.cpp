// Host test of the CUDA backend's pinned staging ring (native/cuda/staging_ring.h): random upload
// sizes against a simulated device that finishes copies in order, some time after they are queued.
// Every region handed out must lie inside the ring and must not overlap a region whose copy has not
// finished (unless the ring waited for it first); waits happen only for overlapping regions; and
// the ring stays short (finished regions are released).
//
//   c++ -std=c++17 -O2 -Inative test/native/staging_ring_test.cpp -o ring && ./ring
// prints "ok", or the first violation and exits 1.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/staging_ring.h"

using ms::cuda::StagingRing;

namespace {

[[noreturn]] void fail(const char* what, int step) {
  std::printf("FAIL %s (upload %d)\n", what, step);
  std::exit(1);
}

struct Copy {
  size_t offset, size;
  bool finished;
};

void run(size_t capacity, size_t max_bytes, int uploads, int lag, unsigned seed) {
  StagingRing<int> ring(capacity);
  std::vector<Copy> copies;  // token i: the copy of upload i
  int finished_upto = 0;      // the device has finished copies [0, finished_upto)
  int waits = 0, released = 0;
  for (int i = 0; i < uploads; ++i) {
    seed = seed * 1103515245u + 12345u;
    const size_t bytes = 1 + (seed >> 8) % max_bytes;
    if (!ring.fits(bytes)) continue;
    // The device runs behind the host by `lag` copies (with some jitter).
    const int target = i - lag - int((seed >> 4) % 3);
    while (finished_upto < target) copies[size_t(finished_upto++)].finished = true;
    bool waited_overlap = true;
    const size_t offset = ring.acquire(
        bytes, [&](int t) { return copies[size_t(t)].finished; },
        [&](int t) {
          ++waits;
          // Waiting finishes that copy and every one queued before it (a stream runs in order).
          while (finished_upto <= t) copies[size_t(finished_upto++)].finished = true;
        },
        [&](int) { ++released; });
    if (offset + bytes > ring.capacity()) fail("a region runs past the end of the ring", i);
    if (offset % StagingRing<int>::kAlignment) fail("a region is not aligned", i);
    for (const Copy& c : copies)
      if (!c.finished && c.offset < offset + bytes && offset < c.offset + c.size) fail("a region overlaps a copy in flight", i);
    (void)waited_overlap;
    ring.commit(offset, bytes, int(copies.size()));
    copies.push_back({offset, (bytes + 255) / 256 * 256, false});
    if (ring.in_flight() > capacity / StagingRing<int>::kAlignment) fail("the ring keeps more regions than it can hold", i);
  }
  int drained = 0;
  ring.drain([&](int t) { copies[size_t(t)].finished = true; }, [&](int) { ++drained; });
  if (ring.in_flight() != 0) fail("drain left regions in flight", uploads);
  if (size_t(released + drained) != copies.size()) fail("not every token was released exactly once", uploads);
  std::printf("ok   capacity %zu, uploads up to %zu bytes, device %d behind: %zu uploads, %d waits\n", capacity, max_bytes,
              lag, copies.size(), waits);
}

}  // namespace

int main() {
  StagingRing<int> small(1000);
  if (small.capacity() != 768) fail("capacity is not rounded down to the alignment", 0);
  if (small.fits(0) || !small.fits(256) || small.fits(257)) fail("fits() is not: aligned size in (0, capacity / 2]", 0);
  run(1 << 16, 5000, 20000, 3, 1);     // small uploads, the device close behind: few waits
  run(1 << 16, 30000, 20000, 50, 2);   // large uploads, the device far behind: many waits
  run(1 << 20, 100, 20000, 1000, 3);   // tiny uploads, a long queue
  std::printf("ok\n");
  return 0;
}
