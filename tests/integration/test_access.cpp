// Visitor rules (Basic auth, CIDR allow/deny, the tokens file's rules) and
// header shaping (--host-header, header add/remove), with the real
// grok-server, grok and a local service on 127.0.0.1. Other visitor
// addresses are other loopback addresses (127.0.0.2, ...), bound as the
// source of the connection.

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <csignal>

#include "grok/tokens.hpp"
#include "harness.hpp"

using namespace grok::test;

namespace {

std::string b64(const std::string& s) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    uint32_t n = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += table[(n >> k) & 63];
  }
  if (i + 1 == s.size()) {
    uint32_t n = uint8_t(s[i]) << 16;
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == s.size()) {
    uint32_t n = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

header basic(const std::string& user_pass) { return {"Authorization", "Basic " + b64(user_pass)}; }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

/// How many requests for `path` reached the local service (grok-demo-upstream --log-requests).
/// How many requests for `path` the local service logged, once it has logged
/// `expected` (bounded wait: its lines reach the test a moment after it writes them).
size_t reached(stack& s, const std::string& path, size_t expected) {
  const std::string line = "request GET " + path + " ";
  if (expected > 0) s.upstream->wait_for_count(line, expected, 5s);
  return s.upstream->count_lines_containing(line);
}

std::unique_ptr<process> start_client(stack& s, const std::string& command, const std::string& name,
                                      std::vector<std::string> extra, const std::string& token = "test-token") {
  std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", command,
                                std::to_string(s.upstream_port), "--server", "127.0.0.1:" + std::to_string(s.grpc_port),
                                "--token", token, "--no-inspect"};
  if (command == "http") argv.insert(argv.end(), {"--subdomain", name});
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<process>(argv);
}

}  // namespace

TEST_CASE("access: --basic-auth: 401 with WWW-Authenticate until a listed user signs in; the local service never sees the credentials") {
  stack::options o;
  o.upstream_args = {"--log-requests"};
  o.client_args = {"--basic-auth", "alice:s3cr:et", "--basic-auth", "bob:hunter2"};
  stack s(o);
  CHECK(s.client->wait_for_text("Visitors    basic auth (2 users)", 5s));

  for (const auto& [what, headers] : std::vector<std::pair<std::string, std::vector<header>>>{
           {"no credentials", {}},
           {"a wrong password", {basic("alice:s3cr:eT")}},
           {"an unknown user", {basic("mallory:hunter2")}},
           {"one user's name with the other's password", {basic("alice:hunter2")}},
           {"another scheme", {{"Authorization", "Bearer " + b64("alice:s3cr:et")}}},
       }) {
    CAPTURE(what);
    auto r = request(s.http_port, "GET", s.host(), "/headers", "", headers);
    CHECK(r.status == 401);
    CHECK(r.get("WWW-Authenticate") == "Basic realm=\"app.localhost\", charset=\"UTF-8\"");
  }
  CHECK(reached(s, "/headers", 0) == 0);  // nothing crossed the tunnel

  for (const auto* who : {"alice:s3cr:et", "bob:hunter2"}) {
    CAPTURE(who);
    auto r = request(s.http_port, "GET", s.host(), "/headers", "", {basic(who), {"X-Visitor", "yes"}});
    CHECK(r.status == 200);
    CHECK(r.body.find("X-Visitor: yes") != std::string::npos);
    CHECK(lower(r.body).find("authorization") == std::string::npos);
  }
  CHECK(reached(s, "/headers", 2) == 2);
}

TEST_CASE("access: --allow-cidr and --deny-cidr: 403 from a refused address, 200 from an allowed one, nothing crosses for the refused") {
  stack::options o;
  o.upstream_args = {"--log-requests"};
  o.client_args = {"--allow-cidr", "127.0.0.0/30", "--deny-cidr", "127.0.0.2"};
  stack s(o);
  CHECK(s.client->wait_for_text("Visitors    allow 127.0.0.0/30, deny 127.0.0.2/32", 5s));
  CHECK(request_from("127.0.0.1", s.http_port, "GET", s.host(), "/").status == 200);
  CHECK(request_from("127.0.0.3", s.http_port, "GET", s.host(), "/").status == 200);
  auto denied = request_from("127.0.0.2", s.http_port, "GET", s.host(), "/");
  CHECK(denied.status == 403);
  CHECK(denied.body.find("Your address may not reach app.localhost.") != std::string::npos);
  CHECK(request_from("127.0.0.5", s.http_port, "GET", s.host(), "/").status == 403);  // outside the allowed /30
  CHECK(reached(s, "/", 2) == 2);
  // Rules apply per tunnel: the server's own pages are not behind them.
  CHECK(request_from("127.0.0.2", s.http_port, "GET", "nothing-here.localhost", "/").status == 404);
}

TEST_CASE("access: behind server.trusted_proxies the rules match the visitor in X-Forwarded-For; anyone else's header is ignored") {
  stack::options o;
  o.server_section_yaml = "  trusted_proxies: [127.0.0.3/32]\n";
  o.client_args = {"--deny-cidr", "203.0.113.0/24"};
  stack s(o);
  auto from = [&](const std::string& source, const std::string& xff) {
    return request_from(source, s.http_port, "GET", s.host(), "/", {{"X-Forwarded-For", xff}}).status;
  };
  CHECK(from("127.0.0.3", "203.0.113.9") == 403);                // the trusted proxy says who it was
  CHECK(from("127.0.0.3", "203.0.113.9, 127.0.0.3") == 403);     // past a chain of trusted hops
  CHECK(from("127.0.0.3", "198.51.100.1") == 200);
  CHECK(from("127.0.0.3", "203.0.113.9, 198.51.100.1") == 200);  // the nearest untrusted hop counts, not a forgeable one
  CHECK(from("127.0.0.1", "198.51.100.1, 127.0.0.3") == 200);    // not a trusted peer: its header means nothing
  // A visitor cannot escape a deny rule by naming another address.
  s.client->signal(SIGTERM);
  REQUIRE(s.client->wait_exit(10s).has_value());
  auto c = start_client(s, "http", "app", {"--deny-cidr", "127.0.0.1"});
  REQUIRE(c->wait_for_line(std::regex(R"(Forwarding\s+http://)"), 15s));
  CHECK(from("127.0.0.1", "198.51.100.1") == 403);
}

TEST_CASE("access: a TCP tunnel applies --allow-cidr when it accepts a connection") {
  auto port = free_port();
  stack::options o;
  o.start_client = false;
  o.extra_server_yaml = "  tcp_port_start: " + std::to_string(port) + "\n  tcp_port_end: " + std::to_string(port) + "\n";
  o.upstream_args = {"--log-requests"};
  stack s(o);
  auto c = start_client(s, "tcp", "", {"--allow-cidr", "127.0.0.1/32"});
  auto m = c->wait_for_line(std::regex(R"(Forwarding\s+tcp://localhost:(\d+))"), 15s);
  REQUIRE(m);
  auto public_port = static_cast<uint16_t>(std::stoi((*m)[1]));
  {
    connection denied(public_port, 5s, "127.0.0.2");
    denied.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    auto piece = denied.read_piece(5s);
    CHECK(piece.bytes.empty());
    CHECK(piece.eof);
  }
  CHECK(s.server->wait_for_text("refused by the tunnel's address rules", 5s));
  connection allowed(public_port, 5s, "127.0.0.1");
  allowed.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = allowed.read_response(5s);
  CHECK(r.status == 200);
  CHECK(reached(s, "/", 1) == 1);
  // Basic auth needs HTTP: a TCP tunnel has no such flag.
  auto bad = start_client(s, "tcp", "", {"--basic-auth", "a:b"});
  CHECK(bad->wait_exit(10s) == 2);
}

TEST_CASE("access: bad rules and shaping flags exit 2 naming the flag and the value") {
  struct bad_case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const auto& b : std::vector<bad_case>{
           {{"--allow-cidr", "10.0.0.300/8"}, "--allow-cidr: '10.0.0.300/8' is not an IPv4 or IPv6 address or network"},
           {{"--deny-cidr", "2001:db8::/129"}, "--deny-cidr: '2001:db8::/129' is not an IPv4 or IPv6"},
           {{"--basic-auth", "alice"}, "--basic-auth: expected USER:PASS, got no ':'"},
           {{"--basic-auth", "alice:"}, "--basic-auth: expected USER:PASS: the password is empty"},
           {{"--host-header", "a b"}, "--host-header: expected 'rewrite' or a host"},
           {{"--request-header-add", "X-Env staging"}, "--request-header-add: expected \"Name: value\""},
           {{"--request-header-add", "Content-Length: 5"}, "--request-header-add: header: grok frames Content-Length itself"},
           {{"--response-header-remove", "Bad Name"}, "--response-header-remove: header: 'Bad Name' is not a valid header name"},
       }) {
    CAPTURE(b.says);
    std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", "http", "3000", "--server",
                                  "127.0.0.1:1"};
    argv.insert(argv.end(), b.args.begin(), b.args.end());
    process p(argv);
    CHECK(p.wait_exit(10s) == 2);
    CHECK(p.wait_for_text(b.says, 1s));
  }
}

TEST_CASE("access: the tokens file can require Basic auth and add address rules for a token") {
  const std::string token = "grok_operator_managed_token";
  stack::options o;
  o.start_client = false;
  o.upstream_args = {"--log-requests"};
  o.files = {{"tokens.yaml", "- label: contractor\n  sha256: " + grok::digest_hex(grok::sha256_digest(token)) +
                                 "\n  require_basic_auth: true\n  deny_cidr: [127.0.0.2/32]\n"}};
  o.tokens_yaml = "[]";
  o.auth_extra_yaml = "  tokens_file: tokens.yaml\n";
  stack s(o);
  auto without = start_client(s, "http", "site", {}, token);
  CHECK(without->wait_exit(15s) == 1);
  CHECK(without->wait_for_text(
      "the tokens file requires basic auth for this token's tunnels: add --basic-auth USER:PASS", 1s));

  auto with = start_client(s, "http", "site", {"--basic-auth", "guest:opensesame"}, token);
  REQUIRE(with->wait_for_line(std::regex(R"(Forwarding\s+http://site\.)"), 15s));
  CHECK(request_from("127.0.0.1", s.http_port, "GET", "site.localhost", "/").status == 401);
  CHECK(request_from("127.0.0.1", s.http_port, "GET", "site.localhost", "/", {basic("guest:opensesame")}).status == 200);
  // The operator's deny rule holds even with the right credentials.
  CHECK(request_from("127.0.0.2", s.http_port, "GET", "site.localhost", "/", {basic("guest:opensesame")}).status == 403);
  CHECK(reached(s, "/", 1) == 1);
  CHECK(s.server->wait_for_text("the token's rules: deny 127.0.0.2/32", 1s));
}

TEST_CASE("access: the members of a pool must carry the same rules") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  auto first = start_client(s, "http", "shared", {"--pool", "--allow-cidr", "127.0.0.1"});
  REQUIRE(first->wait_for_line(std::regex(R"(Forwarding\s+http://shared\.)"), 15s));
  auto other = start_client(s, "http", "shared", {"--pool", "--allow-cidr", "127.0.0.0/8"});
  CHECK(other->wait_exit(15s) == 1);
  CHECK(other->wait_for_text("the pool for 'shared' has other access rules", 1s));
  auto same = start_client(s, "http", "shared", {"--pool", "--allow-cidr", "127.0.0.1/32"});
  CHECK(same->wait_for_line(std::regex(R"(Forwarding\s+http://shared\..*pool member 2 of 2)"), 15s));
}

TEST_CASE("shaping: --host-header and header add/remove change what the local service and the visitor see") {
  stack::options o;
  o.client_args = {"--host-header",           "rewrite",        "--request-header-add",    "X-Env: staging",
                   "--request-header-remove", "X-Drop",         "--response-header-add",   "X-Served-By: grok",
                   "--response-header-remove", "content-type"};
  stack s(o);
  auto r = request(s.http_port, "GET", s.host(), "/headers", "", {{"X-Drop", "1"}, {"X-Keep", "2"}});
  REQUIRE(r.status == 200);
  CHECK(r.body.find("Host: 127.0.0.1:" + std::to_string(s.upstream_port) + "\n") != std::string::npos);
  CHECK(r.body.find("X-Env: staging\n") != std::string::npos);
  CHECK(r.body.find("X-Keep: 2\n") != std::string::npos);
  CHECK(r.body.find("X-Drop") == std::string::npos);
  // The public name still reaches the service, as X-Forwarded-Host.
  CHECK(r.body.find("X-Forwarded-Host: app.localhost\n") != std::string::npos);
  CHECK(r.get("X-Served-By") == "grok");
  CHECK(r.count("Content-Type") == 0);

  s.stop_client();
  s.opts.client_args = {"--host-header", "app.test"};
  s.start_client("app");
  auto fixed = request(s.http_port, "GET", s.host(), "/headers");
  CHECK(fixed.body.find("Host: app.test\n") != std::string::npos);
  CHECK(fixed.get("Content-Type") != "");  // nothing else changed
}
