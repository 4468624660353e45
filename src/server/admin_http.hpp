#pragma once
// Admin endpoint (server.api_port, loopback by default): /healthz, /readyz,
// /metrics (Prometheus text) and /api/tunnels (JSON).

#include <boost/asio/ip/tcp.hpp>
#include <memory>

#include "tunnel.hpp"

namespace grok::server_detail {

class admin_listener : public std::enable_shared_from_this<admin_listener> {
 public:
  admin_listener(server_state& state, const asio::ip::tcp::endpoint& ep);
  void start();
  void stop();
  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  void do_accept();
  server_state& state_;
  asio::ip::tcp::acceptor acceptor_;
};

}  // namespace grok::server_detail
