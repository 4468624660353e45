#include <doctest/doctest.h>

#include <string>

#include "grok/proxy_out.hpp"
#include "grok/proxy_protocol.hpp"

using grok::proxy_header_for;
using grok::proxy_header_poolable;

namespace {
grok::pb::RequestHead visitor(const std::string& addr, uint32_t port, const std::string& public_addr,
                              uint32_t public_port) {
  grok::pb::RequestHead h;
  h.set_remote_addr(addr);
  h.set_remote_port(port);
  h.set_public_addr(public_addr);
  h.set_public_port(public_port);
  return h;
}
/// What a receiver makes of `header`.
grok::proxy_header parsed(const std::string& header) {
  auto r = grok::parse_proxy_header(header);
  REQUIRE(r.status == grok::proxy_parse_result::state::done);
  CHECK(r.header.length == header.size());
  return r.header;
}
}  // namespace

TEST_SUITE("proxy_out") {

TEST_CASE("off: no header") {
  auto h = visitor("203.0.113.7", 51234, "198.51.100.1", 443);
  CHECK(proxy_header_for(0, &h).empty());
  CHECK(proxy_header_for(0, nullptr).empty());
  CHECK(proxy_header_poolable(0, h));
}

TEST_CASE("v1 names the visitor and the address it reached") {
  auto h = visitor("203.0.113.7", 51234, "198.51.100.1", 443);
  CHECK(proxy_header_for(1, &h) == "PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n");
  h = visitor("2001:db8::7", 51234, "2001:db8::1", 443);
  CHECK(proxy_header_for(1, &h) == "PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n");
}

TEST_CASE("v2 carries the same, in binary") {
  auto h = visitor("203.0.113.7", 51234, "198.51.100.1", 443);
  auto p = parsed(proxy_header_for(2, &h));
  CHECK(p.version == 2);
  REQUIRE(p.has_addresses);
  CHECK(p.source.v4);
  CHECK(p.source.address() == "203.0.113.7");
  CHECK(p.source.port == 51234);
  CHECK(p.destination.address() == "198.51.100.1");
  CHECK(p.destination.port == 443);
}

TEST_CASE("an IPv4 visitor a dual-stack listener saw as ::ffff:a.b.c.d is named as IPv4") {
  auto h = visitor("::ffff:203.0.113.7", 51234, "::ffff:198.51.100.1", 80);
  CHECK(proxy_header_for(1, &h) == "PROXY TCP4 203.0.113.7 198.51.100.1 51234 80\r\n");
  auto p = parsed(proxy_header_for(2, &h));
  CHECK(p.source.v4);
  CHECK(p.destination.v4);
}

TEST_CASE("mixed families: IPv6, the IPv4 end mapped") {
  auto h = visitor("203.0.113.7", 51234, "2001:db8::1", 443);
  CHECK(proxy_header_for(1, &h) == "PROXY TCP6 ::ffff:203.0.113.7 2001:db8::1 51234 443\r\n");
  auto p = parsed(proxy_header_for(2, &h));
  CHECK_FALSE(p.source.v4);
  CHECK(p.destination.address() == "2001:db8::1");
}

TEST_CASE("no visitor, or an address the server did not know: UNKNOWN / LOCAL") {
  CHECK(proxy_header_for(1, nullptr) == "PROXY UNKNOWN\r\n");
  CHECK(proxy_header_for(2, nullptr) == grok::proxy_v2_local_header());
  auto h = visitor("unknown", 0, "198.51.100.1", 443);
  CHECK(proxy_header_for(1, &h) == "PROXY UNKNOWN\r\n");
  h = visitor("203.0.113.7", 51234, "", 0);
  CHECK(proxy_header_for(2, &h) == grok::proxy_v2_local_header());
  CHECK_FALSE(parsed(proxy_header_for(2, &h)).has_addresses);
}

TEST_CASE("a connection is kept for the same header only when the header tells visitors apart") {
  CHECK(proxy_header_poolable(1, visitor("203.0.113.7", 51234, "198.51.100.1", 443)));
  // Known only from X-Forwarded-For: two visitors behind one proxy would share a header.
  CHECK_FALSE(proxy_header_poolable(1, visitor("203.0.113.7", 0, "198.51.100.1", 443)));
  CHECK_FALSE(proxy_header_poolable(2, visitor("203.0.113.7", 0, "198.51.100.1", 443)));
}

}
