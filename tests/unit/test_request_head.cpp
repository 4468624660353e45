#include <doctest/doctest.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <string>
#include <vector>

#include "grok/host.hpp"
#include "grok/http_rules.hpp"
#include "grok/request_head.hpp"

namespace http = boost::beast::http;

namespace {

struct parsed {
  bool ok = false;
  grok::request_head_result result;
};

/// Parses `raw` the way the server does (header only, Beast's rules) and runs
/// build_request_head on it.
parsed run(const std::string& raw, grok::request_context ctx = {}) {
  http::request_parser<http::empty_body> p;
  p.header_limit(16 * 1024);
  p.body_limit(boost::none);  // as the server with max_body_size 0
  boost::system::error_code ec;
  p.put(boost::asio::buffer(raw), ec);
  parsed out;
  if (ec || !p.is_header_done()) return out;
  grok::request_framing framing;
  framing.chunked = p.chunked();
  framing.content_length = p.content_length();
  framing.done = p.is_done();
  if (ctx.remote_ip.empty()) ctx.remote_ip = "203.0.113.9";
  out.ok = true;
  out.result = grok::build_request_head(p.get(), framing, ctx);
  return out;
}

std::vector<std::string> values(const grok::request_head_result& r, const std::string& name) {
  std::vector<std::string> v;
  for (const auto& h : r.ok.frame.request_head().headers())
    if (grok::iequals(h.name(), name)) v.push_back(h.value());
  return v;
}

unsigned status_of(const std::string& raw) {
  auto p = run(raw);
  REQUIRE(p.ok);
  return p.result.error ? p.result.error->status : 0;
}

}  // namespace

TEST_CASE("request head: a plain GET becomes a RequestHead frame") {
  auto p = run("GET /a?b=1 HTTP/1.1\r\nHost: App.Example.com:8080\r\nAccept: */*\r\n\r\n");
  REQUIRE(p.ok);
  REQUIRE_FALSE(p.result.error);
  const auto& ok = p.result.ok;
  CHECK(ok.host == "app.example.com");
  CHECK(ok.target == "/a?b=1");
  CHECK(ok.req_done);
  const auto& h = ok.frame.request_head();
  CHECK(h.method() == "GET");
  CHECK(h.target() == "/a?b=1");
  CHECK(h.http_version() == 11);
  CHECK(h.content_length() == 0);
  CHECK(h.end_stream());
  CHECK(h.remote_addr() == "203.0.113.9");
  CHECK(ok.frame.exchange_id() == 0);
  CHECK(values(p.result, "host") == std::vector<std::string>{"App.Example.com:8080"});
  CHECK(values(p.result, "accept") == std::vector<std::string>{"*/*"});
  CHECK(values(p.result, "x-forwarded-for") == std::vector<std::string>{"203.0.113.9"});
  CHECK(values(p.result, "x-forwarded-proto") == std::vector<std::string>{"http"});
  CHECK(values(p.result, "x-forwarded-host") == std::vector<std::string>{"App.Example.com:8080"});
}

TEST_CASE("request head: Host rules") {
  CHECK(status_of("GET / HTTP/1.1\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost:\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n") == 400);
  CHECK(status_of("GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n") == 400);
  CHECK(status_of("GET http://u@a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n") == 400);
  auto p = run("GET http://A.test:80?q HTTP/1.1\r\nHost: a.test:80\r\n\r\n");
  REQUIRE(p.ok);
  REQUIRE_FALSE(p.result.error);
  CHECK(p.result.ok.target == "/?q");
  CHECK(p.result.ok.frame.request_head().target() == "/?q");
}

TEST_CASE("request head: framing rules") {
  CHECK(status_of("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n") == 501);
  CHECK(status_of("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") == 501);
  CHECK(status_of("POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
  // Beast itself rejects TE + CL; the rule stays in case it ever stops.
  auto both = run("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
  CHECK((!both.ok || (both.result.error && both.result.error->status == 400)));

  auto chunked = run("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
  REQUIRE(chunked.ok);
  REQUIRE_FALSE(chunked.result.error);
  CHECK(chunked.result.ok.frame.request_head().content_length() == -1);
  CHECK_FALSE(chunked.result.ok.req_done);
  CHECK(values(chunked.result, "transfer-encoding").empty());

  auto cl = run("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  REQUIRE(cl.ok);
  REQUIRE_FALSE(cl.result.error);
  CHECK(cl.result.ok.frame.request_head().content_length() == 5);
  CHECK_FALSE(cl.result.ok.frame.request_head().end_stream());
  CHECK(cl.result.ok.expect_continue);
  CHECK(values(cl.result, "content-length").empty());
  CHECK(values(cl.result, "expect").empty());

  // Beast takes any length that fits 64 bits unsigned; the tunnel carries a signed one.
  CHECK(status_of("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 9999999999999999999\r\n\r\n") == 413);
  CHECK(status_of("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 9223372036854775807\r\n\r\n") == 0);
}

TEST_CASE("request head: hop-by-hop headers and those named in Connection are stripped") {
  auto p = run(
      "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, X-Secret\r\nUpgrade: websocket\r\n"
      "X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\nX-Keep: yes\r\n\r\n");
  REQUIRE(p.ok);
  REQUIRE_FALSE(p.result.error);
  CHECK(p.result.ok.upgrade == "websocket");
  CHECK(p.result.ok.frame.request_head().upgrade() == "websocket");
  for (const char* n : {"connection", "upgrade", "x-secret", "keep-alive", "te", "proxy-authorization"}) {
    CAPTURE(n);
    CHECK(values(p.result, n).empty());
  }
  CHECK(values(p.result, "x-keep") == std::vector<std::string>{"yes"});
}

TEST_CASE("request head: every Connection field counts, and none can remove Host") {
  // Found by fuzz_request_head: "Connection: host" dropped the Host the
  // request was routed on, and only the first Connection field was read.
  auto p = run(
      "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close, host\r\nConnection: X-Secret\r\n"
      "Connection: upgrade\r\nUpgrade: websocket\r\nX-Secret: 1\r\n\r\n");
  REQUIRE(p.ok);
  REQUIRE_FALSE(p.result.error);
  CHECK(values(p.result, "host") == std::vector<std::string>{"a.test"});
  CHECK(values(p.result, "x-secret").empty());
  CHECK(p.result.ok.upgrade == "websocket");
}

TEST_CASE("request head: header count limit") {
  std::string raw = "GET / HTTP/1.1\r\nHost: a.test\r\n";
  for (int i = 0; i < 9; ++i) raw += "X-H" + std::to_string(i) + ": v\r\n";
  grok::request_context ctx;
  ctx.max_header_count = 10;
  auto ok = run(raw + "\r\n", ctx);  // exactly 10 fields
  REQUIRE(ok.ok);
  CHECK_FALSE(ok.result.error);
  auto over = run(raw + "X-H9: v\r\n\r\n", ctx);
  REQUIRE(over.ok);
  REQUIRE(over.result.error);
  CHECK(over.result.error->status == 431);
  CHECK(over.result.error->close);
}

TEST_CASE("request head: forwarding headers from untrusted and trusted peers") {
  const std::string raw =
      "GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 198.51.100.1, 10.0.0.5\r\nX-Forwarded-For: 10.0.0.6\r\n"
      "X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\nForwarded: for=198.51.100.1\r\n"
      "X-Real-IP: 198.51.100.1\r\n\r\n";
  std::vector<grok::ip_network> trusted = {*grok::parse_ip_network("10.0.0.0/8"),
                                           *grok::parse_ip_network("2001:db8::/32")};
  grok::request_context ctx;
  ctx.trusted_proxies = &trusted;

  ctx.remote_ip = "192.0.2.7";  // not in the list
  auto u = run(raw, ctx);
  REQUIRE(u.ok);
  REQUIRE_FALSE(u.result.error);
  CHECK(values(u.result, "x-forwarded-for") == std::vector<std::string>{"192.0.2.7"});
  CHECK(values(u.result, "x-forwarded-proto") == std::vector<std::string>{"http"});
  CHECK(values(u.result, "x-forwarded-host") == std::vector<std::string>{"a.test"});
  CHECK(values(u.result, "forwarded").empty());
  CHECK(values(u.result, "x-real-ip").empty());

  ctx.remote_ip = "10.1.2.3";
  auto t = run(raw, ctx);
  REQUIRE(t.ok);
  REQUIRE_FALSE(t.result.error);
  CHECK(values(t.result, "x-forwarded-for") ==
        std::vector<std::string>{"198.51.100.1, 10.0.0.5, 10.0.0.6, 10.1.2.3"});
  CHECK(values(t.result, "x-forwarded-proto") == std::vector<std::string>{"https"});
  CHECK(values(t.result, "x-forwarded-host") == std::vector<std::string>{"public.example"});
  CHECK(values(t.result, "forwarded") == std::vector<std::string>{"for=198.51.100.1"});
  CHECK(values(t.result, "x-real-ip") == std::vector<std::string>{"198.51.100.1"});

  // A trusted proxy that sent none of them still gets ours.
  ctx.remote_ip = "2001:db8::1";
  ctx.tls = true;
  auto bare = run("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", ctx);
  REQUIRE(bare.ok);
  CHECK(values(bare.result, "x-forwarded-for") == std::vector<std::string>{"2001:db8::1"});
  CHECK(values(bare.result, "x-forwarded-proto") == std::vector<std::string>{"https"});
  CHECK(values(bare.result, "x-forwarded-host") == std::vector<std::string>{"a.test"});

  // No list: nobody is trusted.
  ctx.trusted_proxies = nullptr;
  ctx.remote_ip = "10.1.2.3";
  auto none = run(raw, ctx);
  REQUIRE(none.ok);
  CHECK(values(none.result, "x-forwarded-for") == std::vector<std::string>{"10.1.2.3"});
  CHECK(values(none.result, "x-real-ip").empty());
}
