#pragma once
// One tunnel on the server: the strand that owns its state (its exchanges,
// its phase, the writer of its stream), and the interface the public side
// talks to it through. The gRPC call behind it lives in tunnel_service.cpp;
// nothing here includes gRPC.

#include <algorithm>
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "grok/access_rules.hpp"
#include "grok/frame_writer.hpp"
#include "grok/frames.hpp"
#include "server_state.hpp"

namespace grok::server_detail {

/// Frames for one exchange, delivered together.
using frame_run = boost::container::small_vector<pb::Frame, 2>;

/// The public side of one exchange. Called on the tunnel strand; an
/// implementation hops to its own strand and never blocks.
class exchange_sink {
 public:
  virtual ~exchange_sink() = default;
  /// The tunnel registered the exchange and sent its head; `window` is the
  /// client's initial credit for request bytes, `response_window` the credit
  /// the client was given for response bytes (its tunnel's initial_window).
  virtual void on_opened(uint64_t id, uint32_t window, uint32_t response_window) = 0;
  /// Consecutive frames of one batch from the tunnel client for this
  /// exchange, in order (a response head and its body often come together).
  virtual void on_frames(uint64_t id, frame_run&& frames) = 0;
  /// The exchange cannot go on: tunnel gone (502) or over its limit (503).
  virtual void on_unavailable(uint64_t id, unsigned status, std::string reason) = 0;
};

class listener;
class tcp_port;

/// Where a public request's exchange goes: a tunnel on this node, or the
/// relay to the node that holds the tunnel (relay.cpp). Any thread.
class exchange_target {
 public:
  virtual ~exchange_target() = default;
  /// Exchange ids are never reused on a stream.
  virtual uint64_t next_exchange_id() = 0;
  /// Registers the exchange and sends its RequestHead frame; the sink hears
  /// on_opened, or on_unavailable.
  virtual void open(std::shared_ptr<exchange_sink> sink, pb::Frame&& head) = 0;
  /// Queues a frame of an open exchange.
  virtual void send(pb::Frame&& f) = 0;
  /// The public side is done with the exchange.
  virtual void close_exchange(uint64_t id) = 0;
  /// For the log: the connection that carries the exchange.
  virtual uint64_t conn_id() const = 0;
};

/// How a tunnel's stream ends; the gRPC call maps each to its status code.
enum class stream_end {
  ok,                  ///< the client closed it
  cancelled,           ///< the stream was cancelled (client gone, server stopping)
  unavailable,         ///< the server is going away, or a write failed
  deadline_exceeded,   ///< no Hello in time
  resource_exhausted,  ///< the client does not read what is sent to it
  permission_denied,   ///< refused
  invalid_argument,    ///< the client broke the protocol
};

/// The stream a tunnel writes to: the gRPC call (tunnel_service.cpp). At
/// most one write at a time; Finish once, after the last write came back.
class tunnel_stream {
 public:
  virtual ~tunnel_stream() = default;
  virtual void StartWrite(const pb::Batch* b) = 0;
  virtual void Finish(stream_end how, const std::string& message) = 0;
};

class tunnel final : public exchange_target, public std::enable_shared_from_this<tunnel> {
 public:
  tunnel(server_state& state, std::string peer, uint64_t conn_id);

  /// Any thread. Exchange ids are never reused on a stream.
  uint64_t next_exchange_id() override { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  /// Any thread: registers the exchange and sends its RequestHead frame.
  void open(std::shared_ptr<exchange_sink> sink, pb::Frame&& head) override;
  /// Any thread: queues a frame for the client.
  void send(pb::Frame&& f) override;
  /// Any thread: the public side is done with the exchange.
  void close_exchange(uint64_t id) override;
  /// Any thread: tell the client to go away and finish the stream.
  void shutdown(std::string why);
  /// Any thread: a new session of the same token took this tunnel's name:
  /// tell the client (it exits rather than take it back) and close.
  void taken_over();
  /// Any thread: tell the client to go away but let in-flight exchanges finish.
  void go_away(std::string why);
  /// Any thread: a reloaded configuration; closes the tunnel if its token was revoked.
  void apply_config(std::shared_ptr<const server_config> cfg);

  /// Set once before the tunnel is registered, read-only afterwards.
  const std::string& public_url() const { return public_url_; }
  bool is_tcp() const { return is_tcp_; }
  clock::time_point connected_at() const { return connected_at_; }
  uint64_t queued_bytes() const { return queued_bytes_.load(std::memory_order_relaxed); }
  uint32_t exchanges_in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  /// Exchanges this tunnel was given since it connected.
  uint64_t exchanges_total() const { return exchanges_total_.load(std::memory_order_relaxed); }

  // What the name registry asks when it picks a pool member.
  /// Whether the client's health check passes (true when it runs none).
  bool accepting() const { return healthy_.load(std::memory_order_relaxed); }
  /// Exchanges in flight, counting the ones on their way to the strand.
  unsigned load() const {
    return in_flight_.load(std::memory_order_relaxed) + opening_.load(std::memory_order_relaxed);
  }
  /// Set once before the tunnel is registered: it shares its name with a pool.
  bool pooled() const { return who_.pool; }
  /// Set once before the tunnel is registered: the visitor rules, the
  /// tunnel's own and then its token's (only the non-empty ones).
  const std::vector<access_rules>& access() const { return access_; }
  /// Whether a visitor at `ip` with this Authorization value may pass (any thread).
  access_verdict check_visitor(std::string_view ip, std::string_view authorization) const {
    return access_.empty() ? access_verdict::pass : check_access(access_, ip, authorization);
  }
  /// Whether the address rules let a visitor at `ip` through (TCP tunnels check only these).
  bool address_allowed(std::string_view ip) const {
    return std::all_of(access_.begin(), access_.end(), [&](const auto& r) { return grok::address_allowed(r, ip); });
  }
  /// Whether the tunnel asks visitors for credentials (then the Authorization header stops at the server).
  bool asks_credentials() const { return asks_credentials_; }
  /// What the receive windows of this tunnel's exchanges may grow by together (any thread).
  const std::shared_ptr<window_budget>& window_growth() const { return window_growth_; }

  /// Set once before the tunnel is registered, read-only afterwards.
  const std::string& name() const { return name_; }
  const std::string& peer() const { return peer_; }
  /// The label of the token the tunnel authenticated with (empty when the server takes any token).
  const std::string& token_label() const { return token_label_; }
  uint64_t conn_id() const override { return conn_id_; }

  // Called by the stream's gRPC call (the poll thread); each posts to the
  // strand, except a write_finished() nothing on the strand waits for.
  void post_batch(std::shared_ptr<pb::Batch> b);
  void post_read_closed();
  void write_finished(bool ok);
  void post_cancelled();
  void post_done();
  void attach(tunnel_stream* s);

 private:
  enum class phase { hello, claiming, open, closing, finished };

  // strand only below
  void start_hello_timer();
  void handle_batch(pb::Batch& b);
  void handle_hello(const pb::Hello& h);
  /// The rest of the Hello once the name is this tunnel's (after the cluster's claim, if any).
  void finish_hello(claim_result claimed, size_t members, std::string rules);
  void handle_health(const pb::Health& h);
  void refuse(const refusal& r);
  void close(stream_end how, const std::string& message, const std::string& why);
  void maybe_finish();
  void update_gauges();
  /// Strand only: queues a frame for the next write (see frame_writer::push_deferred).
  void queue(pb::Frame&& f);

  server_state& state_;
  std::shared_ptr<const server_config> cfg_;  // snapshot at connect
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer hello_timer_;
  std::string peer_;
  uint64_t conn_id_;
  std::string name_;
  std::string public_url_;
  bool is_tcp_ = false;
  clock::time_point connected_at_;
  token_digest token_digest_{};
  std::string token_label_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> queued_bytes_{0};
  std::atomic<uint32_t> in_flight_{0};
  std::atomic<uint32_t> opening_{0};  ///< open() calls not yet on the strand
  std::atomic<uint64_t> exchanges_total_{0};
  std::atomic<bool> healthy_{true};
  claimant who_;  ///< set once in handle_hello
  std::vector<access_rules> access_;  ///< set once in handle_hello
  bool asks_credentials_ = false;     ///< set once in handle_hello

  // strand only
  phase phase_ = phase::hello;
  tunnel_stream* stream_ = nullptr;
  frame_writer<tunnel_stream> writer_;
  bool finish_pending_ = false;
  stream_end finish_how_ = stream_end::ok;
  std::string finish_message_;
  bool registered_ = false;
  bool token_counted_ = false;  // included in server_state's per-token count
  bool first_health_ = true;    // no Health frame yet
  bool hello_seen_ = false;     // a Hello arrived (admitted or not)
  uint32_t client_window_ = 0;
  uint32_t response_window_ = 0;  ///< response credit its client was given in Accepted
  /// What this tunnel's exchanges' receive windows may grow by together:
  /// 4 × tunnels.max_window when the tunnel came online.
  std::shared_ptr<window_budget> window_growth_;
  std::vector<pb::Frame> early_;  ///< frames that came behind the Hello while the cluster claims the name
  std::unordered_map<uint64_t, std::shared_ptr<exchange_sink>> exchanges_;
  /// handle_batch's scratch: frames of the batch grouped by exchange.
  struct frame_group {
    uint64_t id;
    std::shared_ptr<exchange_sink> sink;
    frame_run frames;
    bool ended;  ///< a Reset ended the exchange; later frames are late
  };
  std::vector<frame_group> groups_;
  std::unordered_map<uint64_t, size_t> group_index_;
  std::shared_ptr<tcp_port> tcp_;  // TCP tunnels only; shared by a pool's members
};

}  // namespace grok::server_detail
