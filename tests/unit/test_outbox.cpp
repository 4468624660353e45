#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "grok/outbox.hpp"

namespace pb = ::grok::tunnel::v1;
using grok::outbox;

namespace {

pb::Frame data_frame(uint64_t id, std::string payload, bool end = false) {
  pb::Frame f;
  f.set_exchange_id(id);
  f.mutable_data()->set_payload(std::move(payload));
  f.mutable_data()->set_end_stream(end);
  return f;
}

pb::Frame data_frame(uint64_t id, size_t bytes, char fill) {
  return data_frame(id, std::string(bytes, fill));
}

pb::Frame window_update(uint64_t id, uint32_t inc) {
  pb::Frame f;
  f.set_exchange_id(id);
  f.mutable_window_update()->set_increment(inc);
  return f;
}

pb::Frame request_head(uint64_t id, std::string target) {
  pb::Frame f;
  f.set_exchange_id(id);
  auto* h = f.mutable_request_head();
  h->set_method("GET");
  h->set_target(std::move(target));
  return f;
}

pb::Frame reset(uint64_t id) {
  pb::Frame f;
  f.set_exchange_id(id);
  f.mutable_reset()->set_code(pb::Reset::CANCELLED);
  return f;
}

pb::Frame go_away() {
  pb::Frame f;
  f.mutable_go_away()->set_message("bye");
  return f;
}

// One short description per frame: "D1:5" (data, exchange 1, 5 bytes),
// "W2:100", "H3:/x", "R4", "G0".
std::string describe(const pb::Frame& f) {
  const auto id = std::to_string(f.exchange_id());
  switch (f.kind_case()) {
    case pb::Frame::kData: return "D" + id + ":" + std::to_string(f.data().payload().size());
    case pb::Frame::kWindowUpdate: return "W" + id + ":" + std::to_string(f.window_update().increment());
    case pb::Frame::kRequestHead: return "H" + id + ":" + f.request_head().target();
    case pb::Frame::kReset: return "R" + id;
    case pb::Frame::kGoAway: return "G" + id;
    default: return "?" + id;
  }
}

std::vector<std::string> describe(const pb::Batch& b) {
  std::vector<std::string> out;
  for (const auto& f : b.frames()) out.push_back(describe(f));
  return out;
}

using strings = std::vector<std::string>;
constexpr uint64_t kUnlimited = UINT64_MAX;

}  // namespace

TEST_SUITE("outbox") {

TEST_CASE("empty outbox") {
  outbox ob;
  CHECK(ob.empty());
  CHECK(ob.size() == 0);
  CHECK(ob.queued_bytes() == 0);
  pb::Batch b;
  CHECK(ob.drain_into(b, kUnlimited) == 0);
  CHECK(b.frames_size() == 0);
  CHECK(ob.drain_into(b, 0) == 0);
  CHECK(b.frames_size() == 0);
}

TEST_CASE("control frames are drained before data even when pushed later") {
  outbox ob;
  ob.push(data_frame(1, 10, 'a'));
  ob.push(data_frame(1, 20, 'b'));
  ob.push(window_update(2, 100));
  ob.push(data_frame(2, 30, 'c'));
  ob.push(request_head(3, "/x"));
  ob.push(reset(4));
  ob.push(go_away());
  CHECK(ob.size() == 7);
  CHECK(ob.queued_bytes() == 60);
  CHECK_FALSE(ob.empty());

  pb::Batch b;
  CHECK(ob.drain_into(b, kUnlimited) == 7);
  CHECK(describe(b) == strings{"W2:100", "H3:/x", "R4", "G0", "D1:10", "D1:20", "D2:30"});
  CHECK(ob.empty());
  CHECK(ob.size() == 0);
  CHECK(ob.queued_bytes() == 0);
}

TEST_CASE("a frame with no kind set counts as control") {
  outbox ob;
  ob.push(data_frame(1, 5, 'a'));
  pb::Frame bare;
  bare.set_exchange_id(9);
  ob.push(std::move(bare));
  CHECK(ob.queued_bytes() == 5);
  pb::Batch b;
  CHECK(ob.drain_into(b, kUnlimited) == 2);
  CHECK(describe(b) == strings{"?9", "D1:5"});
}

TEST_CASE("data is drained in FIFO order") {
  outbox ob;
  for (uint64_t i = 1; i <= 10; ++i) ob.push(data_frame(i % 3, std::to_string(i)));
  pb::Batch b;
  CHECK(ob.drain_into(b, kUnlimited) == 10);
  REQUIRE(b.frames_size() == 10);
  for (int i = 0; i < 10; ++i) {
    CAPTURE(i);
    CHECK(b.frames(i).data().payload() == std::to_string(i + 1));
    CHECK(b.frames(i).exchange_id() == static_cast<uint64_t>((i + 1) % 3));
  }
}

TEST_CASE("control frames keep their push order and all go out regardless of budget") {
  outbox ob;
  ob.push(window_update(1, 1));
  ob.push(data_frame(1, 100, 'x'));
  ob.push(window_update(1, 2));
  ob.push(reset(1));
  ob.push(window_update(1, 3));
  pb::Batch b;
  // Budget 0: all control frames plus the first data frame.
  CHECK(ob.drain_into(b, 0) == 5);
  CHECK(describe(b) == strings{"W1:1", "W1:2", "R1", "W1:3", "D1:100"});
  CHECK(ob.empty());
}

TEST_CASE("byte budget is respected") {
  auto fill = [] {
    outbox ob;
    ob.push(data_frame(1, 10, 'a'));
    ob.push(data_frame(1, 10, 'b'));
    ob.push(data_frame(1, 10, 'c'));
    return ob;
  };

  SUBCASE("budget fits exactly two frames") {
    auto ob = fill();
    pb::Batch b;
    CHECK(ob.drain_into(b, 20) == 2);
    CHECK(describe(b) == strings{"D1:10", "D1:10"});
    CHECK(ob.size() == 1);
    CHECK(ob.queued_bytes() == 10);
  }
  SUBCASE("a frame that would cross the budget stays queued") {
    auto ob = fill();
    pb::Batch b;
    CHECK(ob.drain_into(b, 29) == 2);
    CHECK(ob.size() == 1);
    CHECK(ob.queued_bytes() == 10);
  }
  SUBCASE("budget fits all") {
    auto ob = fill();
    pb::Batch b;
    CHECK(ob.drain_into(b, 30) == 3);
    CHECK(ob.empty());
    CHECK(ob.queued_bytes() == 0);
  }
  SUBCASE("budget smaller than one frame still moves one") {
    auto ob = fill();
    pb::Batch b;
    CHECK(ob.drain_into(b, 1) == 1);
    CHECK(b.frames(0).data().payload() == std::string(10, 'a'));
    CHECK(ob.size() == 2);
    CHECK(ob.queued_bytes() == 20);
  }
  SUBCASE("budget 0 still moves one") {
    auto ob = fill();
    pb::Batch b;
    CHECK(ob.drain_into(b, 0) == 1);
    CHECK(ob.size() == 2);
    CHECK(ob.queued_bytes() == 20);
  }
  SUBCASE("successive drains take the rest in order") {
    auto ob = fill();
    pb::Batch b1, b2, b3;
    CHECK(ob.drain_into(b1, 15) == 1);
    CHECK(ob.drain_into(b2, 15) == 1);
    CHECK(ob.drain_into(b3, 15) == 1);
    CHECK(b1.frames(0).data().payload() == std::string(10, 'a'));
    CHECK(b2.frames(0).data().payload() == std::string(10, 'b'));
    CHECK(b3.frames(0).data().payload() == std::string(10, 'c'));
    CHECK(ob.empty());
    CHECK(ob.queued_bytes() == 0);
  }
}

TEST_CASE("a single frame larger than the budget is sent alone") {
  outbox ob;
  ob.push(data_frame(1, 1000, 'L'));
  ob.push(data_frame(1, 1, 's'));
  pb::Batch b;
  CHECK(ob.drain_into(b, 100) == 1);
  CHECK(describe(b) == strings{"D1:1000"});
  CHECK(ob.queued_bytes() == 1);
  CHECK(ob.size() == 1);

  // A later large frame does not ride along with a small first one.
  outbox ob2;
  ob2.push(data_frame(1, 5, 'a'));
  ob2.push(data_frame(1, 500, 'b'));
  pb::Batch b2;
  CHECK(ob2.drain_into(b2, 100) == 1);
  CHECK(describe(b2) == strings{"D1:5"});
  CHECK(ob2.queued_bytes() == 500);
}

TEST_CASE("empty data frames (end_stream markers)") {
  outbox ob;
  ob.push(data_frame(1, "", true));
  CHECK(ob.size() == 1);
  CHECK(ob.queued_bytes() == 0);
  CHECK_FALSE(ob.empty());
  pb::Batch b;
  CHECK(ob.drain_into(b, 0) == 1);
  REQUIRE(b.frames_size() == 1);
  CHECK(b.frames(0).has_data());
  CHECK(b.frames(0).data().end_stream());
  CHECK(b.frames(0).data().payload().empty());
  CHECK(ob.empty());

  // An end_stream marker right behind a full budget stays for the next drain.
  outbox ob2;
  ob2.push(data_frame(1, std::string(10, 'z')));
  ob2.push(data_frame(1, "", true));
  pb::Batch b2;
  CHECK(ob2.drain_into(b2, 10) == 1);
  CHECK(ob2.size() == 1);
  pb::Batch b3;
  CHECK(ob2.drain_into(b3, 10) == 1);
  CHECK(b3.frames(0).data().end_stream());
  CHECK(ob2.empty());
}

TEST_CASE("queued_bytes accounting across pushes and partial drains") {
  outbox ob;
  ob.push(data_frame(1, 7, 'a'));
  CHECK(ob.queued_bytes() == 7);
  ob.push(window_update(1, 1000));
  CHECK(ob.queued_bytes() == 7);
  ob.push(data_frame(2, 13, 'b'));
  CHECK(ob.queued_bytes() == 20);
  ob.push(data_frame(3, 0, 'c'));
  CHECK(ob.queued_bytes() == 20);
  ob.push(data_frame(4, 100, 'd'));
  CHECK(ob.queued_bytes() == 120);
  CHECK(ob.size() == 5);

  pb::Batch b;
  CHECK(ob.drain_into(b, 20) == 3);  // W, 7, 13: the budget is used up exactly
  CHECK(describe(b) == strings{"W1:1000", "D1:7", "D2:13"});
  CHECK(ob.queued_bytes() == 100);
  CHECK(ob.size() == 2);

  ob.push(data_frame(5, 50, 'e'));
  CHECK(ob.queued_bytes() == 150);
  pb::Batch b2;
  CHECK(ob.drain_into(b2, kUnlimited) == 3);
  CHECK(ob.queued_bytes() == 0);
  CHECK(describe(b2) == strings{"D3:0", "D4:100", "D5:50"});
}

TEST_CASE("drain appends to a non-empty batch and returns only the frames it moved") {
  outbox ob;
  pb::Batch b;
  *b.add_frames() = go_away();
  ob.push(data_frame(1, 3, 'x'));
  ob.push(reset(2));
  CHECK(ob.drain_into(b, kUnlimited) == 2);
  CHECK(describe(b) == strings{"G0", "R2", "D1:3"});
}

TEST_CASE("payload bytes and fields are moved intact") {
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  binary += std::string("\0\0\r\n\xff", 5);
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131 + 7) & 0xff);

  outbox ob;
  ob.push(data_frame(0xfffffffffffffffeull, binary, false));
  ob.push(data_frame(42, big, true));
  {
    pb::Frame h = request_head(7, "/path?q=1");
    auto* hd = h.mutable_request_head()->add_headers();
    hd->set_name("X-Test");
    hd->set_value("v\tw");
    h.mutable_request_head()->set_content_length(-1);
    ob.push(std::move(h));
  }
  CHECK(ob.queued_bytes() == binary.size() + big.size());

  pb::Batch b;
  CHECK(ob.drain_into(b, kUnlimited) == 3);
  REQUIRE(b.frames_size() == 3);

  const auto& h = b.frames(0);
  REQUIRE(h.has_request_head());
  CHECK(h.exchange_id() == 7);
  CHECK(h.request_head().method() == "GET");
  CHECK(h.request_head().target() == "/path?q=1");
  CHECK(h.request_head().content_length() == -1);
  REQUIRE(h.request_head().headers_size() == 1);
  CHECK(h.request_head().headers(0).name() == "X-Test");
  CHECK(h.request_head().headers(0).value() == "v\tw");

  const auto& d1 = b.frames(1);
  REQUIRE(d1.has_data());
  CHECK(d1.exchange_id() == 0xfffffffffffffffeull);
  CHECK(d1.data().payload().size() == binary.size());
  CHECK(d1.data().payload() == binary);
  CHECK_FALSE(d1.data().end_stream());

  const auto& d2 = b.frames(2);
  REQUIRE(d2.has_data());
  CHECK(d2.exchange_id() == 42);
  CHECK(d2.data().payload().size() == big.size());
  CHECK(d2.data().payload() == big);
  CHECK(d2.data().end_stream());

  // The batch survives a serialization round trip unchanged.
  pb::Batch parsed;
  REQUIRE(parsed.ParseFromString(b.SerializeAsString()));
  REQUIRE(parsed.frames_size() == 3);
  CHECK(parsed.frames(1).data().payload() == binary);
  CHECK(parsed.frames(2).data().payload() == big);
}

TEST_CASE("clear drops everything") {
  outbox ob;
  ob.push(data_frame(1, 10, 'a'));
  ob.push(window_update(1, 5));
  ob.push(data_frame(2, 20, 'b'));
  REQUIRE(ob.size() == 3);
  ob.clear();
  CHECK(ob.empty());
  CHECK(ob.size() == 0);
  CHECK(ob.queued_bytes() == 0);
  pb::Batch b;
  CHECK(ob.drain_into(b, kUnlimited) == 0);
  CHECK(b.frames_size() == 0);

  // Still usable afterwards, with fresh accounting.
  ob.push(data_frame(3, 4, 'c'));
  CHECK(ob.queued_bytes() == 4);
  CHECK(ob.drain_into(b, kUnlimited) == 1);
  CHECK(describe(b) == strings{"D3:4"});
  CHECK(ob.queued_bytes() == 0);
}

}  // TEST_SUITE
