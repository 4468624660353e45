#pragma once
// Public HTTP side of grok-server: accepts connections and turns each
// request into an exchange on the tunnel its Host names.

#include <boost/asio/ip/tcp.hpp>
#include <memory>

#include "tunnel.hpp"

namespace grok::server_detail {

class public_listener : public std::enable_shared_from_this<public_listener> {
 public:
  /// Binds and listens; throws boost::system::system_error naming the address on failure.
  /// With `tls`, connections speak HTTPS using the server_state's current TLS context.
  public_listener(server_state& state, const asio::ip::tcp::endpoint& ep, bool tls = false);
  void start();
  void stop();
  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  void do_accept();
  server_state& state_;
  asio::ip::tcp::acceptor acceptor_;
  bool tls_;
  std::atomic<uint64_t> next_conn_{1};
};

}  // namespace grok::server_detail
