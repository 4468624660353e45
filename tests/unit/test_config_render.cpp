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

TEST_CASE("client config: a tunnels: section and a proxy read back unchanged after `grok config` rewrites the file") {
  const std::string text =
      "server: tunnel.example.com:4443\ntoken: t\nproxy: http://u:p@proxy.example:3128\n"
      "tunnels:\n"
      "  web:\n    addr: 5173\n    subdomain: Shop\n    host_header: rewrite\n    pool: true\n"
      "    health_check: /health\n    health_interval: 5s\n"
      "    basic_auth: [\"dev:let:me:in\"]\n    request_header_add: [\"X-Env: staging\"]\n"
      "    response_header_remove: Server\n    proxy_protocol: v2\n    upstream_insecure: true\n"
      "  ssh:\n    proto: tcp\n    addr: 127.0.0.1:22\n    allow_cidr: [203.0.113.0/24, \"2001:db8::/32\"]\n"
      "    deny_cidr: [203.0.113.9]\n";
  auto cfg = parse_client_config(text, "grok.yaml");
  REQUIRE(cfg.tunnels.size() == 2);
  const auto& web = cfg.tunnels[0];
  CHECK(web.name == "web");
  CHECK(web.proto == "http");
  CHECK(web.subdomain == "shop");
  CHECK(web.pool);
  CHECK(web.health_interval == std::chrono::seconds(5));
  CHECK(web.basic_auth == std::vector<std::string>{"dev:let:me:in"});
  CHECK(web.response_header_remove == std::vector<std::string>{"Server"});
  CHECK(web.proxy_protocol == "v2");
  CHECK(cfg.tunnels[1].allow_cidr == std::vector<std::string>{"203.0.113.0/24", "2001:db8::/32"});
  auto back = parse_client_config(render_client_config(cfg), "grok.yaml");
  REQUIRE(back.tunnels.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    const auto& a = cfg.tunnels[i];
    const auto& b = back.tunnels[i];
    CHECK(a.name == b.name);
    CHECK(a.proto == b.proto);
    CHECK(a.addr == b.addr);
    CHECK(a.subdomain == b.subdomain);
    CHECK(a.pool == b.pool);
    CHECK(a.health_check == b.health_check);
    CHECK(a.health_interval == b.health_interval);
    CHECK(a.basic_auth == b.basic_auth);
    CHECK(a.allow_cidr == b.allow_cidr);
    CHECK(a.deny_cidr == b.deny_cidr);
    CHECK(a.host_header == b.host_header);
    CHECK(a.request_header_add == b.request_header_add);
    CHECK(a.response_header_remove == b.response_header_remove);
    CHECK(a.upstream_insecure == b.upstream_insecure);
    CHECK(a.proxy_protocol == b.proxy_protocol);
  }
  CHECK(back.proxy == cfg.proxy);
}

TEST_CASE("client config: tunnels: errors name the file, line and key") {
  auto error = [](const std::string& text) {
    try {
      parse_client_config(text, "grok.yaml");
    } catch (const grok::config_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(error("tunnels:\n  web:\n    subdomain: x\n") == "grok.yaml:2: tunnels.web: missing addr (the local service, e.g. addr: 3000)");
  CHECK(error("tunnels:\n  web:\n    addr: 1\n    proto: udp\n") == "grok.yaml:4: tunnels.web.proto: expected http or tcp, got 'udp'");
  CHECK(error("tunnels:\n  web:\n    addr: 1\n    colour: red\n").find("grok.yaml:4: tunnels.web.colour: unknown key") == 0);
  CHECK(error("tunnels:\n  db:\n    proto: tcp\n    addr: 1\n    basic_auth: [a:b]\n") ==
        "grok.yaml:2: tunnels.db: basic_auth, host_header, health_check and the header keys apply to http tunnels only");
  CHECK(error("tunnels:\n  web:\n    addr: 1\n    request_header_add: [\"Content-Length: 3\"]\n") ==
        "grok.yaml:4: tunnels.web.request_header_add[0]: header: grok frames Content-Length itself; it cannot be changed");
  CHECK(error("tunnels:\n  web:\n    addr: 1\n    pool: true\n") ==
        "grok.yaml:2: tunnels.web: pool: true needs a subdomain (the name the pool's members share)");
  CHECK(error("proxy: https://p:1\n").find("grok.yaml:1: proxy: 'https://p:1': grok reaches proxies with plain HTTP CONNECT") == 0);
  CHECK(error("proxy: http://p\n") == "grok.yaml:1: proxy: expected http://[USER:PASS@]HOST:PORT, got 'http://p'");
}
