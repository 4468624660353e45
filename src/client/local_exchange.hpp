#pragma once
// One public request replayed against the local service: the connection
// (kept-alive or new), the request bytes from the tunnel under credit, the
// response head and body back as frames under the server's credit, raw bytes
// both ways after an upgrade or for a TCP tunnel. Each exchange runs on its
// own strand and talks to the tunnel session only through exchange_host.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <optional>

#include "grok/frames.hpp"
#include "grok/header_shaping.hpp"
#include "local_pool.hpp"

namespace grok {
class inspector;
}

namespace grok::client_detail {

/// What every exchange of a tunnel needs to know about its local service:
/// how to connect (local_service: address, TLS, PROXY header) and how to
/// shape each request. Set once at start and shared, read-only, by the
/// exchanges.
struct local_target : local_service {
  std::string authority;  ///< "host:port" as a Host header names the local service (--host-header rewrite)
  header_shaping shaping;
  size_t inspect_index = 0;  ///< the tunnel's index in the inspector (several with `grok start`)
};

/// What an exchange sends through: the tunnel session. Any thread.
class exchange_host {
 public:
  virtual ~exchange_host() = default;
  /// Frames given in one call go out in the same batch.
  virtual void send(pb::Frame&& f, std::optional<pb::Frame>&& more = std::nullopt) = 0;
  /// The exchange `id` is over; the session forgets it.
  virtual void release(uint64_t id) = 0;
};

/// A request grok may send again on a fresh connection when a kept-alive
/// one turns out closed before answering: no body, and a method that is
/// idempotent (RFC 9110 9.2.2), so a service that did act on the first try
/// is not made to act twice with a different outcome.
inline bool replayable(const pb::RequestHead& h) {
  if (!h.end_stream()) return false;
  const auto& m = h.method();
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

class local_exchange {
 public:
  virtual ~local_exchange() = default;
  /// A frame of this exchange from the tunnel (Data, WindowUpdate, Reset); any thread.
  virtual void on_frame(pb::Frame&& f) = 0;
  /// The tunnel is gone: drop the local connection with a reset; any thread.
  virtual void cancel() = 0;
};

/// Starts exchange `id` for `head`: `send_window` is the server's credit for
/// response bytes, `recv_window` the credit this end grants for request
/// bytes, `local` where and how to reach the local service, `pooled` a
/// kept-alive connection to use (may be null; the exchange then runs on its
/// strand), `insp` the inspector that records it (null when it is off).
std::shared_ptr<local_exchange> start_local_exchange(asio::io_context& ioc, std::shared_ptr<exchange_host> host,
                                                     uint64_t id, pb::RequestHead head, uint32_t send_window,
                                                     uint32_t recv_window, uint32_t max_frame, local_pool& pool,
                                                     std::shared_ptr<const local_target> local,
                                                     std::unique_ptr<local_conn> pooled, inspector* insp = nullptr);

}  // namespace grok::client_detail
