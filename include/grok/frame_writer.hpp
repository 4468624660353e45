#pragma once
// The one writer of a tunnel's gRPC stream. Lives on the tunnel's strand:
// every write starts there, never concurrently, so no mutex guards the
// stream. One StartWrite is in flight at a time and carries every frame
// queued when it started (control frames first), which is what keeps the
// strand design fast: one write per burst, not per frame.
//
// A write's completion reaches the strand only when the strand waits for
// it (frames queued meanwhile or left over past the write's data budget, or
// a Finish pending). Otherwise the thread that sees the completion marks
// the writer idle with one atomic step and the strand is not woken: at low
// load that is one thread wake-up less per request at each end.

#include <atomic>
#include <cstdint>

#include "grok/outbox.hpp"

namespace grok {

template <class Reactor>
class frame_writer {
 public:
  /// `max_batch_bytes` caps the Data payload of one write (control frames
  /// always go). One write per round trip of the strand is what a tunnel
  /// can do, so the cap bounds a tunnel's throughput when that round trip
  /// is slow (busy workers): at 256 KiB, four 64 KiB frames per write held
  /// CPU-bound pools of 8–16 workers to 0.8× of 2 workers (write_path
  /// micro-benchmark). 1 MiB keeps one write well under the message limit
  /// both ends set (frames.hpp). The batch moves the queued payloads (bounded by
  /// the exchanges' credit) rather than copying them; gRPC's serialized
  /// copy of a write in flight is the only extra, at most 1 MiB a tunnel.
  explicit frame_writer(uint64_t max_batch_bytes = max_batch_data_bytes) : max_batch_bytes_(max_batch_bytes) {}

  /// Strand only. The reactor must outlive every write it is given; call
  /// detach() before it may go away.
  void attach(Reactor* r) { reactor_ = r; }
  void detach() {
    reactor_ = nullptr;
    box_.clear();
  }

  /// Strand only. A detached writer drops the frame: nothing would send it.
  void push(pb::Frame&& f) {
    if (reactor_ == nullptr) return;
    box_.push(std::move(f));
    pump();
  }

  /// Strand only. Queues `f` for a write that flush() starts; true means
  /// the caller must now post one flush() to the strand. Frames pushed by
  /// the handlers already queued on the strand join that write, so a burst
  /// of requests costs one write, not one each.
  bool push_deferred(pb::Frame&& f) {
    if (reactor_ == nullptr) return false;
    box_.push(std::move(f));
    if (flush_posted_ || await_write()) return false;
    flush_posted_ = true;
    return true;
  }

  /// Strand only: the write push_deferred() asked for.
  void flush() {
    flush_posted_ = false;
    pump();
  }

  /// Any thread (where the stream's completions arrive): the write
  /// finished. True means the strand waits for it: post on_write_done(ok)
  /// there. False means nothing waited and the writer is idle again.
  bool write_finished(bool ok) {
    if (!ok) return true;
    auto expected = state::writing;
    return !state_.compare_exchange_strong(expected, state::idle, std::memory_order_acq_rel,
                                           std::memory_order_acquire);
  }

  /// Strand only: the write write_finished() handed over; false = stream broken.
  void on_write_done(bool ok) {
    state_.store(state::idle, std::memory_order_release);
    if (!ok) {
      detach();
      return;
    }
    pump();
  }

  /// Strand only: true while a write is in flight, in which case its
  /// completion will reach the strand (on_write_done).
  bool await_write() {
    auto s = state_.load(std::memory_order_acquire);
    if (s != state::writing) return s == state::awaited;
    return state_.compare_exchange_strong(s, state::awaited, std::memory_order_acq_rel, std::memory_order_acquire) ||
           s == state::awaited;
  }

  uint64_t queued_bytes() const { return box_.queued_bytes(); }

 private:
  enum class state : uint8_t {
    idle,     ///< no write in flight
    writing,  ///< a write in flight; its end need not reach the strand
    awaited,  ///< a write in flight; the strand waits for its end
  };

  void pump() {
    if (reactor_ == nullptr || box_.empty() || await_write()) return;  // a write in flight pumps when it ends
    batch_.Clear();
    box_.drain_into(batch_, max_batch_bytes_);
    // Frames past the batch's budget stay queued: this write's end must start the next.
    state_.store(box_.empty() ? state::writing : state::awaited, std::memory_order_release);
    reactor_->StartWrite(&batch_);  // batch_ stays untouched until the write finished
  }

  uint64_t max_batch_bytes_;
  Reactor* reactor_ = nullptr;
  outbox box_;
  pb::Batch batch_;
  std::atomic<state> state_{state::idle};
  bool flush_posted_ = false;
};

}  // namespace grok
