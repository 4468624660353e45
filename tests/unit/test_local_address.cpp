#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "grok/client.hpp"

using grok::parse_local_address;
using grok::parse_local_url;

namespace {
/// The reason parse_local_url gives for `text`, or "" when it accepts it.
std::string reason(const std::string& text, bool url_allowed = true) {
  try {
    parse_local_url(text, url_allowed);
    return "";
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_SUITE("local_address") {

TEST_CASE("[HOST:]PORT stays plain HTTP") {
  auto u = parse_local_url("3000");
  CHECK(u.host == "127.0.0.1");
  CHECK(u.port == 3000);
  CHECK_FALSE(u.tls);
  u = parse_local_url("localhost:8080");
  CHECK(u.host == "localhost");
  CHECK(u.port == 8080);
  CHECK_FALSE(u.tls);
  u = parse_local_url("[::1]:9000");
  CHECK(u.host == "::1");
  CHECK(u.port == 9000);
  CHECK(parse_local_address("10.0.0.5:22") == std::pair<std::string, uint16_t>{"10.0.0.5", 22});
}

TEST_CASE("https:// speaks TLS; the default ports are the scheme's") {
  auto u = parse_local_url("https://localhost:8443");
  CHECK(u.host == "localhost");
  CHECK(u.port == 8443);
  CHECK(u.tls);
  u = parse_local_url("https://dev.example.test");
  CHECK(u.host == "dev.example.test");
  CHECK(u.port == 443);
  CHECK(u.tls);
  u = parse_local_url("http://127.0.0.1:3000");
  CHECK(u.host == "127.0.0.1");
  CHECK(u.port == 3000);
  CHECK_FALSE(u.tls);
  u = parse_local_url("http://localhost");
  CHECK(u.port == 80);
  CHECK_FALSE(u.tls);
  u = parse_local_url("HTTPS://[::1]:8443/");
  CHECK(u.host == "::1");
  CHECK(u.port == 8443);
  CHECK(u.tls);
  u = parse_local_url("https://[::1]");
  CHECK(u.host == "::1");
  CHECK(u.port == 443);
}

TEST_CASE("a path, query or fragment is refused, naming what to drop") {
  CHECK(reason("https://localhost:8443/api") == "'https://localhost:8443/api': grok forwards whole hosts; drop '/api'");
  CHECK(contains(reason("http://localhost/api/v1/"), "drop '/api/v1/'"));
  CHECK(contains(reason("http://localhost:3000?debug=1"), "drop '?debug=1'"));
  CHECK(contains(reason("http://localhost:3000#top"), "drop '#top'"));
  CHECK(reason("http://localhost:3000/") == "");
}

TEST_CASE("another scheme is refused by name") {
  CHECK(contains(reason("ftp://localhost:21"), "scheme 'ftp' is not supported"));
  CHECK(contains(reason("ws://localhost:3000"), "scheme 'ws'"));
  CHECK(contains(reason("tcp://localhost:22"), "scheme 'tcp'"));
  CHECK(contains(reason("://localhost"), "scheme ''"));
}

TEST_CASE("malformed hosts and ports") {
  CHECK(contains(reason("https://"), "missing host"));
  CHECK(contains(reason("https://:8443"), "missing host"));
  CHECK(contains(reason("https://localhost:"), "port must be a number"));
  CHECK(contains(reason("https://localhost:0"), "port must be a number"));
  CHECK(contains(reason("https://localhost:65536"), "port must be a number"));
  CHECK(contains(reason("https://localhost:http"), "port must be a number"));
  CHECK(contains(reason("https://::1:8443"), "IPv6 address in brackets"));
  CHECK(contains(reason("https://[::1"), "missing ']'"));
  CHECK(contains(reason("https://[::1]8443"), "expected ':PORT'"));
  CHECK(contains(reason("https://user:pw@localhost"), "user name"));
  CHECK(contains(reason("https://local host"), "spaces"));
  CHECK(contains(reason("3000x"), "port must be a number"));
}

TEST_CASE("grok tcp takes no URL") {
  CHECK(contains(reason("http://localhost:22", false), "give the local service as [HOST:]PORT"));
  CHECK(contains(reason("https://localhost:22", false), "grok tcp"));
  CHECK(reason("localhost:22", false) == "");
}

}
