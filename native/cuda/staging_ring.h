/*
 * staging_ring.h — the bookkeeping of the pinned staging ring that the CUDA backend's uploads go
 * through (memory.cu), as plain C++ so that a host test (test/native/staging_ring_test.cpp) can
 * check it.
 *
 * Why: a cudaMemcpyAsync from pageable host memory may wait for the stream before it returns, so
 * every upload (token ids, indices) would drain the queued work and stop the host from running
 * ahead of the device. Copied into pinned memory first, the upload is truly queued. The pinned
 * region must not be overwritten before its copy has run: each region handed out stays in flight,
 * with a token (the event recorded after its copy), until a later region that overlaps it waits
 * for its token, or the token is seen done.
 *
 * Regions are handed out in ring order, aligned to kAlignment; a region that does not fit before
 * the end of the ring starts again at offset 0.
 */
#ifndef MONOSEMANTIC_CUDA_STAGING_RING_H
#define MONOSEMANTIC_CUDA_STAGING_RING_H

#include <cstddef>
#include <deque>

namespace ms::cuda {

template <typename Token>
class StagingRing {
 public:
  static constexpr size_t kAlignment = 256;

  explicit StagingRing(size_t capacity) : capacity_(capacity / kAlignment * kAlignment) {}

  size_t capacity() const { return capacity_; }
  size_t in_flight() const { return in_flight_.size(); }

  // Whether a region of `bytes` can come from the ring (larger uploads go around it).
  bool fits(size_t bytes) const { return bytes > 0 && round_up(bytes) <= capacity_ / 2; }

  // The offset of a region of `bytes` (fits(bytes)). First the regions whose tokens are done are
  // released, oldest first (done(token) -> bool; release(token) for each); then every region still
  // in flight that overlaps the new one is waited for (wait(token), then release(token)).
  template <typename Done, typename Wait, typename Release>
  size_t acquire(size_t bytes, Done&& done, Wait&& wait, Release&& release) {
    while (!in_flight_.empty() && done(in_flight_.front().token)) {
      release(in_flight_.front().token);
      in_flight_.pop_front();
    }
    const size_t size = round_up(bytes);
    size_t offset = head_;
    if (offset + size > capacity_) offset = 0;
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      if (it->offset < offset + size && offset < it->offset + it->size) {  // [offset, offset + size) meets it
        wait(it->token);
        release(it->token);
        it = in_flight_.erase(it);
      } else {
        ++it;
      }
    }
    head_ = offset + size;
    return offset;
  }

  // The region at `offset` (from acquire) is in flight until `token` is done.
  void commit(size_t offset, size_t bytes, Token token) { in_flight_.push_back({offset, round_up(bytes), token}); }

  // Every region in flight: wait(token) and release(token) for each, oldest first.
  template <typename Wait, typename Release>
  void drain(Wait&& wait, Release&& release) {
    for (const Region& r : in_flight_) {
      wait(r.token);
      release(r.token);
    }
    in_flight_.clear();
  }

 private:
  struct Region {
    size_t offset;
    size_t size;
    Token token;
  };
  static size_t round_up(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

  size_t capacity_;
  size_t head_ = 0;
  std::deque<Region> in_flight_;
};

}  // namespace ms::cuda

#endif  // MONOSEMANTIC_CUDA_STAGING_RING_H
