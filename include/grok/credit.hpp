#pragma once
// Per-exchange, per-direction credit flow control (pure state machines).
//
// The sender spends one credit per payload byte and stops reading its
// source at zero. The receiver counts bytes it has written on and returns
// them as a WindowUpdate once a quarter window has accumulated, so a
// steady stream costs one update per quarter window, not one per frame.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

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

/// What the windows of a group of exchanges (one tunnel's) may grow by
/// together, beyond where each started: the tunnel-wide bound on what
/// growth adds to the bytes in flight, as HTTP/2's connection window is.
class window_budget {
 public:
  explicit window_budget(uint64_t bytes) : left_(bytes) {}
  /// Takes n bytes of growth; false (nothing taken) when fewer are left.
  bool take(uint64_t n) {
    auto v = left_.load(std::memory_order_relaxed);
    while (v >= n)
      if (left_.compare_exchange_weak(v, v - n, std::memory_order_relaxed)) return true;
    return false;
  }
  void give_back(uint64_t n) { left_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t left() const { return left_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> left_;
};

/// The receiving side of one exchange's direction. The window starts at
/// `window` and grows, up to `max_window`, while it is what limits the
/// stream. Between two updates the receiver keeps two clocks: time spent
/// busy (bytes here waiting to be written on: the consumer is what waits)
/// and time spent idle (everything written: the sender is what waits). When
/// the sender came within a quarter window of its credit and the receiver
/// was idle longer than busy, the credit ran out in flight, and the next
/// update doubles the window. Behind a slow consumer the receiver is busy
/// nearly all the time (once the kernel's buffer toward it is full), so the
/// window, and what it buffers, stays where it started; a source that
/// pauses and then bursts can still grow it. max_window bounds each window;
/// growth comes out of `budget`, which bounds a tunnel's windows together,
/// and is given back when the window goes. Without a budget it never grows.
class recv_window {
 public:
  using clock = std::chrono::steady_clock;

  explicit recv_window(uint32_t window, uint32_t max_window = 0, std::shared_ptr<window_budget> budget = nullptr)
      : window_(window), max_window_(std::max(window, max_window)), growth_{std::move(budget)} {}

  uint32_t window() const { return window_; }
  uint32_t max_window() const { return max_window_; }
  /// Bytes received and not yet returned.
  uint64_t outstanding() const { return outstanding_; }
  /// Records n received bytes at `now`; false when the peer overran the window.
  bool on_data(uint64_t n, clock::time_point now = clock::now()) {
    if (n > window_ || outstanding_ + n > window_) return false;
    if (n == 0) return true;
    if (waiting() == 0) {
      // Idle until now; the time before the first byte (the service thinking) does not count.
      if (mark_ != clock::time_point{}) idle_ += now - mark_;
      mark_ = now;
    }
    outstanding_ += n;
    if (window_ - outstanding_ < window_ / 4) starved_ = true;
    return true;
  }
  /// Records n bytes written on at `now`; returns the increment to send now (0 = wait).
  uint32_t on_consumed(uint64_t n, clock::time_point now = clock::now()) {
    unreturned_ += n;
    if (n > 0 && waiting() == 0) count_busy(now);
    if (unreturned_ < std::max<uint32_t>(window_ / 4, 1)) return 0;
    if (waiting() > 0) count_busy(now);  // busy still: what has run of it counts now
    auto inc = unreturned_;
    outstanding_ -= unreturned_;
    unreturned_ = 0;
    if (starved_ && idle_ > busy_ && window_ < max_window_) {
      auto grow = std::min(window_, max_window_ - window_);
      if (growth_.take(grow)) {
        window_ += grow;
        inc += grow;
      }
    }
    starved_ = false;
    idle_ = busy_ = clock::duration::zero();
    return static_cast<uint32_t>(inc);
  }

 private:
  /// Bytes received and not yet written on.
  uint64_t waiting() const { return outstanding_ - unreturned_; }
  void count_busy(clock::time_point now) {
    busy_ += now - mark_;
    mark_ = now;
  }

  /// What this window took from its budget; moves with the window and goes
  /// back to the budget when the window goes.
  struct lease {
    std::shared_ptr<window_budget> budget;
    uint64_t taken = 0;
    explicit lease(std::shared_ptr<window_budget> b) : budget(std::move(b)) {}
    lease(lease&& o) noexcept : budget(std::move(o.budget)), taken(std::exchange(o.taken, 0)) {}
    lease& operator=(lease&& o) noexcept {
      if (this != &o) {
        release();
        budget = std::move(o.budget);
        taken = std::exchange(o.taken, 0);
      }
      return *this;
    }
    ~lease() { release(); }
    bool take(uint64_t n) {
      if (!budget || !budget->take(n)) return false;
      taken += n;
      return true;
    }
    void release() {
      if (budget && taken > 0) budget->give_back(taken);
      taken = 0;
    }
  };

  uint32_t window_;
  uint32_t max_window_;
  uint64_t outstanding_ = 0;
  uint64_t unreturned_ = 0;
  bool starved_ = false;         ///< the sender came within a quarter window of its credit since the last update
  clock::time_point mark_{};     ///< when waiting() last became zero or non-zero (unset before the first byte)
  clock::duration idle_{};       ///< since the last update: time with nothing waiting
  clock::duration busy_{};       ///< since the last update: time with bytes waiting
  lease growth_;
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
