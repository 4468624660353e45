// `grok tcp`: raw TCP through the tunnel, with real processes on 127.0.0.1.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <random>

#include "harness.hpp"

using namespace grok::test;

namespace {

/// A local TCP service. The first line picks the mode:
///   "echo"      echoes everything until EOF, then closes;
///   "echo N"    the same after holding the connection N ms (so concurrent ones overlap);
///   "sink"      reads until EOF, then answers "<count> <sha256>\n" and closes;
///   "source N"  sends N pattern bytes, half-closes, then closes at EOF.
class tcp_service {
 public:
  tcp_service() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd_, 512) == 0);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~tcp_service() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    acceptor_.join();
    for (auto& t : workers_) t.join();
  }
  uint16_t port = 0;
  /// Most connections served at once so far.
  int peak() const { return peak_.load(); }

 private:
  void accept_loop() {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 200) < 0 || stop_) return;
      if (!(p.revents & POLLIN)) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (stop_) return;
        continue;
      }
      std::lock_guard lk(mu_);
      workers_.emplace_back([this, c] {
        int now = ++active_;
        for (int p = peak_.load(); now > p && !peak_.compare_exchange_weak(p, now);) {
        }
        serve(c);
        --active_;
      });
    }
  }

  static void serve(int c) {
    timeval tv{60, 0};  // a stuck peer cannot hold a worker forever
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string line;
    char ch;
    while (recv(c, &ch, 1, 0) == 1 && ch != '\n') line += ch;
    std::vector<char> buf(1 << 16);
    auto send_all = [&](const char* p, size_t n) {
      while (n > 0) {
        auto w = send(c, p, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        p += w;
        n -= static_cast<size_t>(w);
      }
      return true;
    };
    if (line.rfind("echo ", 0) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::stoi(line.substr(5))));
    if (line.rfind("echo", 0) == 0) {
      for (;;) {
        auto n = recv(c, buf.data(), buf.size(), 0);
        if (n <= 0 || !send_all(buf.data(), static_cast<size_t>(n))) break;
      }
    } else if (line == "sink") {
      sha256 h;
      uint64_t count = 0;
      for (;;) {
        auto n = recv(c, buf.data(), buf.size(), 0);
        if (n <= 0) break;
        h.update(buf.data(), static_cast<size_t>(n));
        count += static_cast<uint64_t>(n);
      }
      auto reply = std::to_string(count) + " " + h.hex() + "\n";
      send_all(reply.data(), reply.size());
    } else if (line.rfind("source ", 0) == 0) {
      uint64_t total = std::stoull(line.substr(7));
      for (uint64_t off = 0; off < total;) {
        auto n = std::min<uint64_t>(buf.size(), total - off);
        fill_pattern(buf.data(), n, off);
        if (!send_all(buf.data(), n)) break;
        off += n;
      }
      shutdown(c, SHUT_WR);
      while (recv(c, buf.data(), buf.size(), 0) > 0) {
      }
    }
    close(c);
  }

  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> active_{0};
  std::atomic<int> peak_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
};

struct tcp_stack {
  explicit tcp_stack(uint16_t port_start, uint16_t port_end, std::string auth_extra = {}) {
    stack::options o;
    o.tokens_yaml = "[test-token, http-only]";
    o.auth_extra_yaml = std::move(auth_extra);
    o.start_client = false;
    o.extra_server_yaml = "  tcp_port_start: " + std::to_string(port_start) +
                          "\n  tcp_port_end: " + std::to_string(port_end) + "\n";
    s = std::make_unique<stack>(o);
  }
  std::unique_ptr<process> start_tcp_client(uint16_t local_port, const std::string& token = "test-token") {
    return std::make_unique<process>(std::vector<std::string>{
        binary("grok"), "--insecure", "--config", "/dev/null", "tcp", std::to_string(local_port), "--server",
        "127.0.0.1:" + std::to_string(s->grpc_port), "--token", token});
  }
  std::unique_ptr<stack> s;
};

uint16_t public_port_of(process& client) {
  auto m = client.wait_for_line(std::regex(R"(Forwarding\s+tcp://localhost:(\d+))"), 10s);
  REQUIRE(m);
  return static_cast<uint16_t>(std::stoi((*m)[1]));
}

}  // namespace

TEST_CASE("tcp tunnel: interactive echo, half-close both ways, 1 GiB each way with bounded memory") {
  tcp_service svc;
  auto port = free_port();
  tcp_stack t(port, port);
  auto client = t.start_tcp_client(svc.port);
  auto public_port = public_port_of(*client);
  CHECK(public_port == port);

  SUBCASE("an interactive byte stream, answer by answer, then half-close") {
    connection c(public_port);
    c.send("echo\n");
    for (int i = 0; i < 100; ++i) {
      auto line = "keystroke " + std::to_string(i) + "\n";
      c.send(line);
      std::string got;
      while (got.size() < line.size()) {
        auto piece = c.read_some(5s);
        REQUIRE(!piece.empty());
        got += piece;
      }
      CHECK(got == line);
    }
    c.shutdown_write();           // our EOF reaches the service...
    CHECK(c.wait_closed(5s));     // ...which closes, and that reaches us
    CHECK(client->wait_for_text("TCP 127.0.0.1:", 5s));
  }
  SUBCASE("1 GiB upload: the local service sees every byte and our EOF") {
    const uint64_t size = bulk_bytes(1ull << 30);
    connection c(public_port);
    c.send("sink\n");
    sha256 expected;
    send_pattern(c, size, &expected);
    c.shutdown_write();
    std::string reply;
    while (reply.find('\n') == std::string::npos) {
      auto piece = c.read_some(60s);
      REQUIRE(!piece.empty());
      reply += piece;
    }
    CHECK(reply == std::to_string(size) + " " + expected.hex() + "\n");
  }
  SUBCASE("1 GiB download") {
    const uint64_t size = bulk_bytes(1ull << 30);
    connection c(public_port);
    c.send("source " + std::to_string(size) + "\n");
    sha256 got_hash, expected;
    uint64_t got = 0;
    std::string chunk;
    while (got < size) {
      auto piece = c.read_piece(60s);
      REQUIRE(!piece.eof);  // an early end: bytes were lost
      REQUIRE(!piece.bytes.empty());
      chunk.resize(piece.bytes.size());
      fill_pattern(chunk.data(), chunk.size(), got);
      expected.update(chunk.data(), chunk.size());
      got_hash.update(piece.bytes.data(), piece.bytes.size());
      got += piece.bytes.size();
    }
    CHECK(got == size);
    CHECK(got_hash.hex() == expected.hex());
    // The service half-closed after its last byte: that EOF reaches us promptly, and
    // with no byte after it, while our side is still open.
    auto end = c.read_piece(2s);
    CHECK(end.bytes.empty());
    CHECK(end.eof);
    c.shutdown_write();
    CHECK(c.wait_closed(10s));
  }
  auto server_peak = t.s->server->peak_rss_kib();
  auto client_peak = client->peak_rss_kib();
  MESSAGE("peak RSS: grok-server " << server_peak << " KiB, grok " << client_peak << " KiB");
  if (rss_caps()) {
    CHECK(server_peak < 64 * 1024);
    CHECK(client_peak < 64 * 1024);
  }
}

TEST_CASE("tcp tunnel: 200 concurrent connections all echo correctly") {
  tcp_service svc;
  auto port = free_port();
  tcp_stack t(port, port);
  auto client = t.start_tcp_client(svc.port);
  auto public_port = public_port_of(*client);
  // The service holds each connection a moment before echoing: connections carried
  // one at a time would never overlap there.
  const auto mode = "echo " + std::to_string(scaled(300ms).count()) + "\n";
  std::vector<std::future<bool>> results;
  for (int i = 0; i < 200; ++i) {
    results.push_back(std::async(std::launch::async, [public_port, i, mode] {
      std::mt19937 rng(static_cast<unsigned>(i));
      std::string payload(10'000 + i, '\0');
      for (auto& ch : payload) ch = static_cast<char>(rng());
      connection c(public_port, 10s);
      c.send(mode + payload);
      c.shutdown_write();
      std::string got;
      for (;;) {
        auto piece = c.read_piece(20s);
        if (piece.eof) break;
        if (piece.bytes.empty()) return false;  // timed out: our half-close did not come back as EOF
        got += piece.bytes;
      }
      return got == payload;
    }));
  }
  int ok = 0;
  for (auto& r : results) ok += r.get() ? 1 : 0;
  CHECK(ok == 200);
  MESSAGE("the local service held up to " << svc.peak() << " of the 200 connections at once");
  CHECK(svc.peak() >= 50);  // all 200 in a plain build; far more than one at a time in any
}

TEST_CASE("tcp tunnel: a full port range is refused clearly; a dead local service closes the public connection") {
  tcp_service svc;
  auto port = free_port();
  tcp_stack t(port, port);
  auto first = t.start_tcp_client(svc.port);
  auto public_port = public_port_of(*first);
  auto second = t.start_tcp_client(svc.port);
  // A port may free up: said once, tried again later rather than given up.
  CHECK(second->wait_for_text("no free TCP port in " + std::to_string(port) + ".." + std::to_string(port), 10s));
  CHECK(second->wait_for_text("trying again in", 1s));
  CHECK(second->running());
  second->signal(SIGINT);
  CHECK(second->wait_exit(5s) == 0);

  // Nothing listens on the local port any more: the public side is closed at once.
  auto dead_port = free_port();
  first->signal(SIGINT);
  REQUIRE(first->wait_exit(5s) == 0);
  auto third = t.start_tcp_client(dead_port);
  auto p3 = public_port_of(*third);
  CHECK(p3 == public_port);
  connection c(p3);
  c.send("echo\nhello");
  CHECK(c.wait_closed(5s));
}

TEST_CASE("tcp tunnel: auth.tcp_tokens limits which tokens may open TCP tunnels") {
  tcp_service svc;
  auto port = free_port();
  tcp_stack t(port, port, "  tcp_tokens: [test-token]\n");
  auto refused = t.start_tcp_client(svc.port, "http-only");
  CHECK(refused->wait_exit(10s) == 1);
  CHECK(refused->wait_for_text("this token may not open TCP tunnels", 1s));
  auto allowed = t.start_tcp_client(svc.port, "test-token");
  CHECK(public_port_of(*allowed) == port);
}

namespace {

/// `grok-server token add LABEL --file FILE EXTRA...`; returns the token it printed once.
std::string add_token(const std::string& file, const std::string& label, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{binary("grok-server"), "token", "add", label, "--file", file};
  argv.insert(argv.end(), extra.begin(), extra.end());
  process p(std::move(argv));
  REQUIRE(p.wait_exit(20s) == std::optional<int>(0));
  for (auto& l : p.lines()) {
    auto pos = l.find("grok_");
    if (pos != std::string::npos && l.find("...") == std::string::npos) return l.substr(pos);
  }
  FAIL("no token printed");
  return {};
}

}  // namespace

TEST_CASE("tcp tunnel: tcp_port_start 0 turns TCP tunnels off; HTTP tunnels still open") {
  tcp_service svc;
  tcp_stack t(0, 0);
  auto refused = t.start_tcp_client(svc.port);
  CHECK(refused->wait_exit(10s) == 1);
  CHECK(refused->wait_for_text("TCP tunnels are turned off on this server", 1s));
  t.s->start_client("web");
  CHECK(request(t.s->http_port, "GET", "web.localhost", "/").status == 200);
}

TEST_CASE("tcp tunnel: a token added with --no-tcp opens HTTP tunnels only") {
  tcp_service svc;
  auto port = free_port();
  stack::options o;
  o.start_client = false;
  o.tokens_yaml = "[]";
  o.auth_extra_yaml = "  tokens_file: tokens.yaml\n";
  o.files = {{"tokens.yaml", "# tokens\n"}};
  o.extra_server_yaml = "  tcp_port_start: " + std::to_string(port) + "\n  tcp_port_end: " + std::to_string(port) + "\n";
  stack s(o);
  auto web_only = add_token(s.dir + "/tokens.yaml", "web-only", {"--no-tcp"});
  auto any = add_token(s.dir + "/tokens.yaml", "any");
  s.server->signal(SIGHUP);
  REQUIRE(s.server->wait_for_text("reloaded", 10s));
  auto tcp_client = [&](const std::string& token) {
    return std::make_unique<process>(std::vector<std::string>{
        binary("grok"), "--insecure", "--config", "/dev/null", "tcp", std::to_string(svc.port), "--server",
        "127.0.0.1:" + std::to_string(s.grpc_port), "--token", token});
  };
  auto refused = tcp_client(web_only);
  CHECK(refused->wait_exit(10s) == 1);
  CHECK(refused->wait_for_text("this token may not open TCP tunnels", 1s));
  // The same token opens an HTTP tunnel.
  s.opts.token = web_only;
  s.start_client("web");
  CHECK(request(s.http_port, "GET", "web.localhost", "/").status == 200);
  // A token added without --no-tcp opens the TCP tunnel, which carries bytes.
  auto allowed = tcp_client(any);
  REQUIRE(public_port_of(*allowed) == port);
  connection c(port);
  c.send("echo\nping");
  c.shutdown_write();
  std::string got;
  for (auto piece = c.read_piece(5s); !piece.eof; piece = c.read_piece(5s)) {
    REQUIRE(!piece.bytes.empty());
    got += piece.bytes;
  }
  CHECK(got == "ping");
}
