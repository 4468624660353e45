// Fuzz target: the PROXY protocol header (v1 and v2) grok-server reads from a
// trusted proxy, and the headers grok writes to its local service.
//
// Input: [received bytes]. The parser sees them whole and one byte at a time;
// the same bytes, read as choices, also pick two endpoints for the builders.

#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "grok/proxy_protocol.hpp"

namespace {

using grok::parse_proxy_header;
using grok::proxy_endpoint;
using grok::proxy_parse_result;
using state = grok::proxy_parse_result::state;

proxy_endpoint choose_endpoint(grok::fuzz::input& in) {
  proxy_endpoint e;
  e.v4 = in.flag();
  for (auto& b : e.ip) b = in.byte();
  if (e.v4) {
    // The form make_proxy_endpoint() and the parser give an IPv4 address.
    for (size_t i = 0; i < 10; ++i) e.ip[i] = 0;
    e.ip[10] = e.ip[11] = 0xff;
  }
  e.port = in.u16();
  return e;
}

// An endpoint as an IPv6 header carries it: IPv4 mapped.
proxy_endpoint as_ipv6(proxy_endpoint e) {
  e.v4 = false;
  return e;
}

// A header built from `src` and `dst` parses back to them, and leaves what
// follows it alone.
void check_built(const std::string& built, int version, const proxy_endpoint& src, const proxy_endpoint& dst,
                 std::string_view after) {
  FUZZ_CHECK(built.size() <= (version == 1 ? grok::proxy_v1_max_length : grok::proxy_v2_max_length));
  auto r = parse_proxy_header(built);
  FUZZ_CHECK(r.status == state::done);
  FUZZ_CHECK(r.header.version == version);
  FUZZ_CHECK(r.header.length == built.size());
  FUZZ_CHECK(r.header.has_addresses);
  bool v4 = src.v4 && dst.v4;
  FUZZ_CHECK(r.header.source == (v4 ? src : as_ipv6(src)));
  FUZZ_CHECK(r.header.destination == (v4 ? dst : as_ipv6(dst)));
  FUZZ_CHECK(parse_proxy_header(built + std::string(after)) == r);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view received(reinterpret_cast<const char*>(data), size);
  auto all = parse_proxy_header(received);

  switch (all.status) {
    case state::need_more:
      // Never waits for more than a header can take, and consumes nothing.
      FUZZ_CHECK(size < grok::proxy_header_max_length);
      FUZZ_CHECK(all.error.empty() && all.header == grok::proxy_header{});
      break;
    case state::error:
      FUZZ_CHECK(!all.error.empty());
      FUZZ_CHECK(all.header == grok::proxy_header{});
      break;
    case state::done: {
      const auto& h = all.header;
      FUZZ_CHECK(all.error.empty());
      FUZZ_CHECK(h.version == 1 || h.version == 2);
      FUZZ_CHECK(h.length > 0 && h.length <= size);
      FUZZ_CHECK(h.length <= (h.version == 1 ? grok::proxy_v1_max_length : grok::proxy_v2_max_length));
      if (!h.has_addresses) FUZZ_CHECK(h.source == proxy_endpoint{} && h.destination == proxy_endpoint{});
      // The header alone decides: the bytes after it are the caller's.
      FUZZ_CHECK(parse_proxy_header(received.substr(0, h.length)) == all);
      break;
    }
  }

  // One byte at a time, as a slow peer sends it: need_more until the first
  // answer, which is the answer for all of it.
  proxy_parse_result first;
  for (size_t n = 1; n <= size; ++n) {
    first = parse_proxy_header(received.substr(0, n));
    if (first.status != state::need_more) break;
  }
  FUZZ_CHECK(first == all);

  // A parsed header, written again by the builders, parses to the same ends.
  if (all.status == state::done && all.header.has_addresses) {
    const auto& h = all.header;
    FUZZ_CHECK(h.source.v4 == h.destination.v4);
    auto after = received.substr(h.length);
    auto v1 = grok::proxy_v1_header(h.source, h.destination);
    auto v2 = grok::proxy_v2_header(h.source, h.destination);
    check_built(v1, 1, h.source, h.destination, after);
    check_built(v2, 2, h.source, h.destination, after);
    // Canonical inputs come back byte for byte: TCP4 lines (no leading
    // zeros allowed) and v2 TCP headers without TLVs.
    if (h.version == 1 && h.source.v4) FUZZ_CHECK(v1 == received.substr(0, h.length));
    if (h.version == 2 && h.length == 16 + (h.source.v4 ? 12 : 36)) FUZZ_CHECK(v2 == received.substr(0, h.length));
    // The text of each address names the same endpoint.
    for (const auto* e : {&h.source, &h.destination}) {
      auto again = grok::make_proxy_endpoint(e->address(), e->port);
      FUZZ_CHECK(again && *again == *e);
    }
  }

  // Any two endpoints: both builders' headers parse back to them.
  grok::fuzz::input in(data, size);
  auto src = choose_endpoint(in);
  auto dst = choose_endpoint(in);
  auto rest = in.rest();
  check_built(grok::proxy_v1_header(src, dst), 1, src, dst, rest);
  check_built(grok::proxy_v2_header(src, dst), 2, src, dst, rest);
  return 0;
}
