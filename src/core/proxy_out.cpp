#include "grok/proxy_out.hpp"

#include <algorithm>
#include <array>
#include <optional>

#include "grok/proxy_protocol.hpp"

namespace grok {

namespace {

/// `address` and `port` as a header's end; ::ffff:a.b.c.d counts as IPv4.
std::optional<proxy_endpoint> header_end(const std::string& address, uint32_t port) {
  if (port > 65535) return std::nullopt;
  auto e = make_proxy_endpoint(address, static_cast<uint16_t>(port));
  static constexpr std::array<uint8_t, 12> v4_mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (e && std::equal(v4_mapped.begin(), v4_mapped.end(), e->ip.begin())) e->v4 = true;
  return e;
}

}  // namespace

std::string proxy_header_for(int version, const pb::RequestHead* head) {
  if (version != 1 && version != 2) return {};
  std::optional<proxy_endpoint> source, destination;
  if (head) {
    source = header_end(head->remote_addr(), head->remote_port());
    destination = header_end(head->public_addr(), head->public_port());
  }
  if (!source || !destination) return version == 1 ? proxy_v1_unknown_header() : proxy_v2_local_header();
  return version == 1 ? proxy_v1_header(*source, *destination) : proxy_v2_header(*source, *destination);
}

bool proxy_header_poolable(int version, const pb::RequestHead& head) {
  return version == 0 || head.remote_port() != 0;
}

}  // namespace grok
