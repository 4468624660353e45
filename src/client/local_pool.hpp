#pragma once
// Kept-alive connections to the local service, handed between exchanges.

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "local_stream.hpp"

namespace grok::client_detail {

/// A connection to the local service. It stays on the strand it was opened
/// on: the next exchange that takes it from the pool runs on that strand, so
/// reuse costs no re-registration of the socket.
struct local_conn {
  /// `tls`: the context of an https:// local service, or null.
  local_conn(const strand_t& ex, asio::ssl::context* tls) : strand(ex), stream(ex, tls) {
    // Beast reads min(capacity, 64 KiB) at a time: an unreserved buffer means 512-byte reads.
    buffer.reserve(64 * 1024);
  }
  strand_t strand;
  local_stream stream;
  beast::flat_buffer buffer;
  /// With --proxy-protocol: the PROXY header it was opened with. The local
  /// service takes every request on it to come from that visitor, so only
  /// requests with the same header may reuse it.
  std::string visitor;
};

/// Keep-alive connections to the local service, handed between exchanges.
class local_pool {
 public:
  /// An idle connection opened with the PROXY header `visitor` (empty
  /// without --proxy-protocol), or null. With `probe`, one the local service
  /// has not closed meanwhile (local_stream::still_open). A replayable
  /// request needs no probe: when its kept-alive connection turns out closed
  /// (or answers 408) before anything else, the exchange sends it again on a
  /// fresh connection (local_exchange::on_read_header). Any other request
  /// gets a probed connection.
  std::unique_ptr<local_conn> take(bool probe, const std::string& visitor = {}) {
    std::lock_guard lk(mu_);
    for (size_t i = idle_.size(); i-- > 0;) {
      if (idle_[i]->visitor != visitor) continue;
      auto c = std::move(idle_[i]);
      idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
      if (!probe || c->stream.still_open()) return c;
    }
    return nullptr;
  }
  void put(std::unique_ptr<local_conn> c) {
    std::lock_guard lk(mu_);
    // The oldest goes: it is the likeliest to have been closed by the local service.
    if (idle_.size() >= 64) idle_.erase(idle_.begin());
    idle_.push_back(std::move(c));
  }
  void clear() {
    std::lock_guard lk(mu_);
    idle_.clear();
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<local_conn>> idle_;  // newest last
};

}  // namespace grok::client_detail
