// The local service as a URL: `grok http https://HOST:PORT` speaks TLS to it
// (SNI, certificate verification, --upstream-insecure), `http://HOST:PORT`
// stays plain; and --proxy-protocol sends the visitor's address ahead of
// each local connection. Real processes on 127.0.0.1.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

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
