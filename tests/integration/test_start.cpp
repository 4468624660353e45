// `grok start`: several tunnels of the client configuration's `tunnels:`
// section in one process, over one connection, with one inspector; and a
// client that reaches grok-server through an HTTP proxy (Debian's tinyproxy).

#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <csignal>
#include <fstream>
#include <set>

#include "harness.hpp"

using namespace grok::test;

namespace {

std::string write_client_config(const stack& s, const std::string& tunnels_yaml, const std::string& extra = "") {
  auto path = s.dir + "/grok.yaml";
  std::ofstream(path) << "server: 127.0.0.1:" << s.grpc_port << "\ntoken: test-token\ninsecure: true\n"
                      << extra << "tunnels:\n"
                      << tunnels_yaml;
  return path;
}

std::unique_ptr<process> grok_cmd(std::vector<std::string> args, std::vector<std::string> env = {}) {
  std::vector<std::string> argv{binary("grok")};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<process>(argv, std::move(env));
}

/// Debian's tinyproxy in the foreground on `port`, allowing CONNECT to `connect_port`.
struct tinyproxy {
  tinyproxy(const std::string& dir, uint16_t connect_port) : port(free_port()) {
    auto path = dir + "/tinyproxy.conf";
    std::ofstream(path) << "Port " << port << "\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nConnectPort "
                        << connect_port << "\nLogLevel Connect\n";
    p = std::make_unique<process>(std::vector<std::string>{"/usr/bin/tinyproxy", "-d", "-c", path});
    if (!wait_listening(port, 10s)) FAIL("tinyproxy did not start listening");
  }
  ~tinyproxy() {
    p->signal(SIGTERM);
    p->wait_exit(5s);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  uint16_t port;
  std::unique_ptr<process> p;
};

}  // namespace

TEST_CASE("grok start --all: three tunnels from the config file, one connection, one inspector") {
  auto tcp_port = free_port();
  stack::options o;
  o.start_client = false;
  o.extra_server_yaml =
      "  tcp_port_start: " + std::to_string(tcp_port) + "\n  tcp_port_end: " + std::to_string(tcp_port) + "\n";
  stack s(o);
  auto up = std::to_string(s.upstream_port);
  auto config = write_client_config(s, "  web:\n    addr: " + up + "\n    subdomain: web\n"
                                       "    request_header_add: [\"X-Tunnel: web\"]\n"
                                       "  api:\n    proto: http\n    addr: 127.0.0.1:" + up + "\n    subdomain: api\n"
                                       "    basic_auth: [\"dev:letmein\"]\n"
                                       "  db:\n    proto: tcp\n    addr: " + up + "\n");
  auto g = grok_cmd({"--config", config, "start", "--all", "--inspect", "127.0.0.1:0"});
  REQUIRE(g->wait_for_count("Forwarding", 3, 15s));
  CHECK(g->wait_for_text("Forwarding  http://web.localhost:" + std::to_string(s.http_port), 1s));
  CHECK(g->wait_for_text("Forwarding  http://api.localhost:", 1s));
  CHECK(g->wait_for_text("Forwarding  tcp://localhost:" + std::to_string(tcp_port), 1s));

  auto web = request(s.http_port, "GET", "web.localhost", "/headers");
  CHECK(web.status == 200);
  CHECK(web.body.find("X-Tunnel: web\n") != std::string::npos);
  auto api = request(s.http_port, "GET", "api.localhost", "/headers");
  CHECK(api.status == 401);
  CHECK(api.body.find("X-Tunnel") == std::string::npos);
  {
    connection c(tcp_port);
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(c.read_response(5s).status == 200);
  }

  // One connection: the server saw the three tunnels come from one peer address and port.
  std::set<std::string> peers;
  const std::regex peer_re(R"( peer=(\S+?):?\s)");  // "peer=ipv4:127.0.0.1:43210: online at ..."
  for (const auto& line : s.server->lines()) {
    std::smatch pm;
    if (line.find(": online at ") != std::string::npos && std::regex_search(line, pm, peer_re)) peers.insert(pm[1]);
  }
  INFO("peers: " << [&] { std::string all; for (auto& p : peers) all += p + " "; return all; }());
  REQUIRE(peers.size() == 1);
  CHECK(peers.begin()->find("127.0.0.1:") != std::string::npos);

  // One inspector lists the three tunnels and files each request under its own.
  auto m = g->wait_for_line(std::regex(R"(Inspector\s+http://127\.0\.0\.1:(\d+))"), 5s);
  REQUIRE(m);
  auto inspector = static_cast<uint16_t>(std::stoi((*m)[1]));
  auto tunnels = boost::json::parse(request(inspector, "GET", "127.0.0.1", "/api/tunnels").body);
  std::set<std::string> names;
  for (const auto& t : tunnels.at("tunnels").as_array()) names.insert(std::string(t.at("name").as_string()));
  CHECK(names.size() == 3);  // the TCP tunnel's name is the one the server gave it
  CHECK(names.count("web") == 1);
  CHECK(names.count("api") == 1);
  auto listed = boost::json::parse(
      request(inspector, "GET", "127.0.0.1", "/api/requests/http?tunnel_name=web").body);
  CHECK(listed.at("requests").as_array().size() == 1);

  g->signal(SIGTERM);
  CHECK(g->wait_exit(10s) == 0);
}

TEST_CASE("grok start: names from the file, and clear errors for what is not there") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  auto up = std::to_string(s.upstream_port);
  auto config = write_client_config(s, "  one:\n    addr: " + up + "\n    subdomain: one\n"
                                       "  two:\n    addr: " + up + "\n    subdomain: two\n");
  auto only = grok_cmd({"--config", config, "start", "two", "--no-inspect"});
  REQUIRE(only->wait_for_line(std::regex(R"(Forwarding\s+http://two\.)"), 15s));
  CHECK(request(s.http_port, "GET", "two.localhost", "/").status == 200);
  CHECK(request(s.http_port, "GET", "one.localhost", "/").status == 404);
  only->signal(SIGTERM);
  CHECK(only->wait_exit(10s) == 0);

  auto unknown = grok_cmd({"--config", config, "start", "three"});
  CHECK(unknown->wait_exit(10s) == 2);
  CHECK(unknown->wait_for_text("grok: start: no tunnel named 'three' in " + config + " (it has: one, two)", 1s));
  auto neither = grok_cmd({"--config", config, "start"});
  CHECK(neither->wait_exit(10s) == 2);
  CHECK(neither->wait_for_text("name the tunnels to start, or --all", 1s));

  auto bad = write_client_config(s, "  web:\n    addr: " + up + "\n    allow_cidr: [10.0.0.0/8, 300.0.0.1]\n");
  auto refused = grok_cmd({"--config", bad, "start", "--all"});
  CHECK(refused->wait_exit(10s) == 2);
  CHECK(refused->wait_for_text(bad + ":7: tunnels.web.allow_cidr[1]: '300.0.0.1' is not an IPv4 or IPv6", 1s));

  // A tunnel the server refuses for good stops the others too, with exit 1.
  auto taken = write_client_config(s, "  mine:\n    addr: " + up + "\n    subdomain: mine\n"
                                        "  clash:\n    addr: " + up + "\n    subdomain: mine\n");
  auto clash = grok_cmd({"--config", taken, "start", "--all", "--no-inspect"});
  CHECK(clash->wait_exit(15s) == 1);
  CHECK(clash->wait_for_text("the server refused the tunnel '", 1s));
}

TEST_CASE("proxy: --proxy, https_proxy and no_proxy, through Debian's tinyproxy") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  tinyproxy proxy(s.dir, s.grpc_port);
  auto connect_line = "CONNECT 127.0.0.1:" + std::to_string(s.grpc_port);
  auto base = std::vector<std::string>{"--insecure", "--config", "/dev/null", "http", std::to_string(s.upstream_port),
                                       "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", "test-token",
                                       "--no-inspect", "--subdomain"};
  {
    auto args = base;
    args.insert(args.end(), {"viaflag", "--proxy", proxy.url()});
    auto g = grok_cmd(args);
    REQUIRE(g->wait_for_line(std::regex(R"(Forwarding\s+http://viaflag\.)"), 15s));
    CHECK(request(s.http_port, "GET", "viaflag.localhost", "/").status == 200);
    CHECK(proxy.p->wait_for_count(connect_line, 1, 5s));
  }
  {
    auto args = base;
    args.push_back("viaenv");
    auto g = grok_cmd(args, {"https_proxy=" + proxy.url(), "no_proxy="});
    REQUIRE(g->wait_for_line(std::regex(R"(Forwarding\s+http://viaenv\.)"), 15s));
    CHECK(proxy.p->wait_for_count(connect_line, 2, 5s));
  }
  {
    auto args = base;
    args.push_back("direct");
    auto g = grok_cmd(args, {"https_proxy=" + proxy.url(), "no_proxy=127.0.0.1"});
    REQUIRE(g->wait_for_line(std::regex(R"(Forwarding\s+http://direct\.)"), 15s));
    CHECK(request(s.http_port, "GET", "direct.localhost", "/").status == 200);
    CHECK(proxy.p->count_lines_containing(connect_line) == 2);  // no_proxy: not through it
  }
  auto bad = base;
  bad.insert(bad.end(), {"x", "--proxy", "https://proxy.example:3128"});
  auto b = grok_cmd(bad);
  CHECK(b->wait_exit(10s) == 2);
  CHECK(b->wait_for_text("--proxy: 'https://proxy.example:3128': grok reaches proxies with plain HTTP CONNECT", 1s));
}
