#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <string_view>

#include "grok/host.hpp"

using grok::normalize_domain;
using grok::normalize_host;
using grok::tunnel_name_for_host;
using grok::valid_tunnel_name;

namespace {
// Makes failures print "nullopt" / the value instead of "{?}".
std::string show(const std::optional<std::string>& v) { return v ? "\"" + *v + "\"" : "nullopt"; }
}  // namespace

TEST_SUITE("host") {

TEST_CASE("normalize_host: lower-cases") {
  CHECK(show(normalize_host("example.com")) == "\"example.com\"");
  CHECK(show(normalize_host("Example.COM")) == "\"example.com\"");
  CHECK(show(normalize_host("FOO.Example.Com")) == "\"foo.example.com\"");
  CHECK(show(normalize_host("localhost")) == "\"localhost\"");
  CHECK(show(normalize_host("LOCALHOST")) == "\"localhost\"");
  CHECK(show(normalize_host("a")) == "\"a\"");
  CHECK(show(normalize_host("under_score.example.com")) == "\"under_score.example.com\"");
  CHECK(show(normalize_host("127.0.0.1")) == "\"127.0.0.1\"");
}

TEST_CASE("normalize_host: strips the port") {
  CHECK(show(normalize_host("example.com:80")) == "\"example.com\"");
  CHECK(show(normalize_host("Foo.Example.com:8080")) == "\"foo.example.com\"");
  CHECK(show(normalize_host("example.com:0")) == "\"example.com\"");
  CHECK(show(normalize_host("example.com:65535")) == "\"example.com\"");
  CHECK(show(normalize_host("example.com:00080")) == "\"example.com\"");
  CHECK(show(normalize_host("127.0.0.1:3000")) == "\"127.0.0.1\"");
}

TEST_CASE("normalize_host: bad ports are rejected") {
  CHECK(show(normalize_host("example.com:65536")) == "nullopt");
  CHECK(show(normalize_host("example.com:99999")) == "nullopt");
  CHECK(show(normalize_host("example.com:100000")) == "nullopt");
  CHECK(show(normalize_host("example.com:000080")) == "nullopt");
  CHECK(show(normalize_host("example.com:abc")) == "nullopt");
  CHECK(show(normalize_host("example.com:8a")) == "nullopt");
  CHECK(show(normalize_host("example.com:")) == "nullopt");
  CHECK(show(normalize_host("example.com:-1")) == "nullopt");
  CHECK(show(normalize_host("example.com:+80")) == "nullopt");
  CHECK(show(normalize_host("example.com: 80")) == "nullopt");
  CHECK(show(normalize_host("example.com:80:80")) == "nullopt");
  CHECK(show(normalize_host(":80")) == "nullopt");
}

TEST_CASE("normalize_host: one trailing dot is stripped") {
  CHECK(show(normalize_host("example.com.")) == "\"example.com\"");
  CHECK(show(normalize_host("Example.COM.:443")) == "\"example.com\"");
  CHECK(show(normalize_host("foo.example.com.")) == "\"foo.example.com\"");
  CHECK(show(normalize_host(".")) == "nullopt");
  CHECK(show(normalize_host(".:80")) == "nullopt");
}

TEST_CASE("normalize_host: empty labels (double dots, leading dot) are rejected") {
  CHECK(show(normalize_host("a..b")) == "nullopt");
  CHECK(show(normalize_host("foo..example.com")) == "nullopt");
  CHECK(show(normalize_host(".example.com")) == "nullopt");
  CHECK(show(normalize_host("..")) == "nullopt");
  // Only ONE trailing dot is allowed; "example.com.." has an empty label.
  CHECK(show(normalize_host("example.com..")) == "nullopt");
  CHECK(show(normalize_host("example.com..:80")) == "nullopt");
}

TEST_CASE("normalize_host: empty and userinfo are rejected") {
  CHECK(show(normalize_host("")) == "nullopt");
  CHECK(show(normalize_host("user@example.com")) == "nullopt");
  CHECK(show(normalize_host("user:pass@example.com")) == "nullopt");
  CHECK(show(normalize_host("@example.com")) == "nullopt");
  CHECK(show(normalize_host("example.com@")) == "nullopt");
  CHECK(show(normalize_host("user@[::1]")) == "nullopt");
}

TEST_CASE("normalize_host: invalid characters are rejected") {
  CHECK(show(normalize_host("foo bar.com")) == "nullopt");
  CHECK(show(normalize_host(" example.com")) == "nullopt");
  CHECK(show(normalize_host("example.com ")) == "nullopt");
  CHECK(show(normalize_host("foo/bar")) == "nullopt");
  CHECK(show(normalize_host("example.com/")) == "nullopt");
  CHECK(show(normalize_host("foo\\bar")) == "nullopt");
  CHECK(show(normalize_host("foo?bar")) == "nullopt");
  CHECK(show(normalize_host("foo#bar")) == "nullopt");
  CHECK(show(normalize_host("foo%2ebar")) == "nullopt");
  CHECK(show(normalize_host("foo\tbar")) == "nullopt");
  CHECK(show(normalize_host("foo\r\nbar")) == "nullopt");
  CHECK(show(normalize_host(std::string_view("foo\0bar", 7))) == "nullopt");
  CHECK(show(normalize_host("caf\xc3\xa9.com")) == "nullopt");
  CHECK(show(normalize_host("foo:80/x")) == "nullopt");
}

TEST_CASE("normalize_host: over-long values are rejected") {
  // 255 characters of name + ":65535" (6) is the limit.
  const std::string label63(63, 'a');
  const std::string name255 = label63 + "." + label63 + "." + label63 + "." + std::string(63, 'b');
  REQUIRE(name255.size() == 255);
  CHECK(show(normalize_host(name255)) == "\"" + name255 + "\"");
  CHECK(show(normalize_host(name255 + ":65535")) == "\"" + name255 + "\"");
  CHECK(show(normalize_host(name255 + ":655350")) == "nullopt");
  CHECK(show(normalize_host(std::string(300, 'a'))) == "nullopt");
}

TEST_CASE("normalize_host: bracketed IPv6") {
  CHECK(show(normalize_host("[::1]")) == "\"[::1]\"");
  CHECK(show(normalize_host("[::1]:8080")) == "\"[::1]\"");
  CHECK(show(normalize_host("[2001:DB8::AbCd]")) == "\"[2001:db8::abcd]\"");
  CHECK(show(normalize_host("[2001:db8::1]:443")) == "\"[2001:db8::1]\"");
  CHECK(show(normalize_host("[::ffff:192.0.2.1]")) == "\"[::ffff:192.0.2.1]\"");
  // Missing close bracket.
  CHECK(show(normalize_host("[::1")) == "nullopt");
  CHECK(show(normalize_host("[::1:8080")) == "nullopt");
  // Junk after the bracket, bad port.
  CHECK(show(normalize_host("[::1]x")) == "nullopt");
  CHECK(show(normalize_host("[::1]]")) == "nullopt");
  CHECK(show(normalize_host("[::1]:")) == "nullopt");
  CHECK(show(normalize_host("[::1]:65536")) == "nullopt");
  CHECK(show(normalize_host("[::1]:abc")) == "nullopt");
  // Non-address characters inside the brackets.
  CHECK(show(normalize_host("[example.com]")) == "nullopt");
  CHECK(show(normalize_host("[fe80::1%25eth0]")) == "nullopt");
  CHECK(show(normalize_host("[::1 ]")) == "nullopt");
  // An unbracketed IPv6 address looks like host:port with a bad port.
  CHECK(show(normalize_host("::1")) == "nullopt");
  CHECK(show(normalize_host("2001:db8::1")) == "nullopt");
  // A stray ']' without '['.
  CHECK(show(normalize_host("::1]")) == "nullopt");
}

TEST_CASE("normalize_host: empty brackets are not an address") {
  CHECK(show(normalize_host("[]")) == "nullopt");
  CHECK(show(normalize_host("[]:80")) == "nullopt");
}

TEST_CASE("normalize_domain") {
  CHECK(normalize_domain("example.com") == "example.com");
  CHECK(normalize_domain("Example.COM") == "example.com");
  CHECK(normalize_domain("Example.COM.") == "example.com");
  CHECK(normalize_domain("tunnel.Example.com.") == "tunnel.example.com");
  CHECK(normalize_domain("localhost") == "localhost");
  CHECK(normalize_domain("") == "");
  CHECK(normalize_domain(".") == "");
  // Only one trailing dot is stripped.
  CHECK(normalize_domain("example.com..") == "example.com.");
}

TEST_CASE("valid_tunnel_name") {
  CHECK(valid_tunnel_name("a"));
  CHECK(valid_tunnel_name("0"));
  CHECK(valid_tunnel_name("myapp"));
  CHECK(valid_tunnel_name("my-app"));
  CHECK(valid_tunnel_name("a--b"));
  CHECK(valid_tunnel_name("123"));
  CHECK(valid_tunnel_name("a1-b2-c3"));

  CHECK(valid_tunnel_name(std::string(63, 'a')));
  CHECK_FALSE(valid_tunnel_name(std::string(64, 'a')));
  CHECK(valid_tunnel_name("a" + std::string(61, '-') + "z"));

  CHECK_FALSE(valid_tunnel_name(""));
  CHECK_FALSE(valid_tunnel_name("-"));
  CHECK_FALSE(valid_tunnel_name("-app"));
  CHECK_FALSE(valid_tunnel_name("app-"));
  CHECK_FALSE(valid_tunnel_name("-app-"));

  CHECK_FALSE(valid_tunnel_name("App"));
  CHECK_FALSE(valid_tunnel_name("APP"));
  CHECK_FALSE(valid_tunnel_name("myApp"));

  CHECK_FALSE(valid_tunnel_name("my_app"));
  CHECK_FALSE(valid_tunnel_name("my.app"));
  CHECK_FALSE(valid_tunnel_name("my app"));
  CHECK_FALSE(valid_tunnel_name("my/app"));
  CHECK_FALSE(valid_tunnel_name("caf\xc3\xa9"));
  CHECK_FALSE(valid_tunnel_name(std::string_view("a\0b", 3)));
}

TEST_CASE("tunnel_name_for_host: exactly NAME.DOMAIN") {
  CHECK(show(tunnel_name_for_host("myapp.example.com", "example.com")) == "\"myapp\"");
  CHECK(show(tunnel_name_for_host("a.example.com", "example.com")) == "\"a\"");
  CHECK(show(tunnel_name_for_host("my-app-1.example.com", "example.com")) == "\"my-app-1\"");
  CHECK(show(tunnel_name_for_host("x.t.example.com", "t.example.com")) == "\"x\"");
  CHECK(show(tunnel_name_for_host("x.localhost", "localhost")) == "\"x\"");

  const std::string n63(63, 'n');
  CHECK(show(tunnel_name_for_host(n63 + ".example.com", "example.com")) == "\"" + n63 + "\"");
  CHECK(show(tunnel_name_for_host(n63 + "n.example.com", "example.com")) == "nullopt");
}

TEST_CASE("tunnel_name_for_host: rejects everything else") {
  // The domain itself, and an empty name.
  CHECK(show(tunnel_name_for_host("example.com", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host(".example.com", "example.com")) == "nullopt");
  // Multi-label names.
  CHECK(show(tunnel_name_for_host("a.b.example.com", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host("www.myapp.example.com", "example.com")) == "nullopt");
  // Suffix match without a label boundary.
  CHECK(show(tunnel_name_for_host("myappexample.com", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host("myapp.notexample.com", "example.com")) == "nullopt");
  // Other domains and shorter hosts.
  CHECK(show(tunnel_name_for_host("myapp.example.org", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host("com", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host("", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host("myapp.example.com.evil.net", "example.com")) == "nullopt");
  // Names that are not valid tunnel names.
  CHECK(show(tunnel_name_for_host("-app.example.com", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host("app-.example.com", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host("my_app.example.com", "example.com")) == "nullopt");
  // Comparison is exact: inputs are expected to be normalized first.
  CHECK(show(tunnel_name_for_host("MyApp.example.com", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host("myapp.EXAMPLE.com", "example.com")) == "nullopt");
  CHECK(show(tunnel_name_for_host("myapp.example.com:80", "example.com")) == "nullopt");
}

TEST_CASE("tunnel_name_for_host after normalization handles case, port and trailing dots") {
  const std::string domain = normalize_domain("Example.COM.");
  auto route = [&](std::string_view raw) -> std::optional<std::string> {
    auto h = normalize_host(raw);
    if (!h) return std::nullopt;
    return tunnel_name_for_host(*h, domain);
  };
  CHECK(show(route("MyApp.Example.COM")) == "\"myapp\"");
  CHECK(show(route("MYAPP.EXAMPLE.COM:8080")) == "\"myapp\"");
  CHECK(show(route("myapp.example.com.")) == "\"myapp\"");
  CHECK(show(route("myapp.example.com.:443")) == "\"myapp\"");
  CHECK(show(route("Example.com")) == "nullopt");
  CHECK(show(route("a.B.example.com")) == "nullopt");
  CHECK(show(route("user@myapp.example.com")) == "nullopt");
  CHECK(show(route("myapp.example.com:65536")) == "nullopt");
  CHECK(show(route("[::1]:80")) == "nullopt");
}

}  // TEST_SUITE
