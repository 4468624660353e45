#pragma once
// Outgoing frame queue of one tunnel stream (pure; owned by the tunnel's
// strand). Control frames (heads, window updates, resets, go-away) jump
// ahead of data; each drain moves everything queued into one Batch so one
// gRPC write carries it, up to a byte budget for data.

#include <cstdint>
#include <deque>

#include "grok/frames.hpp"

namespace grok {

class outbox {
 public:
  /// Queues a frame; Data frames go behind control frames.
  void push(pb::Frame&& f);
  /// Moves all control frames and data frames up to `max_data_bytes` of
  /// payload (at least one data frame when any is queued) into `batch`.
  /// Returns the number of frames moved.
  size_t drain_into(pb::Batch& batch, uint64_t max_data_bytes);
  bool empty() const { return control_.empty() && data_.empty(); }
  /// Payload bytes of queued Data frames.
  uint64_t queued_bytes() const { return queued_bytes_; }
  size_t size() const { return control_.size() + data_.size(); }
  void clear();

 private:
  std::deque<pb::Frame> control_;
  std::deque<pb::Frame> data_;
  uint64_t queued_bytes_ = 0;
};

}  // namespace grok
