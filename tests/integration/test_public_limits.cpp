// Public-side limits and forwarding rules seen from a real public client:
// header count, trusted proxies, connections per source IP.

#include <doctest/doctest.h>

#include <cctype>
#include <memory>
#include <stdexcept>
#include <vector>

#include "harness.hpp"

using namespace grok::test;

namespace {

/// The lines of /headers (what the local service received) named `name`, case-insensitive.
std::vector<std::string> seen(const std::string& listing, const std::string& name) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < listing.size()) {
    auto nl = listing.find('\n', pos);
    auto line = listing.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? listing.size() : nl + 1;
    auto colon = line.find(": ");
    if (colon == std::string::npos || colon != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size(); ++i)
      same = same && std::tolower(static_cast<unsigned char>(line[i])) == std::tolower(static_cast<unsigned char>(name[i]));
    if (same) out.push_back(line.substr(colon + 2));
  }
  return out;
}

}  // namespace

TEST_CASE("public limits: more header fields than server.max_header_count -> 431 and close") {
  stack::options o;
  o.server_section_yaml = "  max_header_count: 20\n";
  stack s(o);

  auto with_fields = [&](int extra) {
    std::string req = "GET /headers HTTP/1.1\r\nHost: " + s.host() + "\r\n";
    for (int i = 0; i < extra; ++i) req += "X-F" + std::to_string(i) + ": v\r\n";
    return req + "\r\n";
  };
  {
    connection c(s.http_port);
    c.send(with_fields(19));  // Host + 19 = 20 fields: allowed
    auto r = c.read_response(10s);
    CHECK(r.status == 200);
    CHECK(seen(r.body, "X-F18") == std::vector<std::string>{"v"});
  }
  {
    connection c(s.http_port);
    c.send(with_fields(20));
    auto r = c.read_response(10s);
    CHECK(r.status == 431);
    CHECK(r.get("Connection") == "close");
    CHECK(c.wait_closed(5s));
  }
}

TEST_CASE("public limits: X-Forwarded-* from a trusted proxy are kept, from anyone else replaced") {
  const std::vector<header> forwarded = {{"X-Forwarded-For", "198.51.100.1, 10.0.0.5"},
                                         {"X-Forwarded-Proto", "https"},
                                         {"X-Forwarded-Host", "public.example"},
                                         {"Forwarded", "for=198.51.100.1;proto=https"},
                                         {"X-Real-IP", "198.51.100.1"}};
  SUBCASE("trusted: 127.0.0.1 is in the list") {
    stack::options o;
    o.server_section_yaml = "  trusted_proxies:\n    - 10.0.0.0/8\n    - 127.0.0.1\n";
    stack s(o);
    auto r = request(s.http_port, "GET", s.host(), "/headers", "", forwarded);
    REQUIRE(r.status == 200);
    CHECK(seen(r.body, "X-Forwarded-For") == std::vector<std::string>{"198.51.100.1, 10.0.0.5, 127.0.0.1"});
    CHECK(seen(r.body, "X-Forwarded-Proto") == std::vector<std::string>{"https"});
    CHECK(seen(r.body, "X-Forwarded-Host") == std::vector<std::string>{"public.example"});
    CHECK(seen(r.body, "Forwarded") == std::vector<std::string>{"for=198.51.100.1;proto=https"});
    CHECK(seen(r.body, "X-Real-IP") == std::vector<std::string>{"198.51.100.1"});
  }
  SUBCASE("untrusted: the list does not hold 127.0.0.1") {
    stack::options o;
    o.server_section_yaml = "  trusted_proxies: [10.0.0.0/8, \"::1\"]\n";
    stack s(o);
    auto r = request(s.http_port, "GET", s.host(), "/headers", "", forwarded);
    REQUIRE(r.status == 200);
    CHECK(seen(r.body, "X-Forwarded-For") == std::vector<std::string>{"127.0.0.1"});
    CHECK(seen(r.body, "X-Forwarded-Proto") == std::vector<std::string>{"http"});
    CHECK(seen(r.body, "X-Forwarded-Host") == std::vector<std::string>{s.host()});
    CHECK(seen(r.body, "Forwarded").empty());
    CHECK(seen(r.body, "X-Real-IP").empty());
  }
}

TEST_CASE("public limits: server.max_connections_per_ip closes the N+1th connection") {
  constexpr int limit = 3;
  stack::options o;
  auto api_port = free_port();
  o.server_section_yaml =
      "  max_connections_per_ip: " + std::to_string(limit) + "\n  api_port: " + std::to_string(api_port) + "\n";
  stack s(o);
  auto get = [&](connection& c) {
    c.send("GET / HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    return c.read_response(10s).status;
  };

  std::vector<std::unique_ptr<connection>> open;
  for (int i = 0; i < limit; ++i) {
    open.push_back(std::make_unique<connection>(s.http_port));
    CHECK(get(*open.back()) == 200);  // accepted and served before the next one opens
  }
  {
    connection extra(s.http_port);
    CHECK(extra.wait_closed(5s));
  }
  for (auto& c : open) CHECK(get(*c) == 200);  // the first N keep working

  // Closing one frees its slot once the server has seen the close.
  open.pop_back();
  bool served = false;
  for (auto deadline = clock::now() + 10s; !served && clock::now() < deadline;) {
    try {
      connection c(s.http_port);
      c.send("GET / HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
      served = c.read_response(5s).status == 200;
    } catch (const std::exception&) {
      // Closed at accept: the server has not seen the close of the freed one yet.
    }
    if (!served) std::this_thread::sleep_for(50ms);  // retry pause, bounded by the deadline
  }
  CHECK(served);

  // The admin endpoint is another listener: not counted, and it reports the refusal.
  auto m = request(api_port, "GET", "127.0.0.1", "/metrics");
  REQUIRE(m.status == 200);
  auto at = m.body.find("\ngrok_public_connections_refused_total ");
  REQUIRE(at != std::string::npos);
  CHECK(std::stoull(m.body.substr(at + 39)) >= 1);
}
