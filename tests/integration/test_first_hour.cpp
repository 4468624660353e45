// What a new user and a new admin meet first: URLs that survive a dropped
// stream and a server restart, a frozen session that neither holds its name
// nor hangs requests, refusals that explain themselves, and a server that
// will not share its ports or wait on a request line it cannot parse.

#include <doctest/doctest.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "harness.hpp"

using namespace grok::test;

namespace {

/// `grok http` for the stack's local service with `args` (e.g. --subdomain NAME), token `token`.
std::unique_ptr<process> start_grok(stack& s, std::vector<std::string> args, const std::string& token = "test-token") {
  std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", "http",
                                std::to_string(s.upstream_port), "--server",
                                "127.0.0.1:" + std::to_string(s.grpc_port), "--token", token};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<process>(argv);
}

/// The URL of the `n`th Forwarding line (1-based) once it is printed.
std::string nth_url(process& p, size_t n, std::chrono::milliseconds timeout) {
  if (!p.wait_for_count("Forwarding", n, timeout)) return {};
  size_t seen = 0;
  for (auto& l : p.lines()) {
    std::smatch m;
    if (std::regex_search(l, m, std::regex(R"(Forwarding\s+(http://\S+))")) && ++seen == n) return m[1];
  }
  return {};
}

/// "app" of "http://app.localhost:1234".
std::string host_of(const std::string& url) {
  auto start = url.find("://") + 3;
  auto colon = url.find(':', start);
  return url.substr(start, colon - start);
}

/// Polls `host` until it answers 200 or `limit` passes.
bool answers_200(uint16_t port, const std::string& host, std::chrono::milliseconds limit) {
  auto until = clock::now() + limit;
  do {
    if (request(port, "GET", host, "/").status == 200) return true;
    std::this_thread::sleep_for(50ms);
  } while (clock::now() < until);
  return false;
}

}  // namespace

TEST_CASE("a tunnel without --subdomain keeps its URL across a dropped stream and a server restart") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  auto grok = start_grok(s, {});
  auto first = nth_url(*grok, 1, scaled(15s));
  REQUIRE(!first.empty());
  auto host = host_of(first);
  REQUIRE(request(s.http_port, "GET", host, "/").status == 200);

  INFO("the stream's connection is killed under both ends (ss -K)");
  auto filter = "sport = :" + std::to_string(s.grpc_port) + " or dport = :" + std::to_string(s.grpc_port);
  REQUIRE(std::system(("ss -K '( " + filter + " )' >/dev/null 2>&1").c_str()) == 0);
  auto second = nth_url(*grok, 2, scaled(15s));
  CHECK(second == first);
  CHECK(answers_200(s.http_port, host, scaled(5s)));

  INFO("grok-server is killed and started again on the same ports");
  s.server->signal(SIGKILL);
  REQUIRE(s.server->wait_exit(scaled(5s)) == 128 + SIGKILL);
  s.start_server();
  auto third = nth_url(*grok, 3, scaled(20s));
  CHECK(third == first);
  CHECK(answers_200(s.http_port, host, scaled(5s)));
}

TEST_CASE("a frozen session: its requests get 502 within the heartbeat bound, and the same token takes the name over") {
  stack::options o;
  o.extra_server_yaml = "  heartbeat_interval: 1s\n  heartbeat_timeout: 1s\n";
  stack s(o);
  REQUIRE(request(s.http_port, "GET", s.host(), "/").status == 200);

  INFO("a new session with the same token takes the name from a frozen one at once");
  freeze(*s.client);
  auto start = clock::now();
  auto twin = start_grok(s, {"--subdomain", "app"});
  REQUIRE(!nth_url(*twin, 1, scaled(10s)).empty());
  CHECK(clock::now() - start < scaled(3s));  // not after the heartbeat gave up on the old one
  CHECK(s.server->wait_for_text("taking the name over", scaled(2s)));
  auto r = request(s.http_port, "GET", s.host(), "/");
  CHECK(r.status == 200);
  CHECK(r.body == "Hello from grok-demo-upstream\n");

  INFO("the old session, woken, says so and exits instead of taking it back");
  s.client->signal(SIGCONT);
  auto rc = s.client->wait_exit(scaled(10s));
  CHECK(rc == 1);
  CHECK(s.client->wait_for_text("was taken over by a new session with the same token", 1s));
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);

  INFO("a frozen session's requests get 502 once the heartbeat (1s + 1s) gives up, not after 30s");
  freeze(*twin);
  start = clock::now();
  auto frozen = request(s.http_port, "GET", s.host(), "/", "", {}, scaled(20s));
  auto took = clock::now() - start;
  CHECK(frozen.status == 502);
  CHECK(took < scaled(5s));
  twin->signal(SIGCONT);
}

TEST_CASE("a second grok-server on the same tunnel port fails with the address in use") {
  stack s;
  std::ofstream(s.dir + "/second.yaml") << "server:\n  domain: localhost\n  bind_address: 127.0.0.1\n  http_port: 0\n"
                                        << "  grpc_address: 127.0.0.1\n  grpc_port: " << s.grpc_port
                                        << "\nauth:\n  tokens: [test-token]\n";
  process second({binary("grok-server"), "--config", s.dir + "/second.yaml"});
  CHECK(second.wait_exit(scaled(10s)) == 1);
  CHECK(second.wait_for_text("cannot listen for tunnel clients on 127.0.0.1:" + std::to_string(s.grpc_port), 1s));
  CHECK(second.wait_for_text("in use", 1s));
  // The first server still has every client.
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
}

TEST_CASE("a request line the parser cannot take gets 400 at once, not 408 after the header timeout") {
  stack s;
  for (std::string line : {"GET / \r\n\r\n", "GET /\r\n\r\n", "GET / HTTP\r\n\r\n", "G\r\n\r\n"}) {
    CAPTURE(line);
    connection c(s.http_port);
    auto start = clock::now();
    c.send(line);
    auto r = c.read_response(scaled(15s));
    CHECK(r.status == 400);
    CHECK(clock::now() - start < scaled(2s));  // the header timeout is 10s
    CHECK(c.wait_closed(scaled(2s)));
  }
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
}

TEST_CASE("a TLS client against a plaintext tunnel port says once what is wrong and which flag fixes it") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  process c({binary("grok"), "--config", "/dev/null", "http", std::to_string(s.upstream_port), "--server",
             "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token});
  CHECK(c.wait_exit(scaled(15s)) == 1);
  CHECK(c.count_lines_containing("does not speak TLS on its tunnel port") == 1);
  CHECK(c.count_lines_containing("add --insecure") == 1);
  CHECK(c.count_lines_containing("tunnel lost") == 0);  // no loop of retries
  CHECK(c.count_lines_containing(".cc:") == 0);         // gRPC's own lines stay at debug, without source paths
}

TEST_CASE("the client's settings: no server is an error that says how to set one; a missing --config file is an error") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  auto home = s.dir + "/home";
  std::filesystem::create_directories(home);
  {
    process c({binary("grok"), "http", "3000"}, {"HOME=" + home, "XDG_CONFIG_HOME=", "GROK_SERVER=", "GROK_TOKEN="});
    CHECK(c.wait_exit(scaled(5s)) == 2);
    CHECK(c.wait_for_text("no grok-server address set", 1s));
    CHECK(c.wait_for_text("grok config set-server HOST:PORT", 1s));
  }
  {
    process c({binary("grok"), "--config", s.dir + "/missing.yaml", "http", "3000", "--server", "127.0.0.1:1"});
    CHECK(c.wait_exit(scaled(5s)) == 2);
    CHECK(c.wait_for_text(s.dir + "/missing.yaml: cannot read: No such file or directory", 1s));
  }
  {
    INFO("GROK_SERVER and GROK_TOKEN come from the environment, so the token stays out of ps");
    process c({binary("grok"), "--insecure", "http", std::to_string(s.upstream_port), "--subdomain", "fromenv"},
              {"HOME=" + home, "XDG_CONFIG_HOME=", "GROK_SERVER=127.0.0.1:" + std::to_string(s.grpc_port),
               "GROK_TOKEN=" + s.opts.token});
    CHECK(c.wait_for_line(std::regex(R"(Forwarding\s+http://fromenv\.)"), scaled(15s)).has_value());
    CHECK(request(s.http_port, "GET", "fromenv.localhost", "/").status == 200);
    c.signal(SIGINT);
    CHECK(c.wait_exit(scaled(5s)) == 0);
  }
  {
    INFO("insecure and the server can be saved in the client config");
    std::ofstream(s.dir + "/client.yaml") << "server: 127.0.0.1:" << s.grpc_port << "\ntoken: " << s.opts.token
                                          << "\ninsecure: true\n";
    process c({binary("grok"), "--config", s.dir + "/client.yaml", "http", std::to_string(s.upstream_port),
               "--subdomain", "fromfile"});
    CHECK(c.wait_for_line(std::regex(R"(Forwarding\s+http://fromfile\.)"), scaled(15s)).has_value());
    c.signal(SIGINT);
    CHECK(c.wait_exit(scaled(5s)) == 0);
  }
  {
    process c({binary("grok"), "htpp", "3000"});
    CHECK(c.wait_exit(scaled(5s)) == 2);
    CHECK(c.wait_for_text("unknown command 'htpp'; the commands are: http, tcp, serve, start, config", 1s));
  }
}

TEST_CASE("each console line carries the time and the visitor's address") {
  stack s;
  REQUIRE(request(s.http_port, "GET", s.host(), "/?x=1").status == 200);
  auto m = s.client->wait_for_line(std::regex(R"(^(\d\d:\d\d:\d\d)  127\.0\.0\.1  GET /\?x=1  200  \d+ms  )"),
                                   scaled(5s));
  CHECK(m.has_value());
}

TEST_CASE("grok-server refuses unsafe settings at start and in --check-config, naming the key") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  auto check = [&](const std::string& yaml, bool start) {
    auto path = s.dir + "/unsafe.yaml";
    std::ofstream(path) << yaml;
    std::vector<std::string> argv{binary("grok-server"), "--config", path};
    if (!start) argv.push_back("--check-config");
    auto p = std::make_unique<process>(argv);
    p->wait_exit(scaled(10s));
    return p;
  };
  const std::string listen = "server:\n  http_port: 0\n  grpc_port: 0\n";
  for (bool start : {false, true}) {
    CAPTURE(start);
    auto empty = check("", start);
    CHECK(empty->wait_exit(0ms) == 1);
    CHECK(empty->wait_for_text("auth: no tokens are set", 1s));
    auto placeholder = check(listen + "auth:\n  tokens: [change-me]\n", start);
    CHECK(placeholder->wait_exit(0ms) == 1);
    CHECK(placeholder->wait_for_text("auth.tokens: 'change-me' is the example configuration's placeholder", 1s));
  }
  auto open_admin = check(listen + "  api_address: 0.0.0.0\n  api_port: 9\nauth:\n  tokens: [t1]\n", false);
  CHECK(open_admin->wait_exit(0ms) == 1);
  CHECK(open_admin->wait_for_text("server.api_address: the admin endpoint on 0.0.0.0 is reachable", 1s));
  auto plaintext = check("server:\n  grpc_address: 0.0.0.0\nauth:\n  tokens: [t1]\n", false);
  CHECK(plaintext->wait_exit(0ms) == 0);
  CHECK(plaintext->wait_for_text("warning: the tunnel port 0.0.0.0:4443 is plaintext on a non-loopback address", 1s));
  // Anonymous on purpose: it starts, and says what that means.
  std::ofstream(s.dir + "/anon.yaml") << listen << "  bind_address: 127.0.0.1\n  grpc_address: 127.0.0.1\n"
                                      << "auth:\n  allow_anonymous: true\n";
  process anon({binary("grok-server"), "--config", s.dir + "/anon.yaml"});
  CHECK(anon.wait_for_text("grok-server ready", scaled(10s)));
  CHECK(anon.wait_for_text("auth.allow_anonymous: anyone who reaches the tunnel port can open tunnels", 1s));
}

TEST_CASE("server.api_token guards /metrics and /api/*; health checks stay open") {
  auto api = free_port();
  stack::options o;
  o.server_section_yaml = "  api_port: " + std::to_string(api) + "\n  api_token: admin-s3cret\n";
  stack s(o);
  auto metrics = request(api, "GET", "127.0.0.1", "/metrics");
  CHECK(metrics.status == 401);
  CHECK(metrics.get("WWW-Authenticate") == "Bearer");
  CHECK(request(api, "GET", "127.0.0.1", "/api/tunnels", "", {{"Authorization", "Bearer wrong"}}).status == 401);
  CHECK(request(api, "GET", "127.0.0.1", "/metrics", "", {{"Authorization", "Bearer admin-s3cret"}}).status == 200);
  auto tunnels = request(api, "GET", "127.0.0.1", "/api/tunnels", "", {{"Authorization", "Bearer admin-s3cret"}});
  CHECK(tunnels.status == 200);
  CHECK(tunnels.body.find("\"name\":\"app\"") != std::string::npos);
  CHECK(request(api, "GET", "127.0.0.1", "/healthz").status == 200);
  CHECK(request(api, "GET", "127.0.0.1", "/readyz").status == 200);
}

TEST_CASE("metrics an operator can rely on: cut responses, TCP connections, build and process, bounded series") {
  auto api = free_port();
  auto tcp_port = free_port();
  stack::options o;
  o.server_section_yaml = "  api_port: " + std::to_string(api) + "\n";
  o.extra_server_yaml = "  name_grace: 1s\n  tcp_port_start: " + std::to_string(tcp_port) +
                        "\n  tcp_port_end: " + std::to_string(tcp_port) + "\n";
  stack s(o);
  REQUIRE(request(s.http_port, "GET", s.host(), "/").status == 200);

  INFO("a download the public client drops after its head is counted and logged as cut");
  {
    connection c(s.http_port);
    c.send("GET /download?size=268435456 HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    REQUIRE(!c.read_some(scaled(5s)).empty());
  }
  CHECK(s.server->wait_for_text("\"GET /download?size=268435456\" cut in=0B", scaled(10s)));

  INFO("a TCP tunnel's connection is counted as a connection, not as HTTP status 0");
  process tcp({binary("grok"), "--insecure", "--config", "/dev/null", "tcp", std::to_string(s.upstream_port), "--server",
               "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token});
  auto m = tcp.wait_for_line(std::regex(R"(Forwarding\s+tcp://\S+:(\d+))"), scaled(15s));
  REQUIRE(m);
  {
    connection c(static_cast<uint16_t>(std::stoi((*m)[1])));
    c.send("GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    CHECK(c.read_response(scaled(5s)).status == 200);
  }
  CHECK(s.server->wait_for_text(" tcp remote=", scaled(5s)));
  std::string tcp_name;
  for (auto& l : s.server->lines()) {
    std::smatch t;
    if (std::regex_search(l, t, std::regex(R"(tunnel=(\S+) tcp remote=)"))) tcp_name = t[1];
  }
  auto text = metrics_text(api);
  CHECK(sample(text, R"(grok_exchanges_total{tunnel="app",status="200"})") == 1);
  CHECK(sample(text, R"(grok_exchanges_total{tunnel="app",status="cut"})") == 1);
  CHECK(sample(text, R"(grok_tcp_connections_total{tunnel=")" + tcp_name + R"("})") == 1);
  CHECK(text.find("status=\"0\"") == std::string::npos);
  CHECK(sample(text, R"(grok_build_info{version="0.1.0"})") == 1);
  CHECK(sample(text, "process_resident_memory_bytes") > 1 << 20);
  CHECK(sample(text, "process_open_fds") > 3);
  CHECK(sample(text, "process_cpu_seconds_total") >= 0);
  CHECK(sample(text, "process_start_time_seconds") > 1.7e9);

  INFO("per-tunnel series leave once the tunnel's name_grace (1s) has ended");
  s.stop_client();
  tcp.signal(SIGINT);
  REQUIRE(tcp.wait_exit(scaled(5s)) == 0);
  auto until = clock::now() + scaled(10s);
  do {
    text = metrics_text(api);
    // The TCP tunnel stopped a little later, so its grace ends a little later too.
    if (text.find("tunnel=\"app\"") == std::string::npos && text.find("tunnel=\"" + tcp_name + "\"") == std::string::npos)
      break;
    std::this_thread::sleep_for(100ms);
  } while (clock::now() < until);
  CHECK(text.find("tunnel=\"app\"") == std::string::npos);
  CHECK(text.find("tunnel=\"" + tcp_name + "\"") == std::string::npos);
}

TEST_CASE("with logging.format json, the access line's fields are JSON keys") {
  stack::options o;
  o.log_format = "json";
  stack s(o);
  REQUIRE(request(s.http_port, "GET", s.host(), "/status?code=404").status == 404);
  auto line = s.server->wait_for_line(std::regex(R"(^\{.*"msg":"tunnel=app .*"tunnel":"app".*\}$)"), scaled(5s));
  REQUIRE(line);
  auto l = line->str();
  CHECK(l.find(R"("method":"GET")") != std::string::npos);
  CHECK(l.find(R"("path":"/status?code=404")") != std::string::npos);
  CHECK(l.find(R"("status":404)") != std::string::npos);
  CHECK(l.find(R"("outcome":"complete")") != std::string::npos);
  CHECK(l.find(R"("remote":"127.0.0.1")") != std::string::npos);
  CHECK(std::regex_search(l, std::regex(R"("bytes_out":\d+,"duration_ms":\d+\})")));
}

TEST_CASE("a server gone silent (not closed) is noticed by the client's heartbeat within 10 s") {
  stack s;
  REQUIRE(request(s.http_port, "GET", s.host(), "/").status == 200);
  auto lost_before = s.client->count_lines_containing("tunnel lost");
  freeze(*s.server);  // its sockets stay open; it just stops answering
  auto start = clock::now();
  CHECK(s.client->wait_for_count("tunnel lost", lost_before + 1, scaled(15s)));
  auto took = clock::now() - start;
  s.server->signal(SIGCONT);
  CHECK(took < scaled(11s));  // the client's default heartbeat: a ping every 5 s, 5 s to answer
  // Woken up, the server has the client back.
  CHECK(s.client->wait_for_count("Forwarding", 2, scaled(20s)));
  CHECK(answers_200(s.http_port, s.host(), scaled(5s)));
}

TEST_CASE("the client's heartbeat is set in its config: 1s + 1s notices a silent server within about 2 s") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  std::ofstream(s.dir + "/client.yaml") << "server: 127.0.0.1:" << s.grpc_port << "\ntoken: " << s.opts.token
                                        << "\ninsecure: true\nheartbeat_interval: 1s\nheartbeat_timeout: 1s\n";
  process c({binary("grok"), "--config", s.dir + "/client.yaml", "http", std::to_string(s.upstream_port),
             "--subdomain", "beat"});
  REQUIRE(c.wait_for_line(std::regex(R"(Forwarding\s+http://beat\.)"), scaled(15s)));
  // Pings every second are within what the server allows: no GOAWAY for too many pings
  // in six seconds of real time (the harness scales its waits, so the window is unscaled).
  CHECK_FALSE(c.wait_for_text("tunnel lost", std::chrono::milliseconds(static_cast<int>(6000 / time_factor()))));
  freeze(*s.server);
  auto start = clock::now();
  CHECK(c.wait_for_text("tunnel lost", scaled(10s)));
  auto took = clock::now() - start;
  s.server->signal(SIGCONT);
  CHECK(took < scaled(4s));  // not the default 5 s + 5 s
  c.signal(SIGINT);
  CHECK(c.wait_exit(scaled(5s)) == 0);
}
