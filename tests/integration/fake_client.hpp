#pragma once
// A tunnel client written by the test itself: it speaks tunnel.proto over
// gRPC directly, so a test can send what a real `grok` never would (hostile
// response heads, frames out of order, nothing at all).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "grok/tunnel/v1/tunnel.grpc.pb.h"

namespace grok::test {

namespace pb = grok::tunnel::v1;

/// One gRPC connection (its own TCP connection, never shared with another
/// fake_client) and one Connect stream. A reader thread queues every frame
/// received; reading can be paused to play a client that stops reading.
class fake_client {
 public:
  struct options {
    /// HTTP/2 BDP probing off keeps gRPC's own receive window small, so a
    /// client that stops reading pushes back on the server quickly.
    bool bdp_probe = true;
  };
  explicit fake_client(uint16_t grpc_port);
  fake_client(uint16_t grpc_port, options o);
  ~fake_client();
  fake_client(const fake_client&) = delete;
  fake_client& operator=(const fake_client&) = delete;

  /// Sends one Batch; false once the stream is broken.
  bool send(const std::vector<pb::Frame>& frames);
  bool send(const pb::Frame& f) { return send(std::vector<pb::Frame>{f}); }

  /// Sends Hello and waits for the answer (Accepted or Refused).
  std::optional<pb::Frame> hello(const std::string& token, const std::string& name, uint32_t initial_window = 0,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// The next frame received, in order; nullopt on timeout or a closed stream.
  std::optional<pb::Frame> next(std::chrono::milliseconds timeout);
  /// Skips frames until one of `kind` arrives.
  std::optional<pb::Frame> next_of(pb::Frame::KindCase kind, std::chrono::milliseconds timeout);
  /// True once the server ended the stream (Read returned false) within the timeout.
  bool wait_closed(std::chrono::milliseconds timeout);

  /// The reader stops calling Read (after the one in progress, if any).
  void stop_reading();
  void resume_reading();

 private:
  void reader();

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Tunnel::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::Batch, pb::Batch>> stream_;
  std::mutex write_mu_;
  bool write_broken_ = false;

  std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;
  std::deque<pb::Frame> frames_;
  bool closed_ = false;
  bool reading_ = true;
  bool stopping_ = false;
  std::thread reader_;
};

/// Frame builders.
pb::Frame response_head(uint64_t id, uint32_t status, const std::vector<std::pair<std::string, std::string>>& headers,
                        int64_t content_length, bool end_stream = false, const std::string& reason = "");
pb::Frame data_frame(uint64_t id, std::string payload, bool end_stream);

}  // namespace grok::test
