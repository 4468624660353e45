#include "grok/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <algorithm>

#include "grok/ip_network.hpp"

namespace grok {
namespace {

using state = proxy_parse_result::state;

constexpr std::string_view v1_prefix = "PROXY ";
constexpr std::string_view v2_signature{"\r\n\r\n\0\r\nQUIT\n", 12};
constexpr size_t v2_fixed_length = 16;

constexpr std::array<uint8_t, 12> v4_mapped_prefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// v2 command (low nibble of byte 13) and the family/protocol bytes (byte 14)
// the spec lists; any other byte is invalid.
constexpr unsigned cmd_local = 0x0;
constexpr unsigned cmd_proxy = 0x1;
constexpr uint8_t fam_unspec = 0x00;
constexpr uint8_t fam_tcp4 = 0x11;
constexpr uint8_t fam_udp4 = 0x12;
constexpr uint8_t fam_tcp6 = 0x21;
constexpr uint8_t fam_udp6 = 0x22;
constexpr uint8_t fam_unix_stream = 0x31;
constexpr uint8_t fam_unix_dgram = 0x32;

proxy_parse_result need_more() { return {}; }

proxy_parse_result fail(std::string why) {
  proxy_parse_result r;
  r.status = state::error;
  r.error = std::move(why);
  return r;
}

proxy_parse_result done(const proxy_header& h) {
  proxy_parse_result r;
  r.status = state::done;
  r.header = h;
  return r;
}

std::string hex_byte(uint8_t b) {
  static constexpr char digits[] = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 0xf];
}

uint16_t read_be16(std::string_view s, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(s[at]) << 8) | static_cast<uint8_t>(s[at + 1]));
}

void append_be16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}

// True when `in` and `sig` agree on their common length: `in` may still
// become `sig`.
bool could_start(std::string_view in, std::string_view sig) {
  size_t n = std::min(in.size(), sig.size());
  return in.substr(0, n) == sig.substr(0, n);
}

// The 16-byte form an endpoint takes in a TCP6 line or an AF_INET6 block.
std::array<uint8_t, 16> ipv6_bytes(const proxy_endpoint& e) {
  if (!e.v4) return e.ip;
  std::array<uint8_t, 16> out{};
  std::copy(v4_mapped_prefix.begin(), v4_mapped_prefix.end(), out.begin());
  std::copy(e.ip.begin() + 12, e.ip.end(), out.begin() + 12);
  return out;
}

// 0..65535 in decimal, no sign, no leading zero (the spec forbids them so
// no one reads a port as octal).
std::optional<uint16_t> parse_v1_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

// An address of the declared family. parse_ip_address() picks the family by
// the presence of ':'; glibc's inet_pton rejects leading zeros in IPv4
// numbers, as the spec asks (a unit test holds it to that).
std::optional<proxy_endpoint> parse_v1_address(std::string_view s, bool v6) {
  if ((s.find(':') != std::string_view::npos) != v6) return std::nullopt;
  return make_proxy_endpoint(s, 0);
}

proxy_parse_result parse_v1(std::string_view in) {
  // Find the end of the line first: the spec has the receiver wait for the
  // CRLF before decoding anything, and a lone CR or LF never ends it.
  size_t scan = std::min(in.size(), proxy_v1_max_length);
  size_t eol = std::string_view::npos;
  for (size_t i = v1_prefix.size(); i < scan; ++i) {
    if (in[i] == '\n') return fail("PROXY v1: line not ended by CRLF");
    if (in[i] != '\r') continue;
    if (i + 1 >= proxy_v1_max_length) break;
    if (i + 1 == in.size()) return need_more();
    if (in[i + 1] != '\n') return fail("PROXY v1: line not ended by CRLF");
    eol = i;
    break;
  }
  if (eol == std::string_view::npos) {
    if (in.size() < proxy_v1_max_length) return need_more();
    return fail("PROXY v1: no CRLF in the first 107 bytes");
  }

  std::string_view rest = in.substr(v1_prefix.size(), eol - v1_prefix.size());
  std::string_view protocol = rest.substr(0, rest.find(' '));
  rest.remove_prefix(protocol.size());
  proxy_header h;
  h.version = 1;
  h.length = eol + 2;
  // The receiver ignores whatever follows UNKNOWN on the line.
  if (protocol == "UNKNOWN") return done(h);
  if (protocol != "TCP4" && protocol != "TCP6") return fail("PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)");

  // Exactly " SRC DST SPORT DPORT", one space before each field, each field
  // checked as it is read.
  auto next_field = [&rest](std::string_view& field) {
    if (rest.empty()) return false;
    rest.remove_prefix(1);  // the space that ended the previous field
    field = rest.substr(0, rest.find(' '));
    rest.remove_prefix(field.size());
    return true;
  };
  constexpr const char* missing = "PROXY v1: missing fields (SRC DST SPORT DPORT)";
  bool v6 = protocol == "TCP6";
  std::string_view field;
  if (!next_field(field)) return fail(missing);
  auto src = parse_v1_address(field, v6);
  if (!src) return fail("PROXY v1: bad source address");
  if (!next_field(field)) return fail(missing);
  auto dst = parse_v1_address(field, v6);
  if (!dst) return fail("PROXY v1: bad destination address");
  if (!next_field(field)) return fail(missing);
  auto sport = parse_v1_port(field);
  if (!sport) return fail("PROXY v1: bad source port");
  if (!next_field(field)) return fail(missing);
  auto dport = parse_v1_port(field);
  if (!dport) return fail("PROXY v1: bad destination port");
  if (!rest.empty()) return fail("PROXY v1: text after the destination port");
  src->port = *sport;
  dst->port = *dport;
  h.has_addresses = true;
  h.source = *src;
  h.destination = *dst;
  return done(h);
}

// Each check reads only bytes before the point where it runs, so a header
// arriving in pieces fails with the same reason as one read whole.
proxy_parse_result parse_v2(std::string_view in) {
  if (in.size() <= 12) return need_more();
  auto ver_cmd = static_cast<uint8_t>(in[12]);
  if ((ver_cmd >> 4) != 2) return fail("PROXY v2: unsupported version " + std::to_string(ver_cmd >> 4));
  unsigned cmd = ver_cmd & 0x0f;
  if (cmd != cmd_local && cmd != cmd_proxy) return fail("PROXY v2: unknown command " + std::to_string(cmd));

  if (in.size() <= 13) return need_more();
  auto fam = static_cast<uint8_t>(in[13]);
  size_t address_bytes = 0;
  // LOCAL ignores the family byte altogether (the spec says so).
  if (cmd == cmd_proxy) {
    switch (fam) {
      case fam_unspec: address_bytes = 0; break;
      case fam_tcp4:
      case fam_udp4: address_bytes = 2 * 4 + 2 * 2; break;
      case fam_tcp6:
      case fam_udp6: address_bytes = 2 * 16 + 2 * 2; break;
      case fam_unix_stream:
      case fam_unix_dgram: address_bytes = 2 * 108; break;
      default: return fail("PROXY v2: invalid address family and protocol " + hex_byte(fam));
    }
  }

  if (in.size() < v2_fixed_length) return need_more();
  size_t length = v2_fixed_length + read_be16(in, 14);
  if (length > proxy_v2_max_length)
    return fail("PROXY v2: header of " + std::to_string(length) + " bytes is over the limit of " +
                std::to_string(proxy_v2_max_length));
  if (length - v2_fixed_length < address_bytes)
    return fail("PROXY v2: length " + std::to_string(length - v2_fixed_length) + " cannot hold the " +
                std::to_string(address_bytes) + " address bytes of family " + hex_byte(fam));
  if (in.size() < length) return need_more();

  proxy_header h;
  h.version = 2;
  h.length = length;
  if (cmd == cmd_local) return done(h);

  // TLVs: skipped, but they must tile the rest of the header exactly.
  for (size_t at = v2_fixed_length + address_bytes; at < length;) {
    if (length - at < 3) return fail("PROXY v2: truncated TLV");
    size_t value_bytes = read_be16(in, at + 1);
    if (value_bytes > length - at - 3) return fail("PROXY v2: TLV runs past the header");
    at += 3 + value_bytes;
  }

  // UDP and AF_UNIX fall back to AF_UNSPEC, as the spec allows: grok carries
  // TCP only, and a socket path is no client address.
  if (fam != fam_tcp4 && fam != fam_tcp6) return done(h);
  const auto* p = reinterpret_cast<const uint8_t*>(in.data()) + v2_fixed_length;
  if (fam == fam_tcp4) {
    for (auto* e : {&h.source, &h.destination}) {
      e->v4 = true;
      std::copy(v4_mapped_prefix.begin(), v4_mapped_prefix.end(), e->ip.begin());
    }
    std::copy(p, p + 4, h.source.ip.begin() + 12);
    std::copy(p + 4, p + 8, h.destination.ip.begin() + 12);
    p += 8;
  } else {
    std::copy(p, p + 16, h.source.ip.begin());
    std::copy(p + 16, p + 32, h.destination.ip.begin());
    p += 32;
  }
  h.source.port = static_cast<uint16_t>((p[0] << 8) | p[1]);
  h.destination.port = static_cast<uint16_t>((p[2] << 8) | p[3]);
  h.has_addresses = true;
  return done(h);
}

}  // namespace

std::string proxy_endpoint::address() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (v4)
    inet_ntop(AF_INET, ip.data() + 12, buf, sizeof buf);
  else
    inet_ntop(AF_INET6, ip.data(), buf, sizeof buf);
  return buf;
}

std::optional<proxy_endpoint> make_proxy_endpoint(std::string_view address, uint16_t port) {
  auto ip = parse_ip_address(address);
  if (!ip) return std::nullopt;
  proxy_endpoint e;
  e.ip = *ip;
  e.v4 = address.find(':') == std::string_view::npos;
  e.port = port;
  return e;
}

proxy_parse_result parse_proxy_header(std::string_view received) {
  if (received.empty()) return need_more();
  // The first byte tells the versions apart ('P' or CR); anything else, such
  // as an HTTP method or a TLS record, is rejected before another read.
  if (could_start(received, v1_prefix)) {
    if (received.size() < v1_prefix.size()) return need_more();
    return parse_v1(received);
  }
  if (could_start(received, v2_signature)) return parse_v2(received);
  return fail(std::string(proxy_not_a_header));
}

std::string proxy_v1_header(const proxy_endpoint& source, const proxy_endpoint& destination) {
  bool v4 = source.v4 && destination.v4;
  auto text = [v4](const proxy_endpoint& e) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (v4) {
      inet_ntop(AF_INET, e.ip.data() + 12, buf, sizeof buf);
    } else {
      auto ip = ipv6_bytes(e);
      inet_ntop(AF_INET6, ip.data(), buf, sizeof buf);
    }
    return std::string(buf);
  };
  std::string out(v1_prefix);
  out += v4 ? "TCP4 " : "TCP6 ";
  out += text(source) + ' ' + text(destination) + ' ';
  out += std::to_string(source.port) + ' ' + std::to_string(destination.port) + "\r\n";
  return out;
}

std::string proxy_v1_unknown_header() { return std::string(v1_prefix) + "UNKNOWN\r\n"; }

std::string proxy_v2_header(const proxy_endpoint& source, const proxy_endpoint& destination) {
  bool v4 = source.v4 && destination.v4;
  std::string out(v2_signature);
  out += static_cast<char>(0x20 | cmd_proxy);
  out += static_cast<char>(v4 ? fam_tcp4 : fam_tcp6);
  append_be16(out, v4 ? 12 : 36);
  for (const auto* e : {&source, &destination}) {
    if (v4) {
      out.append(reinterpret_cast<const char*>(e->ip.data()) + 12, 4);
    } else {
      auto ip = ipv6_bytes(*e);
      out.append(reinterpret_cast<const char*>(ip.data()), ip.size());
    }
  }
  append_be16(out, source.port);
  append_be16(out, destination.port);
  return out;
}

std::string proxy_v2_local_header() {
  std::string out(v2_signature);
  out += static_cast<char>(0x20 | cmd_local);
  out += static_cast<char>(fam_unspec);
  append_be16(out, 0);
  return out;
}

}  // namespace grok
