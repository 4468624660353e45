#pragma once
// What every part of grok-server shares: the configuration in force, the
// TLS context, the name registry, the failed-attempt limiter, TCP tunnel
// ports, counters and metrics. No gRPC here: the public side compiles
// without it.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "connection_limits.hpp"
#include "grok/admission.hpp"
#include "grok/config.hpp"
#include "grok/tunnel_registry.hpp"
#include "metrics.hpp"
#include "tunnel_port_guard.hpp"

namespace boost::asio::ssl {
class context;
}

namespace grok::server_detail {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

class tunnel;
class cluster_node;
class relay_hub;

class server_state {
 public:
  server_state(asio::io_context& ioc, std::shared_ptr<const server_config> cfg) : ioc_(ioc) {
    set_config(std::move(cfg));
  }
  asio::io_context& ioc() { return ioc_; }

  std::shared_ptr<const server_config> config() const {
    std::lock_guard lk(mu_);
    return cfg_;
  }
  /// Also applies the reserved names, the name grace and the failed-attempt limits.
  void set_config(std::shared_ptr<const server_config> c);

  /// The TLS context new HTTPS connections use (replaced on reload).
  std::shared_ptr<asio::ssl::context> tls_context() const {
    std::lock_guard lk(mu_);
    return tls_;
  }
  void set_tls_context(std::shared_ptr<asio::ssl::context> c) {
    std::lock_guard lk(mu_);
    tls_ = std::move(c);
  }

  /// Marks a TCP tunnel port taken; false if it already is.
  bool reserve_tcp_port(uint16_t port) {
    std::lock_guard lk(mu_);
    return tcp_ports_.insert(port).second;
  }
  void release_tcp_port(uint16_t port) {
    std::lock_guard lk(mu_);
    tcp_ports_.erase(port);
  }

  /// Names -> tunnels (grace, reserved names, per-token counts).
  tunnel_registry<tunnel> names;
  /// Failed Hellos per source address.
  auth_failure_limiter auth_failures;
  /// Public connections per source IP (server.max_connections_per_ip).
  ip_connection_limiter per_ip_connections;
  /// Tunnel-port connections per source IP and in total.
  tunnel_port_guard tunnel_connections;
  server_detail::metrics stats;
  /// This node's part in a cluster (cluster: section); null when it runs alone.
  std::shared_ptr<cluster_node> cluster;
  /// Requests for names held on other nodes of the cluster; null when it runs alone.
  std::shared_ptr<relay_hub> relays;

  /// The public HTTP port actually bound (differs from the config for port 0).
  std::atomic<uint16_t> public_port{0};
  std::atomic<int64_t> exchanges_in_flight{0};
  std::atomic<int64_t> public_connections{0};
  /// Set on SIGTERM: new public requests get 503, new tunnels are refused.
  std::atomic<bool> draining{false};
  std::atomic<unsigned> worker_threads{0};
  std::atomic<uint64_t> reloads_ok{0};
  std::atomic<uint64_t> reloads_failed{0};

 private:
  asio::io_context& ioc_;
  mutable std::mutex mu_;  // guards cfg_, tls_, tcp_ports_
  std::shared_ptr<const server_config> cfg_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::unordered_set<uint16_t> tcp_ports_;
};

inline void server_state::set_config(std::shared_ptr<const server_config> c) {
  std::unordered_map<std::string, name_reservation> reserved;
  for (const auto& t : c->token_table)
    for (const auto& n : t.names) reserved.emplace(n, name_reservation(t.digest, pool_key(t.digest, &t)));
  names.configure(std::move(reserved), c->name_grace, c->max_pool_members);
  auth_failures.configure(c->max_auth_failures, c->auth_failure_window);
  tunnel_connections.configure(c->tunnel_max_connections_per_ip, c->tunnel_max_connections);
  std::lock_guard lk(mu_);
  cfg_ = std::move(c);
}

}  // namespace grok::server_detail
