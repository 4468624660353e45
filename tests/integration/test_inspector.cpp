// The request inspector with the real binaries: what the API shows of each
// exchange, replays that reach the local service again, and the memory cap.

#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <random>
#include <regex>
#include <thread>

#include "grok/file_server.hpp"
#include "harness.hpp"

using namespace grok::test;
namespace json = boost::json;

namespace {

std::string unbase64(const json::value& v) {
  auto out = grok::base64_decode(std::string_view(v.as_string()));
  REQUIRE(out.has_value());
  return *out;
}

/// `grok http` for the stack's local service with its inspector on an OS-chosen port.
struct inspected {
  std::unique_ptr<process> grok;
  uint16_t port = 0;
  std::string public_url;

  explicit inspected(stack& s, std::vector<std::string> args = {}) {
    std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", "http",
                                  std::to_string(s.upstream_port), "--server",
                                  "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token};
    if (std::find(args.begin(), args.end(), "--subdomain") == args.end()) {
      argv.push_back("--subdomain");
      argv.push_back(s.opts.name);
    }
    if (std::find(args.begin(), args.end(), "--inspect") == args.end()) {
      argv.push_back("--inspect");
      argv.push_back("127.0.0.1:0");
    }
    argv.insert(argv.end(), args.begin(), args.end());
    grok = std::make_unique<process>(argv);
    auto fwd = grok->wait_for_line(std::regex(R"(Forwarding\s+(http://\S+))"), scaled(15s));
    REQUIRE(fwd);
    public_url = (*fwd)[1];
    auto m = grok->wait_for_line(std::regex(R"(Inspector   http://127\.0\.0\.1:(\d+)$)"), scaled(5s));
    REQUIRE(m);
    port = static_cast<uint16_t>(std::stoi((*m)[1]));
  }

  response api(const std::string& method, const std::string& target, const std::string& body = "") {
    return request(port, method, "127.0.0.1:" + std::to_string(port), target, body,
                   body.empty() ? std::vector<header>{} : std::vector<header>{{"Content-Type", "application/json"}});
  }
  json::object get(const std::string& target) {
    auto r = api("GET", target);
    REQUIRE(r.status == 200);
    CHECK(r.get("Content-Type") == "application/json");
    return json::parse(r.body).as_object();
  }
  /// The list once `pred` holds for it, within `limit`.
  json::array wait_list(const std::function<bool(const json::array&)>& pred, std::chrono::milliseconds limit,
                        const std::string& query = "") {
    auto until = clock::now() + scaled(limit);
    json::array last;
    do {
      last = get("/api/requests/http" + query).at("requests").as_array();
      if (pred(last)) return last;
      std::this_thread::sleep_for(20ms);
    } while (clock::now() < until);
    FAIL("the inspector's list did not reach the expected state; it has " << last.size() << " records");
    return last;
  }
};

size_t done_count(const json::array& a) {
  return static_cast<size_t>(std::count_if(a.begin(), a.end(), [](const json::value& v) {
    return v.as_object().at("state").as_string() != "open";
  }));
}

const json::object* find_replay_of(const json::array& a, const std::string& id) {
  for (const auto& v : a) {
    const auto& o = v.as_object();
    if (o.contains("replay_of") && o.at("replay_of").as_string() == id && o.at("state").as_string() != "open") return &o;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("inspector: requests appear in the API in order, with their exact headers and bodies") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  inspected g(s, {"--inspect-max-body", "64KiB", "--inspect-max-memory", "8MiB"});
  INFO("the Inspector line comes right under the Forwarding line");
  auto lines = g.grok->lines();
  auto fwd = std::find_if(lines.begin(), lines.end(), [](auto& l) { return l.starts_with("Forwarding"); });
  REQUIRE(fwd != lines.end());
  REQUIRE(fwd + 1 != lines.end());
  CHECK((fwd + 1)->starts_with("Inspector   http://127.0.0.1:"));

  auto tunnels = g.get("/api/tunnels");
  CHECK(tunnels.at("uri").as_string() == "/api/tunnels");
  const auto& t = tunnels.at("tunnels").as_array().at(0).as_object();
  CHECK(t.at("name").as_string() == "app");
  CHECK(t.at("public_url").as_string() == g.public_url);
  CHECK(t.at("proto").as_string() == "http");
  CHECK(t.at("config").as_object().at("addr").as_string() == "http://127.0.0.1:" + std::to_string(s.upstream_port));

  std::vector<std::string> bodies;
  for (int i = 0; i < 5; ++i) {
    bodies.push_back(random_bytes(1000 + i * 7777, 100 + i));
    auto r = request(s.http_port, "POST", s.host(), "/echo?n=" + std::to_string(i), bodies.back(),
                     {{"X-Custom", "value " + std::to_string(i) + " with  spaces"}, {"X-Twice", "a"}, {"X-Twice", "b"}});
    REQUIRE(r.status == 200);
  }
  auto big = random_bytes(200 * 1024, 9);
  REQUIRE(request(s.http_port, "PUT", s.host(), "/echo?big", big).status == 200);

  auto list = g.wait_list([](const json::array& a) { return a.size() == 6 && done_count(a) == 6; }, 5s);
  INFO("newest first, as ngrok lists them: the big one, then n=4 down to n=0");
  CHECK(list[0].as_object().at("request").as_object().at("uri").as_string() == "/echo?big");
  for (int i = 0; i < 5; ++i) {
    const auto& rec = list[static_cast<size_t>(5 - i)].as_object();
    CAPTURE(i);
    CHECK(rec.at("tunnel_name").as_string() == "app");
    CHECK(rec.at("remote_addr").as_string() == "127.0.0.1");
    CHECK(rec.at("duration").to_number<int64_t>() > 0);
    const auto& req = rec.at("request").as_object();
    CHECK(req.at("method").as_string() == "POST");
    CHECK(req.at("uri").as_string() == "/echo?n=" + std::to_string(i));
    const auto& hs = req.at("headers").as_object();
    CHECK(hs.at("X-Custom").as_array().at(0).as_string() == "value " + std::to_string(i) + " with  spaces");
    REQUIRE(hs.at("X-Twice").as_array().size() == 2);
    CHECK(hs.at("X-Twice").as_array()[0].as_string() == "a");
    CHECK(hs.at("X-Twice").as_array()[1].as_string() == "b");
    CHECK(hs.at("Host").as_array().at(0).as_string() == s.host());
    CHECK(req.at("body_size").to_number<uint64_t>() == bodies[static_cast<size_t>(i)].size());
    CHECK_FALSE(req.at("body_truncated").as_bool());
    auto raw = unbase64(req.at("raw"));
    CHECK(raw.starts_with("POST /echo?n=" + std::to_string(i) + " HTTP/1.1\r\n"));
    CHECK(raw.ends_with("\r\n\r\n" + bodies[static_cast<size_t>(i)]));
    const auto& res = rec.at("response").as_object();
    CHECK(res.at("status_code").to_number<int>() == 200);
    CHECK(res.at("status").as_string() == "200 OK");
    CHECK(res.at("headers").as_object().at("X-Echo-Method").as_array().at(0).as_string() == "POST");
    CHECK(unbase64(res.at("raw")).ends_with("\r\n\r\n" + bodies[static_cast<size_t>(i)]));
    // The record alone says the same, and has each body on its own.
    auto one = g.get(std::string(rec.at("uri").as_string()));
    CHECK(one.at("id") == rec.at("id"));
    CHECK(one.at("request").as_object().at("raw") == req.at("raw"));
    CHECK(unbase64(one.at("request").as_object().at("body")) == bodies[static_cast<size_t>(i)]);
    CHECK(unbase64(one.at("response").as_object().at("body")) == bodies[static_cast<size_t>(i)]);
  }
  INFO("a body past the per-body cap keeps its first 64 KiB and says how big it was");
  const auto& bigreq = list[0].as_object().at("request").as_object();
  CHECK(bigreq.at("body_size").to_number<uint64_t>() == big.size());
  CHECK(bigreq.at("body_truncated").as_bool());
  CHECK(unbase64(g.get(std::string(list[0].as_object().at("uri").as_string())).at("request").as_object().at("body")) ==
        big.substr(0, 64 * 1024));

  auto two = g.get("/api/requests/http?limit=2").at("requests").as_array();
  REQUIRE(two.size() == 2);
  CHECK(two[0].as_object().at("id") == list[0].as_object().at("id"));
  CHECK(two[1].as_object().at("id") == list[1].as_object().at("id"));
  CHECK(g.get("/api/requests/http?tunnel_name=app").at("requests").as_array().size() == 6);
  CHECK(g.get("/api/requests/http?tunnel_name=other").at("requests").as_array().empty());
  CHECK(g.api("GET", "/api/requests/http/req_999999").status == 404);

  INFO("DELETE clears the list");
  CHECK(g.api("DELETE", "/api/requests/http").status == 204);
  CHECK(g.get("/api/requests/http").at("requests").as_array().empty());
}

TEST_CASE("inspector: Replay reaches the local service again with the same method, path, headers and body") {
  stack::options o;
  o.start_client = false;
  o.upstream_args = {"--log-requests"};
  stack s(o);
  inspected g(s);
  auto body = random_bytes(5000, 3) + "\r\n0\r\n\r\n";
  // /inspect answers with what the local service parsed: request line, every header, the body.
  auto first = request(s.http_port, "POST", s.host(), "/inspect?z=1&q=%20", body,
                       {{"X-Custom", "one"}, {"Content-Type", "application/octet-stream"}, {"X-Multi", "1"}, {"X-Multi", "2"}});
  REQUIRE(first.status == 200);
  auto list = g.wait_list([](const json::array& a) { return done_count(a) == 1; }, 5s);
  auto id = std::string(list[0].as_object().at("id").as_string());

  auto r = g.api("POST", "/api/requests/http", R"({"id":")" + id + R"("})");
  CHECK(r.status == 204);
  auto new_id = r.get("Grok-Replay-Id");
  CHECK(r.get("Location") == "/api/requests/http/" + new_id);
  list = g.wait_list([&](const json::array& a) { return find_replay_of(a, id) != nullptr; }, 5s);
  const auto& replay = *find_replay_of(list, id);
  CHECK(replay.at("id").as_string() == new_id);
  CHECK(replay.at("remote_addr").as_string() == "replay");
  CHECK(replay.at("state").as_string() == "done");
  CHECK(replay.at("response").as_object().at("status_code").to_number<int>() == 200);
  INFO("the local service parsed exactly what it parsed the first time");
  auto replayed = g.get("/api/requests/http/" + new_id);
  CHECK(unbase64(replayed.at("response").as_object().at("body")) == first.body);
  CHECK(first.body.starts_with("POST /inspect?z=1&q=%20 HTTP/1.1\n"));
  CHECK(s.upstream->wait_for_count("request POST /inspect?z=1&q=%20 ", 2, scaled(5s)));

  INFO("a replay of a request that is gone is a 404; a body that is not JSON, a 400 or 415");
  CHECK(g.api("POST", "/api/requests/http", R"({"id":"req_424242"})").status == 404);
  CHECK(g.api("POST", "/api/requests/http", "nonsense").status == 400);
  CHECK(request(g.port, "POST", "127.0.0.1", "/api/requests/http", R"({"id":")" + id + R"("})").status == 415);
}

TEST_CASE("inspector: Edit and replay sends what was edited, as a new row linked to the original") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  inspected g(s);
  REQUIRE(request(s.http_port, "POST", s.host(), "/inspect?orig=1", "original body", {{"X-Keep", "k"}}).status == 200);
  auto list = g.wait_list([](const json::array& a) { return done_count(a) == 1; }, 5s);
  auto id = std::string(list[0].as_object().at("id").as_string());
  auto edit = R"({"id":")" + id +
              R"(","method":"PUT","path":"/inspect?edited=1","headers":[["X-Edited","yes"],["Host","app.localhost"]],"body":"edited body"})";
  auto r = g.api("POST", "/api/requests/http", edit);
  REQUIRE(r.status == 204);
  list = g.wait_list([&](const json::array& a) { return find_replay_of(a, id) != nullptr; }, 5s);
  const auto& replay = *find_replay_of(list, id);
  auto full = g.get(std::string(replay.at("uri").as_string()));
  const auto& req = full.at("request").as_object();
  CHECK(req.at("method").as_string() == "PUT");
  CHECK(req.at("uri").as_string() == "/inspect?edited=1");
  CHECK(unbase64(req.at("body")) == "edited body");
  auto seen = unbase64(full.at("response").as_object().at("body"));
  CHECK(seen.starts_with("PUT /inspect?edited=1 HTTP/1.1\n"));
  CHECK(seen.find("X-Edited: yes\n") != std::string::npos);
  CHECK(seen.find("X-Keep") == std::string::npos);
  CHECK(seen.ends_with("\n\nedited body"));
  INFO("a header value with a line break is refused, not sent");
  CHECK(g.api("POST", "/api/requests/http", R"({"id":")" + id + R"(","headers":[["X-A","a\r\nX-Evil: 1"]]})").status ==
        400);
}

TEST_CASE("inspector: the memory cap holds under 10 000 requests with 100 KiB bodies") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  constexpr uint64_t cap = 16ull << 20;
  inspected g(s, {"--inspect-max-memory", "16MiB"});
  const uint64_t body_size = 100 * 1024;
  const int total = static_cast<int>(bulk_bytes(10000 * body_size) / body_size);
  REQUIRE(request(s.http_port, "GET", s.host(), "/").status == 200);
  auto baseline_kib = g.grok->rss_kib();
  const auto body = random_bytes(body_size, 5);
  std::atomic<int> next{0}, failures{0};
  std::vector<std::thread> workers;
  auto started = clock::now();
  for (int w = 0; w < 8; ++w) {
    workers.emplace_back([&] {
      for (int i = next++; i < total; i = next++) {
        if (request(s.http_port, "POST", s.host(), "/?i=" + std::to_string(i), body, {}, scaled(30s)).status != 200)
          ++failures;
      }
    });
  }
  for (auto& w : workers) w.join();
  MESSAGE(total << " requests of 100 KiB in " << std::chrono::duration<double>(clock::now() - started).count()
                << " s; grok's RSS " << baseline_kib / 1024 << " MiB before, peak " << g.grok->peak_rss_kib() / 1024
                << " MiB");
  CHECK(failures == 0);
  auto list = g.wait_list([&](const json::array& a) { return !a.empty() && done_count(a) == a.size(); }, 10s,
                          "?summary=1");
  uint64_t kept = 0;
  for (const auto& v : list) kept += v.as_object().at("request").as_object().at("body_size").to_number<uint64_t>();
  CHECK(kept <= cap);
  CHECK(list.size() >= 100);  // about 160 fit in 16 MiB
  CHECK(list.size() < 170);
  CHECK(list[0].as_object().at("seq").to_number<int>() > total - 20);  // the newest are the ones kept
  INFO("the full list (every record's raw bytes) is built within the same bound");
  CHECK(g.get("/api/requests/http").at("requests").as_array().size() >= list.size());
  MESSAGE("peak RSS after listing everything: " << g.grok->peak_rss_kib() / 1024 << " MiB");
  if (rss_caps()) CHECK(g.grok->peak_rss_kib() < baseline_kib + (cap >> 10) + 64 * 1024);
}

TEST_CASE("inspector: off-loopback needs a password, which it then asks for; --no-inspect turns it off") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  std::vector<std::string> base{binary("grok"), "--insecure", "--config", "/dev/null", "http",
                                std::to_string(s.upstream_port), "--server", "127.0.0.1:" + std::to_string(s.grpc_port),
                                "--token", s.opts.token};
  {
    auto argv = base;
    argv.insert(argv.end(), {"--inspect", "0.0.0.0:0"});
    process p(argv);
    CHECK(p.wait_exit(scaled(5s)) == 2);
    CHECK(p.wait_for_text("--inspect-auth", 1s));
  }
  {
    auto argv = base;
    argv.insert(argv.end(), {"--no-inspect", "--subdomain", "quiet"});
    process p(argv);
    REQUIRE(p.wait_for_text("Forwarding", scaled(15s)));
    REQUIRE(request(s.http_port, "GET", "quiet.localhost", "/").status == 200);
    CHECK(p.count_lines_containing("Inspector") == 0);
  }
  inspected g(s, {"--inspect-auth", "me:secret"});
  CHECK(g.api("GET", "/api/requests/http").status == 401);
  CHECK(g.api("GET", "/api/requests/http").get("WWW-Authenticate").starts_with("Basic"));
  auto ok = request(g.port, "GET", "127.0.0.1", "/api/requests/http", "", {{"Authorization", "Basic bWU6c2VjcmV0"}});
  CHECK(ok.status == 200);
  INFO("without a password, a Host that is not a local address is refused (DNS rebinding)");
  inspected open(s, {"--subdomain", "other"});
  CHECK(request(open.port, "GET", "evil.example:4040", "/api/requests/http").status == 403);
  CHECK(request(open.port, "GET", "localhost:4040", "/api/requests/http").status == 200);
  auto page = request(open.port, "GET", "127.0.0.1", "/");
  CHECK(page.status == 200);
  CHECK(page.get("Content-Type").starts_with("text/html"));
  CHECK(page.body.find("<script src=\"/app.js\">") != std::string::npos);
  CHECK(request(open.port, "GET", "127.0.0.1", "/app.js").get("Content-Type").starts_with("text/javascript"));
}

TEST_CASE("inspector: an SSE response shows its head and a live byte count; a TCP tunnel one row per connection") {
  const auto tcp_port = free_port();
  stack::options o;
  o.start_client = false;
  o.extra_server_yaml = "  tcp_port_start: " + std::to_string(tcp_port) + "\n  tcp_port_end: " + std::to_string(tcp_port) + "\n";
  stack s(o);
  {
    inspected g(s);
    connection c(s.http_port, scaled(10s));
    c.send("GET /sse?n=30&interval_ms=50 HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    INFO("while the stream runs, its row is open with status 200 and a growing byte count");
    std::vector<uint64_t> sizes;
    auto until = clock::now() + scaled(5s);
    while (clock::now() < until && sizes.size() < 2) {
      auto a = g.get("/api/requests/http?summary=1").at("requests").as_array();
      if (!a.empty()) {
        const auto& r = a[0].as_object();
        if (r.at("state").as_string() == "open" && r.at("kind").as_string() == "sse" &&
            r.at("response").as_object().at("status_code").to_number<int>() == 200) {
          auto n = r.at("response").as_object().at("body_size").to_number<uint64_t>();
          if (n > 0 && (sizes.empty() || n > sizes.back())) sizes.push_back(n);
        }
      }
      std::this_thread::sleep_for(50ms);
    }
    CHECK(sizes.size() == 2);
    auto done = g.wait_list([](const json::array& a) { return a.size() == 1 && done_count(a) == 1; }, 10s);
    CHECK(done[0].as_object().at("kind").as_string() == "sse");
  }
  auto client = std::make_unique<process>(std::vector<std::string>{
      binary("grok"), "--insecure", "--config", "/dev/null", "tcp", std::to_string(s.upstream_port), "--server",
      "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token, "--inspect", "127.0.0.1:0"});
  REQUIRE(client->wait_for_text("Forwarding  tcp://", scaled(15s)));
  auto m = client->wait_for_line(std::regex(R"(Inspector   http://127\.0\.0\.1:(\d+)$)"), scaled(5s));
  REQUIRE(m);
  auto port = static_cast<uint16_t>(std::stoi((*m)[1]));
  const std::string ask = "GET / HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n\r\n";
  for (int i = 0; i < 2; ++i) {
    connection c(tcp_port, scaled(10s));
    c.send(ask);
    CHECK(c.read_response(scaled(10s)).status == 200);
    c.wait_closed(scaled(5s));
  }
  auto until = clock::now() + scaled(5s);
  json::array a;
  do {
    auto r = request(port, "GET", "127.0.0.1", "/api/requests/http");
    REQUIRE(r.status == 200);
    a = json::parse(r.body).as_object().at("requests").as_array();
    if (a.size() == 2 && done_count(a) == 2) break;
    std::this_thread::sleep_for(20ms);
  } while (clock::now() < until);
  REQUIRE(a.size() == 2);
  for (const auto& v : a) {
    const auto& r = v.as_object();
    CHECK(r.at("kind").as_string() == "tcp");
    CHECK(r.at("request").as_object().at("method").as_string() == "TCP");
    CHECK(r.at("request").as_object().at("body_size").to_number<uint64_t>() == ask.size());
    CHECK(r.at("response").as_object().at("body_size").to_number<uint64_t>() > 0);
  }
  auto t = json::parse(request(port, "GET", "127.0.0.1", "/api/tunnels").body).as_object();
  CHECK(t.at("tunnels").as_array().at(0).as_object().at("proto").as_string() == "tcp");
  CHECK(request(port, "POST", "127.0.0.1", "/api/requests/http",
                R"({"id":")" + std::string(a[0].as_object().at("id").as_string()) + R"("})",
                {{"Content-Type", "application/json"}})
            .status == 400);  // a TCP connection cannot be replayed
}
