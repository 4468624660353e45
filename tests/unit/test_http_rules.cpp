#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "grok/http_rules.hpp"

using grok::connection_tokens;
using grok::has_token;
using grok::iequals;
using grok::is_hop_by_hop;
using grok::strip_on_forward;
using grok::valid_header_name;
using grok::valid_header_value;
using grok::valid_status;

namespace {

using strings = std::vector<std::string>;

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](char c) { return static_cast<char>(std::toupper(static_cast<unsigned char>(c))); });
  return s;
}

// "keep-alive" -> "Keep-Alive"
std::string title(std::string s) {
  bool start = true;
  for (char& c : s) {
    c = static_cast<char>(start ? std::toupper(static_cast<unsigned char>(c))
                                : std::tolower(static_cast<unsigned char>(c)));
    start = (c == '-');
  }
  return s;
}

// "keep-alive" -> "kEeP-AlIvE"
std::string alternating(std::string s) {
  for (size_t i = 0; i < s.size(); ++i)
    s[i] = static_cast<char>(i % 2 ? std::toupper(static_cast<unsigned char>(s[i]))
                                   : std::tolower(static_cast<unsigned char>(s[i])));
  return s;
}

const std::vector<std::string> kHopByHop = {
    "connection",         "keep-alive",         "proxy-connection", "te",      "trailer",
    "transfer-encoding",  "upgrade",            "proxy-authenticate", "proxy-authorization"};

}  // namespace

TEST_SUITE("http_rules") {

TEST_CASE("is_hop_by_hop: every hop-by-hop name in any case") {
  for (const auto& name : kHopByHop) {
    CAPTURE(name);
    CHECK(is_hop_by_hop(name));
    CHECK(is_hop_by_hop(upper(name)));
    CHECK(is_hop_by_hop(title(name)));
    CHECK(is_hop_by_hop(alternating(name)));
  }
  CHECK(is_hop_by_hop("Connection"));
  CHECK(is_hop_by_hop("Keep-Alive"));
  CHECK(is_hop_by_hop("Proxy-Connection"));
  CHECK(is_hop_by_hop("TE"));
  CHECK(is_hop_by_hop("Te"));
  CHECK(is_hop_by_hop("Trailer"));
  CHECK(is_hop_by_hop("Transfer-Encoding"));
  CHECK(is_hop_by_hop("TRANSFER-ENCODING"));
  CHECK(is_hop_by_hop("Upgrade"));
  CHECK(is_hop_by_hop("Proxy-Authenticate"));
  CHECK(is_hop_by_hop("Proxy-Authorization"));
}

TEST_CASE("is_hop_by_hop: end-to-end headers and near misses are not") {
  for (std::string_view name :
       {"Host", "Content-Length", "Content-Type", "Authorization", "Cookie", "Set-Cookie",
        "Accept", "Cache-Control", "Location", "WWW-Authenticate", "X-Forwarded-For",
        "Sec-WebSocket-Key", "Content-Encoding", "Date", "Via", ""}) {
    CAPTURE(name);
    CHECK_FALSE(is_hop_by_hop(name));
  }
  CHECK_FALSE(is_hop_by_hop("connections"));
  CHECK_FALSE(is_hop_by_hop("connectio"));
  CHECK_FALSE(is_hop_by_hop("x-connection"));
  CHECK_FALSE(is_hop_by_hop(" connection"));
  CHECK_FALSE(is_hop_by_hop("connection "));
  CHECK_FALSE(is_hop_by_hop("t"));
  CHECK_FALSE(is_hop_by_hop("tee"));
  CHECK_FALSE(is_hop_by_hop("transfer_encoding"));
  CHECK_FALSE(is_hop_by_hop("keepalive"));
  CHECK_FALSE(is_hop_by_hop(std::string_view("te\0", 3)));
}

TEST_CASE("connection_tokens") {
  CHECK(connection_tokens("close") == strings{"close"});
  CHECK(connection_tokens("close, X-Foo") == strings{"close", "x-foo"});
  CHECK(connection_tokens("Keep-Alive,Upgrade") == strings{"keep-alive", "upgrade"});
  CHECK(connection_tokens("  Upgrade  ") == strings{"upgrade"});
  CHECK(connection_tokens("\tUpgrade\t,\tX-A ") == strings{"upgrade", "x-a"});
  CHECK(connection_tokens(" , ,a,,  B ,\t") == strings{"a", "b"});
  CHECK(connection_tokens(",close") == strings{"close"});
  CHECK(connection_tokens("close,") == strings{"close"});
  CHECK(connection_tokens("a,a") == strings{"a", "a"});
  CHECK(connection_tokens("") == strings{});
  CHECK(connection_tokens(",") == strings{});
  CHECK(connection_tokens(",,,") == strings{});
  CHECK(connection_tokens("   ") == strings{});
  CHECK(connection_tokens(" \t , \t ") == strings{});
  // Order is preserved.
  CHECK(connection_tokens("X-C, X-B, X-A") == strings{"x-c", "x-b", "x-a"});
}

TEST_CASE("strip_on_forward") {
  const strings none;
  for (const auto& name : kHopByHop) {
    CAPTURE(name);
    CHECK(strip_on_forward(name, none));
    CHECK(strip_on_forward(upper(name), none));
  }
  CHECK_FALSE(strip_on_forward("Content-Type", none));
  CHECK_FALSE(strip_on_forward("X-Foo", none));

  const auto listed = connection_tokens("close, X-Foo, x-BAR");
  CHECK(strip_on_forward("X-Foo", listed));
  CHECK(strip_on_forward("x-foo", listed));
  CHECK(strip_on_forward("X-FOO", listed));
  CHECK(strip_on_forward("X-Bar", listed));
  CHECK(strip_on_forward("close", listed));
  CHECK(strip_on_forward("Connection", listed));
  CHECK(strip_on_forward("Transfer-Encoding", listed));
  CHECK_FALSE(strip_on_forward("X-Foo2", listed));
  CHECK_FALSE(strip_on_forward("X-Fo", listed));
  CHECK_FALSE(strip_on_forward("Content-Length", listed));
  CHECK_FALSE(strip_on_forward("Host", listed));
  CHECK_FALSE(strip_on_forward("", listed));

  // A list that was not lower-cased still matches case-insensitively.
  CHECK(strip_on_forward("x-baz", strings{"X-Baz"}));
}

TEST_CASE("valid_header_name: RFC 9110 token") {
  CHECK(valid_header_name("Host"));
  CHECK(valid_header_name("Content-Type"));
  CHECK(valid_header_name("x-custom_header.v2"));
  CHECK(valid_header_name("a"));
  CHECK(valid_header_name("0"));
  CHECK(valid_header_name("!#$%&'*+-.^_`|~"));
  CHECK(valid_header_name("ABCXYZabcxyz0189"));

  CHECK_FALSE(valid_header_name(""));
  CHECK_FALSE(valid_header_name("Content Type"));
  CHECK_FALSE(valid_header_name(" Host"));
  CHECK_FALSE(valid_header_name("Host "));
  CHECK_FALSE(valid_header_name("Host:"));
  CHECK_FALSE(valid_header_name("Ho\tst"));
  CHECK_FALSE(valid_header_name("Host\r"));
  CHECK_FALSE(valid_header_name("Host\n"));
  CHECK_FALSE(valid_header_name("X-A\r\nX-B"));
  CHECK_FALSE(valid_header_name(std::string_view("Ho\0st", 5)));
  CHECK_FALSE(valid_header_name("Host\x7f"));
  CHECK_FALSE(valid_header_name("caf\xc3\xa9"));
  for (char c : std::string_view("\"(),/:;<=>?@[\\]{}")) {
    CAPTURE(c);
    CHECK_FALSE(valid_header_name(std::string("X") + c));
  }
}

TEST_CASE("valid_header_value") {
  CHECK(valid_header_value(""));
  CHECK(valid_header_value("text/html; charset=utf-8"));
  CHECK(valid_header_value("a\tb"));
  CHECK(valid_header_value("\t"));
  CHECK(valid_header_value(" leading and trailing "));
  CHECK(valid_header_value("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));
  // obs-text (bytes >= 0x80) is passed through.
  CHECK(valid_header_value("caf\xc3\xa9"));
  CHECK(valid_header_value("\x80\xff"));

  CHECK_FALSE(valid_header_value("a\rb"));
  CHECK_FALSE(valid_header_value("a\nb"));
  CHECK_FALSE(valid_header_value("a\r\nX-Injected: 1"));
  CHECK_FALSE(valid_header_value("\r"));
  CHECK_FALSE(valid_header_value("\n"));
  CHECK_FALSE(valid_header_value(std::string_view("a\0b", 3)));
  CHECK_FALSE(valid_header_value(std::string_view("\0", 1)));
  CHECK_FALSE(valid_header_value("a\x7f"));
  CHECK_FALSE(valid_header_value("\x01"));
  CHECK_FALSE(valid_header_value("\x1b[31m"));
  CHECK_FALSE(valid_header_value("\x1f"));
  CHECK_FALSE(valid_header_value("\v"));
  CHECK_FALSE(valid_header_value("\f"));
  // Every control except HTAB is rejected.
  int accepted_controls = 0;
  for (int c = 0; c < 0x20; ++c) {
    const char ch = static_cast<char>(c);
    if (valid_header_value(std::string_view(&ch, 1))) ++accepted_controls;
  }
  CHECK(accepted_controls == 1);
}

TEST_CASE("valid_status") {
  CHECK_FALSE(valid_status(0));
  CHECK_FALSE(valid_status(99));
  CHECK(valid_status(100));
  CHECK(valid_status(101));
  CHECK(valid_status(200));
  CHECK(valid_status(599));
  CHECK_FALSE(valid_status(600));
  CHECK_FALSE(valid_status(1000));
}

TEST_CASE("has_token") {
  CHECK(has_token("Upgrade", "upgrade"));
  CHECK(has_token("keep-alive, Upgrade", "upgrade"));
  CHECK(has_token("keep-alive, Upgrade", "KEEP-ALIVE"));
  CHECK(has_token("  upgrade  ", "Upgrade"));
  CHECK(has_token(",,upgrade,,", "upgrade"));
  CHECK(has_token("a,\tb\t,c", "b"));
  CHECK(has_token("chunked", "chunked"));
  CHECK(has_token("gzip, chunked", "chunked"));

  CHECK_FALSE(has_token("", "upgrade"));
  CHECK_FALSE(has_token("upgrade2", "upgrade"));
  CHECK_FALSE(has_token("upgrad", "upgrade"));
  CHECK_FALSE(has_token("x-upgrade", "upgrade"));
  CHECK_FALSE(has_token("keep-alive upgrade", "upgrade"));
  CHECK_FALSE(has_token("keep-alive;upgrade", "upgrade"));
  CHECK_FALSE(has_token("a, , b", ""));
  CHECK_FALSE(has_token(",,,", ""));
}

TEST_CASE("iequals") {
  CHECK(iequals("", ""));
  CHECK(iequals("abc", "abc"));
  CHECK(iequals("abc", "ABC"));
  CHECK(iequals("Content-Length", "content-LENGTH"));
  CHECK(iequals("0-9_!", "0-9_!"));
  CHECK(iequals(std::string_view("a\0b", 3), std::string_view("A\0B", 3)));

  CHECK_FALSE(iequals("abc", "abd"));
  CHECK_FALSE(iequals("abc", "ab"));
  CHECK_FALSE(iequals("ab", "abc"));
  CHECK_FALSE(iequals("", "a"));
  CHECK_FALSE(iequals("abc", "abc "));
  // Only ASCII letters fold: '@' (0x40) vs '`' (0x60), '[' vs '{'.
  CHECK_FALSE(iequals("@", "`"));
  CHECK_FALSE(iequals("[", "{"));
  CHECK_FALSE(iequals("-", "_"));
  CHECK_FALSE(iequals(std::string_view("a\0", 2), std::string_view("a", 1)));
  CHECK_FALSE(iequals("\xc3\xa9", "\xc3\x89"));
}

}  // TEST_SUITE
