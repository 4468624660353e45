// What README promises an operator about a running grok-server that no
// other test shows: restart-only settings reported on reload, journald lines,
// auth-failure counters.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fake_client.hpp"
#include "harness.hpp"

using namespace grok::test;

TEST_CASE("a reload that changes a restart-only setting says so and keeps the running value") {
  stack s;
  s.opts.domain = "elsewhere.test";
  s.opts.server_section_yaml = "  read_header_timeout: 3s\n";  // this one does apply
  s.write_server_config();
  s.server->signal(SIGHUP);
  REQUIRE(s.server->wait_for_text("reloaded", scaled(10s)));
  CHECK(s.server->wait_for_text("reload: server.domain changed; it takes effect at the next restart", 1s));
  CHECK(s.server->count_lines_containing("reload: server.read_header_timeout") == 0);
  // Still the old domain: app.localhost answers, app.elsewhere.test does not.
  CHECK(request(s.http_port, "GET", "app.localhost", "/").status == 200);
  CHECK(request(s.http_port, "GET", "app.elsewhere.test", "/").status == 404);
}

TEST_CASE("a reload that changes tunnels.initial_window: tunnels online before it keep their window, and large bodies flow both ways") {
  stack::options o;
  o.extra_server_yaml = "  initial_window: 64KiB\n  max_frame_size: 16KiB\n";
  stack s(o);
  // A window 64 times larger: a tunnel given 64 KiB must not wait for credit a quarter of 4 MiB away.
  s.opts.extra_server_yaml = "  initial_window: 4MiB\n";
  s.write_server_config();
  s.server->signal(SIGHUP);
  REQUIRE(s.server->wait_for_text("reloaded", scaled(10s)));
  const uint64_t size = bulk_bytes(32ull << 20);
  auto expected = request(s.upstream_port, "GET", "127.0.0.1", "/download-sha?size=" + std::to_string(size), "", {}, 60s);
  REQUIRE(expected.status == 200);
  check_bulk_both_ways(s.http_port, s.host(), size, expected.body, scaled(30s));
}

TEST_CASE("under journald, a running grok-server writes <N> priorities and no timestamps") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  s.server->signal(SIGTERM);
  REQUIRE(s.server->wait_exit(scaled(10s)) == 0);
  // JOURNAL_STREAM names the stream stderr is, as systemd sets it.
  process p({"/bin/sh", "-c",
             "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec " + binary("grok-server") + " --config " +
                 s.config_path()});
  auto ready = p.wait_for_line(std::regex(R"(^<6>grok-server ready: http=127\.0\.0\.1:\d+)"), scaled(10s));
  CHECK(ready.has_value());
  p.signal(SIGTERM);
  CHECK(p.wait_exit(scaled(10s)) == 0);
  for (auto& l : p.lines()) {
    CAPTURE(l);
    CHECK(std::regex_search(l, std::regex(R"(^<[0-7]>)")));
    CHECK_FALSE(std::regex_search(l, std::regex(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")));
  }
}

TEST_CASE("failed Hellos are counted in grok_auth_failures_total") {
  auto api = free_port();
  stack::options o;
  o.server_section_yaml = "  api_port: " + std::to_string(api) + "\n";
  stack s(o);
  for (int i = 0; i < 3; ++i) {
    fake_client bad(s.grpc_port);
    auto answer = bad.hello("wrong-" + std::to_string(i), "x");
    REQUIRE(answer);
    REQUIRE(answer->has_refused());
  }
  auto m = request(api, "GET", "127.0.0.1", "/metrics");
  REQUIRE(m.status == 200);
  CHECK(m.body.find("\ngrok_auth_failures_total 3\n") != std::string::npos);
}

TEST_CASE("the watchdog stops pinging while the worker pool is wedged, and pings again after") {
  notify_socket notify;
  stack::options o;
  o.start_client = false;
  // A ping every 200 ms while the one worker ran a probe within the last 400 ms.
  o.server_env = {"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=400000", "GROK_WORKER_POOL_SIZE=1"};
  stack s(o);
  CHECK(notify.count_within("WATCHDOG=1", scaled(1s)) >= 2);
  // Wedge the worker: stop that one thread (ptrace), the rest of the process runs on.
  pid_t worker = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(s.server->pid()) + "/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name == "grok-worker") worker = std::stoi(e.path().filename().string());
  }
  REQUIRE(worker != 0);
  REQUIRE(ptrace(PTRACE_SEIZE, worker, nullptr, nullptr) == 0);
  REQUIRE(ptrace(PTRACE_INTERRUPT, worker, nullptr, nullptr) == 0);
  int status = 0;
  REQUIRE(waitpid(worker, &status, __WALL) == worker);
  notify.count_within("WATCHDOG=1", scaled(600ms));  // what was already on its way
  CHECK(notify.count_within("WATCHDOG=1", scaled(1500ms)) == 0);
  CHECK(ptrace(PTRACE_DETACH, worker, nullptr, nullptr) == 0);
  CHECK(notify.count_within("WATCHDOG=1", scaled(1500ms)) >= 2);
}
