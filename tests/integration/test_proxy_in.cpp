// server.proxy_protocol: PROXY headers (v1 and v2) in front of public
// connections, from Debian's haproxy (send-proxy, send-proxy-v2), curl
// --haproxy-protocol and hand-written ones, on the HTTP listener and a TCP
// tunnel port. Visitors are other loopback addresses (127.0.0.2, ...) bound
// as the connection's source; 127.0.0.1 is the trusted proxy.

#include <doctest/doctest.h>

#include <filesystem>
#include <csignal>
#include <fstream>

#include "grok/proxy_protocol.hpp"
#include "harness.hpp"

using namespace grok::test;

namespace {

stack::options proxied_options(std::vector<std::string> client_args = {}) {
  stack::options o;
  o.server_section_yaml = "  trusted_proxies: [127.0.0.1/32]\n  proxy_protocol: true\n";
  o.client_args = std::move(client_args);
  return o;
}

std::string get(const std::string& target) { return "GET " + target + " HTTP/1.1\r\nHost: app.localhost\r\n\r\n"; }

/// Sends `bytes` from `source` and reads the answer: a response, or none (the connection was closed).
std::optional<response> exchange(uint16_t port, const std::string& source, const std::string& bytes) {
  connection c(port, 5s, source);
  c.send(bytes);
  auto first = c.read_piece(5s);
  if (first.bytes.empty()) {
    CHECK(first.eof);  // closed, not silent
    return std::nullopt;
  }
  response r;
  auto head_end = first.bytes.find("\r\n\r\n");
  while (head_end == std::string::npos) {
    auto more = c.read_some(5s);
    if (more.empty()) break;
    first.bytes += more;
    head_end = first.bytes.find("\r\n\r\n");
  }
  REQUIRE(head_end != std::string::npos);
  r.status = std::stoi(first.bytes.substr(9, 3));
  auto head = first.bytes.substr(0, head_end);
  r.body = first.bytes.substr(head_end + 4);
  size_t len = 0;
  for (size_t pos = head.find("\r\n"); pos != std::string::npos;) {
    auto next = head.find("\r\n", pos + 2);
    auto line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      header h{line.substr(0, colon), line.substr(colon + 2)};
      if (h.name == "Content-Length") len = std::stoul(h.value);
      r.headers.push_back(h);
    }
    pos = next;
  }
  while (r.body.size() < len) {
    auto more = c.read_some(5s);
    if (more.empty()) break;
    r.body += more;
  }
  return r;
}

grok::proxy_endpoint endpoint(const std::string& ip, uint16_t port) {
  auto e = grok::make_proxy_endpoint(ip, port);
  REQUIRE(e);
  return *e;
}

}  // namespace

TEST_CASE("PROXY in: a trusted proxy's header names the visitor for X-Forwarded-For and the access rules") {
  stack s(proxied_options({"--deny-cidr", "198.51.100.66"}));
  // v1 and v2 from the trusted proxy: the visitor is the header's source.
  auto v1 = exchange(s.http_port, "127.0.0.1", "PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n" + get("/headers"));
  REQUIRE(v1);
  CHECK(v1->status == 200);
  CHECK(v1->body.find("X-Forwarded-For: 198.51.100.7\n") != std::string::npos);
  auto v2 = exchange(s.http_port, "127.0.0.1",
                     grok::proxy_v2_header(endpoint("2001:db8::5", 40001), endpoint("2001:db8::1", 443)) + get("/headers"));
  REQUIRE(v2);
  CHECK(v2->status == 200);
  CHECK(v2->body.find("X-Forwarded-For: 2001:db8::5\n") != std::string::npos);
  auto denied = exchange(s.http_port, "127.0.0.1",
                         grok::proxy_v2_header(endpoint("198.51.100.66", 40002), endpoint("127.0.0.1", 80)) + get("/"));
  REQUIRE(denied);
  CHECK(denied->status == 403);
  // LOCAL (a health check of the proxy's own): the connection's own address stays.
  auto local = exchange(s.http_port, "127.0.0.1", grok::proxy_v2_local_header() + get("/headers"));
  REQUIRE(local);
  CHECK(local->body.find("X-Forwarded-For: 127.0.0.1\n") != std::string::npos);

  // A trusted proxy must send a valid header: without one, or with a bad one, nothing is answered.
  CHECK_FALSE(exchange(s.http_port, "127.0.0.1", get("/")));
  CHECK_FALSE(exchange(s.http_port, "127.0.0.1", "PROXY TCP4 198.51.100.300 127.0.0.1 40000 80\r\n" + get("/")));
  CHECK(s.server->wait_for_text("remote=127.0.0.1: connection closed: PROXY v1: bad source address", 5s));

  // Anyone else is served as it is, but may not send a header.
  auto direct = exchange(s.http_port, "127.0.0.2", get("/headers"));
  REQUIRE(direct);
  CHECK(direct->body.find("X-Forwarded-For: 127.0.0.2\n") != std::string::npos);
  CHECK_FALSE(exchange(s.http_port, "127.0.0.2", "PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n" + get("/")));
  CHECK(s.server->wait_for_text(
      "remote=127.0.0.2: connection closed: a PROXY header from an address not in server.trusted_proxies", 5s));

  // curl --haproxy-protocol: its own address, from the trusted one and from another.
  auto url = "http://app.localhost:" + std::to_string(s.http_port) + "/";
  process ok({"/usr/bin/curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\n", "--haproxy-protocol", url});
  CHECK(ok.wait_exit(10s) == 0);
  CHECK(ok.wait_for_text("200", 1s));
  process refused({"/usr/bin/curl", "-sS", "-o", "/dev/null", "--interface", "127.0.0.4", "--haproxy-protocol", url});
  auto status = refused.wait_exit(10s);
  INFO("curl printed: " << (refused.lines().empty() ? "" : refused.lines().back()));
  // Closed without an answer: "Empty reply from server", a reset when the request was still unread,
  // or (55) the reset reaching curl between its PROXY header and its request.
  CHECK((status == 52 || status == 55 || status == 56));
  CHECK(s.server->wait_for_text(
      "remote=127.0.0.4: connection closed: a PROXY header from an address not in server.trusted_proxies", 5s));
}

TEST_CASE("PROXY in: the visitor behind Debian's haproxy (send-proxy-v2 to HTTP, send-proxy to a TCP tunnel port)") {
  auto tcp_port = free_port();
  auto options = proxied_options({"--deny-cidr", "127.0.0.2"});
  options.extra_server_yaml =
      "  tcp_port_start: " + std::to_string(tcp_port) + "\n  tcp_port_end: " + std::to_string(tcp_port) + "\n";
  stack s(options);
  auto web = free_port(), raw = free_port();
  std::string cfg = "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
                    "frontend web\n  bind 127.0.0.1:" + std::to_string(web) + "\n  default_backend grok_web\n"
                    "backend grok_web\n  server grok 127.0.0.1:" + std::to_string(s.http_port) + " send-proxy-v2\n"
                    "frontend raw\n  bind 127.0.0.1:" + std::to_string(raw) + "\n  default_backend grok_raw\n"
                    "backend grok_raw\n  server grok 127.0.0.1:" + std::to_string(tcp_port) + " send-proxy\n";
  haproxy lb(s.dir, cfg, web);

  auto denied = request_from("127.0.0.2", web, "GET", s.host(), "/");
  CHECK(denied.status == 403);
  auto allowed = request_from("127.0.0.3", web, "GET", s.host(), "/headers");
  CHECK(allowed.status == 200);
  CHECK(allowed.body.find("X-Forwarded-For: 127.0.0.3\n") != std::string::npos);

  process tcp_client({binary("grok"), "--insecure", "--config", "/dev/null", "tcp", std::to_string(s.upstream_port),
                      "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", "test-token", "--no-inspect",
                      "--allow-cidr", "127.0.0.3"});
  REQUIRE(tcp_client.wait_for_line(std::regex(R"(Forwarding\s+tcp://)"), 15s));
  {
    connection refused(raw, 5s, "127.0.0.2");
    refused.send(get("/"));
    auto piece = refused.read_piece(5s);
    CHECK(piece.bytes.empty());
  }
  {
    connection c(raw, 5s, "127.0.0.3");
    c.send(get("/"));
    CHECK(c.read_response(5s).status == 200);
  }
  // The client's console names the visitor, not haproxy.
  CHECK(tcp_client.wait_for_text("TCP 127.0.0.3:", 5s));
  // Straight to the port, not through haproxy: served as it is, unless it starts with a PROXY header.
  {
    connection direct(tcp_port, 5s, "127.0.0.3");
    direct.send(get("/"));
    CHECK(direct.read_response(5s).status == 200);
  }
  {
    connection forged(tcp_port, 5s, "127.0.0.3");
    forged.send("PROXY TCP4 127.0.0.9 127.0.0.1 40000 80\r\n" + get("/"));
    auto piece = forged.read_piece(5s);
    CHECK(piece.bytes.empty());
    CHECK(piece.eof);
  }
  CHECK(s.server->wait_for_text("connection closed: a PROXY header from an address not in server.trusted_proxies", 5s));
}
