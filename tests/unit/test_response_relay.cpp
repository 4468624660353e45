#include <doctest/doctest.h>

#include <chrono>
#include <deque>
#include <memory>
#include <thread>
#include <string>

#include "grok/response_relay.hpp"

namespace pb = grok::pb;
using grok::response_relay;
using kind = response_relay::step::kind;

namespace {

response_relay::params params(unsigned version = 11) {
  response_relay::params p;
  p.id = 5;
  p.version = version;
  p.initial_window = 1000;
  return p;
}

pb::Frame head(unsigned status, int64_t content_length, bool end = false) {
  pb::Frame f;
  f.set_exchange_id(5);
  auto* h = f.mutable_response_head();
  h->set_status(status);
  h->set_content_length(content_length);
  h->set_end_stream(end);
  auto* hd = h->add_headers();
  hd->set_name("Content-Type");
  hd->set_value("text/plain");
  return f;
}

pb::Frame data(std::string payload, bool end = false) {
  pb::Frame f;
  f.set_exchange_id(5);
  f.mutable_data()->set_payload(std::move(payload));
  f.mutable_data()->set_end_stream(end);
  return f;
}

std::string wire(std::deque<grok::out_piece>& out) {
  std::string s;
  for (auto& p : out) s += p.head + p.body + std::string(p.tail);
  out.clear();
  return s;
}

}  // namespace

TEST_CASE("exchange relay: a Content-Length response is relayed as is") {
  response_relay r(params());
  std::deque<grok::out_piece> out;
  auto h = head(200, 5);
  auto st = r.on_frame(5, h, out);
  CHECK(st.what == kind::progress);
  CHECK(st.head);
  CHECK_FALSE(st.response_end);
  auto d = data("hello", true);
  st = r.on_frame(5, d, out);
  CHECK(st.response_end);
  CHECK(r.buffered_bytes() == 5);
  CHECK(wire(out) == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(r.on_written(5) == 0);  // credit goes back in quarter windows (250 here)
}

TEST_CASE("exchange relay: unknown length is chunked for HTTP/1.1 and close-delimited for HTTP/1.0") {
  {
    response_relay r(params());
    std::deque<grok::out_piece> out;
    auto h = head(200, -1);
    auto d1 = data(std::string(26, 'a'));
    auto d2 = data("", true);
    r.on_frame(5, h, out);
    r.on_frame(5, d1, out);
    r.on_frame(5, d2, out);
    CHECK(r.response_end());
    CHECK(wire(out) == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n" +
                           std::string(26, 'a') + "\r\n0\r\n\r\n");
  }
  {
    response_relay r(params(10));
    std::deque<grok::out_piece> out;
    auto h = head(200, -1);
    r.on_frame(5, h, out);
    CHECK_FALSE(r.keep_alive());
    CHECK(wire(out) == "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n");
  }
}

TEST_CASE("exchange relay: what a tunnel client must not do") {
  std::deque<grok::out_piece> out;
  SUBCASE("header injection") {
    response_relay r(params());
    auto h = head(200, 0);
    auto* hd = h.mutable_response_head()->add_headers();
    hd->set_name("X-A");
    hd->set_value("1\r\nSet-Cookie: evil=1");
    auto st = r.on_frame(5, h, out);
    CHECK(st.what == kind::protocol_error);
    CHECK(out.empty());
    CHECK(r.closed());
  }
  SUBCASE("a status outside 100..599, or an interim one") {
    for (unsigned s : {0u, 99u, 600u, 100u, 103u}) {
      response_relay r(params());
      auto h = head(s, 0);
      CHECK(r.on_frame(5, h, out).what == kind::protocol_error);
    }
  }
  SUBCASE("overrunning the window") {
    response_relay r(params());
    auto h = head(200, -1);
    auto d1 = data(std::string(600, 'x'));
    auto d2 = data(std::string(401, 'x'));
    r.on_frame(5, h, out);
    CHECK(r.on_frame(5, d1, out).what == kind::progress);
    CHECK(r.on_frame(5, d2, out).what == kind::protocol_error);
  }
  SUBCASE("more or less body than Content-Length") {
    response_relay r(params());
    auto h = head(200, 3);
    auto d = data("abcd");
    r.on_frame(5, h, out);
    CHECK(r.on_frame(5, d, out).what == kind::protocol_error);
    response_relay r2(params());
    auto h2 = head(200, 3);
    auto d2 = data("ab", true);
    r2.on_frame(5, h2, out);
    CHECK(r2.on_frame(5, d2, out).what == kind::protocol_error);
  }
  SUBCASE("a head that ends the response while promising a body") {
    // Found by fuzz_exchange: relayed as is, the next response on the
    // connection would have been read as this one's body.
    response_relay r(params());
    auto h = head(200, 16777215, true);
    CHECK(r.on_frame(5, h, out).what == kind::protocol_error);
    CHECK(out.empty());
    response_relay ok(params());
    auto h0 = head(200, 0, true);
    CHECK(ok.on_frame(5, h0, out).response_end);
  }
  SUBCASE("credit beyond 2^31") {
    response_relay r(params());
    r.opened(100, 0);
    pb::Frame w;
    w.mutable_window_update()->set_increment(0x80000000u);
    CHECK(r.on_frame(5, w, out).what == kind::protocol_error);
  }
}

TEST_CASE("exchange relay: other ids and closed exchanges are ignored") {
  response_relay r(params());
  std::deque<grok::out_piece> out;
  auto h = head(200, 0, true);
  CHECK(r.on_frame(6, h, out).what == kind::ignored);
  CHECK(out.empty());
  r.close();
  CHECK(r.on_frame(5, h, out).what == kind::ignored);
  CHECK(out.empty());
}

TEST_CASE("exchange relay: credit returns in quarter windows") {
  response_relay r(params());
  std::deque<grok::out_piece> out;
  auto h = head(200, -1);
  auto d = data(std::string(300, 'x'));
  r.on_frame(5, h, out);
  r.on_frame(5, d, out);
  CHECK(r.on_written(200) == 0);
  CHECK(r.on_written(100) == 300);
  CHECK(r.buffered_bytes() == 0);
}

TEST_CASE("exchange relay: the tunnel's response window, given when it opens, replaces the session's own") {
  std::deque<grok::out_piece> out;
  auto h = head(200, -1);
  // A tunnel whose client was given 4 KiB (another node, or a window from before a reload).
  auto session_window = params();
  session_window.initial_window = 1 << 20;
  response_relay small(session_window);
  small.opened(100, 4096);
  CHECK(small.window() == 4096);
  small.on_frame(5, h, out);
  auto d = data(std::string(1024, 'x'));
  small.on_frame(5, d, out);
  CHECK(small.on_written(1024) == 1024);  // a quarter of its 4 KiB: credit returns, where 1 MiB would wait
  // One whose client was given 64 KiB may send all of it ahead.
  response_relay big(params());
  big.opened(100, 65536);
  big.on_frame(5, h, out);
  auto d64 = data(std::string(65536, 'y'));
  CHECK(big.on_frame(5, d64, out).what == kind::progress);
  // 0 keeps the session's own.
  response_relay same(params());
  same.opened(100, 0);
  CHECK(same.window() == params().initial_window);
}

TEST_CASE("exchange relay: the response window grows out of the tunnel's budget, before and after opened()") {
  // The tunnel client sends a window's worth at once and the public client takes it at
  // once; then the relay waits for the next bytes: the window, not the reader, holds it back.
  auto run = [](bool reopen, std::shared_ptr<grok::window_budget> growth) {
    auto p = params();
    p.max_window = 8000;
    p.growth = growth;
    response_relay r(p);
    if (reopen) r.opened(1000, 2000);  // the tunnel's own response window replaces the session's
    std::deque<grok::out_piece> out;
    auto h = head(200, -1);
    REQUIRE(r.on_frame(5, h, out).what == kind::progress);
    uint64_t credit = r.window();
    for (int i = 0; i < 6; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(3));  // the receiver waits on the sender
      auto d = data(std::string(credit, 'x'));
      REQUIRE(r.on_frame(5, d, out).what == kind::progress);
      credit = r.on_written(credit);  // written at once: all of it comes back, plus any growth
      out.clear();
    }
    return r.window();
  };
  auto budget = std::make_shared<grok::window_budget>(1 << 20);
  CHECK(run(false, budget) == 8000);
  CHECK(run(true, budget) == 8000);
  CHECK(budget->left() == 1u << 20);  // each relay gave its growth back when it went
  CHECK(run(true, nullptr) == 2000);  // without a budget it keeps the window it was given
}
