// The local service as a URL: `grok http https://HOST:PORT` speaks TLS to it
// (SNI, certificate verification, --upstream-insecure), `http://HOST:PORT`
// stays plain; and --proxy-protocol sends the visitor's address ahead of
// each local connection. Real processes on 127.0.0.1.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "grok/proxy_protocol.hpp"
#include "harness.hpp"

using namespace grok::test;

namespace {

/// A self-signed certificate for "localhost" (P-256, one day), made with the
/// openssl command in a temporary directory.
struct self_signed {
  self_signed() {
    char tmpl[] = "/tmp/grok-cert-XXXXXX";
    dir = mkdtemp(tmpl);
    process p({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-days", "1", "-keyout",
               key(), "-out", cert()});
    auto status = p.wait_exit(30s);
    REQUIRE(status == 0);
  }
  ~self_signed() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string cert() const { return dir + "/cert.pem"; }
  std::string key() const { return dir + "/key.pem"; }
  std::string dir;
};

/// grok-demo-upstream serving HTTPS with `c`, plus `more` flags.
std::vector<std::string> tls_upstream(const self_signed& c, std::vector<std::string> more = {}) {
  std::vector<std::string> args{"--tls-cert", c.cert(), "--tls-key", c.key()};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

/// Starts `grok http ADDRESS FLAGS...` (or `grok tcp` when `tcp`) against the
/// stack's server; waits for its Forwarding line and returns what it forwards to.
std::string start_grok(stack& s, const std::string& address, std::vector<std::string> flags = {},
                       const std::string& kind = "http") {
  std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", kind, address,
                                "--subdomain", s.opts.name, "--server", "127.0.0.1:" + std::to_string(s.grpc_port),
                                "--token", s.opts.token};
  argv.insert(argv.end(), flags.begin(), flags.end());
  s.client = std::make_unique<process>(argv);
  auto m = s.client->wait_for_line(std::regex(R"(Forwarding\s+(\S+) -> (\S+))"), scaled(15s));
  REQUIRE(m);
  s.public_url = (*m)[1];
  return (*m)[2];
}

/// Runs `grok ARGS...` to completion; its exit status and output.
std::pair<int, std::string> grok_cmd(std::vector<std::string> args) {
  std::vector<std::string> argv{binary("grok")};
  argv.insert(argv.end(), args.begin(), args.end());
  process p(std::move(argv), {"HOME=/nonexistent", "XDG_CONFIG_HOME="});
  auto status = p.wait_exit(scaled(20s));
  REQUIRE(status.has_value());
  std::string out;
  for (auto& l : p.lines()) out += l + "\n";
  return {*status, out};
}

/// A local service that wants a PROXY header first on every connection and
/// records it (parsed with grok's codec, and as sent). Then, as `http`, it
/// answers each request on the connection with 200 and the header it got
/// (keep-alive); otherwise it echoes bytes until EOF.
class proxy_service {
 public:
  struct seen {
    std::string raw;               ///< the header's bytes
    grok::proxy_parse_result parsed;
  };

  explicit proxy_service(bool http) : http_(http) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd_, 64) == 0);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~proxy_service() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    acceptor_.join();
    for (auto& t : workers_) t.join();
  }
  /// Every connection's header so far, in the order they arrived.
  std::vector<seen> headers() {
    std::lock_guard lk(mu_);
    return seen_;
  }
  /// Waits until `n` connections have sent their header.
  bool wait_for(size_t n, std::chrono::milliseconds timeout) {
    auto deadline = clock::now() + scaled(timeout);
    while (clock::now() < deadline) {
      if (headers().size() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  uint16_t port = 0;

 private:
  void accept_loop() {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 200) < 0 || stop_) return;
      if (!(p.revents & POLLIN)) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::lock_guard lk(mu_);
      workers_.emplace_back([this, c] {
        serve(c);
        close(c);
      });
    }
  }

  void serve(int c) {
    timeval tv{20, 0};  // a stuck peer cannot hold a worker forever
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string in;
    char buf[4096];
    grok::proxy_parse_result r;
    for (;;) {
      r = grok::parse_proxy_header(in);
      if (r.status != grok::proxy_parse_result::state::need_more) break;
      auto n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
    }
    auto length = r.status == grok::proxy_parse_result::state::done ? r.header.length : 0;
    std::string header = in.substr(0, length);
    {
      std::lock_guard lk(mu_);
      seen_.push_back({header, r});
    }
    if (r.status != grok::proxy_parse_result::state::done) return;
    in.erase(0, length);
    auto send_all = [&](const std::string& out) {
      return ::send(c, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size());
    };
    if (!http_) {
      for (;;) {
        if (!in.empty() && !send_all(in)) return;
        in.clear();
        auto n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) return;
        in.assign(buf, static_cast<size_t>(n));
      }
    }
    // One answer per request head (these requests carry no body).
    for (;;) {
      auto end = in.find("\r\n\r\n");
      if (end == std::string::npos) {
        auto n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) return;
        in.append(buf, static_cast<size_t>(n));
        continue;
      }
      in.erase(0, end + 4);
      std::string body = "header=" + header;
      if (!send_all("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body))
        return;
    }
  }

  bool http_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<seen> seen_;
};

/// The local port of a connected socket: the visitor's source port.
uint16_t source_port(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

/// One GET on an open visitor connection.
response get(connection& c, const stack& s, const std::string& target) {
  c.send("GET " + target + " HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
  return c.read_response(scaled(10s));
}

}  // namespace

TEST_CASE("upstream: https:// with a self-signed certificate is refused with a clear line; --upstream-insecure accepts it") {
  self_signed cert;
  stack::options o;
  o.start_client = false;
  o.upstream_args = tls_upstream(cert);
  stack s(o);
  const auto address = "https://localhost:" + std::to_string(s.upstream_port);
  {
    INFO("verification on: the visitor gets 502, and grok says why and what to do, once");
    CHECK(start_grok(s, address) == address);
    auto r = request(s.http_port, "GET", s.host(), "/");
    CHECK(r.status == 502);
    CHECK(request(s.http_port, "GET", s.host(), "/echo").status == 502);
    const std::string line = "local service " + address +
                             ": TLS handshake: certificate verify failed (self-signed certificate); pass "
                             "--upstream-insecure for a development certificate";
    CHECK(s.client->wait_for_text(line, scaled(5s)));
    CHECK(s.client->count_lines_containing("certificate verify failed (self-signed certificate); pass") == 1);
    s.stop_client();
  }
  {
    INFO("--upstream-insecure: 200, the exact bytes both ways, SNI set to the host");
    CHECK(start_grok(s, address, {"--upstream-insecure", "--log-level", "debug"}) == address);
    auto r = request(s.http_port, "GET", s.host(), "/");
    CHECK(r.status == 200);
    CHECK(r.body == "Hello from grok-demo-upstream\n");
    auto body = random_bytes(3 * 1024 * 1024 + 17, 7);
    r = request(s.http_port, "POST", s.host(), "/echo", body);
    CHECK(r.status == 200);
    CHECK(r.get("X-Echo-TLS-SNI") == "localhost");
    CHECK(r.body.size() == body.size());
    CHECK(r.body == body);
    r = request(s.http_port, "GET", s.host(), "/download?size=5000000");
    CHECK(r.status == 200);
    CHECK(sha256_hex(r.body) == [] {
      std::string want(5000000, '\0');
      fill_pattern(want.data(), want.size(), 0);
      return sha256_hex(want);
    }());
    INFO("a kept-alive TLS connection is reused, by a request that needs a probed one too (POST)");
    CHECK(request(s.http_port, "POST", s.host(), "/echo?reuse", "again").body == "again");
    CHECK(s.client->wait_for_text("POST /echo?reuse -> local service (kept-alive connection)", scaled(5s)));
  }
}

TEST_CASE("upstream: a body that runs until the close ends whole when a TLS service closes without close_notify") {
  self_signed cert;
  stack::options o;
  o.start_client = false;
  o.upstream_args = tls_upstream(cert);
  stack s(o);
  start_grok(s, "https://localhost:" + std::to_string(s.upstream_port), {"--upstream-insecure"});
  auto r = request(s.http_port, "GET", s.host(), "/until-close?size=50000");
  CHECK(r.status == 200);
  std::string want(50000, '\0');
  fill_pattern(want.data(), want.size(), 0);
  CHECK(r.body.size() == want.size());
  CHECK(r.body == want);
}

TEST_CASE("upstream: https:// to an IP address verifies the address and sends no SNI") {
  self_signed cert;  // names DNS:localhost only
  stack::options o;
  o.start_client = false;
  o.upstream_args = tls_upstream(cert);
  stack s(o);
  const auto address = "https://127.0.0.1:" + std::to_string(s.upstream_port);
  start_grok(s, address, {"--upstream-insecure"});
  auto r = request(s.http_port, "GET", s.host(), "/echo");
  CHECK(r.status == 200);
  CHECK(r.get("X-Echo-TLS-SNI") == "none");
}

TEST_CASE("upstream: https:// to a plain HTTP service asks whether it speaks TLS") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  const auto port = std::to_string(s.upstream_port);
  start_grok(s, "https://localhost:" + port, {"--upstream-insecure"});
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 502);
  CHECK(s.client->wait_for_text("does it speak TLS? for plain HTTP give http://localhost:" + port,
                                scaled(5s)));
}

TEST_CASE("upstream: the health check speaks TLS to an https:// service") {
  self_signed cert;
  stack::options o;
  o.start_client = false;
  o.upstream_args = tls_upstream(cert);
  stack s(o);
  const auto address = "https://localhost:" + std::to_string(s.upstream_port);
  start_grok(s, address, {"--health-check", "/health", "--health-interval", "200ms"});
  CHECK(s.client->wait_for_text(
      "Unhealthy   GET /health: TLS handshake: certificate verify failed (self-signed certificate)", scaled(5s)));
  s.stop_client();
  const std::string healthy = "local service healthy; taking requests (GET /health: 200)";
  const auto before = s.server->count_lines_containing(healthy);
  start_grok(s, address, {"--upstream-insecure", "--health-check", "/health", "--health-interval", "200ms"});
  CHECK(s.client->wait_for_text("Healthy     GET /health: 200", scaled(5s)));
  REQUIRE(s.server->wait_for_count(healthy, before + 1, scaled(5s)));
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
}

TEST_CASE("upstream: http://HOST:PORT works as HOST:PORT does; other schemes and paths exit 2 naming them") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  const auto address = "http://127.0.0.1:" + std::to_string(s.upstream_port);
  CHECK(start_grok(s, address) == address);
  auto r = request(s.http_port, "GET", s.host(), "/");
  CHECK(r.status == 200);
  CHECK(r.body == "Hello from grok-demo-upstream\n");
  s.stop_client();

  auto [status, out] = grok_cmd({"http", "ftp://localhost:21"});
  CHECK(status == 2);
  CHECK(out.find("'ftp://localhost:21': scheme 'ftp' is not supported") != std::string::npos);
  std::tie(status, out) = grok_cmd({"http", "https://localhost:8443/api"});
  CHECK(status == 2);
  CHECK(out.find("grok forwards whole hosts; drop '/api'") != std::string::npos);
  std::tie(status, out) = grok_cmd({"tcp", "http://localhost:22"});
  CHECK(status == 2);
  CHECK(out.find("grok tcp forwards raw TCP; give the local service as [HOST:]PORT") != std::string::npos);
  std::tie(status, out) = grok_cmd({"http", "3000", "--upstream-insecure"});
  CHECK(status == 2);
  CHECK(out.find("--upstream-insecure is for an https:// local service") != std::string::npos);
}

TEST_CASE("upstream: grok tcp --proxy-protocol v2 names each visitor's address and port") {
  proxy_service svc(/*http=*/false);
  auto tcp_port = free_port();
  stack::options o;
  o.start_client = false;
  o.extra_server_yaml = "  tcp_port_start: " + std::to_string(tcp_port) + "\n  tcp_port_end: " +
                        std::to_string(tcp_port) + "\n";
  stack s(o);
  auto forwards = start_grok(s, std::to_string(svc.port), {"--proxy-protocol", "v2"}, "tcp");
  CHECK(forwards == "tcp://127.0.0.1:" + std::to_string(svc.port));
  for (int visitor = 0; visitor < 2; ++visitor) {
    connection c(tcp_port);
    const auto port = source_port(c.fd());
    c.send("ping " + std::to_string(visitor));
    CHECK(c.read_some(scaled(5s)) == "ping " + std::to_string(visitor));
    REQUIRE(svc.wait_for(visitor + 1, 5s));
    auto seen = svc.headers().at(visitor);
    REQUIRE(seen.parsed.status == grok::proxy_parse_result::state::done);
    const auto& h = seen.parsed.header;
    CHECK(h.version == 2);
    CHECK(h.has_addresses);
    CHECK(h.source.address() == "127.0.0.1");
    CHECK(h.source.port == port);
    CHECK(h.destination.address() == "127.0.0.1");
    CHECK(h.destination.port == tcp_port);
    CHECK(seen.raw == grok::proxy_v2_header(*grok::make_proxy_endpoint("127.0.0.1", port),
                                            *grok::make_proxy_endpoint("127.0.0.1", tcp_port)));
  }
}

TEST_CASE("upstream: grok http --proxy-protocol v1 sends each visitor's header; a connection serves one visitor") {
  proxy_service svc(/*http=*/true);
  stack::options o;
  o.start_client = false;
  stack s(o);
  start_grok(s, std::to_string(svc.port), {"--proxy-protocol", "v1", "--log-level", "debug"});
  const auto expect = [&](const std::string& from, uint16_t port) {
    return "header=PROXY TCP4 " + from + " 127.0.0.1 " + std::to_string(port) + " " + std::to_string(s.http_port) +
           "\r\n";
  };
  {
    INFO("one visitor, two requests in a row: one local connection, its header first");
    connection a(s.http_port);
    const auto port = source_port(a.fd());
    auto r = get(a, s, "/first");
    CHECK(r.status == 200);
    CHECK(r.body == expect("127.0.0.1", port));
    r = get(a, s, "/second");
    CHECK(r.status == 200);
    CHECK(r.body == expect("127.0.0.1", port));
    CHECK(s.client->wait_for_text("GET /second -> local service (kept-alive connection)", scaled(5s)));
  }
  {
    INFO("the next visitors, from another address and another port: each gets its own connection and header");
    connection b(s.http_port, 5s, "127.0.0.2");
    auto r = get(b, s, "/third");
    CHECK(r.status == 200);
    CHECK(r.body == expect("127.0.0.2", source_port(b.fd())));
    connection c(s.http_port);
    r = get(c, s, "/fourth");
    CHECK(r.status == 200);
    CHECK(r.body == expect("127.0.0.1", source_port(c.fd())));
  }
  CHECK(svc.headers().size() == 3);
}

TEST_CASE("upstream: the PROXY header goes before the TLS handshake, and the health check sends one too") {
  self_signed cert;
  stack::options o;
  o.start_client = false;
  o.upstream_args = tls_upstream(cert, {"--proxy-protocol"});
  stack s(o);
  start_grok(s, "https://localhost:" + std::to_string(s.upstream_port),
             {"--upstream-insecure", "--proxy-protocol", "v2", "--health-check", "/health"});
  CHECK(s.client->wait_for_text("Healthy     GET /health: 200", scaled(5s)));
  // The health check has no visitor: the LOCAL command.
  CHECK(s.upstream->wait_for_text("grok-demo-upstream: proxy: v2 0d0a0d0a000d0a515549540a20000000", scaled(5s)));
  REQUIRE(s.server->wait_for_text("local service healthy; taking requests", scaled(5s)));
  connection c(s.http_port);
  auto r = get(c, s, "/echo");
  CHECK(r.status == 200);
  CHECK(r.get("X-Echo-TLS-SNI") == "localhost");
  auto v2 = grok::proxy_v2_header(*grok::make_proxy_endpoint("127.0.0.1", source_port(c.fd())),
                                  *grok::make_proxy_endpoint("127.0.0.1", s.http_port));
  std::string hex = "v2 ";
  for (unsigned char ch : v2) hex += "0123456789abcdef"[ch >> 4], hex += "0123456789abcdef"[ch & 0xf];
  CHECK(r.get("X-Echo-Proxy") == hex);
}

TEST_CASE("upstream: --proxy-protocol takes v1 or v2") {
  auto [status, out] = grok_cmd({"tcp", "22", "--proxy-protocol", "v3"});
  CHECK(status == 2);
  CHECK(out.find("--proxy-protocol: expected v1 or v2, got 'v3'") != std::string::npos);
}

TEST_CASE("upstream: the inspector's Replay speaks TLS to an https:// service and sends the PROXY header") {
  namespace json = boost::json;
  self_signed cert;
  stack::options o;
  o.start_client = false;
  o.upstream_args = tls_upstream(cert, {"--proxy-protocol"});
  stack s(o);
  start_grok(s, "https://localhost:" + std::to_string(s.upstream_port),
             {"--upstream-insecure", "--proxy-protocol", "v1", "--inspect", "127.0.0.1:0"});
  auto m = s.client->wait_for_line(std::regex(R"(Inspector   http://127\.0\.0\.1:(\d+)$)"), scaled(5s));
  REQUIRE(m);
  const auto inspector = static_cast<uint16_t>(std::stoi((*m)[1]));
  const auto host = "127.0.0.1:" + std::to_string(inspector);
  REQUIRE(request(s.http_port, "GET", s.host(), "/echo").status == 200);
  // The records, once `n` of them are done.
  auto done = [&](size_t n) {
    json::array list;
    for (auto until = clock::now() + scaled(5s); clock::now() < until; std::this_thread::sleep_for(20ms)) {
      auto r = request(inspector, "GET", host, "/api/requests/http");
      REQUIRE(r.status == 200);
      list = json::parse(r.body).as_object().at("requests").as_array();
      size_t finished = 0;
      for (const auto& v : list) finished += v.as_object().at("state").as_string() != "open";
      if (finished >= n) break;
    }
    return list;
  };
  auto list = done(1);
  REQUIRE(list.size() == 1);
  auto id = std::string(list[0].as_object().at("id").as_string());
  CHECK(request(inspector, "POST", host, "/api/requests/http", R"({"id":")" + id + R"("})", 
                {{"Content-Type", "application/json"}}).status == 204);
  list = done(2);
  REQUIRE(list.size() == 2);
  for (const auto& v : list) {
    const auto& rec = v.as_object();
    INFO(json::serialize(rec));
    CHECK(rec.at("state").as_string() == "done");
    CHECK(rec.at("response").as_object().at("status_code").to_number<int>() == 200);
  }
  // The replay names no visitor.
  CHECK(s.upstream->wait_for_text("grok-demo-upstream: proxy: PROXY UNKNOWN", scaled(5s)));
}

TEST_CASE("upstream: grok start takes an https:// addr with upstream_insecure and proxy_protocol from the config") {
  self_signed cert;
  stack::options o;
  o.start_client = false;
  o.upstream_args = tls_upstream(cert, {"--proxy-protocol"});
  stack s(o);
  auto path = s.dir + "/grok.yaml";
  std::ofstream(path) << "server: 127.0.0.1:" << s.grpc_port << "\ntoken: " << s.opts.token
                      << "\ninsecure: true\ntunnels:\n  web:\n    addr: https://localhost:" << s.upstream_port
                      << "\n    subdomain: " << s.opts.name << "\n    upstream_insecure: true\n    proxy_protocol: v1\n";
  process g({binary("grok"), "--config", path, "start", "web", "--no-inspect"});
  auto m = g.wait_for_line(std::regex(R"(Forwarding\s+(\S+) -> (\S+))"), scaled(15s));
  REQUIRE(m);
  CHECK((*m)[2] == "https://localhost:" + std::to_string(s.upstream_port));
  connection c(s.http_port);
  auto r = get(c, s, "/echo");
  CHECK(r.status == 200);
  CHECK(r.get("X-Echo-TLS-SNI") == "localhost");
  CHECK(r.get("X-Echo-Proxy") == "PROXY TCP4 127.0.0.1 127.0.0.1 " + std::to_string(source_port(c.fd())) + " " +
                                     std::to_string(s.http_port));
}
