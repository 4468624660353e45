#pragma once
// Per-exchange, per-direction credit flow control (pure state machines).
//
// The sender spends one credit per payload byte and stops reading its
// source at zero. The receiver counts bytes it has written on and returns
// them as a WindowUpdate once a quarter window has accumulated, so a
// steady stream costs one update per quarter window, not one per frame.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

namespace grok {

class send_credit {
 public:
  explicit send_credit(uint32_t initial = 0) : available_(initial) {}
  uint64_t available() const { return available_; }
  /// How many of `want` bytes may be sent now.
  uint64_t allowance(uint64_t want) const { return std::min<uint64_t>(want, available_); }
  /// Spends n credits; false (and nothing spent) if n exceeds what is available.
  bool spend(uint64_t n) {
    if (n > available_) return false;
    available_ -= n;
    return true;
  }
  /// Adds credit from a WindowUpdate; false if it would exceed 2^31 (a peer bug).
  bool grant(uint64_t n) {
    if (n > (1ull << 31) || available_ + n > (1ull << 31)) return false;
    available_ += n;
    return true;
  }

 private:
  uint64_t available_;
};

/// What a receive window grows to unless configured otherwise.
inline constexpr uint32_t default_max_window = 4u << 20;

/// The receiving side of one exchange's direction. The window starts at
/// `window` and grows, up to `max_window`, while it is what limits the
/// stream: when the sender came within a quarter window of its credit
/// while at most half a window waited here to be written on (the consumer
/// keeps up, so the credit ran out in flight), the next update doubles the
/// window. Behind a slow consumer the bytes wait here, the window stays, and
/// so does what is buffered; max_window bounds it in every case.
class recv_window {
 public:
  explicit recv_window(uint32_t window, uint32_t max_window = 0)
      : window_(window), max_window_(std::max(window, max_window)) {}
  uint32_t window() const { return window_; }
  uint32_t max_window() const { return max_window_; }
  /// Bytes received and not yet returned.
  uint64_t outstanding() const { return outstanding_; }
  /// Records n received bytes; false when the peer overran the window.
  bool on_data(uint64_t n) {
    if (n > window_ || outstanding_ + n > window_) return false;
    outstanding_ += n;
    if (window_ - outstanding_ < window_ / 4) starved_ = true;
    return true;
  }
  /// Records n bytes written on; returns the increment to send now (0 = wait).
  uint32_t on_consumed(uint64_t n) {
    unreturned_ += n;
    if (unreturned_ < std::max<uint32_t>(window_ / 4, 1)) return 0;
    auto inc = unreturned_;
    outstanding_ -= unreturned_;
    unreturned_ = 0;
    if (starved_ && outstanding_ <= window_ / 2 && window_ < max_window_) {
      auto grow = std::min(window_, max_window_ - window_);
      window_ += grow;
      inc += grow;
    }
    starved_ = false;
    return static_cast<uint32_t>(inc);
  }

 private:
  uint32_t window_;
  uint32_t max_window_;
  uint64_t outstanding_ = 0;
  uint64_t unreturned_ = 0;
  bool starved_ = false;  ///< the sender came within a quarter window of its credit since the last update
};

/// One queued write to a socket: a framing prefix, a payload moved out of a
/// Data frame, a framing suffix, and the credit the payload returns to the
/// sender once written.
struct out_piece {
  std::string head;
  std::string body;
  std::string_view tail;
  uint32_t credit = 0;
};

}  // namespace grok
