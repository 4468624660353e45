#pragma once
// Whether a server answers a TLS handshake: tells a user who passed
// --insecure to a TLS tunnel port what is wrong, instead of a loop of
// "Socket closed".

#include <chrono>
#include <string>

namespace grok::client_detail {

/// True when HOST:PORT completes a TLS handshake within `timeout` (the
/// certificate is not checked: only the protocol matters here).
bool speaks_tls(const std::string& host_port, std::chrono::milliseconds timeout);

}  // namespace grok::client_detail
