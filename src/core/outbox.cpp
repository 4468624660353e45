#include "grok/outbox.hpp"

namespace grok {

void outbox::push(pb::Frame&& f) {
  if (f.has_data()) {
    queued_bytes_ += f.data().payload().size();
    data_.push_back(std::move(f));
  } else {
    control_.push_back(std::move(f));
  }
}

size_t outbox::drain_into(pb::Batch& batch, uint64_t max_data_bytes) {
  size_t moved = 0;
  for (auto& f : control_) {
    *batch.add_frames() = std::move(f);
    ++moved;
  }
  control_.clear();
  uint64_t bytes = 0;
  while (!data_.empty() && (bytes == 0 || bytes < max_data_bytes)) {
    auto n = data_.front().data().payload().size();
    if (bytes > 0 && bytes + n > max_data_bytes) break;
    bytes += n;
    queued_bytes_ -= n;
    *batch.add_frames() = std::move(data_.front());
    data_.pop_front();
    ++moved;
  }
  return moved;
}

void outbox::clear() {
  control_.clear();
  data_.clear();
  queued_bytes_ = 0;
}

}  // namespace grok
