// Settings grok-server refuses to serve with, and those it warns about.

#include <doctest/doctest.h>

#include "grok/config.hpp"

using namespace grok;

namespace {

server_config with_tokens(std::vector<std::string> tokens) {
  std::string yaml = "auth:\n  tokens: [";
  for (size_t i = 0; i < tokens.size(); ++i) yaml += (i ? ", " : "") + tokens[i];
  return parse_server_config(yaml + "]\n", "t.yaml");
}

bool any_contains(const std::vector<std::string>& lines, const std::string& text) {
  for (auto& l : lines)
    if (l.find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("no tokens is refused unless auth.allow_anonymous says so, and then it is a warning") {
  auto empty = parse_server_config("", "t.yaml");
  auto problems = unsafe_settings(empty);
  REQUIRE(problems.size() == 1);
  CHECK(any_contains(problems, "auth: no tokens are set"));
  CHECK(any_contains(problems, "auth.allow_anonymous: true"));
  auto anonymous = parse_server_config("auth:\n  allow_anonymous: true\n", "t.yaml");
  CHECK(unsafe_settings(anonymous).empty());
  CHECK(any_contains(risky_settings(anonymous), "anyone who reaches the tunnel port can open tunnels"));
  CHECK(unsafe_settings(with_tokens({"a-real-token"})).empty());
  CHECK(unsafe_settings(parse_server_config("auth:\n  tokens_file: /dev/null\n", "t.yaml")).empty());
}

TEST_CASE("the example's placeholder token is refused, by name") {
  auto problems = unsafe_settings(with_tokens({"good-token", "change-me"}));
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("auth.tokens: 'change-me' is the example configuration's placeholder") == 0);
  CHECK(unsafe_settings(parse_server_config(R"(auth: {tokens: [change-me], allow_anonymous: true})", "t")).size() == 1);
}

TEST_CASE("an admin endpoint reachable from other hosts needs server.api_token") {
  auto cfg = parse_server_config("server:\n  api_address: 0.0.0.0\n  api_port: 9100\nauth:\n  tokens: [t1]\n", "t");
  auto problems = unsafe_settings(cfg);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("server.api_address: the admin endpoint on 0.0.0.0 is reachable from other hosts") == 0);
  cfg = parse_server_config("server:\n  api_address: 0.0.0.0\n  api_port: 9100\n  api_token: s3cret\nauth:\n  tokens: [t1]\n",
                            "t");
  CHECK(unsafe_settings(cfg).empty());
  CHECK(cfg.api_token == "s3cret");
  for (auto loop : {"127.0.0.1", "::1", "127.0.0.2"}) {
    CAPTURE(loop);
    cfg = parse_server_config(std::string("server:\n  api_address: \"") + loop +
                                  "\"\n  api_port: 9100\nauth:\n  tokens: [t1]\n",
                              "t");
    CHECK(unsafe_settings(cfg).empty());
  }
  // Off (port 0) on any address is fine.
  cfg = parse_server_config("server:\n  api_address: 0.0.0.0\nauth:\n  tokens: [t1]\n", "t");
  CHECK(unsafe_settings(cfg).empty());
}

TEST_CASE("a plaintext tunnel port on a non-loopback address is warned about") {
  auto cfg = parse_server_config("server:\n  grpc_address: 0.0.0.0\nauth:\n  tokens: [t1]\n", "t");
  CHECK(unsafe_settings(cfg).empty());
  CHECK(any_contains(risky_settings(cfg), "is plaintext on a non-loopback address"));
  cfg = parse_server_config("server:\n  grpc_address: 127.0.0.1\nauth:\n  tokens: [t1]\n", "t");
  CHECK(risky_settings(cfg).empty());
}
