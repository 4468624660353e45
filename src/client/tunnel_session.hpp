#pragma once
// The client's one gRPC stream to grok-server: the Hello, the frames of
// every exchange both ways, and how the stream ended (for the reconnect
// loop). All session state lives on its strand; completions arrive on the
// client's one poll thread.

#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "grok/client.hpp"
#include "grok/completion_poller.hpp"
#include "grok/frame_writer.hpp"
#include "grok/tunnel/v1/tunnel.grpc.pb.h"
#include "health_check.hpp"
#include "local_exchange.hpp"
#include "stream_call.hpp"

namespace grok::client_detail {

using tcp = asio::ip::tcp;

/// How a stream ended, for the reconnect loop.
struct session_outcome {
  bool accepted = false;
  std::string name;  ///< the name the server gave (when accepted)
  bool refused = false;
  pb::Refused::Reason reason = pb::Refused::REASON_UNSPECIFIED;  ///< when refused
  bool going_away = false;
  std::string message;
};

/// One gRPC stream to grok-server on the async API. All tunnel state lives
/// on strand_. Completions arrive on the client's one poll thread
/// (on_event), which hands each to the strand; writes start on the
/// strand (gRPC sends them inline). The stream is over once every
/// operation has come back and the strand has closed the session.
class tunnel_session final : public exchange_host,
                             public stream_call_base,
                             public std::enable_shared_from_this<tunnel_session> {
 public:
  /// `name`: the name the Hello asks for (empty: the server picks one).
  tunnel_session(asio::io_context& ioc, grpc::CompletionQueue& cq, const client_options& opts, std::string name,
                 local_pool& pool, std::shared_ptr<const local_target> local,
                 std::function<void(session_outcome)> on_end)
      : ioc_(ioc), strand_(asio::make_strand(ioc)), cq_(cq), opts_(opts), name_(std::move(name)), pool_(pool),
        local_(std::move(local)), on_end_(std::move(on_end)) {}

  enum event { read, write, finish, events };

  /// Strand only (the frame_writer): one write at a time.
  void StartWrite(const pb::Batch* b) { start_write(*stream_, *b, &ops_[write]); }

  /// Opens the stream; the Hello leaves with its headers.
  void start(pb::Tunnel::Stub& stub);
  /// Set before start(): runs (on the session's strand) when the server accepts the tunnel, with its name.
  std::function<void(const std::string& name)> on_accepted;

  /// Any thread: cancels the stream; on_end then runs with "stopped".
  void stop() {
    asio::post(strand_, [self = shared_from_this()] {
      self->outcome_.message = "stopped";
      self->ctx_.TryCancel();
    });
  }

  // exchange_host, any thread.
  void send(pb::Frame&& f, std::optional<pb::Frame>&& more = std::nullopt) override {
    asio::post(strand_, [self = shared_from_this(), f = std::move(f), more = std::move(more)]() mutable {
      if (self->closed_) return;
      bool flush = self->writer_.push_deferred(std::move(f));
      if (more) flush = self->writer_.push_deferred(std::move(*more)) || flush;
      if (flush) asio::post(self->strand_, [self] { self->writer_.flush(); });
    });
  }
  void release(uint64_t id) override {
    asio::post(strand_, [self = shared_from_this(), id] { self->exchanges_.erase(id); });
  }

  /// Poll thread: one of the stream's operations completed.
  void on_event(event e, bool ok);

 private:
  /// Any thread: one operation (or the strand's hold) is over.
  void release();

  /// Strand: the frames of one batch from the server, in order.
  void handle_batch(pb::Batch& b);
  /// Strand: cancels every exchange and gives up the strand's hold on the stream.
  void close();
  /// Strand: the tunnel is online; starts the health check if there is one.
  void start_health_check();

  asio::io_context& ioc_;
  strand_t strand_;
  grpc::CompletionQueue& cq_;
  const client_options& opts_;
  std::string name_;
  local_pool& pool_;
  std::shared_ptr<const local_target> local_;
  std::function<void(session_outcome)> on_end_;
  std::shared_ptr<tunnel_session> self_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<pb::Batch, pb::Batch>> stream_;
  std::array<cq_tag<tunnel_session, event>, events> ops_{{{this, read}, {this, write}, {this, finish}}};
  grpc::Status status_;  // set by the finish completion
  // strand only
  frame_writer<tunnel_session> writer_;
  std::unordered_map<uint64_t, std::shared_ptr<local_exchange>> exchanges_;
  session_outcome outcome_;
  uint32_t server_window_ = 64 * 1024;
  uint32_t max_frame_ = 64 * 1024;
  bool closed_ = false;
  std::shared_ptr<health_check> health_;
};

}  // namespace grok::client_detail
