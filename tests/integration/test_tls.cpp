// TLS end to end with a CA the test makes: HTTPS on the public side, TLS on
// the tunnel listener, and a client that verifies the server.

#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "harness.hpp"

using namespace grok::test;

namespace {

/// A throw-away CA and a certificate for *.example.test (wildcards on a single label such as
/// *.localhost are refused by TLS clients) and 127.0.0.1, where the tunnel listener is.
struct test_pki {
  test_pki() {
    char tmpl[] = "/tmp/grok-pki-XXXXXX";
    dir = mkdtemp(tmpl);
    std::ofstream(dir + "/ext.cnf") << "subjectAltName=DNS:example.test,DNS:*.example.test,IP:127.0.0.1\n";
    run({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", dir + "/ca.key", "-out", dir + "/ca.pem", "-days", "2", "-subj", "/CN=grok test CA"});
    run({"/usr/bin/openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
         dir + "/server.key", "-out", dir + "/server.csr", "-subj", "/CN=example.test"});
    run({"/usr/bin/openssl", "x509", "-req", "-in", dir + "/server.csr", "-CA", dir + "/ca.pem", "-CAkey",
         dir + "/ca.key", "-CAcreateserial", "-out", dir + "/server.pem", "-days", "2", "-extfile", dir + "/ext.cnf"});
  }
  ~test_pki() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  static void run(std::vector<std::string> argv) {
    process p(std::move(argv));
    REQUIRE(p.wait_exit(30s) == 0);
  }
  std::string dir;
};

/// curl is the public HTTPS client: status code and body as it saw them.
std::pair<int, std::string> curl(const std::vector<std::string>& extra, const std::string& url, const std::string& out) {
  std::vector<std::string> argv{"/usr/bin/curl", "-sS", "--max-time", "10", "-o", out, "-w", "status=%{http_code}\n"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  process p(argv);
  auto m = p.wait_for_line(std::regex(R"(status=(\d+))"), 15s);
  p.wait_exit(15s);
  std::ifstream in(out);
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return {m ? std::stoi((*m)[1]) : -1, body};
}

}  // namespace

TEST_CASE("TLS end to end: HTTPS public listener, TLS tunnel listener, verified client, HTTP redirect") {
  test_pki pki;
  auto https_port = free_port();
  stack::options o;
  o.start_client = false;
  o.domain = "example.test";
  o.server_section_yaml = "  https_port: " + std::to_string(https_port) + "\n";
  o.top_level_yaml = "tls:\n  cert_file: " + pki.dir + "/server.pem\n  key_file: " + pki.dir +
                     "/server.key\n  redirect_http: true\n";
  stack s(o);
  auto https = [&](const std::string& host) { return "https://" + host + ":" + std::to_string(https_port); };
  // curl resolves the test names to loopback itself.
  auto ca = [&](const std::string& host) {
    return std::vector<std::string>{"--cacert", pki.dir + "/ca.pem", "--resolve",
                                    host + ":" + std::to_string(https_port) + ":127.0.0.1"};
  };

  SUBCASE("a client that verifies the server with --ca serves over HTTPS") {
    process c({binary("grok"), "--ca", pki.dir + "/ca.pem", "--config", "/dev/null", "http",
               std::to_string(s.upstream_port), "--subdomain", "app", "--server",
               "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token});
    auto m = c.wait_for_line(std::regex(R"(Forwarding\s+(https://app\.example\.test:\d+))"), 15s);
    REQUIRE(m);
    CHECK(std::string((*m)[1]) == https("app.example.test"));
    auto [status, body] = curl(ca("app.example.test"), https("app.example.test") + "/", s.dir + "/out1");
    CHECK(status == 200);
    CHECK(body == "Hello from grok-demo-upstream\n");
    auto [hs, headers] = curl(ca("app.example.test"), https("app.example.test") + "/headers", s.dir + "/out2");
    CHECK(hs == 200);
    CHECK(headers.find("X-Forwarded-Proto: https") != std::string::npos);
    // Plain HTTP is redirected to HTTPS, path and query kept.
    auto r = request(s.http_port, "GET", "app.example.test", "/a/b?c=d");
    CHECK(r.status == 308);
    CHECK(r.get("Location") == https("app.example.test") + "/a/b?c=d");
    c.signal(SIGINT);
    CHECK(c.wait_exit(5s) == 0);
  }
  SUBCASE("a client that cannot verify the server does not connect") {
    process c({binary("grok"), "--config", "/dev/null", "http", std::to_string(s.upstream_port),
               "--subdomain", "app", "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token",
               s.opts.token});
    // It can never work as set up: one line says why and what fixes it, and grok exits.
    CHECK(c.wait_exit(scaled(15s)) == 1);
    CHECK(c.count_lines_containing("presented a certificate this host does not trust; pass --ca FILE") == 1);
    CHECK(c.count_lines_containing("Forwarding") == 0);
    CHECK(c.count_lines_containing(".cc:") == 0);  // no gRPC source paths
  }
  SUBCASE("--insecure cannot talk to a TLS tunnel listener, and says so loudly") {
    process c({binary("grok"), "--insecure", "--config", "/dev/null", "http",
               std::to_string(s.upstream_port), "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token",
               s.opts.token});
    CHECK(c.wait_for_text("WITHOUT TLS", 5s));
    CHECK(c.wait_exit(scaled(20s)) == 1);
    CHECK(c.count_lines_containing("speaks TLS on its tunnel port; drop --insecure") == 1);
    CHECK(c.count_lines_containing("Forwarding") == 0);
    CHECK(c.count_lines_containing(".cc:") == 0);
  }
  SUBCASE("HTTPS to an unknown name is a 404 page over TLS") {
    auto [status, body] = curl(ca("nobody.example.test"), https("nobody.example.test") + "/", s.dir + "/out3");
    CHECK(status == 404);
  }
}

namespace {

/// SHA-256 fingerprint of the certificate a TLS server on 127.0.0.1:port presents.
std::string presented_fingerprint(uint16_t port, const std::string& dir) {
  process p({"/bin/sh", "-c",
             "/usr/bin/openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                 " -servername app.example.test </dev/null 2>/dev/null | /usr/bin/openssl x509 -noout -fingerprint "
                 "-sha256 > " + dir + "/seen.txt"});
  p.wait_exit(scaled(15s));
  std::ifstream in(dir + "/seen.txt");
  std::string line;
  std::getline(in, line);
  return line;
}

std::string file_fingerprint(const std::string& pem) {
  process p({"/usr/bin/openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", pem});
  auto m = p.wait_for_line(std::regex("Fingerprint=.*"), scaled(10s));
  p.wait_exit(scaled(10s));
  return m ? "sha256 " + m->str() : std::string("(none)");
}

}  // namespace

TEST_CASE("a reload re-reads the certificate files: new HTTPS connections get the renewed one") {
  test_pki first, renewed;
  auto https_port = free_port();
  stack::options o;
  o.start_client = false;
  o.domain = "example.test";
  o.server_section_yaml = "  https_port: " + std::to_string(https_port) + "\n";
  // The certificate files the config names, renewed in place below as certbot would.
  o.top_level_yaml = "tls:\n  cert_file: " + first.dir + "/server.pem\n  key_file: " + first.dir +
                     "/server.key\n  grpc: false\n";
  stack s(o);
  auto before = presented_fingerprint(https_port, s.dir);
  auto expected_after = file_fingerprint(renewed.dir + "/server.pem");
  CHECK(before == file_fingerprint(first.dir + "/server.pem"));
  std::filesystem::copy_file(renewed.dir + "/server.pem", first.dir + "/server.pem",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(renewed.dir + "/server.key", first.dir + "/server.key",
                             std::filesystem::copy_options::overwrite_existing);
  s.server->signal(SIGHUP);
  REQUIRE(s.server->wait_for_text("reloaded", scaled(10s)));
  auto after = presented_fingerprint(https_port, s.dir);
  CHECK(after == expected_after);
  CHECK(after != before);
}
