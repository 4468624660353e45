#pragma once
// The byte pump both ends share between a socket and a tunnel's frames.
//
// write_queue: bytes bound for a socket (the public client, the local
// service, a TCP tunnel's visitor), one write in flight, each write carrying
// up to 64 queued pieces. A piece's credit is returned once it is written,
// never before: that is what makes TCP push back on the far end.
//
// take_buffered: bytes read past a head (Beast's buffer) leave first, within
// credit, before the pump reads the socket itself.

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "grok/credit.hpp"

namespace grok {

class write_queue {
 public:
  /// Strand only. Pieces are appended here (the response relay appends to it directly).
  std::deque<out_piece>& pieces() { return q_; }
  void push(out_piece p) { q_.push_back(std::move(p)); }
  /// Ahead of everything queued (a request head whose body arrived first).
  void push_front(out_piece p) { q_.push_front(std::move(p)); }

  bool empty() const { return q_.empty(); }
  bool writing() const { return writing_; }
  /// Nothing queued and nothing in flight.
  bool idle() const { return !writing_ && q_.empty(); }

  /// Starts one write of up to 64 queued pieces unless one is in flight or
  /// nothing is queued; `done(ec)` then runs on the stream's executor, after
  /// which the owner calls written(). False when nothing was started.
  template <class Stream, class Done>
  bool start(Stream& stream, Done&& done) {
    if (writing_ || q_.empty()) return false;
    writing_ = true;
    bufs_.clear();
    in_flight_ = std::min<size_t>(q_.size(), 64);
    for (size_t i = 0; i < in_flight_; ++i) {
      auto& p = q_[i];
      if (!p.head.empty()) bufs_.emplace_back(p.head.data(), p.head.size());
      if (!p.body.empty()) bufs_.emplace_back(p.body.data(), p.body.size());
      if (!p.tail.empty()) bufs_.emplace_back(p.tail.data(), p.tail.size());
    }
    boost::asio::async_write(stream, bufs_, [done = std::forward<Done>(done)](boost::system::error_code ec,
                                                                               size_t) mutable { done(ec); });
    return true;
  }

  /// The write start() began is over (whatever its outcome): drops the
  /// pieces it carried and returns the credit they return.
  uint64_t written() {
    writing_ = false;
    uint64_t credit = 0;
    for (size_t i = 0; i < in_flight_ && !q_.empty(); ++i) {
      credit += q_.front().credit;
      q_.pop_front();
    }
    in_flight_ = 0;
    return credit;
  }

  /// Forgets everything, the write in flight included (its completion must
  /// then be ignored by the owner).
  void reset() {
    q_.clear();
    writing_ = false;
    in_flight_ = 0;
  }

 private:
  std::deque<out_piece> q_;  // a deque: the pieces being written stay put while more are queued
  std::vector<boost::asio::const_buffer> bufs_;
  size_t in_flight_ = 0;
  bool writing_ = false;
};

/// Up to `want` bytes already read past a head into `buffer`, moved out of
/// it; empty when there are none.
inline std::string take_buffered(boost::beast::flat_buffer& buffer, uint64_t want) {
  auto n = static_cast<size_t>(std::min<uint64_t>(want, buffer.size()));
  std::string chunk(static_cast<const char*>(buffer.data().data()), n);
  buffer.consume(n);
  return chunk;
}

}  // namespace grok
