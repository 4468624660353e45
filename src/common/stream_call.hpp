#pragma once
// The part of a tunnel stream's gRPC call both ends share (async API, one
// poll thread). An operation count keeps the call alive: each Read, Write
// and Finish in flight counts one, and the owner's strand holds one until it
// gives the stream up; the call is over when the count reaches zero.
//
// Reads: a completed read hands its batch to the owner's strand BEFORE the
// next read is armed, or frames of consecutive batches could be handled out
// of order.

#include <atomic>
#include <memory>
#include <utility>

#include "grok/frames.hpp"

namespace grok {

/// A base of grok-server's tunnel_call and grok's tunnel_session. `Stream`
/// below is the call's grpc::ServerAsyncReaderWriter or
/// ClientAsyncReaderWriter of pb::Batch.
class stream_call_base {
 protected:
  /// Before the first operation: the operations about to start plus the owner's hold.
  void set_holds(int n) { refs_.store(n, std::memory_order_relaxed); }
  /// One more operation is about to start.
  void add_hold() { refs_.fetch_add(1, std::memory_order_relaxed); }
  /// An operation (or the owner's hold) is over; true when it was the last.
  bool drop_hold() { return refs_.fetch_sub(1, std::memory_order_acq_rel) == 1; }

  /// Strand: starts the write of `b` (which must live until it completes).
  template <class Stream>
  void start_write(Stream& stream, const pb::Batch& b, void* tag) {
    add_hold();
    stream.Write(b, tag);
  }

  /// Poll thread, for a successful read: `deliver(batch)` posts the batch to
  /// the owner's strand, then the next read is armed. With several poll
  /// threads, the read may complete on another one: gRPC orders the two, but
  /// out of ThreadSanitizer's sight, so the arming is published here too.
  template <class Stream, class Deliver>
  void on_read(Stream& stream, void* tag, Deliver&& deliver) {
    reads_armed_.load(std::memory_order_acquire);
    deliver(std::make_shared<pb::Batch>(std::move(in_)));
    in_.Clear();
    arm_read(stream, tag);
  }
  /// Starts a read into in_.
  template <class Stream>
  void arm_read(Stream& stream, void* tag) {
    reads_armed_.fetch_add(1, std::memory_order_release);
    stream.Read(&in_, tag);
  }

  pb::Batch in_;  ///< the read in flight fills it

 private:
  std::atomic<int> refs_{0};
  std::atomic<uint64_t> reads_armed_{0};
};

}  // namespace grok
