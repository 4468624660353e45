#pragma once
// IP addresses and CIDR networks for access lists such as
// server.trusted_proxies (pure, no I/O).

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grok {

/// An IPv4 or IPv6 network. IPv4 is kept as an IPv4-mapped IPv6 prefix
/// (::ffff:a.b.c.d/96+n) so a v4 peer seen on a dual-stack socket matches too.
struct ip_network {
  std::array<uint8_t, 16> addr{};
  unsigned prefix = 128;  ///< in IPv6 bits
  bool v4 = false;

  /// True when `address` (a textual IPv4 or IPv6 address) lies in this network.
  bool contains(std::string_view address) const;
  /// "a.b.c.d/n" or "x::y/n" (host bits cleared).
  std::string to_string() const;
  bool operator==(const ip_network&) const = default;
};

/// Parses "ADDR" or "ADDR/PREFIX" (IPv4 prefix 0..32, IPv6 0..128). Host
/// bits set below the prefix are accepted and cleared. nullopt when invalid.
std::optional<ip_network> parse_ip_network(std::string_view text);

/// Parses a textual IPv4 or IPv6 address (no brackets, no zone, no port) to
/// its 16-byte IPv6 form, IPv4 mapped to ::ffff:a.b.c.d.
std::optional<std::array<uint8_t, 16>> parse_ip_address(std::string_view text);

/// True when `address` lies in any of `networks`.
bool ip_in_any(std::string_view address, const std::vector<ip_network>& networks);

}  // namespace grok
