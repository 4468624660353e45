#pragma once
// TCP tunnels: a public port per tunnel; each accepted connection is an
// exchange whose bytes flow both ways as credit-controlled Data frames.

#include <memory>

#include "listener.hpp"
#include "server_state.hpp"

namespace grok::server_detail {

class tunnel;

/// Binds the first free port of tunnels.tcp_port_start..tcp_port_end for
/// `owner` and reserves it in `state` (release it with
/// state.release_tcp_port once the listener is stopped). Returns nullptr
/// when TCP tunnels are off or no port is free.
std::shared_ptr<listener> open_tcp_listener(server_state& state, std::weak_ptr<tunnel> owner, uint16_t& port);

}  // namespace grok::server_detail
