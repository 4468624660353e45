#include "grok/ip_network.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace grok {
namespace {

constexpr std::array<uint8_t, 12> v4_mapped_prefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::optional<unsigned> parse_prefix(std::string_view s, unsigned max) {
  if (s.empty() || s.size() > 3) return std::nullopt;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > max) return std::nullopt;
  return v;
}

bool prefix_equal(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, unsigned bits) {
  size_t full = bits / 8;
  if (std::memcmp(a.data(), b.data(), full) != 0) return false;
  unsigned rest = bits % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

}  // namespace

std::optional<std::array<uint8_t, 16>> parse_ip_address(std::string_view text) {
  // inet_pton reads up to a NUL: "10.0.0.1\0junk" would pass as 10.0.0.1.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN || text.find('\0') != std::string_view::npos)
    return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  std::array<uint8_t, 16> out{};
  if (text.find(':') == std::string_view::npos) {
    in_addr a4{};
    if (inet_pton(AF_INET, buf, &a4) != 1) return std::nullopt;
    std::memcpy(out.data(), v4_mapped_prefix.data(), 12);
    std::memcpy(out.data() + 12, &a4, 4);
    return out;
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, buf, &a6) != 1) return std::nullopt;
  std::memcpy(out.data(), &a6, 16);
  return out;
}

std::optional<ip_network> parse_ip_network(std::string_view text) {
  auto slash = text.find('/');
  auto addr_text = text.substr(0, slash);
  auto addr = parse_ip_address(addr_text);
  if (!addr) return std::nullopt;
  ip_network n;
  n.addr = *addr;
  n.v4 = addr_text.find(':') == std::string_view::npos;
  unsigned max = n.v4 ? 32 : 128;
  unsigned bits = max;
  if (slash != std::string_view::npos) {
    auto p = parse_prefix(text.substr(slash + 1), max);
    if (!p) return std::nullopt;
    bits = *p;
  }
  n.prefix = n.v4 ? 96 + bits : bits;
  for (unsigned i = n.prefix; i < 128; ++i) n.addr[i / 8] &= static_cast<uint8_t>(~(0x80u >> (i % 8)));
  return n;
}

bool ip_network::contains(std::string_view address) const {
  auto a = parse_ip_address(address);
  return a && prefix_equal(*a, addr, prefix);
}

std::string ip_network::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (v4) {
    inet_ntop(AF_INET, addr.data() + 12, buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(prefix - 96);
  }
  inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

bool ip_in_any(std::string_view address, const std::vector<ip_network>& networks) {
  if (networks.empty()) return false;
  auto a = parse_ip_address(address);
  if (!a) return false;
  for (const auto& n : networks)
    if (prefix_equal(*a, n.addr, n.prefix)) return true;
  return false;
}

}  // namespace grok
