#pragma once
// TCP tunnels: a public port per tunnel name (a pool's members share it);
// each accepted connection is an exchange on one of the name's tunnels whose
// bytes flow both ways as credit-controlled Data frames.

#include <memory>

#include "listener.hpp"
#include "server_state.hpp"

namespace grok::server_detail {

/// A TCP tunnel name's public port. Connections to it go to the tunnel the
/// name registry picks for `name`; the last owner to let go closes the port
/// and frees it for another tunnel.
class tcp_port {
 public:
  tcp_port(server_state& state, std::shared_ptr<listener> l, uint16_t port)
      : state_(state), listener_(std::move(l)), port_(port) {}
  ~tcp_port();
  tcp_port(const tcp_port&) = delete;
  tcp_port& operator=(const tcp_port&) = delete;
  uint16_t port() const { return port_; }

 private:
  server_state& state_;
  std::shared_ptr<listener> listener_;
  uint16_t port_;
};

/// Binds the first free port of tunnels.tcp_port_start..tcp_port_end for the
/// tunnels of `name`, reserves it in `state` and starts accepting. Returns
/// nullptr when TCP tunnels are off or no port is free.
std::shared_ptr<tcp_port> open_tcp_port(server_state& state, const std::string& name);

}  // namespace grok::server_detail
