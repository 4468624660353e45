// Faults with real processes: a client killed mid-download, public clients that
// vanish mid-upload or mid-response, a server killed and restarted, a local
// service that is down, silent or cuts its response. The server's admin
// endpoint (/metrics) shows whether it freed what each fault left behind.
//
// Already covered in test_tunnel.cpp and not repeated here: 404, 502 at once
// when the local service refuses or the tunnel is offline, 504 at a 1 s
// timeout, a Content-Length response cut by a FIN, Ctrl-C on the client, a
// graceful (SIGTERM) server restart.

#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <filesystem>
#include <random>
#include <tuple>

#include "fake_client.hpp"
#include "harness.hpp"

using namespace grok::test;

namespace {

constexpr uint64_t k_mib = 1ull << 20;

stack::options with_admin(stack::options o = {}) {
  o.server_section_yaml += "  api_port: " + std::to_string(free_port()) + "\n";
  return o;
}

uint16_t api_port(const stack& s) {
  static const std::regex re(R"(api_port: (\d+))");
  std::smatch m;
  REQUIRE(std::regex_search(s.opts.server_section_yaml, m, re));
  return static_cast<uint16_t>(std::stoi(m[1]));
}

/// The value of one /metrics sample (exact name and labels), or -1 if absent.
double metric(uint16_t api, const std::string& series) {
  auto r = request(api, "GET", "127.0.0.1", "/metrics", "", {}, 5s);
  if (r.status != 200) return -1;
  auto pos = ("\n" + r.body).find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::stod(r.body.substr(pos + series.size()));
}

/// Polls /metrics until `series` equals `value`; false if it did not in time.
bool wait_metric(uint16_t api, const std::string& series, double value, std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + timeout;
  for (;;) {
    double v = metric(api, series);
    if (v == value) return true;
    if (clock::now() >= deadline) {
      MESSAGE(series << " is " << v << ", expected " << value);
      return false;
    }
    // Scraping is the only way to see the gauge; 20 ms steps keep it cheap.
    std::this_thread::sleep_for(20ms);
  }
}

size_t open_fds(int pid) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

/// Makes the connection's close send a TCP reset instead of a FIN.
void reset_on_close(connection& c) {
  linger l{1, 0};
  setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

/// Reads raw bytes until the peer closes or `timeout` passes.
struct drained {
  bool closed = false;
  std::string bytes;
};
drained read_until_closed(connection& c, std::chrono::milliseconds timeout, size_t keep = 1 << 16) {
  drained d;
  d.bytes = c.read_some(0ms);  // whatever the connection buffered already
  auto deadline = clock::now() + timeout;
  char tmp[65536];
  for (;;) {
    auto n = ::recv(c.fd(), tmp, sizeof tmp, 0);
    if (n > 0) {
      // Keep only the tail: what tells a complete response from a cut one.
      d.bytes.append(tmp, static_cast<size_t>(n));
      if (d.bytes.size() > 2 * keep) d.bytes.erase(0, d.bytes.size() - keep);
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      d.closed = true;
      return d;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    pollfd p{c.fd(), POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) != 1) return d;
  }
}

/// Incremental decoder of a chunked body: tells whether the terminating
/// zero-size chunk (what makes a chunked response look complete) arrived.
struct chunk_decoder {
  enum class state { size, data, data_crlf, trailer, done, bad } st = state::size;
  std::string line;
  uint64_t left = 0;
  uint64_t body_bytes = 0;

  void feed(const std::string& bytes) {
    for (size_t i = 0; i < bytes.size() && st != state::done && st != state::bad;) {
      switch (st) {
        case state::size:
        case state::trailer:
        case state::data_crlf: {
          char ch = bytes[i++];
          line += ch;
          if (line.size() < 2 || line.compare(line.size() - 2, 2, "\r\n") != 0) break;
          line.resize(line.size() - 2);
          if (st == state::data_crlf) {
            st = line.empty() ? state::size : state::bad;
          } else if (st == state::trailer) {
            if (line.empty()) st = state::done;
          } else {
            left = std::stoull(line, nullptr, 16);
            st = left == 0 ? state::trailer : state::data;
          }
          line.clear();
          break;
        }
        case state::data: {
          auto n = std::min<uint64_t>(left, bytes.size() - i);
          i += n;
          left -= n;
          body_bytes += n;
          if (left == 0) st = state::data_crlf;
          break;
        }
        default: break;
      }
    }
  }
  bool complete() const { return st == state::done; }
};

/// Reads a response head from raw bytes; returns the offset past it.
size_t head_end(connection& c, std::string& got, std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + timeout;
  for (;;) {
    auto pos = got.find("\r\n\r\n");
    if (pos != std::string::npos) return pos + 4;
    auto piece = c.read_some(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()));
    if (piece.empty()) return std::string::npos;
    got += piece;
  }
}

}  // namespace

TEST_CASE("kill -9 of the grok client mid-download ends the public connection within 1 s and frees the exchange") {
  stack s(with_admin());
  auto api = api_port(s);
  for (bool chunked : {false, true}) {
    CAPTURE(chunked);
    constexpr uint64_t size = 1ull << 30;
    connection c(s.http_port);
    c.send("GET /download?size=" + std::to_string(size) + (chunked ? "&chunked=1" : "") + " HTTP/1.1\r\nHost: " +
           s.host() + "\r\n\r\n");
    std::string got;
    auto body_at = head_end(c, got, 10s);
    REQUIRE(body_at != std::string::npos);
    auto head = got.substr(0, body_at);
    REQUIRE(head.rfind("HTTP/1.1 200", 0) == 0);
    CHECK((head.find("Transfer-Encoding: chunked") != std::string::npos) == chunked);
    chunk_decoder dec;
    uint64_t body = got.size() - body_at;
    if (chunked) dec.feed(got.substr(body_at));
    // Let the download get going: several MiB through the tunnel.
    while (body < 8 * k_mib) {
      auto piece = c.read_some(10s);
      REQUIRE(!piece.empty());
      body += piece.size();
      if (chunked) dec.feed(piece);
    }
    REQUIRE(metric(api, "grok_exchanges_in_flight") == 1);

    auto killed_at = clock::now();
    s.client->signal(SIGKILL);
    // What the kernel still buffers drains at memory speed; the 1 s is for the
    // server to notice the dead stream and cut the public connection.
    auto d = read_until_closed(c, 5s, size);
    auto took = std::chrono::duration<double, std::milli>(clock::now() - killed_at).count();
    MESSAGE(std::string(chunked ? "chunked" : "Content-Length") << " download: public connection ended " << took
                                                      << " ms after kill -9, " << body + d.bytes.size()
                                                      << " body bytes received");
    REQUIRE(d.closed);
    CHECK(took < 1000.0);
    if (chunked) {
      dec.feed(d.bytes);
      CHECK(!dec.complete());  // no forged terminating chunk
      CHECK(dec.body_bytes < size);
    } else {
      CHECK(body + d.bytes.size() < size);  // short of Content-Length: visibly cut
    }
    CHECK(s.client->wait_exit(5s) == 128 + SIGKILL);
    CHECK(wait_metric(api, "grok_exchanges_in_flight", 0, 5s));
    CHECK(wait_metric(api, "grok_tunnels_active", 0, 5s));

    // The owner's token reclaims the name at once (within tunnels.name_grace) and serves again.
    s.start_client(s.opts.name);
    auto r = request(s.http_port, "GET", s.host(), "/");
    CHECK(r.status == 200);
    CHECK(r.body == "Hello from grok-demo-upstream\n");
  }
  CHECK(wait_metric(api, "grok_public_connections_active", 0, 5s));
}

TEST_CASE("a public client that disconnects mid-upload cuts the local service's connection; the tunnel stays up") {
  stack s(with_admin());
  auto api = api_port(s);
  struct variant {
    std::string name;
    bool chunked;
    bool reset;
  };
  int n = 0;
  for (auto v : {variant{"content-length, FIN", false, false}, variant{"content-length, RST", false, true},
                 variant{"chunked, FIN", true, false}, variant{"chunked, RST", true, true}}) {
    CAPTURE(v.name);
    constexpr uint64_t size = 64 * k_mib;
    auto id = "cut" + std::to_string(++n);
    auto start = clock::now();
    {
      connection c(s.http_port);
      if (v.reset) reset_on_close(c);
      c.send("POST /slow-upload?id=" + id + "&delay_ms=20 HTTP/1.1\r\nHost: " + s.host() + "\r\n" +
             (v.chunked ? std::string("Transfer-Encoding: chunked\r\n")
                        : "Content-Length: " + std::to_string(size) + "\r\n") +
             "\r\n");
      REQUIRE(s.upstream->wait_for_text("id=" + id + " reading", 10s));
      // 2 MiB of the body, then the public client goes away.
      std::string piece(256 * 1024, '\0');
      fill_pattern(piece.data(), piece.size(), 0);
      for (int i = 0; i < 8; ++i) {
        if (v.chunked) {
          char size_line[32];
          std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
          c.send(size_line + piece + "\r\n");
        } else {
          c.send(piece);
        }
      }
    }
    auto m = s.upstream->wait_for_line(std::regex("id=" + id + R"( cut short after (\d+) bytes: (.*))"), 10s);
    REQUIRE(m);
    MESSAGE(v.name << ": local service saw its connection end after " << (*m)[1] << " bytes (" << (*m)[2] << "), "
                   << std::chrono::duration<double, std::milli>(clock::now() - start).count() << " ms after the request");
    CHECK(std::stoull((*m)[1]) <= 2 * k_mib);
    // grok resets the local connection: the service cannot mistake the cut for an end.
    CHECK((*m)[2].str().find("reset") != std::string::npos);
    CHECK(s.upstream->count_lines_containing("id=" + id + " complete") == 0);
    CHECK(wait_metric(api, "grok_exchanges_in_flight", 0, 5s));

    // Same tunnel, no reconnect: a following upload goes through whole.
    auto body = std::string(300'000, 'x');
    auto r = request(s.http_port, "POST", s.host(), "/upload", body);
    CHECK(r.status == 200);
    CHECK(r.body == std::to_string(body.size()) + " " + sha256_hex(body));
  }
  CHECK(s.client->count_lines_containing("reconnecting") == 0);
  CHECK(s.client->running());
}

namespace {

/// Seconds from the loss of a tunnel to its client's retry number k (1-based) on the
/// documented schedule without jitter: waits of 1, 2, 4, ... s, at most 30 s each.
double nominal_start(int k) {
  double t = 0, wait = 1;
  for (int i = 1; i <= k; ++i, wait = std::min(wait * 2, 30.0)) t += wait;
  return t;
}

double nominal_wait(int k) { return std::min(std::pow(2.0, k - 1), 30.0); }

/// When the server read each line containing `text`, in seconds since `since`.
std::vector<double> seen_at(process& p, const std::string& text, clock::time_point since) {
  std::vector<double> out;
  for (auto& [at, line] : p.timed_lines())
    if (line.find(text) != std::string::npos) out.push_back(std::chrono::duration<double>(at - since).count());
  return out;
}

}  // namespace

TEST_CASE("kill -9 of grok-server: the server sees the client retry on its documented backoff; it reclaims its name") {
  // README: the client "reconnects with exponential backoff (1 s doubling to 30 s, ±20 %
  // jitter)". The times are taken where the retries land, in the restarted server's log.
  stack s(with_admin());
  auto api = api_port(s);
  REQUIRE(request(s.http_port, "GET", s.host(), "/").status == 200);
  // Each retry reaches the server within this of its scheduled time (connect, Hello, log line).
  const double slack = std::min<double>(scaled(250ms).count(), 1000) / 1000.0;
  const std::string online = ": online at http://app.localhost:";
  for (int round = 0; round < 2; ++round) {
    CAPTURE(round);
    const std::string forwarding = "Forwarding  http://app.localhost:" + std::to_string(s.http_port);
    auto forwarding_before = s.client->count_lines_containing(forwarding);
    if (round == 0) {
      // The restarted server refuses this address for now (one failed attempt, made
      // below, exhausts auth.max_failures): every retry of the client lands there and
      // is refused with a refusal that clears by itself, so the client keeps trying
      // and the server logs each one. The client is held while that is set up, so
      // its retries all start from its waking up.
      freeze(*s.client);
      s.opts.auth_extra_yaml = "  max_failures: 1\n  failure_window: 10m\n";
    } else {
      s.opts.auth_extra_yaml.clear();
    }
    auto killed_at = clock::now();
    s.server->signal(SIGKILL);
    REQUIRE(s.server->wait_exit(5s) == 128 + SIGKILL);
    s.start_server();  // same public, tunnel and admin ports
    std::vector<double> attempts;
    if (round == 0) {
      const std::string refused = "refused: too many failed attempts from this address";
      {
        fake_client bad(s.grpc_port);
        auto answer = bad.hello("not-a-token", "x");
        REQUIRE(answer);
        REQUIRE(answer->has_refused());
      }
      killed_at = clock::now();  // the client learns of the loss as it wakes
      s.client->signal(SIGCONT);
      // Two refused retries, then the limit is lifted by a reload; the next retry wins.
      REQUIRE(s.server->wait_for_count(refused, 2, 40s));
      s.opts.auth_extra_yaml = "  max_failures: 0\n";
      s.write_server_config();
      s.server->signal(SIGHUP);
      REQUIRE(s.server->wait_for_text("reloaded", 10s));
      attempts = seen_at(*s.server, refused, killed_at);
    }
    REQUIRE(s.server->wait_for_count(online, 1, 40s));
    REQUIRE(s.client->wait_for_count(forwarding, forwarding_before + 1, 10s));
    for (auto t : seen_at(*s.server, online, killed_at)) attempts.push_back(t);
    CHECK(s.server->count_lines_containing(online) == 1);

    std::string seen;
    for (auto t : attempts) seen += " " + std::to_string(t);
    INFO("retries seen by the server, s after the kill:" << seen);
    MESSAGE("retries seen by the server, s after the kill:" << seen);
    // Which retry the first one seen is: the kill-to-retry windows of 1, 3, 7, 15 s ±20 %
    // do not overlap. (A retry made before the new server listened never reached it.)
    int first = 0;
    for (int k = 1; k <= 5 && first == 0; ++k)
      if (attempts.front() >= 0.8 * nominal_start(k) && attempts.front() <= 1.2 * nominal_start(k) + slack) first = k;
    REQUIRE(first != 0);
    // The server was restarted at once: the client reaches it by its third retry (7 s),
    // even if gRPC's own reconnect backoff made it miss an earlier one.
    CHECK(first <= 3);
    // Each gap between retries seen is the next wait of the schedule, ±20 %.
    for (size_t j = 1; j < attempts.size(); ++j) {
      double gap = attempts[j] - attempts[j - 1];
      double wait = nominal_wait(first + static_cast<int>(j));
      CAPTURE(j);
      CAPTURE(gap);
      CAPTURE(wait);
      CHECK(gap >= 0.8 * wait - slack);
      CHECK(gap <= 1.2 * wait + slack);
    }
    if (round == 0) CHECK(attempts.size() == 3);  // two refused, then the one that won

    auto last = s.client->lines();
    std::string forward_line;
    for (auto it = last.rbegin(); it != last.rend(); ++it)
      if (it->find("Forwarding") != std::string::npos) {
        forward_line = *it;
        break;
      }
    CHECK(forward_line.find("http://app.localhost:" + std::to_string(s.http_port)) != std::string::npos);
    auto tunnels = request(api, "GET", "127.0.0.1", "/api/tunnels");
    CHECK(tunnels.body.find("\"name\":\"app\"") != std::string::npos);
    auto body = std::string(100'000, 'y');
    auto r = request(s.http_port, "POST", s.host(), "/echo", body);
    CHECK(r.status == 200);
    CHECK(r.body == body);
  }
}

TEST_CASE("response_timeout counts from the last request byte: an upload longer than it still gets its answer") {
  // README: 504 when there is "no response head within tunnels.response_timeout after the
  // last request byte". The public client uploads for four timeouts, a piece every third
  // of one; the local service answers once it has the whole body.
  const auto timeout = scaled(500ms);
  stack::options o;
  o.extra_server_yaml = "  response_timeout: " + std::to_string(timeout.count()) + "ms\n";
  stack s(o);
  constexpr int pieces = 12;
  const auto gap = timeout / 3;
  std::string body;
  for (int i = 0; i < pieces; ++i) body += "piece " + std::to_string(i) + std::string(1000, 'p') + "\n";
  const size_t piece_size = body.size() / pieces;
  connection c(s.http_port);
  auto start = clock::now();
  c.send("POST /upload HTTP/1.1\r\nHost: " + s.host() + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  try {
    for (int i = 0; i < pieces; ++i) {
      std::this_thread::sleep_for(gap);  // the slow upload itself: a piece every third of the timeout
      c.send(body.substr(i * piece_size, i + 1 == pieces ? std::string::npos : piece_size));
    }
  } catch (const std::exception& e) {
    MESSAGE("the upload was cut: " << e.what());  // the answer says why
  }
  auto r = c.read_response(10s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
  MESSAGE("upload of " << took.count() << " ms with response_timeout " << timeout.count() << " ms: " << r.status);
  CHECK(took >= 3 * timeout);
  CHECK(r.status == 200);
  CHECK(r.body == std::to_string(body.size()) + " " + sha256_hex(body));
  // And the timeout still applies once the last byte is in.
  start = clock::now();
  auto stalled = request(s.http_port, "GET", s.host(), "/stall", "", {}, 10s);
  took = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
  CHECK(stalled.status == 504);
  CHECK(took >= timeout);
}

TEST_CASE("local service faults: silent -> 504 at the configured timeout, cut chunked response, down and back up") {
  stack::options o;
  o.extra_server_yaml = "  response_timeout: 2s\n";
  stack s(with_admin(o));
  auto api = api_port(s);
  SUBCASE("silent local service: 504 at the configured 2 s, a slower head than that is fine below it") {
    auto start = clock::now();
    auto r = request(s.http_port, "GET", s.host(), "/stall", "", {}, 15s);
    auto took = std::chrono::duration<double, std::milli>(clock::now() - start).count();
    MESSAGE("504 after " << took << " ms with response_timeout 2s");
    CHECK(r.status == 504);
    CHECK(took >= 1900.0);
    CHECK(took < 6000.0);
    CHECK(wait_metric(api, "grok_exchanges_in_flight", 0, 5s));
    r = request(s.http_port, "GET", s.host(), "/slow-head?ms=1000", "", {}, 15s);
    CHECK(r.status == 200);
    CHECK(r.body == "late\n");
  }
  SUBCASE("a chunked response cut by the local service never gets a terminating chunk") {
    for (std::string how : {"0", "1"}) {
      CAPTURE(how);
      connection c(s.http_port);
      c.send("GET /reset-mid-chunked?rst=" + how + " HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
      std::string got;
      auto body_at = head_end(c, got, 10s);
      REQUIRE(body_at != std::string::npos);
      CHECK(got.rfind("HTTP/1.1 200", 0) == 0);
      auto d = read_until_closed(c, 10s);
      CHECK(d.closed);
      chunk_decoder dec;
      dec.feed(got.substr(body_at) + d.bytes);
      CHECK(!dec.complete());
      CHECK(dec.body_bytes <= 3000);
      CHECK(wait_metric(api, "grok_exchanges_in_flight", 0, 5s));
    }
  }
  SUBCASE("a Content-Length response cut by the local service ends the public connection short of it") {
    connection c(s.http_port);
    c.send("GET /reset-mid-body HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    std::string got;
    auto body_at = head_end(c, got, 10s);
    REQUIRE(body_at != std::string::npos);
    CHECK(got.find("Content-Length: 1000000") != std::string::npos);
    auto d = read_until_closed(c, 10s);
    CHECK(d.closed);
    CHECK(got.size() - body_at + d.bytes.size() < 1'000'000);
    CHECK(wait_metric(api, "grok_exchanges_in_flight", 0, 5s));
  }
  SUBCASE("local service down -> 502; back on the same port -> served again on the same tunnel") {
    auto port = s.upstream_port;
    s.upstream.reset();  // kills grok-demo-upstream
    for (int i = 0; i < 3; ++i) {
      auto r = request(s.http_port, "GET", s.host(), "/");
      CHECK(r.status == 502);
      CHECK(r.body.find("refused") != std::string::npos);
    }
    s.upstream = std::make_unique<process>(
        std::vector<std::string>{binary("grok-demo-upstream"), "--port", std::to_string(port)});
    REQUIRE(s.upstream->wait_for_text("listening 127.0.0.1:" + std::to_string(port), 10s));
    auto r = request(s.http_port, "GET", s.host(), "/");
    CHECK(r.status == 200);
    CHECK(r.body == "Hello from grok-demo-upstream\n");
    CHECK(s.client->count_lines_containing("reconnecting") == 0);
  }
  CHECK(wait_metric(api, "grok_exchanges_in_flight", 0, 5s));
}

namespace {

struct round_result {
  uint64_t ok = 0;
  uint64_t injected = 0;
  uint64_t errors = 0;
  std::vector<std::string> first_errors;
};

/// `total` requests from `threads` public clients on keep-alive connections;
/// about a third of them are abandoned on purpose: after the request was sent,
/// mid-upload or mid-response, by a FIN or a reset.
round_result mixed_round(const stack& s, int total, int threads, unsigned seed) {
  std::atomic<int> next{0};
  std::mutex mu;
  round_result res;
  std::string download_pattern(512 * 1024, '\0');
  fill_pattern(download_pattern.data(), download_pattern.size(), 0);
  auto worker = [&](unsigned tseed) {
    std::mt19937 rng(tseed);
    std::unique_ptr<connection> c;
    uint64_t ok = 0, injected = 0, errors = 0;
    std::vector<std::string> errs;
    auto abandon = [&] {
      if (rng() % 2) reset_on_close(*c);
      c.reset();
      ++injected;
    };
    while (next.fetch_add(1) < total) {
      int kind = static_cast<int>(rng() % 100);
      try {
        if (!c) c = std::make_unique<connection>(s.http_port);
        if (kind < 35) {
          c->send("GET / HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
          auto r = c->read_response(20s);
          if (r.status != 200 || r.body != "Hello from grok-demo-upstream\n")
            throw std::runtime_error("GET / -> " + std::to_string(r.status));
          ++ok;
        } else if (kind < 55) {
          std::string body(rng() % 65536, '\0');
          for (auto& ch : body) ch = static_cast<char>(rng());
          c->send("POST /echo HTTP/1.1\r\nHost: " + s.host() + "\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\n\r\n" + body);
          auto r = c->read_response(20s);
          if (r.status != 200 || r.body != body) throw std::runtime_error("POST /echo -> " + std::to_string(r.status));
          ++ok;
        } else if (kind < 65) {
          auto size = 1 + rng() % download_pattern.size();
          c->send("GET /download?size=" + std::to_string(size) + " HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
          auto r = c->read_response(20s);
          if (r.status != 200 || r.body.size() != size || r.body.compare(0, size, download_pattern, 0, size) != 0)
            throw std::runtime_error("GET /download -> " + std::to_string(r.status));
          ++ok;
        } else if (kind < 75) {
          // Gone right after sending the request.
          c->send("GET /download?size=" + std::to_string(4 * k_mib) + " HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
          abandon();
        } else if (kind < 87) {
          // Gone mid-response, after its head and maybe some body.
          bool sse = rng() % 3 == 0;
          c->send(std::string(sse ? "GET /sse?n=100&interval_ms=5" : "GET /download?size=8388608") +
                  " HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
          if (c->read_some(20s).empty()) throw std::runtime_error("no response head before the disconnect");
          abandon();
        } else {
          // Gone mid-upload: half of a 1 MiB body, Content-Length or chunked.
          std::string half(512 * 1024, 'u');
          if (rng() % 2) {
            c->send("POST /upload HTTP/1.1\r\nHost: " + s.host() + "\r\nContent-Length: 1048576\r\n\r\n" + half);
          } else {
            c->send("POST /echo HTTP/1.1\r\nHost: " + s.host() + "\r\nTransfer-Encoding: chunked\r\n\r\n80000\r\n" +
                    half + "\r\n");
          }
          abandon();
        }
      } catch (const std::exception& e) {
        ++errors;
        if (errs.size() < 3) errs.push_back(e.what());
        c.reset();
      }
    }
    std::lock_guard lk(mu);
    res.ok += ok;
    res.injected += injected;
    res.errors += errors;
    for (auto& e : errs)
      if (res.first_errors.size() < 5) res.first_errors.push_back(e);
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker, seed * 1000 + static_cast<unsigned>(t));
  for (auto& t : pool) t.join();
  return res;
}

}  // namespace

TEST_CASE("a local service that closes idle kept-alive connections: the next GET, DELETE and POST still get 200") {
  // Like Node's http server (keepAliveTimeout): grok's pooled connection is
  // closed by the service while idle. A GET or DELETE reuses it without a
  // probe and is sent again on a fresh connection; a POST gets a probed one.
  // Some servers also answer 408 as they close: that answer is not the request's.
  stack::options o;
  bool with_408 = false;
  SUBCASE("closed silently") {}
  SUBCASE("closed after a 408") { with_408 = true; }
  o.upstream_args = {"--keep-alive-timeout", "200"};
  if (with_408) o.upstream_args.push_back("--idle-408");
  stack s(o);
  const std::string closed = "closed an idle connection";
  auto wait_idle_close = [&](size_t before) { return s.upstream->wait_for_count(closed, before + 1, 10s); };
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    auto before = s.upstream->count_lines_containing(closed);
    auto r = request(s.http_port, "GET", s.host(), "/", "", {}, 10s);
    REQUIRE(r.status == 200);
    REQUIRE(wait_idle_close(before));  // the connection grok keeps is closed now
    r = request(s.http_port, "GET", s.host(), "/", "", {}, 10s);
    CHECK(r.status == 200);
    CHECK(r.body == "Hello from grok-demo-upstream\n");
    before = s.upstream->count_lines_containing(closed);
    REQUIRE(wait_idle_close(before));
    r = request(s.http_port, "DELETE", s.host(), "/echo", "", {}, 10s);
    CHECK(r.status == 200);
    before = s.upstream->count_lines_containing(closed);
    REQUIRE(wait_idle_close(before));
    auto body = "round " + std::to_string(round) + " body";
    r = request(s.http_port, "POST", s.host(), "/echo", body, {}, 10s);
    CHECK(r.status == 200);
    CHECK(r.body == body);
  }
  CHECK(s.client->count_lines_containing(" 502 ") == 0);
}

TEST_CASE("10 000 requests with random public-client disconnects leak neither exchanges nor memory") {
  // Both binaries run with the malloc settings they ship with (grok::tune_malloc):
  // the bounds below are what a user's processes do, not a test-only allocator.
  stack::options o;
  for (auto* env : {&o.server_env, &o.client_env}) env->push_back("GLIBC_TUNABLES=");
  // The request inspector keeps captures up to its memory cap by design: a small cap
  // fills during the warm-up, so growth after it would be a leak, not captures.
  o.client_args = {"--inspect-max-memory", "1MiB", "--inspect-max-body", "64KiB"};
  stack s(with_admin(o));
  auto api = api_port(s);
  constexpr int total = 10'000;
  constexpr int threads = 20;
  auto client_fds_before = open_fds(s.client->pid());
  uint64_t server_warm = 0, client_warm = 0;
  constexpr int rounds = 3;  // a warm-up, then 2 x 10 000 requests measured
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    auto start = clock::now();
    auto res = mixed_round(s, total, threads, static_cast<unsigned>(round + 1));
    auto secs = std::chrono::duration<double>(clock::now() - start).count();
    for (auto& e : res.first_errors) MESSAGE("error: " << e);
    CHECK(res.errors == 0);
    CHECK(res.ok + res.injected == static_cast<uint64_t>(total));
    CHECK(res.injected > total / 5);
    CHECK(wait_metric(api, "grok_exchanges_in_flight", 0, 10s));
    CHECK(wait_metric(api, "grok_public_connections_active", 0, 10s));
    CHECK(wait_metric(api, R"(grok_tunnel_queued_bytes{tunnel="app"})", 0, 10s));
    auto server_rss = s.server->rss_kib();
    auto client_rss = s.client->rss_kib();
    MESSAGE((round == 0 ? std::string("warm-up") : "measured") << " round: " << res.ok << " answered, " << res.injected
                                                << " abandoned on purpose, " << res.errors << " errors in " << secs
                                                << " s; grok-server RSS " << server_rss << " KiB, grok RSS "
                                                << client_rss << " KiB, grok fds "
                                                << open_fds(s.client->pid()) << ", grok-server fds "
                                                << open_fds(s.server->pid()) << ", grok-server peak RSS "
                                                << s.server->peak_rss_kib() << " KiB, grok peak RSS "
                                                << s.client->peak_rss_kib() << " KiB");
    if (round == 0) {
      server_warm = server_rss;
      client_warm = client_rss;
    }
    if (round != rounds - 1) continue;
    // 10 % of the warm-up value, or 2 MiB when that is larger: gRPC's buffers move a
    // ~25 MiB process by a few hundred KiB between rounds without any leak. On top,
    // the shipped M_TRIM_THRESHOLD (4 MiB, grok::tune_malloc): glibc keeps up to that
    // much freed memory at the top of the heap (measured: up to 2.8 MiB between two
    // rounds, either process). Over the 20 000 requests measured, a leak of 350 bytes
    // per request (7 MiB) still fails. (Both processes see every request: the server relays
    // it, the client replays it against the local service.)
    for (auto [name, p, warm] : {std::tuple{std::string("grok-server"), s.server.get(), server_warm},
                                 std::tuple{std::string("grok"), s.client.get(), client_warm}}) {
      CAPTURE(name);
      auto limit = std::max<uint64_t>(warm + warm / 10, warm + 2048) + 4096;
      auto rss = p->rss_kib();
      // Memory freed at the end of the round may take a moment to go back.
      for (auto deadline = clock::now() + 5s; rss > limit && clock::now() < deadline; rss = p->rss_kib())
        std::this_thread::sleep_for(100ms);
      MESSAGE(name << " RSS after warm-up " << warm << " KiB, after " << rounds - 1 << " more rounds " << rss << " KiB (limit " << limit
                   << " KiB)");
      CHECK(rss <= limit);
    }
  }
  // The client's pool of local connections is bounded; nothing else stays open.
  auto client_fds_after = open_fds(s.client->pid());
  CHECK(client_fds_after <= client_fds_before + 64);

  // The server still answers correctly.
  auto body = std::string(1 << 20, '\0');
  fill_pattern(body.data(), body.size(), 5);
  auto r = request(s.http_port, "POST", s.host(), "/echo", body, {}, 30s);
  CHECK(r.status == 200);
  CHECK(r.body == body);
  r = request(s.http_port, "GET", s.host(), "/download?size=" + std::to_string(16 * k_mib), "", {}, 30s);
  CHECK(r.status == 200);
  std::string expected(16 * k_mib, '\0');
  fill_pattern(expected.data(), expected.size(), 0);
  CHECK(r.body == expected);
  CHECK(s.client->count_lines_containing("reconnecting") == 0);
}
