// End-to-end: real grok-server, real grok, real local HTTP service, all on
// 127.0.0.1 with OS-chosen ports.

#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <numeric>
#include <random>
#include <regex>
#include <thread>

#include "harness.hpp"

using namespace grok::test;

namespace {

std::string pattern(size_t n) {
  std::string s(n, '\0');
  fill_pattern(s.data(), n, 0);
  return s;
}

bool iequals_ascii(const std::string& a, const std::string& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

TEST_CASE("methods round-trip byte-exact with headers and bodies") {
  stack s;
  for (std::string method : {"GET", "POST", "PUT", "DELETE", "PATCH"}) {
    CAPTURE(method);
    auto body = method == "GET" ? std::string() : random_bytes(100'000 + method.size(), 7);
    auto r = request(s.http_port, method, s.host(), "/echo?x=1&y=%20z", body,
                     {{"X-Custom", "value with spaces"}, {"X-Second", "2"}});
    CHECK(r.status == 200);
    CHECK(r.body == body);
    CHECK(r.get("X-Echo-Method") == method);
    CHECK(r.get("X-Echo-Target") == "/echo?x=1&y=%20z");
    CHECK(r.get("X-Echo-H-X-Custom") == "value with spaces");
    CHECK(r.get("X-Echo-H-X-Second") == "2");
  }
  // HEAD carries the local service's Content-Length and no body.
  connection c(s.http_port);
  c.send("HEAD / HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
  auto r = c.read_response(5s, true);
  CHECK(r.status == 200);
  CHECK(r.get("Content-Length") == "30");
  CHECK(c.read_some(200ms).empty());
}

TEST_CASE("grok prints one line per request, and a burst of concurrent requests loses none") {
  stack s;
  auto single = request(s.http_port, "GET", s.host(), "/status?code=404");
  REQUIRE(single.status == 404);
  // A lone request's line appears at once: TIME  VISITOR  METHOD TARGET  STATUS  TIMEms  BYTES.
  REQUIRE(s.client->wait_for_line(
      std::regex(R"(^\d\d:\d\d:\d\d  127\.0\.0\.1  GET /status\?code=404  404  [0-9]+ms  [0-9.]+(B|KiB)$)"), 5s));

  constexpr int threads = 10, each = 20;
  std::vector<std::future<int>> ok;
  for (int t = 0; t < threads; ++t)
    ok.push_back(std::async(std::launch::async, [&, t] {
      int n = 0;
      for (int i = 0; i < each; ++i)
        n += request(s.http_port, "GET", s.host(), "/?burst=" + std::to_string(t) + "-" + std::to_string(i)).status == 200;
      return n;
    }));
  int answered = 0;
  for (auto& f : ok) answered += f.get();
  REQUIRE(answered == threads * each);
  s.client->wait_for_count("GET /?burst=", threads * each, 5s);
  CHECK(s.client->count_lines_containing("GET /?burst=") == threads * each);
  for (int t = 0; t < threads; ++t)
    for (int i = 0; i < each; ++i)
      CHECK(s.client->count_lines_containing("GET /?burst=" + std::to_string(t) + "-" + std::to_string(i) + "  200  ") == 1);
}

TEST_CASE("host routing is case-insensitive and ignores port and trailing dot") {
  stack s;
  for (std::string host : std::vector<std::string>{"APP.LocalHost", "app.localhost.", "app.localhost:" + std::to_string(s.http_port)}) {
    CAPTURE(host);
    auto r = request(s.http_port, "GET", host, "/");
    CHECK(r.status == 200);
    CHECK(r.body == "Hello from grok-demo-upstream\n");
  }
}

TEST_CASE("hop-by-hop headers are stripped and X-Forwarded-* set from what the server saw") {
  stack s;
  auto r = request(s.http_port, "GET", s.host(), "/headers", "",
                   {{"Connection", "keep-alive, X-Secret-Hop"},
                    {"X-Secret-Hop", "must not pass"},
                    {"Keep-Alive", "timeout=5"},
                    {"TE", "trailers"},
                    {"Proxy-Authorization", "Basic Zm9vOmJhcg=="},
                    {"X-Forwarded-For", "6.6.6.6"},
                    {"X-Forwarded-Host", "evil.example"},
                    {"X-Kept", "yes"}});
  REQUIRE(r.status == 200);
  auto lower = r.body;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) { return std::tolower(c); });
  CHECK(lower.find("x-secret-hop") == std::string::npos);
  CHECK(lower.find("keep-alive:") == std::string::npos);
  CHECK(lower.find("\nte:") == std::string::npos);
  CHECK(lower.find("proxy-authorization") == std::string::npos);
  CHECK(lower.find("6.6.6.6") == std::string::npos);
  CHECK(lower.find("evil.example") == std::string::npos);
  CHECK(r.body.find("X-Kept: yes") != std::string::npos);
  CHECK(lower.find("x-forwarded-for: 127.0.0.1\n") != std::string::npos);
  CHECK(lower.find("x-forwarded-proto: http\n") != std::string::npos);
  CHECK(lower.find("x-forwarded-host: app.localhost\n") != std::string::npos);
}

TEST_CASE("chunked upload, pipelined requests and 100-continue") {
  stack s;
  SUBCASE("chunked request body arrives whole") {
    connection c(s.http_port);
    c.send("POST /upload HTTP/1.1\r\nHost: " + s.host() +
           "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    auto r = c.read_response(10s);
    CHECK(r.status == 200);
    CHECK(r.body == "11 " + sha256_hex("hello world"));
  }
  SUBCASE("pipelined requests are answered in order") {
    connection c(s.http_port);
    std::string batch;
    for (int i = 0; i < 10; ++i)
      batch += "POST /echo HTTP/1.1\r\nHost: " + s.host() + "\r\nContent-Length: " + std::to_string(std::to_string(i).size()) +
               "\r\n\r\n" + std::to_string(i);
    c.send(batch);
    for (int i = 0; i < 10; ++i) {
      auto r = c.read_response(10s);
      CHECK(r.status == 200);
      CHECK(r.body == std::to_string(i));
    }
  }
  SUBCASE("Expect: 100-continue gets 100 before the body is sent") {
    connection c(s.http_port);
    auto body = random_bytes(300'000, 3);
    c.send("PUT /expect HTTP/1.1\r\nHost: " + s.host() + "\r\nExpect: 100-continue\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n");
    auto interim = c.read_some(5s);
    CHECK(interim.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0);
    c.send(body);
    auto r = c.read_response(10s);
    CHECK(r.status == 200);
    CHECK(r.body == std::to_string(body.size()) + " " + sha256_hex(body));
  }
}

TEST_CASE("1 GiB download and upload stream through with bounded memory") {
  stack s;
  const uint64_t size = bulk_bytes(1ull << 30);
  auto expected = request(s.upstream_port, "GET", "127.0.0.1", "/download-sha?size=" + std::to_string(size), "", {},
                          120s);
  REQUIRE(expected.status == 200);
  SUBCASE("download") {
    connection c(s.http_port);
    c.send("GET /download?size=" + std::to_string(size) + " HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    sha256 h;
    uint64_t got = 0;
    auto r = c.read_response(180s, false, [&](const char* p, size_t n) {
      h.update(p, n);
      got += n;
    });
    CHECK(r.status == 200);
    CHECK(got == size);
    CHECK(h.hex() == expected.body);
  }
  SUBCASE("upload") {
    connection c(s.http_port);
    c.send("POST /upload HTTP/1.1\r\nHost: " + s.host() + "\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n");
    send_pattern(c, size);
    auto r = c.read_response(180s);
    CHECK(r.status == 200);
    CHECK(r.body == std::to_string(size) + " " + expected.body);
  }
  auto server_peak = s.server->peak_rss_kib();
  auto client_peak = s.client->peak_rss_kib();
  MESSAGE("peak RSS: grok-server " << server_peak << " KiB, grok " << client_peak << " KiB");
  CHECK(server_peak > 0);
  CHECK(client_peak > 0);
  if (rss_caps()) {
    CHECK(server_peak <= 64 * 1024);
    CHECK(client_peak <= 64 * 1024);
  }
}

TEST_CASE("slow readers on either side hold memory at the window size, not the body size") {
  stack s;
  const uint64_t size = bulk_bytes(256ull << 20);
  SUBCASE("fast public upload into a slow local service") {
    connection c(s.http_port);
    c.send("POST /upload?delay_ms_per_mib=4 HTTP/1.1\r\nHost: " + s.host() + "\r\nContent-Length: " +
           std::to_string(size) + "\r\n\r\n");
    send_pattern(c, size);
    auto r = c.read_response(120s);
    CHECK(r.status == 200);
    CHECK(r.body.rfind(std::to_string(size) + " ", 0) == 0);
  }
  SUBCASE("fast local download into a public client that stops reading") {
    connection c(s.http_port);
    c.send("GET /download?size=" + std::to_string(size) + " HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    auto first = c.read_some(5s);
    REQUIRE(!first.empty());
    // The public client stalls for a second: the simulated slow reader, not a wait for a condition.
    std::this_thread::sleep_for(1s);
    auto server_rss = s.server->rss_kib();
    auto client_rss = s.client->rss_kib();
    MESSAGE("while stalled: grok-server " << server_rss << " KiB, grok " << client_rss << " KiB");
    if (rss_caps()) {
      CHECK(server_rss < 64 * 1024);
      CHECK(client_rss < 64 * 1024);
    }
    uint64_t got = 0;
    // Count the rest; the head and first bytes came in `first`.
    auto head_end = first.find("\r\n\r\n");
    REQUIRE(head_end != std::string::npos);
    got = first.size() - head_end - 4;
    while (got < size) {
      auto piece = c.read_some(10s);
      if (piece.empty()) break;
      got += piece.size();
    }
    CHECK(got == size);
  }
  if (rss_caps()) {
    CHECK(s.server->peak_rss_kib() < 64 * 1024);
    CHECK(s.client->peak_rss_kib() < 64 * 1024);
  }
}

TEST_CASE("200 concurrent exchanges on one tunnel, and a stalled one delays no other") {
  stack s;
  SUBCASE("200 concurrent") {
    // The local service holds each answer a moment and counts the requests it holds at
    // once: exchanges carried one at a time would never overlap there.
    REQUIRE(request(s.http_port, "GET", s.host(), "/in-flight").status == 200);  // restarts the peak
    const auto hold = "&hold_ms=" + std::to_string(scaled(300ms).count());
    std::vector<std::future<bool>> results;
    for (int i = 0; i < 200; ++i) {
      results.push_back(std::async(std::launch::async, [&, i] {
        auto body = random_bytes(1000 + i * 37, static_cast<unsigned>(i));
        auto target = "/echo?i=" + std::to_string(i) + hold;
        auto r = request(s.http_port, "POST", s.host(), target, body, {}, 30s);
        return r.status == 200 && r.body == body && r.get("X-Echo-Target") == target;
      }));
    }
    int ok = 0;
    for (auto& f : results) ok += f.get() ? 1 : 0;
    CHECK(ok == 200);
    auto stats = request(s.http_port, "GET", s.host(), "/in-flight");
    std::smatch m;
    REQUIRE(std::regex_search(stats.body, m, std::regex(R"(in_flight=(\d+) peak=(\d+))")));
    MESSAGE("the local service held up to " << m[2] << " of the 200 requests at once");
    CHECK(std::stoi(m[2]) >= 50);  // all 200 in a plain build; far more than one at a time in any
  }
  SUBCASE("stalled response") {
    connection stalled(s.http_port);
    stalled.send("GET /stall HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    // A trickling download too: neither may hold up the others.
    connection slow(s.http_port);
    slow.send("GET /sse?n=50&interval_ms=100 HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    std::vector<double> ms;
    std::mutex mu;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 25; ++i) {
          auto start = clock::now();
          auto r = request(s.http_port, "GET", s.host(), "/", "", {}, 10s);
          auto d = std::chrono::duration<double, std::milli>(clock::now() - start).count();
          std::lock_guard lk(mu);
          ms.push_back(r.status == 200 ? d : 1e9);
        }
      });
    }
    for (auto& t : threads) t.join();
    REQUIRE(ms.size() == 100);
    auto p99 = percentile(ms, 0.99);
    MESSAGE("p50 " << percentile(ms, 0.5) << " ms, p99 " << p99 << " ms with one stalled exchange");
    CHECK(std::all_of(ms.begin(), ms.end(), [](double d) { return d < 1e9; }));  // every one answered 200
    // A latency bound is for the real build: under a sanitizer on a loaded machine the
    // tail measures the instrumentation, not grok (.ci/sanitize still checks the rest).
    if (!*sanitizer()) CHECK(p99 < 100.0);
    CHECK(stalled.read_some(10ms).empty());
  }
}

TEST_CASE("server-sent events reach the public client one by one") {
  stack s;
  connection c(s.http_port);
  // 300 ms apart; further apart in sanitizer builds, so scheduling delays cannot bunch them.
  const double interval = 300 * time_factor();
  c.send("GET /sse?n=5&interval_ms=" + std::to_string(static_cast<int>(interval)) + " HTTP/1.1\r\nHost: " + s.host() +
         "\r\n\r\n");
  std::string seen;
  std::vector<double> arrivals;
  auto start = clock::now();
  while (arrivals.size() < 5 && clock::now() - start < scaled(10s) + 4 * std::chrono::milliseconds(int(interval))) {
    auto piece = c.read_some(5s);
    if (piece.empty()) break;
    seen += piece;
    for (size_t n = arrivals.size(); seen.find("data: event " + std::to_string(n)) != std::string::npos; ++n)
      arrivals.push_back(std::chrono::duration<double, std::milli>(clock::now() - start).count());
  }
  REQUIRE(arrivals.size() == 5);
  CHECK(seen.find("text/event-stream") != std::string::npos);
  // Each event arrives when it is sent (300 ms apart), not all at the end.
  CHECK(arrivals[0] < 250 * time_factor());
  CHECK(arrivals[4] - arrivals[0] > 3 * interval);
  for (size_t i = 1; i < arrivals.size(); ++i) CHECK(arrivals[i] - arrivals[i - 1] > interval / 2);
}

namespace {

void ws_send(connection& c, const std::string& payload) {
  std::string f;
  f += static_cast<char>(0x81);  // FIN + text
  if (payload.size() < 126) {
    f += static_cast<char>(0x80 | payload.size());
  } else {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>((payload.size() >> 8) & 0xff);
    f += static_cast<char>(payload.size() & 0xff);
  }
  const char mask[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(mask, 4);
  for (size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
  c.send(f);
}

/// Parses unmasked server frames out of `buf`, returning complete messages
/// (continuation frames joined; control frames skipped).
std::vector<std::string> ws_parse(std::string& buf, std::string& partial) {
  std::vector<std::string> out;
  for (;;) {
    if (buf.size() < 2) break;
    bool fin = (static_cast<unsigned char>(buf[0]) & 0x80) != 0;
    int opcode = static_cast<unsigned char>(buf[0]) & 0x0f;
    uint64_t len = static_cast<unsigned char>(buf[1]) & 0x7f;
    size_t hdr = 2;
    if (len == 126) {
      if (buf.size() < 4) break;
      len = (static_cast<unsigned char>(buf[2]) << 8) | static_cast<unsigned char>(buf[3]);
      hdr = 4;
    } else if (len == 127) {
      if (buf.size() < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(buf[2 + i]);
      hdr = 10;
    }
    if (buf.size() < hdr + len) break;
    if (opcode < 8) {
      partial += buf.substr(hdr, len);
      if (fin) {
        out.push_back(std::move(partial));
        partial.clear();
      }
    }
    buf.erase(0, hdr + len);
  }
  return out;
}

}  // namespace

TEST_CASE("WebSocket echo of 10 000 messages in order") {
  stack s;
  connection c(s.http_port);
  c.send("GET /ws HTTP/1.1\r\nHost: " + s.host() +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n");
  auto r = c.read_response(10s);
  REQUIRE(r.status == 101);
  CHECK(r.get("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK(iequals_ascii(r.get("Upgrade"), "websocket"));
  constexpr int total = 10'000;
  std::thread sender([&] {
    for (int i = 0; i < total; ++i) ws_send(c, "message " + std::to_string(i));
  });
  std::string buf, partial;
  int next = 0;
  bool in_order = true;
  auto deadline = clock::now() + 60s;
  while (next < total && clock::now() < deadline) {
    auto piece = c.read_some(5s);
    if (piece.empty()) break;
    buf += piece;
    for (auto& m : ws_parse(buf, partial)) {
      in_order = in_order && m == "message " + std::to_string(next);
      ++next;
    }
  }
  sender.join();
  CHECK(next == total);
  CHECK(in_order);
}

TEST_CASE("errors users see: 404, 502 offline, 502 refused, 504") {
  stack::options o;
  // 1 s, longer in sanitizer builds: a refused connect must come back as 502 before it.
  o.extra_server_yaml = "  response_timeout: " + std::to_string(scaled(1s).count()) + "ms\n";
  stack s(o);
  SUBCASE("unknown host is 404") {
    auto r = request(s.http_port, "GET", "nobody.localhost", "/");
    CHECK(r.status == 404);
    CHECK(r.body.find("nobody.localhost") != std::string::npos);
    CHECK(request(s.http_port, "GET", "localhost", "/").status == 404);
  }
  SUBCASE("local service that does not answer in time is 504") {
    auto start = clock::now();
    auto r = request(s.http_port, "GET", s.host(), "/stall", "", {}, 10s);
    auto took = clock::now() - start;
    CHECK(r.status == 504);
    CHECK(took >= 900ms);
    CHECK(took < scaled(5s));
  }
  SUBCASE("local service reset without a response is 502") {
    auto r = request(s.http_port, "GET", s.host(), "/close");
    CHECK(r.status == 502);
    CHECK(r.body.find("closed the connection") != std::string::npos);
  }
  SUBCASE("local service reset mid-body never looks complete") {
    connection c(s.http_port);
    c.send("GET /reset-mid-body HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    bool threw = false;
    int status = 0;
    try {
      status = c.read_response(10s).status;
    } catch (const std::exception&) {
      threw = true;  // connection closed before Content-Length bytes arrived
    }
    if (*sanitizer()) {
      // Slowed down, grok may see the reset before it read the head (a reset drops
      // unread bytes), and then answers 502: still no forged complete response.
      CHECK((threw || status == 502));
    } else {
      CHECK(threw);
    }
  }
  SUBCASE("local service down is 502 at once, tunnel offline is 502 at once") {
    s.upstream.reset();  // kills grok-demo-upstream
    auto start = clock::now();
    auto r = request(s.http_port, "GET", s.host(), "/");
    CHECK(r.status == 502);
    CHECK(r.body.find("refused") != std::string::npos);
    CHECK(clock::now() - start < scaled(2s));
    s.stop_client();
    start = clock::now();
    r = request(s.http_port, "GET", s.host(), "/");
    CHECK(r.status == 502);
    CHECK(r.body.find("offline") != std::string::npos);
    CHECK(clock::now() - start < scaled(1s));
  }
}

TEST_CASE("Ctrl-C on the client answers in-flight exchanges with 502 at once") {
  stack::options o;
  o.client_log_level = "debug";
  stack s(o);
  connection c(s.http_port);
  c.send("GET /stall HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
  // Interrupt only once the request is with the local service.
  REQUIRE(s.client->wait_for_text("GET /stall -> local service", 5s));
  auto start = clock::now();
  s.client->signal(SIGINT);
  auto r = c.read_response(5s);
  CHECK(r.status == 502);
  CHECK(clock::now() - start < scaled(2s));
  CHECK(s.client->wait_exit(5s) == 0);
}

TEST_CASE("auth and names: wrong token refused, taken name refused, random name assigned") {
  stack::options o;
  o.tokens_yaml = "[test-token, other-token]";
  stack s(o);
  SUBCASE("wrong token") {
    process p({binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.upstream_port), "--server",
               "127.0.0.1:" + std::to_string(s.grpc_port), "--token", "wrong"});
    CHECK(p.wait_exit(10s) == 1);
    CHECK(p.wait_for_text("invalid token", 1s));
    CHECK(p.wait_for_text("grok config set-token", 1s));  // and how to fix it
  }
  SUBCASE("name already held by another token") {
    process p({binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.upstream_port),
               "--subdomain", "app", "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", "other-token"});
    CHECK(p.wait_exit(10s) == 1);
    CHECK(p.wait_for_text("already in use", 1s));
    CHECK(p.wait_for_text("choose another with --subdomain", 1s));
    CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);  // the holder is untouched
  }
  SUBCASE("random name") {
    process p({binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.upstream_port), "--server",
               "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token});
    auto m = p.wait_for_line(std::regex(R"(Forwarding\s+http://([a-z0-9]+)\.localhost:\d+)"), 10s);
    REQUIRE(m);
    std::string name = (*m)[1];
    CHECK(name.size() == 10);
    auto r = request(s.http_port, "GET", name + ".localhost", "/");
    CHECK(r.status == 200);
    p.signal(SIGINT);
    CHECK(p.wait_exit(5s) == 0);
  }
}

TEST_CASE("the client reconnects after grok-server restarts and serves again") {
  stack s;
  REQUIRE(request(s.http_port, "GET", s.host(), "/").status == 200);
  // Lines are counted before each step, so each wait is for a new line.
  auto reconnecting_before = s.client->count_lines_containing("reconnecting");
  s.server->signal(SIGTERM);
  REQUIRE(s.server->wait_exit(10s) == 0);
  REQUIRE(s.client->wait_for_count("reconnecting", reconnecting_before + 1, 5s));
  const std::string forwarding = "Forwarding  http://app.localhost:" + std::to_string(s.http_port);
  auto forwarding_before = s.client->count_lines_containing(forwarding);
  REQUIRE(forwarding_before == 1);
  s.start_server();  // same ports as before
  REQUIRE(s.client->wait_for_count(forwarding, forwarding_before + 1, 20s));
  auto r = request(s.http_port, "GET", s.host(), "/");
  CHECK(r.status == 200);
  CHECK(r.body == "Hello from grok-demo-upstream\n");
}

TEST_CASE("tunnels.max_per_token caps the tunnels one token holds; a freed slot is reusable") {
  stack::options o;
  o.extra_server_yaml = "  max_per_token: 1\n";
  stack s(o);
  process second({binary("grok"), "--insecure", "--config", "/dev/null", "http",
                  std::to_string(s.upstream_port), "--subdomain", "other", "--server",
                  "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token});
  CHECK(second.wait_exit(10s) == 1);
  CHECK(second.wait_for_text("already holds 1 tunnel(s)", 1s));
  s.stop_client();
  // The server frees the slot when it sees the first stream end; retry until it has.
  std::unique_ptr<process> third;
  bool online = false;
  for (auto until = clock::now() + 10s; !online && clock::now() < until;) {
    third = std::make_unique<process>(std::vector<std::string>{
        binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.upstream_port),
        "--subdomain", "other", "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token});
    auto m = third->wait_for_line(std::regex("Forwarding|refused"), 10s);
    online = m && m->str() == "Forwarding";
  }
  REQUIRE(online);  // the freed slot was taken within 10 s
  CHECK(third->count_lines_containing("Forwarding") == 1);
  CHECK(request(s.http_port, "GET", "other.localhost", "/").status == 200);
}
