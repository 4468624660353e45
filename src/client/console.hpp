#pragma once
// What grok prints for a user on stdout: the Forwarding line and one line per
// exchange, written in bursts (console_lines), and how those lines read.

#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "grok/frames.hpp"

namespace grok::client_detail {

/// Lines a user reads on stdout: the public URL, and one line per exchange.
/// Exchange lines are gathered while the event loop is busy and written
/// together: the first line of a burst posts one flush to the loop, which
/// runs once the handlers queued before it have, so a burst of requests
/// costs one write, not one per request, and a lone request's line still
/// appears at once. What is gathered is bounded by the exchanges that end
/// in one pass of the loop.
class console_lines {
 public:
  /// An exchange's line, written by the flush this posts to `ex` (or by
  /// one already pending).
  template <class Executor>
  void gather(const Executor& ex, const std::string& line) {
    bool first = false;
    {
      std::lock_guard lk(mu_);
      first = pending_.empty();
      append_locked(line);
    }
    if (first) boost::asio::post(ex, [this] { flush(); });
  }
  /// Writes `line` now, after anything gathered before it.
  void write(const std::string& line) {
    std::lock_guard lk(mu_);
    append_locked(line);
    write_locked();
  }
  void flush() {
    std::lock_guard lk(mu_);
    write_locked();
  }

 private:
  void append_locked(const std::string& line) {
    pending_ += line;
    pending_ += '\n';
  }
  void write_locked();
  std::mutex mu_;
  std::string pending_;
};

/// The process's one console.
console_lines& console();

/// 512B, 1.5KiB, 3.2MiB, 1.07GiB.
std::string human_bytes(uint64_t n);

/// The local time of day, "14:03:07".
std::string clock_time();

/// One exchange's console line: the time it ended and who asked, then
/// "14:03:07  203.0.113.7  GET /path  200  3ms  1.5KiB" (HTTP), or
/// "14:03:07  TCP 203.0.113.7:51234  closed  3ms  in 1B  out 2B" for a TCP connection.
/// `outcome` is the status, possibly with a reason ("502 (…)").
std::string exchange_line(const pb::RequestHead& head, const std::string& outcome, std::chrono::milliseconds took,
                          uint64_t bytes_in, uint64_t bytes_out);

}  // namespace grok::client_detail
