#pragma once
// TCP tunnels: a public port per tunnel; each accepted connection is an
// exchange whose bytes flow both ways as credit-controlled Data frames.

#include <boost/asio/ip/tcp.hpp>
#include <memory>

#include "tunnel.hpp"

namespace grok::server_detail {

class tcp_public_listener : public std::enable_shared_from_this<tcp_public_listener> {
 public:
  /// Binds the first free port of the configured range; nullptr when none is free.
  static std::shared_ptr<tcp_public_listener> open(server_state& state, std::weak_ptr<tunnel> owner);
  void start();
  /// Any thread: closes the port (connections already accepted keep going until their tunnel closes).
  void stop();
  uint16_t port() const { return port_; }

 private:
  tcp_public_listener(server_state& state, std::weak_ptr<tunnel> owner, asio::ip::tcp::acceptor&& a, uint16_t port);
  void do_accept();
  server_state& state_;
  std::weak_ptr<tunnel> owner_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t port_;
};

}  // namespace grok::server_detail
