#pragma once
// server.proxy_protocol: the PROXY header (v1 or v2) a load balancer in
// server.trusted_proxies puts in front of each public connection (HTTP,
// HTTPS, TCP tunnel ports), read before anything else. The header is peeked
// at and then taken off the socket by its exact length, so nothing after it
// is read here: the HTTP parser, the TLS handshake or the TCP relay finds
// the connection as the visitor started it.
//
// A trusted proxy must send a header (a connection without one, or with a
// malformed one, is closed). Anyone else's connection is served as it is,
// unless it starts with a PROXY header: then it is closed, so no visitor
// can claim another address.

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "grok/proxy_protocol.hpp"

namespace grok::server_detail {

/// Who the visitor is according to a PROXY header.
struct proxied_peer {
  std::string ip;
  uint16_t port = 0;
  std::string public_addr;  ///< the address the visitor connected to (on the proxy)
  uint16_t public_port = 0;
};

class proxy_header_reader : public std::enable_shared_from_this<proxy_header_reader> {
 public:
  using tcp = boost::asio::ip::tcp;
  using error_code = boost::system::error_code;
  /// Called once, unless the connection is closed: the socket, and the
  /// visitor the header named (nullopt: no header, or one without addresses).
  using go_on_fn = std::function<void(tcp::socket&&, std::optional<proxied_peer>)>;

  /// `trusted`: the peer is in server.trusted_proxies. The header must be
  /// complete within `timeout`.
  static void start(tcp::socket&& s, std::string peer_ip, bool trusted, std::chrono::milliseconds timeout,
                    go_on_fn go_on) {
    auto r = std::shared_ptr<proxy_header_reader>(
        new proxy_header_reader(std::move(s), std::move(peer_ip), trusted, std::move(go_on)));
    r->deadline_timer_.expires_after(timeout);
    r->deadline_timer_.async_wait([weak = std::weak_ptr<proxy_header_reader>(r)](error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->over_) return;
      self->drop(self->trusted_ ? "no complete PROXY header in time" : "nothing sent in time", self->trusted_);
    });
    r->wait();
  }

 private:
  proxy_header_reader(tcp::socket&& s, std::string peer_ip, bool trusted, go_on_fn go_on)
      : socket_(std::move(s)), timer_(socket_.get_executor()), deadline_timer_(socket_.get_executor()), peer_ip_(std::move(peer_ip)), trusted_(trusted),
        go_on_(std::move(go_on)) {}

  void wait() {
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
      if (self->over_) return;
      if (ec) return self->drop("closed: " + ec.message());
      self->on_readable();
    });
  }

  void on_readable() {
    if (over_) return;
    char buf[proxy_header_max_length];
    auto fd = socket_.native_handle();
    auto n = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return drop("closed before sending anything");
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return wait();
      return drop(std::string("recv: ") + std::strerror(errno));
    }
    auto r = parse_proxy_header(std::string_view(buf, static_cast<size_t>(n)));
    using state = proxy_parse_result::state;
    if (r.status == state::need_more) return later();
    if (!trusted_) {
      if (r.status == state::error && r.error == proxy_not_a_header) return go_on(std::nullopt);
      return drop("a PROXY header from an address not in server.trusted_proxies", true);
    }
    if (r.status == state::error) return drop(r.error + " (server.proxy_protocol expects one from each trusted proxy)", true);
    // Take exactly the header off the socket: it is all there (it was just peeked at).
    auto taken = ::recv(fd, buf, r.header.length, MSG_DONTWAIT);
    if (taken != static_cast<ssize_t>(r.header.length)) return drop("the PROXY header could not be taken off the socket");
    if (!r.header.has_addresses) return go_on(std::nullopt);
    const auto& h = r.header;
    return go_on(proxied_peer{h.source.address(), h.source.port, h.destination.address(), h.destination.port});
  }

  /// The bytes so far start a header but do not end one: they stay readable,
  /// so wait a little rather than for readability, until the deadline.
  void later() {
    timer_.expires_after(std::chrono::milliseconds(10));
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec) return;
      self->on_readable();
    });
  }

  void go_on(std::optional<proxied_peer> who) {
    over_ = true;
    deadline_timer_.cancel();
    auto f = std::move(go_on_);
    f(std::move(socket_), std::move(who));
  }

  /// `notable`: a trusted proxy that sent no usable header (a misconfiguration
  /// the admin should see), or an untrusted peer that sent one.
  void drop(const std::string& why, bool notable = false) {
    over_ = true;
    deadline_timer_.cancel();
    timer_.cancel();
    if (notable)
      spdlog::info("remote={}: connection closed: {}", peer_ip_, why);
    else
      spdlog::debug("remote={}: connection closed: {}", peer_ip_, why);
    error_code ignored;
    socket_.close(ignored);
  }

  tcp::socket socket_;
  boost::asio::steady_timer timer_;           ///< the next look at a partial header
  boost::asio::steady_timer deadline_timer_;  ///< the header (or, untrusted, the first bytes) must come by then
  bool over_ = false;                         ///< handed on or dropped; everything on the socket's strand
  std::string peer_ip_;
  bool trusted_;
  go_on_fn go_on_;
};

}  // namespace grok::server_detail
