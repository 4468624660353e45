#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "grok/frame_writer.hpp"

namespace pb = ::grok::tunnel::v1;

namespace {

/// Stands in for the gRPC stream: records each write's frames; the test
/// decides when a write finishes.
struct recording_stream {
  std::vector<std::vector<uint64_t>> writes;  ///< exchange ids per write
  int in_flight = 0;
  void StartWrite(const pb::Batch* b) {
    REQUIRE(in_flight == 0);  // one write at a time
    ++in_flight;
    std::vector<uint64_t> ids;
    for (const auto& f : b->frames()) ids.push_back(f.exchange_id());
    writes.push_back(std::move(ids));
  }
};

struct fixture {
  recording_stream stream;
  grok::frame_writer<recording_stream> writer{4096};  // a 4 KiB data budget per write
  fixture() { writer.attach(&stream); }

  /// Ends the write in flight as the polling thread does; true if it had to
  /// go to the strand (which the test then plays, as the post would).
  bool finish_write(bool ok = true) {
    REQUIRE(stream.in_flight == 1);
    --stream.in_flight;
    bool to_strand = writer.write_finished(ok);
    if (to_strand) writer.on_write_done(ok);
    return to_strand;
  }
};

pb::Frame data(uint64_t id, size_t bytes) { return grok::make_data(id, std::string(bytes, 'x'), false); }

}  // namespace

TEST_SUITE("frame_writer") {

TEST_CASE("a write whose end nothing waits for leaves the writer idle without the strand") {
  fixture t;
  t.writer.push(data(1, 10));
  REQUIRE(t.stream.writes.size() == 1);
  CHECK_FALSE(t.finish_write());
  t.writer.push(data(2, 10));  // idle again: the next frame goes out at once
  REQUIRE(t.stream.writes.size() == 2);
  CHECK(t.stream.writes[1] == std::vector<uint64_t>{2});
  CHECK_FALSE(t.finish_write());
}

TEST_CASE("frames queued during a write go out together when it ends") {
  fixture t;
  t.writer.push(data(1, 10));
  t.writer.push(data(2, 10));
  t.writer.push(data(3, 10));
  REQUIRE(t.stream.writes.size() == 1);
  CHECK(t.finish_write());  // the strand waits: 2 and 3 are queued
  REQUIRE(t.stream.writes.size() == 2);
  CHECK(t.stream.writes[1] == std::vector<uint64_t>{2, 3});
  CHECK_FALSE(t.finish_write());
}

TEST_CASE("frames past one write's budget go out in the next write with nothing else pushed") {
  fixture t;
  CHECK(t.writer.push_deferred(data(1, 2000)));
  CHECK_FALSE(t.writer.push_deferred(data(2, 2000)));
  CHECK_FALSE(t.writer.push_deferred(data(3, 2000)));
  t.writer.flush();
  REQUIRE(t.stream.writes.size() == 1);
  CHECK(t.stream.writes[0] == std::vector<uint64_t>{1, 2});  // a third 2000 bytes would pass the 4096 budget
  CHECK(t.finish_write());  // frame 3 is still queued: the end must reach the strand
  REQUIRE(t.stream.writes.size() == 2);
  CHECK(t.stream.writes[1] == std::vector<uint64_t>{3});
  CHECK_FALSE(t.finish_write());
  CHECK(t.writer.queued_bytes() == 0);
}

TEST_CASE("push_deferred asks for one flush while idle and none while a write is in flight") {
  fixture t;
  CHECK(t.writer.push_deferred(data(1, 10)));
  CHECK_FALSE(t.writer.push_deferred(data(2, 10)));  // the flush already asked for takes it too
  t.writer.flush();
  REQUIRE(t.stream.writes.size() == 1);
  CHECK(t.stream.writes[0] == std::vector<uint64_t>{1, 2});
  CHECK_FALSE(t.writer.push_deferred(data(3, 10)));  // in flight: its end starts the next write
  CHECK(t.finish_write());
  REQUIRE(t.stream.writes.size() == 2);
  CHECK(t.stream.writes[1] == std::vector<uint64_t>{3});
}

TEST_CASE("await_write: the strand waiting for a stream's end hears of the write in flight") {
  fixture t;
  CHECK_FALSE(t.writer.await_write());  // idle
  t.writer.push(data(1, 10));
  CHECK(t.writer.await_write());
  CHECK(t.finish_write());
  CHECK_FALSE(t.writer.await_write());
}

TEST_CASE("a failed write detaches the writer: nothing more is written") {
  fixture t;
  t.writer.push(data(1, 10));
  CHECK(t.finish_write(false));
  t.writer.push(data(2, 10));
  CHECK(t.stream.writes.size() == 1);
  CHECK(t.writer.queued_bytes() == 0);
}

}  // TEST_SUITE
