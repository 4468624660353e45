// grok-server as a service: reload, drain, metrics and sd_notify, with the
// real binaries on 127.0.0.1.

#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "harness.hpp"

using namespace grok::test;

namespace {

/// Every line is a comment or `name{labels} value` (Prometheus text format 0.0.4).
bool valid_prometheus(const std::string& text) {
  static const std::regex sample_line(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*(\\.[^"\\]*)*",?)*\})? -?[0-9.eE+-]+$)");
  static const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  std::istringstream in(text);
  std::string line;
  size_t samples = 0;
  while (std::getline(in, line)) {
    if (std::regex_match(line, comment)) continue;
    if (!std::regex_match(line, sample_line)) {
      MESSAGE("not Prometheus text: " << line);
      return false;
    }
    ++samples;
  }
  return samples > 10;
}

stack::options with_admin(uint16_t api_port) {
  stack::options o;
  o.server_section_yaml = "  api_port: " + std::to_string(api_port) + "\n";
  return o;
}

}  // namespace

TEST_CASE("/metrics parses as Prometheus text and counts the exchanges made") {
  auto api = free_port();
  stack s(with_admin(api));
  for (int i = 0; i < 7; ++i) REQUIRE(request(s.http_port, "GET", s.host(), "/").status == 200);
  for (int i = 0; i < 3; ++i) REQUIRE(request(s.http_port, "GET", s.host(), "/status?code=404").status == 404);
  REQUIRE(request(s.http_port, "POST", s.host(), "/echo", std::string(1000, 'x')).status == 200);
  auto text = metrics_text(api);
  CHECK(valid_prometheus(text));
  CHECK(sample(text, R"(grok_exchanges_total{tunnel="app",status="200"})") == 8);
  CHECK(sample(text, R"(grok_exchanges_total{tunnel="app",status="404"})") == 3);
  CHECK(sample(text, "grok_exchange_duration_seconds_count") == 11);
  CHECK(sample(text, "grok_bytes_in_total") == 1000);
  CHECK(sample(text, "grok_tunnels_active") == 1);
  CHECK(sample(text, "grok_exchanges_in_flight") == 0);
  CHECK(sample(text, "grok_worker_threads") >= 1);
  auto health = request(api, "GET", "127.0.0.1", "/healthz");
  CHECK(health.status == 200);
  CHECK(request(api, "GET", "127.0.0.1", "/readyz").status == 200);
  auto tunnels = request(api, "GET", "127.0.0.1", "/api/tunnels");
  CHECK(tunnels.status == 200);
  CHECK(tunnels.get("Content-Type") == "application/json");
  CHECK(tunnels.body.find("\"name\":\"app\"") != std::string::npos);
  CHECK(tunnels.body.find("\"public_url\":\"http://app.localhost:" + std::to_string(s.http_port) + "\"") !=
        std::string::npos);
  // Tokens never appear in what the admin endpoint shows.
  CHECK(text.find(s.opts.token) == std::string::npos);
  CHECK(tunnels.body.find(s.opts.token) == std::string::npos);
}

TEST_CASE("a worker pool larger than the hardware threads serves, and the log says it will be slower") {
  unsigned hw = std::thread::hardware_concurrency();
  REQUIRE(hw > 0);
  const std::string warning = "threads on " + std::to_string(hw) + " hardware threads; past the core count";
  {
    stack::options o;
    o.extra_server_yaml = "  worker_pool_size: " + std::to_string(hw + 1) + "\n";
    stack s(o);
    CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
    CHECK(s.server->wait_for_text("worker pool: " + std::to_string(hw + 1) + " " + warning, 5s));
  }
  {
    stack s;  // auto (half the hardware threads): no warning
    CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
    REQUIRE(s.server->wait_for_text("worker pool:", 5s));
    for (const auto& l : s.server->lines()) CHECK(l.find(warning) == std::string::npos);
  }
}

TEST_CASE("SIGHUP applies tokens and pool size while a download keeps running; revoked tokens are cut") {
  auto api = free_port();
  auto o = with_admin(api);
  o.token = "token-a";
  stack s(o);
  // A response that takes ~3 s (longer in sanitizer builds), started before the reload and read after it.
  const int events = static_cast<int>(30 * time_factor());
  connection slow(s.http_port);
  slow.send("GET /sse?n=" + std::to_string(events) + "&interval_ms=100 HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
  auto pending = std::async(std::launch::async, [&] { return slow.read_response(30s); });

  s.opts.tokens_yaml = "[token-a, token-b]";
  s.opts.extra_server_yaml = "  worker_pool_size: 3\n  max_exchanges: 1\n";
  s.write_server_config();
  s.server->signal(SIGHUP);
  REQUIRE(s.server->wait_for_text("reloaded", 10s));
  auto text = metrics_text(api);
  CHECK(sample(text, "grok_worker_threads") == 3);
  CHECK(sample(text, R"(grok_reloads_total{result="ok"})") == 1);

  // The new token works at once; the old tunnel kept serving throughout.
  process b({binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.upstream_port), "--subdomain",
             "bee", "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", "token-b"});
  REQUIRE(b.wait_for_line(std::regex("Forwarding"), 10s));
  CHECK(request(s.http_port, "GET", "bee.localhost", "/").status == 200);
  // The new limit applies at once: the running response is the one exchange app may have in flight.
  auto limited = request(s.http_port, "GET", s.host(), "/");
  CHECK(limited.status == 503);
  CHECK(limited.body.find("too many requests in flight") != std::string::npos);

  auto r = pending.get();
  CHECK(r.status == 200);
  CHECK(r.body.find("data: event " + std::to_string(events - 1)) != std::string::npos);
  // Once the tunnel has released that exchange, app answers again.
  int after = 0;
  for (auto until = clock::now() + 5s; after != 200 && clock::now() < until;)
    after = request(s.http_port, "GET", s.host(), "/").status;
  CHECK(after == 200);

  // Revoking token-a closes its tunnel; token-b's stays.
  s.opts.tokens_yaml = "[token-b]";
  s.opts.extra_server_yaml = "  worker_pool_size: 1\n";
  s.write_server_config();
  s.server->signal(SIGHUP);
  auto revoked_exit = s.client->wait_exit(10s);
  if (revoked_exit != 1) {
    for (auto& l : s.client->lines()) MESSAGE("client: " << l);
    for (auto& l : s.server->lines()) MESSAGE("server: " << l);
  }
  REQUIRE(revoked_exit == 1);
  CHECK(s.client->wait_for_text("token revoked", 1s));
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 502);
  CHECK(request(s.http_port, "GET", "bee.localhost", "/").status == 200);
  CHECK(sample(metrics_text(api), "grok_worker_threads") == 1);
  b.signal(SIGINT);
  CHECK(b.wait_exit(5s) == 0);
}

TEST_CASE("a bad reload is refused with its error and the old configuration keeps serving") {
  auto api = free_port();
  stack s(with_admin(api));
  {
    std::ofstream bad(s.config_path());
    bad << "server:\n  domain: localhost\ntunnels:\n  worker_pool_size: lots\n";
  }
  s.server->signal(SIGHUP);
  REQUIRE(s.server->wait_for_text("reload refused", 10s));
  CHECK(s.server->wait_for_text(s.config_path() + ":4: tunnels.worker_pool_size:", 1s));
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
  CHECK(sample(metrics_text(api), R"(grok_reloads_total{result="failed"})") == 1);
  // The old token still authenticates new tunnels.
  process p({binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.upstream_port), "--subdomain",
             "second", "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token});
  CHECK(p.wait_for_line(std::regex("Forwarding"), 10s));
}

TEST_CASE("SIGTERM drains: an in-flight 1 GiB download completes, new requests get 503, exit 0") {
  stack::options o;
  o.drain_timeout = "120s";
  stack s(o);
  const uint64_t size = bulk_bytes(1ull << 30);
  connection c(s.http_port);
  c.send("GET /download?size=" + std::to_string(size) + " HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
  std::atomic<uint64_t> got{0};
  auto download = std::async(std::launch::async, [&] {
    sha256 h;
    auto r = c.read_response(180s, false, [&](const char* p, size_t n) {
      h.update(p, n);
      got += n;
    });
    return std::make_pair(r.status, h.hex());
  });
  auto deadline = clock::now() + scaled(10s);
  while (got.load() < (1u << 20) && clock::now() < deadline) std::this_thread::yield();
  REQUIRE(got.load() >= (1u << 20));
  auto start = clock::now();
  s.server->signal(SIGTERM);
  REQUIRE(s.server->wait_for_text("draining: ", 5s));  // logged once new requests get 503
  auto refused = request(s.http_port, "GET", s.host(), "/");
  CHECK(refused.status == 503);
  CHECK(refused.get("Connection") == "close");
  auto [status, digest] = download.get();
  CHECK(status == 200);
  CHECK(got.load() == size);
  auto expected = request(s.upstream_port, "GET", "127.0.0.1", "/download-sha?size=" + std::to_string(size), "", {},
                          120s);
  CHECK(digest == expected.body);
  CHECK(s.server->wait_exit(30s) == 0);
  MESSAGE("drain took " << std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start).count()
                        << " ms");
  CHECK(s.client->wait_for_text("going away", 5s));
}

TEST_CASE("SIGTERM with a request that never ends: /readyz 503 while draining, cut at drain_timeout, exit 0") {
  auto api = free_port();
  stack::options o = with_admin(api);
  const auto drain_timeout = 2s;
  o.drain_timeout = "2s";
  stack s(o);
  REQUIRE(request(api, "GET", "127.0.0.1", "/readyz").status == 200);
  connection stalled(s.http_port);
  stalled.send("GET /stall HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
  // In flight once the server counts it.
  auto until = clock::now() + scaled(10s);
  while (sample(metrics_text(api), "grok_exchanges_in_flight") != 1 && clock::now() < until)
    std::this_thread::sleep_for(20ms);  // polls the gauge
  REQUIRE(sample(metrics_text(api), "grok_exchanges_in_flight") == 1);

  auto start = clock::now();
  s.server->signal(SIGTERM);
  REQUIRE(s.server->wait_for_text("draining: 1 request(s) in flight", 5s));
  auto ready = request(api, "GET", "127.0.0.1", "/readyz");
  CHECK(ready.status == 503);
  CHECK(request(api, "GET", "127.0.0.1", "/healthz").status == 200);  // alive, just not ready
  auto refused = request(s.http_port, "GET", s.host(), "/");
  CHECK(refused.status == 503);
  CHECK(refused.get("Connection") == "close");
  // The request in flight holds the exit back until drain_timeout, no longer.
  CHECK(s.server->wait_exit(10s) == 0);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
  MESSAGE("exit " << took.count() << " ms after SIGTERM with drain_timeout 2000 ms");
  CHECK(took >= drain_timeout);
  CHECK(took < drain_timeout + scaled(1500ms));
  CHECK(s.server->count_lines_containing("drain deadline reached with 1 request(s) in flight") == 1);
  // The stalled public client sees its connection end.
  CHECK(stalled.wait_closed(5s));
}

TEST_CASE("sd_notify: READY, RELOADING/READY, WATCHDOG and STOPPING reach NOTIFY_SOCKET") {
  notify_socket notify;
  stack::options o;
  o.start_client = false;
  o.server_env = {"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=400000"};
  stack s(o);
  CHECK(notify.wait_for("READY=1", 5s));
  CHECK(notify.wait_for("WATCHDOG=1", 5s));
  notify.messages.clear();
  s.server->signal(SIGHUP);
  CHECK(notify.wait_for("RELOADING=1", 5s));
  CHECK(notify.wait_for("READY=1", 5s));
  s.server->signal(SIGTERM);
  CHECK(notify.wait_for("STOPPING=1", 5s));
  CHECK(s.server->wait_exit(10s) == 0);
}

TEST_CASE("without NOTIFY_SOCKET the same binary runs in the foreground; --check-config binds nothing") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  CHECK(request(s.http_port, "GET", "nobody.localhost", "/").status == 404);
  process check({binary("grok-server"), "--check-config", "--config", s.config_path()});
  CHECK(check.wait_exit(10s) == 0);
  std::ofstream(s.dir + "/bad.yaml") << "server:\n  http_prot: 80\n";
  process bad({binary("grok-server"), "--check-config", "--config", s.dir + "/bad.yaml"});
  CHECK(bad.wait_exit(10s) == 1);
  CHECK(bad.wait_for_text(s.dir + "/bad.yaml:2: server.http_prot: unknown key", 1s));
}
