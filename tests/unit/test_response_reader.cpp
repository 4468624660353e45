// The client's response path without sockets: heads, bodies under credit,
// interim heads, upgrades and bodies that run until the connection closes.

#include <doctest/doctest.h>

#include <cstring>

#include "grok/response_reader.hpp"

using grok::response_reader;
using event = response_reader::event;
namespace pb = grok::pb;

namespace {

void feed(boost::beast::flat_buffer& b, const std::string& bytes) {
  if (bytes.empty()) return;
  auto dst = b.prepare(bytes.size());
  std::memcpy(dst.data(), bytes.data(), bytes.size());
  b.commit(bytes.size());
}

}  // namespace

TEST_CASE("a head split anywhere, then the body in frames no larger than max_frame") {
  response_reader r(9, false, false, 4);
  boost::beast::flat_buffer b;
  grok::send_credit credit(1000);
  pb::Frame f;
  feed(b, "HTTP/1.1 200 OK\r\nContent-Le");
  CHECK(r.next(b, credit, f) == event::need_bytes);
  CHECK_FALSE(r.nothing_received());
  feed(b, "ngth: 10\r\n\r\nabcdef");
  REQUIRE(r.next(b, credit, f) == event::frame);
  REQUIRE(f.has_response_head());
  CHECK(f.exchange_id() == 9);
  CHECK(f.response_head().status() == 200);
  CHECK(r.status() == 200);
  std::string body;
  while (r.next(b, credit, f) == event::frame) {
    CHECK(f.data().payload().size() <= 4);
    body += f.data().payload();
  }
  CHECK(body == "abcdef");
  feed(b, "ghij");
  REQUIRE(r.next(b, credit, f) == event::frame);
  CHECK(f.data().payload() == "ghij");
  CHECK(f.data().end_stream());
  CHECK(r.next(b, credit, f) == event::done);
  CHECK(credit.available() == 990);
  CHECK(r.body_bytes() == 10);
}

TEST_CASE("at zero credit the reader waits, and goes on once credit is granted") {
  response_reader r(1, false, false, 1024);
  boost::beast::flat_buffer b;
  grok::send_credit credit(3);
  pb::Frame f;
  feed(b, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
  REQUIRE(r.next(b, credit, f) == event::frame);  // the head needs no credit
  REQUIRE(r.next(b, credit, f) == event::frame);
  CHECK(f.data().payload() == "hel");
  CHECK(r.next(b, credit, f) == event::need_credit);
  credit.grant(10);
  REQUIRE(r.next(b, credit, f) == event::frame);
  CHECK(f.data().payload() == "lo");
  CHECK(f.data().end_stream());
}

TEST_CASE("interim heads stay local; a 101 to an upgrade request hands over raw bytes") {
  response_reader r(1, false, true, 1024);
  boost::beast::flat_buffer b;
  grok::send_credit credit(100);
  pb::Frame f;
  feed(b, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
          "Upgrade: websocket\r\n\r\nRAW");
  REQUIRE(r.next(b, credit, f) == event::frame);
  CHECK(f.response_head().status() == 101);
  CHECK(r.next(b, credit, f) == event::upgraded);
  CHECK(b.size() == 3);  // the raw bytes are left for the caller
}

TEST_CASE("a body without a length ends at close; a connection closed before any answer fails") {
  response_reader r(1, false, false, 1024);
  boost::beast::flat_buffer b;
  grok::send_credit credit(100);
  pb::Frame f;
  feed(b, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close");
  REQUIRE(r.next(b, credit, f) == event::frame);
  REQUIRE(r.next(b, credit, f) == event::frame);
  CHECK(f.data().payload() == "until close");
  CHECK(r.next(b, credit, f) == event::need_bytes);
  REQUIRE(r.eof(b, credit, f) == event::frame);
  CHECK(f.data().end_stream());
  CHECK(f.data().payload().empty());
  CHECK(r.next(b, credit, f) == event::done);
  CHECK_FALSE(r.keep_alive());

  response_reader closed(2, false, false, 1024);
  boost::beast::flat_buffer empty;
  CHECK(closed.nothing_received());
  CHECK(closed.eof(empty, credit, f) == event::failed);
  CHECK(closed.error() == "local service closed the connection without a response");

  response_reader cut(3, false, false, 1024);
  feed(empty, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  REQUIRE(cut.next(empty, credit, f) == event::frame);
  REQUIRE(cut.next(empty, credit, f) == event::frame);
  CHECK(cut.eof(empty, credit, f) == event::failed);  // a short body is not a whole one
}

TEST_CASE("the answer to a HEAD request has no body; garbage is not a response") {
  response_reader r(1, true, false, 1024);
  boost::beast::flat_buffer b;
  grok::send_credit credit(100);
  pb::Frame f;
  feed(b, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
  REQUIRE(r.next(b, credit, f) == event::frame);
  CHECK(f.response_head().end_stream());
  CHECK(r.next(b, credit, f) == event::done);

  response_reader bad(2, false, false, 1024);
  boost::beast::flat_buffer g;
  feed(g, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
  CHECK(bad.next(g, credit, f) == event::failed);
  CHECK_FALSE(bad.head_sent());
}
