#pragma once
// Admin endpoint (server.api_port, loopback by default): /healthz, /readyz,
// /metrics (Prometheus text) and /api/tunnels (JSON).

#include <memory>

#include "listener.hpp"
#include "server_state.hpp"

namespace grok::server_detail {

/// Binds the admin listener; throws on failure.
std::shared_ptr<listener> make_admin_listener(server_state& state, const asio::ip::tcp::endpoint& ep);

}  // namespace grok::server_detail
