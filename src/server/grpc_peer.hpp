#pragma once
// The parts of a gRPC peer string ("ipv4:1.2.3.4:5", "ipv6:[::1]:5").

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace grok::server_detail {

/// The address part of a gRPC peer string ("ipv4:1.2.3.4:5", "ipv6:[::1]:5").
inline std::string peer_ip(const std::string& peer) {
  std::string_view p = peer;
  if (p.starts_with("ipv4:")) {
    p.remove_prefix(5);
    return std::string(p.substr(0, p.rfind(':')));
  }
  if (p.starts_with("ipv6:")) {
    p.remove_prefix(5);
    if (p.starts_with('[')) return std::string(p.substr(1, p.find(']') - 1));
    return std::string(p.substr(0, p.rfind(':')));
  }
  return peer;
}

/// The port part of a gRPC peer string, 0 if there is none.
inline uint16_t peer_port(const std::string& peer) {
  auto colon = peer.rfind(':');
  if (colon == std::string::npos) return 0;
  unsigned port = 0;
  auto r = std::from_chars(peer.data() + colon + 1, peer.data() + peer.size(), port);
  return r.ec == std::errc() && port <= 65535 ? static_cast<uint16_t>(port) : 0;
}

}  // namespace grok::server_detail
