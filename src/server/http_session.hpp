#pragma once
// Public HTTP side of grok-server: each request becomes an exchange on the
// tunnel its Host names.

#include <memory>

#include "listener.hpp"
#include "server_state.hpp"

namespace grok::server_detail {

/// Binds the public HTTP (or, with `tls`, HTTPS) listener; throws on failure.
/// HTTPS connections use the server_state's TLS context current at accept.
std::shared_ptr<listener> make_public_listener(server_state& state, const asio::ip::tcp::endpoint& ep, bool tls);

}  // namespace grok::server_detail
