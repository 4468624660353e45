#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "grok/config.hpp"

using grok::check_server_address;
using grok::client_config;
using grok::parse_client_config;
using grok::render_client_config;

namespace {

std::string server_problem(const std::string& s) {
  try {
    check_server_address(s);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<ok>";
}

}  // namespace

TEST_SUITE("config render") {

TEST_CASE("render_client_config: exact text") {
  client_config cfg;
  cfg.server = "tunnel.example.com:4443";
  cfg.token = "s3cret-token";
  cfg.log_level = "debug";
  CHECK(render_client_config(cfg) ==
        "# grok client configuration (rewritten by `grok config`)\n"
        "server: tunnel.example.com:4443\n"
        "token: \"s3cret-token\"\n"
        "log_level: debug\n");
}

TEST_CASE("render_client_config: reads back to the same values") {
  const std::vector<std::string> servers = {"127.0.0.1:4443", "[::1]:4443", "[2001:db8::1]:443", "example.com:1",
                                            "a#b:65535"};
  const std::vector<std::string> tokens = {"",     "abc",  "null", "~",     "true", "123",  "#hash", "a:b",
                                           "-x",   "'q'",  "\"dq\"", "back\\slash", "*star", "&amp", "!tag", "{x}",
                                           "[y]",  "%pct", "@at",  "`bt`",  "a,b",  "?q",  "|pipe", ">gt"};
  const std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  for (const auto& server : servers) {
    for (const auto& token : tokens) {
      client_config cfg;
      cfg.server = server;
      cfg.token = token;
      cfg.log_level = levels[token.size() % levels.size()];
      auto text = render_client_config(cfg);
      INFO("rendered:\n" << text);
      client_config back;
      REQUIRE_NOTHROW(back = parse_client_config(text, "rendered.yaml"));
      CHECK(back.server == cfg.server);
      CHECK(back.token == cfg.token);
      CHECK(back.log_level == cfg.log_level);
    }
  }
}

TEST_CASE("check_server_address: same rules and reasons as the config file") {
  CHECK(server_problem("tunnel.example.com:4443") == "<ok>");
  CHECK(server_problem("[::1]:4443") == "<ok>");
  CHECK(server_problem("10.0.0.1:65535") == "<ok>");
  CHECK(server_problem("example.com") == "expected host:port such as tunnel.example.com:4443, got 'example.com'");
  CHECK(server_problem(":4443") == "expected host:port such as tunnel.example.com:4443, got ':4443'");
  CHECK(server_problem("example.com:0") == "expected a port in 1..65535 after the last ':', got 'example.com:0'");
  CHECK(server_problem("example.com:65536") ==
        "expected a port in 1..65535 after the last ':', got 'example.com:65536'");
  CHECK(server_problem("example.com:http") ==
        "expected a port in 1..65535 after the last ':', got 'example.com:http'");
  CHECK(server_problem("::1:4443") == "IPv6 addresses must be in brackets, e.g. [::1]:4443, got '::1:4443'");
  CHECK(server_problem("exa mple.com:80") == "must not contain whitespace, got 'exa mple.com:80'");
  CHECK(server_problem("a\nb:80") == "must not contain whitespace, got 'a\\nb:80'");
}

TEST_CASE("render: a config with no server, insecure and a CA reads back unchanged") {
  grok::client_config c;
  c.token = "tok";
  auto back = grok::parse_client_config(grok::render_client_config(c), "t.yaml");
  CHECK(back.server.empty());  // not written as an empty server, which would not read back
  CHECK(back.token == "tok");
  c.server = "tunnel.example.com:4443";
  c.insecure = true;
  c.ca = "/dev/null";
  back = grok::parse_client_config(grok::render_client_config(c), "t.yaml");
  CHECK(back.server == c.server);
  CHECK(back.insecure);
  CHECK(back.ca == "/dev/null");
}

}  // TEST_SUITE
