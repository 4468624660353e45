// Pools: several grok processes behind one name (`--pool`), with real
// grok-server, grok and grok-demo-upstream processes on 127.0.0.1. Each
// member's local service answers "/" with its own name, so the tests see
// which member served a request.

#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "harness.hpp"

using namespace grok::test;

namespace {

/// A grok-demo-upstream answering "Hello from NAME".
struct service {
  explicit service(const std::string& name, uint16_t at = 0) : name(name) {
    p = std::make_unique<process>(
        std::vector<std::string>{binary("grok-demo-upstream"), "--port", std::to_string(at), "--name", name});
    auto m = p->wait_for_line(std::regex(R"(listening 127\.0\.0\.1:(\d+))"), scaled(10s));
    REQUIRE(m);
    port = static_cast<uint16_t>(std::stoi((*m)[1]));
  }
  std::string name;
  std::unique_ptr<process> p;
  uint16_t port = 0;
};

/// `grok http|tcp PORT --subdomain NAME --pool` and its extra flags; waits for its Forwarding line.
struct member {
  member(stack& s, uint16_t local_port, const std::string& name, std::vector<std::string> extra = {},
         const std::string& token = "test-token", const std::string& proto = "http", bool expect_online = true) {
    std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", proto,
                                  std::to_string(local_port), "--subdomain", name, "--server",
                                  "127.0.0.1:" + std::to_string(s.grpc_port), "--token", token};
    argv.insert(argv.end(), extra.begin(), extra.end());
    p = std::make_unique<process>(std::move(argv));
    if (!expect_online) return;
    auto m = p->wait_for_line(std::regex(R"(Forwarding\s+(\S+) .*)"), scaled(15s));
    REQUIRE_MESSAGE(m, "grok did not come online");
    forwarding = (*m)[0];
    url = (*m)[1];
  }
  std::unique_ptr<process> p;
  std::string forwarding;
  std::string url;
};

/// Which service answered "/" ("m1"), or "status N".
std::string who(const response& r) {
  if (r.status != 200) return "status " + std::to_string(r.status);
  const std::string prefix = "Hello from ";
  if (r.body.rfind(prefix, 0) != 0) return "body " + r.body;
  return r.body.substr(prefix.size(), r.body.size() - prefix.size() - 1);
}

/// `n` requests for "/" from `threads` threads; the count of answers per member.
std::map<std::string, int> spread(stack& s, int n, int threads = 6) {
  std::mutex mu;
  std::map<std::string, int> counts;
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      while (next.fetch_add(1) < n) {
        std::string k;
        try {
          k = who(request(s.http_port, "GET", s.host(), "/"));
        } catch (const std::exception& e) {
          k = std::string("error ") + e.what();
        }
        std::lock_guard lk(mu);
        ++counts[k];
      }
    });
  for (auto& t : pool) t.join();
  return counts;
}

stack::options pool_stack(const std::string& name = "api") {
  stack::options o;
  o.name = name;
  o.start_client = false;
  o.server_section_yaml = "  api_port: " + std::to_string(free_port()) + "\n";
  return o;
}

uint16_t api_port(const stack& s) {
  auto at = s.opts.server_section_yaml.find("api_port: ");
  return static_cast<uint16_t>(std::stoi(s.opts.server_section_yaml.substr(at + 10)));
}

}  // namespace

TEST_CASE("pool: three members share a name and each gets between 25 % and 42 % of 300 requests") {
  stack s(pool_stack());
  service a("m1"), b("m2"), c("m3");
  member ma(s, a.port, "api", {"--pool"});
  member mb(s, b.port, "api", {"--pool"});
  member mc(s, c.port, "api", {"--pool"});
  CHECK(ma.forwarding.find("(pool member 1 of 1)") != std::string::npos);
  CHECK(mc.forwarding.find("(pool member 3 of 3)") != std::string::npos);
  CHECK(ma.url == mc.url);

  // One at a time: each request finds every member idle, so the turns decide.
  // (Under concurrency the least busy member wins, which favours the fastest.)
  auto counts = spread(s, 300, 1);
  CAPTURE(counts.size());
  for (auto& [k, n] : counts) MESSAGE(k << ": " << n);
  CHECK(counts.size() == 3);
  for (const char* m : {"m1", "m2", "m3"}) {
    CHECK(counts[m] >= 75);
    CHECK(counts[m] <= 126);
  }

  // The members are visible to an operator, each with what it served.
  auto tunnels = request(api_port(s), "GET", "127.0.0.1", "/api/tunnels");
  REQUIRE(tunnels.status == 200);
  size_t members = 0;
  for (size_t at = 0; (at = tunnels.body.find("\"pool\":true", at)) != std::string::npos; ++at) ++members;
  CHECK(members == 3);
  auto metrics = metrics_text(api_port(s));
  std::regex served(R"(grok_pool_member_exchanges_total\{tunnel="api",member="\d+",peer="[^"]+"\} (\d+))");
  int total = 0, series = 0;
  for (std::sregex_iterator it(metrics.begin(), metrics.end(), served), end; it != end; ++it, ++series)
    total += std::stoi((*it)[1]);
  CHECK(series == 3);
  CHECK(total == 300);
  CHECK(metrics.find("grok_pool_member_healthy{tunnel=\"api\"") != std::string::npos);
}

TEST_CASE("pool: kill -9 of one member under load fails only requests that had started on it") {
  stack s(pool_stack());
  service a("m1"), b("m2"), c("m3");
  member ma(s, a.port, "api", {"--pool"});
  member mb(s, b.port, "api", {"--pool"});
  member mc(s, c.port, "api", {"--pool"});

  // 50 clients in a loop; one member is killed a third of the way through.
  const auto run_for = sanitizer()[0] ? 4s : 10s;
  struct outcome {
    clock::time_point start, end;
    std::string who;
  };
  std::mutex mu;
  std::vector<outcome> outcomes;
  std::atomic<bool> stop{false};
  auto t0 = clock::now();
  std::vector<std::thread> load;
  for (int t = 0; t < 50; ++t)
    load.emplace_back([&] {
      while (!stop) {
        outcome o;
        o.start = clock::now();
        try {
          o.who = who(request(s.http_port, "GET", s.host(), "/", "", {}, scaled(10s)));
        } catch (const std::exception& e) {
          o.who = std::string("error ") + e.what();
        }
        o.end = clock::now();
        std::lock_guard lk(mu);
        outcomes.push_back(std::move(o));
      }
    });
  std::this_thread::sleep_until(t0 + run_for / 3);  // the load's own length, not a wait for a condition
  auto killed_at = clock::now();
  mb.p->signal(SIGKILL);
  std::this_thread::sleep_until(t0 + run_for);
  stop = true;
  for (auto& t : load) t.join();

  int failed = 0, after = 0, from_killed_after = 0, by_survivors = 0;
  for (auto& o : outcomes) {
    bool ok = o.who == "m1" || o.who == "m2" || o.who == "m3";
    if (!ok) {
      ++failed;
      CAPTURE(o.who);
      // Only what was in flight on the killed member at the kill may fail.
      CHECK(o.start <= killed_at + scaled(1s));
      CHECK(o.end >= killed_at);
    }
    if (o.start > killed_at + 1s) {
      ++after;
      if (o.who == "m2") ++from_killed_after;
      if (o.who == "m1" || o.who == "m3") ++by_survivors;
    }
  }
  MESSAGE(outcomes.size() << " requests, " << failed << " failed, " << after << " started 1 s after the kill");
  CHECK(failed <= 50);
  CHECK(after > 100);
  CHECK(from_killed_after == 0);
  CHECK(by_survivors == after);  // every request that started 1 s after the kill was answered by a survivor
  CHECK(ma.p->running());
  CHECK(mc.p->running());
}

TEST_CASE("pool: a member whose health check fails gets nothing until it passes again") {
  stack s(pool_stack());
  service a("m1"), b("m2");
  std::vector<std::string> checked{"--pool", "--health-check", "/health", "--health-interval", "200ms",
                                   "--health-timeout", "1s"};
  member ma(s, a.port, "api", checked);
  member mb(s, b.port, "api", checked);
  REQUIRE(ma.p->wait_for_text("Healthy     GET /health: 200", scaled(5s)));
  REQUIRE(mb.p->wait_for_text("Healthy     GET /health: 200", scaled(5s)));
  // The server heard it (each member starts unchecked, given nothing).
  REQUIRE(s.server->wait_for_count("local service healthy; taking requests", 2, scaled(5s)));
  auto both = spread(s, 40);
  CHECK(both["m1"] > 0);
  CHECK(both["m2"] > 0);

  // m2's service starts failing its check: m2 is given nothing.
  REQUIRE(request(b.port, "POST", "127.0.0.1", "/health/fail").status == 200);
  REQUIRE(s.server->wait_for_text("local service unhealthy (GET /health: 503)", scaled(5s)));
  auto metrics = metrics_text(api_port(s));
  CHECK(std::regex_search(metrics, std::regex(R"(grok_pool_member_healthy\{tunnel="api",[^}]*\} 0\n)")));
  CHECK(std::regex_search(metrics, std::regex(R"(grok_pool_member_healthy\{tunnel="api",[^}]*\} 1\n)")));
  auto one = spread(s, 60);
  CHECK(one["m1"] == 60);
  CHECK(one["m2"] == 0);

  // Back to healthy, it gets traffic again.
  REQUIRE(request(b.port, "POST", "127.0.0.1", "/health/pass").status == 200);
  REQUIRE(s.server->wait_for_count("local service healthy; taking requests", 3, scaled(5s)));
  bool back = false;
  for (auto deadline = clock::now() + scaled(5s); !back && clock::now() < deadline;)
    back = spread(s, 10)["m2"] > 0;
  CHECK(back);

  // With every member failing, the name answers 503 and says why.
  REQUIRE(request(a.port, "POST", "127.0.0.1", "/health/fail").status == 200);
  REQUIRE(request(b.port, "POST", "127.0.0.1", "/health/fail").status == 200);
  REQUIRE(s.server->wait_for_count("local service unhealthy (GET /health: 503)", 3, scaled(5s)));
  auto r = request(s.http_port, "GET", s.host(), "/");
  CHECK(r.status == 503);
  CHECK(r.body.find("fails its health check") != std::string::npos);
}

TEST_CASE("pool: a member whose local service refuses connections does not fail requests") {
  stack s(pool_stack());
  service a("m1");
  auto nothing = free_port();  // no service listens here
  member ma(s, a.port, "api", {"--pool"});
  member mb(s, nothing, "api", {"--pool"});
  auto counts = spread(s, 60);
  for (auto& [k, n] : counts) MESSAGE(k << ": " << n);
  CHECK(counts["m1"] == 60);
  CHECK(counts.size() == 1);
  // A body the refusing member was sent reaches the other one whole.
  std::string body(200 * 1024, 'x');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  for (int i = 0; i < 4; ++i) {
    auto r = request(s.http_port, "POST", s.host(), "/echo", body);
    CHECK(r.status == 200);
    CHECK(r.body == body);
  }
  CHECK(s.server->wait_for_text("refused (cannot connect to local service", scaled(2s)));
}

TEST_CASE("pool: only the same token or the same tokens-file pool may join; a lone tunnel's name is not joinable") {
  stack::options o = pool_stack();
  o.tokens_yaml = "[]";
  o.auth_extra_yaml = "  tokens_file: tokens.yaml\n";
  o.files = {{"tokens.yaml", "- label: alice\n  sha256: " + sha256_hex("alice-token") +
                                 "\n  pool: team\n- label: carol\n  sha256: " + sha256_hex("carol-token") +
                                 "\n  pool: team\n- label: bob\n  sha256: " + sha256_hex("bob-token") + "\n"}};
  stack s(o);
  service a("m1"), b("m2");
  member alice(s, a.port, "api", {"--pool"}, "alice-token");
  // Another token of the same pool joins.
  member carol(s, b.port, "api", {"--pool"}, "carol-token");
  CHECK(carol.forwarding.find("(pool member 2 of 2)") != std::string::npos);
  auto both = spread(s, 20);
  CHECK(both["m1"] > 0);
  CHECK(both["m2"] > 0);

  // An unrelated token is refused and told why; it exits.
  member bob(s, b.port, "api", {"--pool"}, "bob-token", "http", false);
  CHECK(bob.p->wait_exit(scaled(10s)) == 1);
  CHECK(bob.p->wait_for_text("the pool for 'api' belongs to another token", 1s));
  // A tunnel that did not ask for a pool cannot take a pool's name.
  member lone(s, b.port, "api", {}, "alice-token", "http", false);
  CHECK(lone.p->wait_exit(scaled(10s)) == 1);
  CHECK(lone.p->wait_for_text("name 'api' is served by a pool of tunnels; start grok with --pool to join it", 1s));
  // Nor can a pool member join a name a lone tunnel holds, even with its token.
  member solo(s, a.port, "solo", {}, "bob-token");
  member joiner(s, b.port, "solo", {"--pool"}, "bob-token", "http", false);
  CHECK(joiner.p->wait_exit(scaled(10s)) == 1);
  CHECK(joiner.p->wait_for_text("is held by a tunnel that is not a pool", 1s));
  // Traffic to the pool never went anywhere else.
  auto after = spread(s, 20);
  CHECK(after["m1"] + after["m2"] == 20);
}

TEST_CASE("pool: TCP members share one public port and each connection goes to one of them") {
  auto port = free_port();
  stack::options o = pool_stack("db");
  o.extra_server_yaml = "  tcp_port_start: " + std::to_string(port) + "\n  tcp_port_end: " + std::to_string(port) + "\n";
  stack s(o);
  service a("m1"), b("m2");
  member ma(s, a.port, "db", {"--pool"}, "test-token", "tcp");
  member mb(s, b.port, "db", {"--pool"}, "test-token", "tcp");
  CHECK(ma.url == "tcp://localhost:" + std::to_string(port));
  CHECK(mb.url == ma.url);  // one port: the range has only one
  std::map<std::string, int> counts;
  for (int i = 0; i < 20; ++i) {
    connection c(port, scaled(5s));
    c.send("GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    auto r = c.read_response(scaled(5s));
    ++counts[who(r)];
  }
  CHECK(counts["m1"] >= 5);
  CHECK(counts["m2"] >= 5);
  CHECK(counts["m1"] + counts["m2"] == 20);
  // The port stays while one member is left.
  ma.p->signal(SIGINT);
  REQUIRE(ma.p->wait_exit(scaled(10s)) == 0);
  for (int i = 0; i < 5; ++i) {
    connection c(port, scaled(5s));
    c.send("GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    CHECK(who(c.read_response(scaled(5s))) == "m2");
  }
}
