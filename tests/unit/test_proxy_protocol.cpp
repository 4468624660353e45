#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "grok/proxy_protocol.hpp"

using grok::make_proxy_endpoint;
using grok::parse_proxy_header;
using grok::proxy_endpoint;
using grok::proxy_parse_result;
using state = grok::proxy_parse_result::state;

namespace {

// "0d0a 2111" -> the bytes; spaces are for reading.
std::string hex(std::string_view text) {
  std::string out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ' ') continue;
    out += static_cast<char>(nibble(text[i]) << 4 | nibble(text[i + 1]));
    ++i;
  }
  return out;
}

// The v2 signature as haproxy's spec lists it, byte by byte.
const std::string v2_sig = hex("0d0a0d0a 000d0a51 5549540a");

std::string be16(size_t v) { return {static_cast<char>(v >> 8 & 0xff), static_cast<char>(v & 0xff)}; }

/// A v2 header: signature, version/command byte, family byte, length, body.
std::string v2(uint8_t ver_cmd, uint8_t fam, const std::string& body) {
  return v2_sig + static_cast<char>(ver_cmd) + static_cast<char>(fam) + be16(body.size()) + body;
}

/// A TLV: type, 16-bit length, value.
std::string tlv(uint8_t type, const std::string& value) { return static_cast<char>(type) + be16(value.size()) + value; }

const std::string tcp4_block = hex("c0000201 c6336407 dc04 01bb");  // 192.0.2.1:56324 -> 198.51.100.7:443

proxy_endpoint ep(std::string_view ip, uint16_t port) {
  auto e = make_proxy_endpoint(ip, port);
  REQUIRE(e);
  return *e;
}

// What a test sees at a glance: "need_more", "done", or the error text.
std::string outcome(std::string_view in) {
  auto r = parse_proxy_header(in);
  if (r.status == state::need_more) return "need_more";
  if (r.status == state::done) return "done";
  return r.error;
}

// The answer a listener gets when the bytes arrive one at a time.
proxy_parse_result first_answer(std::string_view in) {
  proxy_parse_result r;
  for (size_t n = 1; n <= in.size(); ++n) {
    r = parse_proxy_header(in.substr(0, n));
    if (r.status != state::need_more) break;
  }
  return r;
}

std::string show(const proxy_endpoint& e) {
  return (e.v4 ? "v4 " : "v6 ") + e.address() + " " + std::to_string(e.port);
}

const std::string http = "GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n";

}  // namespace

TEST_SUITE("proxy_protocol") {

TEST_CASE("endpoints: IPv4 and IPv6 text, nothing else") {
  auto a = ep("192.0.2.1", 80);
  CHECK(a.v4);
  CHECK(a.address() == "192.0.2.1");
  CHECK(a.ip == std::array<uint8_t, 16>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1});
  auto b = ep("2001:DB8:0:0::1", 443);
  CHECK_FALSE(b.v4);
  CHECK(b.address() == "2001:db8::1");
  // A mapped address written as IPv6 stays IPv6.
  auto m = ep("::ffff:192.0.2.1", 80);
  CHECK_FALSE(m.v4);
  CHECK(m.address() == "::ffff:192.0.2.1");
  CHECK(m.ip == a.ip);
  CHECK_FALSE(m == a);
  for (auto bad :
       {"", "localhost", "1.2.3", "01.2.3.4", "256.0.0.1", "1.2.3.4:80", "[::1]", "fe80::1%eth0", " ::1", "1::2::3"})
    CHECK_MESSAGE(!make_proxy_endpoint(bad, 1), bad);
  CHECK_FALSE(make_proxy_endpoint(std::string_view("192.0.2.1\0", 10), 1));
}

TEST_CASE("v1 builder: exact bytes") {
  // The spec's example line.
  CHECK(grok::proxy_v1_header(ep("192.168.0.1", 56324), ep("192.168.0.11", 443)) ==
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  CHECK(grok::proxy_v1_header(ep("0.0.0.0", 0), ep("255.255.255.255", 65535)) ==
        "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n");
  CHECK(grok::proxy_v1_header(ep("2001:db8::1", 1234), ep("2001:0db8:0:0:0:0:0:00ff", 80)) ==
        "PROXY TCP6 2001:db8::1 2001:db8::ff 1234 80\r\n");
  // Mixed families: the IPv4 end is written as an IPv4-mapped IPv6 address.
  CHECK(grok::proxy_v1_header(ep("198.51.100.7", 40000), ep("2001:db8::2", 443)) ==
        "PROXY TCP6 ::ffff:198.51.100.7 2001:db8::2 40000 443\r\n");
  CHECK(grok::proxy_v1_header(ep("2001:db8::2", 443), ep("127.0.0.1", 8080)) ==
        "PROXY TCP6 2001:db8::2 ::ffff:127.0.0.1 443 8080\r\n");
  // The longest TCP6 line the spec counts: 104 bytes.
  auto f = ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
  auto longest = grok::proxy_v1_header(f, f);
  CHECK(longest ==
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n");
  CHECK(longest.size() == 104);
  CHECK(grok::proxy_v1_unknown_header() == "PROXY UNKNOWN\r\n");
}

TEST_CASE("v2 builder: exact bytes") {
  CHECK(v2_sig == std::string("\r\n\r\n\0\r\nQUIT\n", 12));
  CHECK(grok::proxy_v2_header(ep("192.0.2.1", 56324), ep("198.51.100.7", 443)) ==
        hex("0d0a0d0a000d0a515549540a 21 11 000c") + tcp4_block);
  CHECK(grok::proxy_v2_header(ep("2001:db8::1", 1234), ep("2001:db8::ff", 80)) ==
        hex("0d0a0d0a000d0a515549540a 21 21 0024"
            "20010db8 00000000 00000000 00000001"
            "20010db8 00000000 00000000 000000ff"
            "04d2 0050"));
  // Mixed families: AF_INET6 with the IPv4 end mapped.
  CHECK(grok::proxy_v2_header(ep("198.51.100.7", 40000), ep("2001:db8::2", 443)) ==
        hex("0d0a0d0a000d0a515549540a 21 21 0024"
            "00000000 00000000 0000ffff c6336407"
            "20010db8 00000000 00000000 00000002"
            "9c40 01bb"));
  CHECK(grok::proxy_v2_local_header() == hex("0d0a0d0a000d0a515549540a 20 00 0000"));
}

TEST_CASE("builders round-trip through the parser") {
  struct pair {
    proxy_endpoint src, dst;
  };
  std::vector<pair> pairs = {
      {ep("192.168.0.1", 56324), ep("192.168.0.11", 443)},
      {ep("0.0.0.0", 0), ep("255.255.255.255", 65535)},
      {ep("2001:db8::1", 1234), ep("2001:db8::ff", 80)},
      {ep("::", 0), ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)},
      {ep("::ffff:10.0.0.1", 1), ep("::1", 2)},
      {ep("fe80::1", 5), ep("::1.2.3.4", 6)},
  };
  for (const auto& p : pairs) {
    for (const auto& built : {grok::proxy_v1_header(p.src, p.dst), grok::proxy_v2_header(p.src, p.dst)}) {
      CAPTURE(show(p.src));
      CAPTURE(show(p.dst));
      auto r = parse_proxy_header(built + http);
      REQUIRE(r.status == state::done);
      CHECK(r.header.version == (built[0] == 'P' ? 1 : 2));
      CHECK(r.header.length == built.size());
      CHECK(r.header.has_addresses);
      CHECK(show(r.header.source) == show(p.src));
      CHECK(show(r.header.destination) == show(p.dst));
      CHECK(r.header.source == p.src);
      CHECK(r.header.destination == p.dst);
    }
  }
  // Mixed families come back as IPv6, the IPv4 end mapped.
  for (const auto& built : {grok::proxy_v1_header(ep("198.51.100.7", 40000), ep("2001:db8::2", 443)),
                            grok::proxy_v2_header(ep("198.51.100.7", 40000), ep("2001:db8::2", 443))}) {
    auto r = parse_proxy_header(built);
    REQUIRE(r.status == state::done);
    CHECK(r.header.source == ep("::ffff:198.51.100.7", 40000));
    CHECK(r.header.destination == ep("2001:db8::2", 443));
  }
  for (const auto& built : {grok::proxy_v1_unknown_header(), grok::proxy_v2_local_header()}) {
    auto r = parse_proxy_header(built + http);
    REQUIRE(r.status == state::done);
    CHECK(r.header.length == built.size());
    CHECK_FALSE(r.header.has_addresses);
  }
}

TEST_CASE("the bytes after the header stay for the caller") {
  std::string in = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" + http;
  auto r = parse_proxy_header(in);
  REQUIRE(r.status == state::done);
  CHECK(r.header.version == 1);
  CHECK(r.header.length == 47);
  CHECK(in.substr(r.header.length) == http);
  CHECK(show(r.header.source) == "v4 192.168.0.1 56324");
  CHECK(show(r.header.destination) == "v4 192.168.0.11 443");

  // A second header right after the first is the caller's data too.
  std::string twice = grok::proxy_v2_header(ep("192.0.2.1", 1), ep("192.0.2.2", 2)) + grok::proxy_v2_local_header();
  r = parse_proxy_header(twice);
  REQUIRE(r.status == state::done);
  CHECK(r.header.length == 28);
  CHECK(r.header.has_addresses);

  // TLVs belong to the header; what follows them does not.
  std::string with_tlvs = v2(0x21, 0x11, tcp4_block + tlv(0x02, "app.example.com") + tlv(0x04, "")) + http;
  r = parse_proxy_header(with_tlvs);
  REQUIRE(r.status == state::done);
  CHECK(r.header.length == 16 + 12 + 18 + 3);
  CHECK(with_tlvs.substr(r.header.length) == http);
  CHECK(show(r.header.source) == "v4 192.0.2.1 56324");
  CHECK(show(r.header.destination) == "v4 198.51.100.7 443");
}

TEST_CASE("a header split at every point: need_more, then done") {
  std::vector<std::string> headers = {
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
      "PROXY TCP6 2001:db8::1 2001:db8::ff 1234 80\r\n",
      "PROXY UNKNOWN\r\n",
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
      grok::proxy_v2_header(ep("192.0.2.1", 56324), ep("198.51.100.7", 443)),
      grok::proxy_v2_header(ep("2001:db8::1", 1234), ep("2001:db8::ff", 80)),
      grok::proxy_v2_local_header(),
      v2(0x20, 0x11, tcp4_block),  // LOCAL with addresses: skipped
      v2(0x21, 0x11, tcp4_block + tlv(0x05, std::string(128, 'u')) + tlv(0x20, hex("01 00000000"))),
      v2(0x21, 0x31, std::string(216, '\0')),
  };
  CHECK(headers[3].size() == grok::proxy_v1_max_length);
  for (const auto& h : headers) {
    CAPTURE(h);
    std::string in = h + http;
    auto whole = parse_proxy_header(in);
    REQUIRE(whole.status == state::done);
    CHECK(whole.header.length == h.size());
    for (size_t n = 0; n <= in.size(); ++n) {
      CAPTURE(n);
      auto r = parse_proxy_header(std::string_view(in).substr(0, n));
      if (n < h.size())
        CHECK((r.status == state::need_more && r.error.empty()));
      else
        CHECK(r == whole);
    }
  }
}

TEST_CASE("v1: what the grammar allows") {
  auto r = parse_proxy_header("PROXY TCP4 0.0.0.0 10.0.0.1 0 65535\r\n");
  REQUIRE(r.status == state::done);
  CHECK(show(r.header.source) == "v4 0.0.0.0 0");
  CHECK(show(r.header.destination) == "v4 10.0.0.1 65535");
  // Upper-case hex, uncompressed groups, and the mapped form inet_ntop writes.
  r = parse_proxy_header("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:192.0.2.1 443 8443\r\n");
  REQUIRE(r.status == state::done);
  CHECK(show(r.header.source) == "v6 2001:db8::1 443");
  CHECK(show(r.header.destination) == "v6 ::ffff:192.0.2.1 8443");
  // UNKNOWN: whatever follows it on the line is ignored, and no address is taken.
  for (std::string line :
       {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY UNKNOWN anything at all\r\n"}) {
    r = parse_proxy_header(line + http);
    REQUIRE(r.status == state::done);
    CHECK(r.header.length == line.size());
    CHECK_FALSE(r.header.has_addresses);
  }
}

TEST_CASE("v2: families without TCP addresses, LOCAL, TLVs, the size limit") {
  struct accepted {
    std::string name, in;
    bool has_addresses;
  };
  std::vector<accepted> cases = {
      {"LOCAL, AF_UNSPEC", v2(0x20, 0x00, ""), false},
      // LOCAL ignores the family byte and whatever the length covers.
      {"LOCAL, unlisted family", v2(0x20, 0xff, "junk"), false},
      {"LOCAL, short IPv6 block", v2(0x20, 0x21, "x"), false},
      {"PROXY, AF_UNSPEC", v2(0x21, 0x00, ""), false},
      {"PROXY, AF_UNSPEC with a TLV", v2(0x21, 0x00, tlv(0x04, "pad")), false},
      {"PROXY, UDP over IPv4", v2(0x21, 0x12, tcp4_block), false},
      {"PROXY, UDP over IPv6", v2(0x21, 0x22, std::string(36, '\1')), false},
      {"PROXY, UNIX stream", v2(0x21, 0x31, std::string(216, 'p')), false},
      {"PROXY, UNIX datagram", v2(0x21, 0x32, std::string(216, 'p')), false},
      {"PROXY, TCP over IPv4", v2(0x21, 0x11, tcp4_block), true},
      {"PROXY, TCP over IPv6", v2(0x21, 0x21, std::string(36, '\1')), true},
      {"PROXY, empty TLV", v2(0x21, 0x11, tcp4_block + tlv(0x04, "")), true},
      // The largest header accepted: 1024 bytes after the fixed 16.
      {"PROXY, at the size limit", v2(0x21, 0x11, tcp4_block + tlv(0x04, std::string(1024 - 12 - 3, 'n'))), true},
      {"LOCAL, at the size limit", v2(0x20, 0x00, std::string(1024, 'l')), false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    auto r = parse_proxy_header(c.in + http);
    REQUIRE(r.status == state::done);
    CHECK(r.header.version == 2);
    CHECK(r.header.length == c.in.size());
    CHECK(r.header.has_addresses == c.has_addresses);
  }
  CHECK(cases[12].in.size() == grok::proxy_v2_max_length);
  auto r = parse_proxy_header(v2(0x21, 0x21, std::string(36, '\1')));
  CHECK(show(r.header.source) == "v6 101:101:101:101:101:101:101:101 257");
}

TEST_CASE("errors: each names what is wrong, and arrives the same in pieces") {
  struct rejected {
    std::string in, error;
  };
  const std::string addr4 = " 192.0.2.1 198.51.100.7 ";
  std::vector<rejected> cases = {
      // Not a PROXY header: decided by the first byte that cannot match.
      {"GET / HTTP/1.1\r\n", "not a PROXY header"},
      {hex("16030100"), "not a PROXY header"},  // a TLS record
      {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY header"},
      {"PROXY\tTCP4", "not a PROXY header"},
      {"PROXY\r\n", "not a PROXY header"},
      {"\r\n\r\nGET", "not a PROXY header"},
      {v2_sig.substr(0, 11) + "X" + hex("2111000c"), "not a PROXY header"},
      {std::string(1, '\0'), "not a PROXY header"},
      // v1: the line.
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY v1: line not ended by CRLF"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "PROXY v1: line not ended by CRLF"},
      {"PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n", "PROXY v1: line not ended by CRLF"},
      {"PROXY UNKNOWN \n\r\n", "PROXY v1: line not ended by CRLF"},
      {"PROXY UNKNOWN " + std::string(101, 'x'), "PROXY v1: no CRLF in the first 107 bytes"},
      // 108 bytes with the CRLF: one too many.
      {"PROXY UNKNOWN " + std::string(92, 'x') + "\r\n", "PROXY v1: no CRLF in the first 107 bytes"},
      // v1: the protocol.
      {"PROXY TCP5" + addr4 + "1 2\r\n", "PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
      {"PROXY tcp4" + addr4 + "1 2\r\n", "PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
      {"PROXY UNKNOWNX\r\n", "PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
      {"PROXY \r\n", "PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
      {"PROXY  TCP4" + addr4 + "1 2\r\n", "PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
      // v1: the fields.
      {"PROXY TCP4\r\n", "PROXY v1: missing fields (SRC DST SPORT DPORT)"},
      {"PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n", "PROXY v1: missing fields (SRC DST SPORT DPORT)"},
      {"PROXY TCP4" + addr4 + "1 2 3\r\n", "PROXY v1: text after the destination port"},
      {"PROXY TCP4" + addr4 + "1 2 \r\n", "PROXY v1: text after the destination port"},
      {"PROXY TCP4 192.0.2.01 198.51.100.7 1 2\r\n", "PROXY v1: bad source address"},
      {"PROXY TCP4 256.0.2.1 198.51.100.7 1 2\r\n", "PROXY v1: bad source address"},
      {"PROXY TCP4 192.0.2 198.51.100.7 1 2\r\n", "PROXY v1: bad source address"},
      {"PROXY TCP4 ::ffff:192.0.2.1 198.51.100.7 1 2\r\n", "PROXY v1: bad source address"},
      {"PROXY TCP4 localhost 198.51.100.7 1 2\r\n", "PROXY v1: bad source address"},
      {std::string("PROXY TCP4 192.0.2.1\0\0 198.51.100.7 1 2\r\n", 41), "PROXY v1: bad source address"},
      {std::string("PROXY TCP6 ::1 ::2\0 1 2\r\n", 25), "PROXY v1: bad destination address"},
      {"PROXY TCP4  192.0.2.1 198.51.100.7 1 2\r\n", "PROXY v1: bad source address"},
      {"PROXY TCP6 192.0.2.1 2001:db8::1 1 2\r\n", "PROXY v1: bad source address"},
      {"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n", "PROXY v1: bad source address"},
      {"PROXY TCP6 [2001:db8::1] 2001:db8::1 1 2\r\n", "PROXY v1: bad source address"},
      {"PROXY TCP4 192.0.2.1 2001:db8::1 1 2\r\n", "PROXY v1: bad destination address"},
      {"PROXY TCP6 2001:db8::1 198.51.100.7 1 2\r\n", "PROXY v1: bad destination address"},
      {"PROXY TCP6 2001:db8::1 2001:db8::1::2 1 2\r\n", "PROXY v1: bad destination address"},
      {"PROXY TCP4" + addr4 + "65536 2\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4" + addr4 + "99999 2\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4" + addr4 + "100000 2\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4" + addr4 + "080 2\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4" + addr4 + "00 2\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4" + addr4 + "+80 2\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4" + addr4 + "-1 2\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4" + addr4 + "0x50 2\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4" + addr4 + " 2\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4" + addr4 + "1 65536\r\n", "PROXY v1: bad destination port"},
      {"PROXY TCP4" + addr4 + "1 0443\r\n", "PROXY v1: bad destination port"},
      {"PROXY TCP4" + addr4 + "1 4a\r\n", "PROXY v1: bad destination port"},
      {"PROXY TCP4" + addr4 + "1 \r\n", "PROXY v1: bad destination port"},
      // v2: version and command.
      {v2(0x11, 0x11, tcp4_block), "PROXY v2: unsupported version 1"},
      {v2(0x31, 0x11, tcp4_block), "PROXY v2: unsupported version 3"},
      {v2(0x01, 0x11, tcp4_block), "PROXY v2: unsupported version 0"},
      {v2(0x22, 0x11, tcp4_block), "PROXY v2: unknown command 2"},
      {v2(0x2f, 0x11, tcp4_block), "PROXY v2: unknown command 15"},
      // v2: family and protocol bytes outside the spec's list.
      {v2(0x21, 0x10, tcp4_block), "PROXY v2: invalid address family and protocol 0x10"},
      {v2(0x21, 0x13, tcp4_block), "PROXY v2: invalid address family and protocol 0x13"},
      {v2(0x21, 0x01, tcp4_block), "PROXY v2: invalid address family and protocol 0x01"},
      {v2(0x21, 0x41, tcp4_block), "PROXY v2: invalid address family and protocol 0x41"},
      // v2: length.
      {v2_sig + hex("2111 0401"), "PROXY v2: header of 1041 bytes is over the limit of 1040"},
      {v2_sig + hex("2000 ffff"), "PROXY v2: header of 65551 bytes is over the limit of 1040"},
      {v2(0x21, 0x11, tcp4_block.substr(0, 11)), "PROXY v2: length 11 cannot hold the 12 address bytes of family 0x11"},
      {v2(0x21, 0x21, tcp4_block), "PROXY v2: length 12 cannot hold the 36 address bytes of family 0x21"},
      {v2(0x21, 0x31, std::string(215, 'p')), "PROXY v2: length 215 cannot hold the 216 address bytes of family 0x31"},
      // v2: TLVs must tile the rest of the header.
      {v2(0x21, 0x11, tcp4_block + "\x04"), "PROXY v2: truncated TLV"},
      {v2(0x21, 0x11, tcp4_block + tlv(0x04, "") + hex("0400")), "PROXY v2: truncated TLV"},
      {v2(0x21, 0x11, tcp4_block + hex("020005") + "app"), "PROXY v2: TLV runs past the header"},
      {v2(0x21, 0x00, hex("04ffff")), "PROXY v2: TLV runs past the header"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.in);
    CHECK(outcome(c.in) == c.error);
    CHECK(outcome(c.in + http) == c.error);
    auto r = first_answer(c.in);
    CHECK(r.status == state::error);
    CHECK(r.error == c.error);
  }
}

TEST_CASE("rejected as soon as the bytes decide it") {
  CHECK(outcome("") == "need_more");
  CHECK(outcome("G") == "not a PROXY header");
  CHECK(outcome("PROX") == "need_more");
  CHECK(outcome("PROXX") == "not a PROXY header");
  CHECK(outcome(v2_sig.substr(0, 5)) == "need_more");
  CHECK(outcome(v2_sig) == "need_more");
  CHECK(outcome(v2_sig + "\x31") == "PROXY v2: unsupported version 3");
  CHECK(outcome(v2_sig + "\x21\x13") == "PROXY v2: invalid address family and protocol 0x13");
  // An oversize v2 header is refused from its 16 fixed bytes, before any of the rest.
  CHECK(outcome(v2_sig + hex("2111 0401")) == "PROXY v2: header of 1041 bytes is over the limit of 1040");
  CHECK(outcome(v2_sig + hex("2111 0400")) == "need_more");
  // v1 waits for the CRLF up to the spec's 107 bytes, and no further.
  std::string line = "PROXY UNKNOWN " + std::string(92, 'x');
  CHECK(outcome(line) == "need_more");
  CHECK(outcome(line + "\r") == "PROXY v1: no CRLF in the first 107 bytes");
  CHECK(outcome(line.substr(0, 105) + "\r") == "need_more");
  CHECK(outcome(line.substr(0, 105) + "\r\n") == "done");
  // A bad field is only reported once the line is complete.
  CHECK(outcome("PROXY TCP4 999.0.0.1 1.2.3.4 1 2") == "need_more");
}

}  // TEST_SUITE
