#pragma once
// Server side of the tunnel: the gRPC stream (async API, one poll thread),
// the per-tunnel strand that owns all tunnel state, and the registry of
// connected names.

#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <string>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "grok/config.hpp"
#include "metrics.hpp"
#include "request_limits.hpp"
#include "grok/frame_writer.hpp"
#include "grok/tunnel/v1/tunnel.grpc.pb.h"

namespace boost::asio::ssl {
class context;
}

namespace grok::server_detail {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

inline constexpr uint32_t protocol_version = 1;

/// Frames for one exchange, delivered together.
using frame_run = boost::container::small_vector<pb::Frame, 2>;

/// The public side of one exchange. Called on the tunnel strand; an
/// implementation hops to its own strand and never blocks.
class exchange_sink {
 public:
  virtual ~exchange_sink() = default;
  /// The tunnel registered the exchange and sent its head; `window` is the
  /// client's initial credit for request bytes.
  virtual void on_opened(uint64_t id, uint32_t window) = 0;
  /// Consecutive frames of one batch from the tunnel client for this
  /// exchange, in order (a response head and its body often come together).
  virtual void on_frames(uint64_t id, frame_run&& frames) = 0;
  /// The exchange cannot go on: tunnel gone (502) or over its limit (503).
  virtual void on_unavailable(uint64_t id, unsigned status, std::string reason) = 0;
};

class tunnel;

/// Shared state every component sees.
class server_state {
 public:
  server_state(asio::io_context& ioc, std::shared_ptr<const server_config> cfg)
      : ioc_(ioc) {
    set_config(std::move(cfg));
  }
  asio::io_context& ioc() { return ioc_; }
  std::shared_ptr<const server_config> config() const {
    std::lock_guard lk(mu_);
    return cfg_;
  }
  /// Also rebuilds the table of reserved names.
  void set_config(std::shared_ptr<const server_config> c);

  /// The TLS context new HTTPS connections use (replaced on reload).
  std::shared_ptr<asio::ssl::context> tls_context() const {
    std::lock_guard lk(mu_);
    return tls_;
  }
  void set_tls_context(std::shared_ptr<asio::ssl::context> c) {
    std::lock_guard lk(mu_);
    tls_ = std::move(c);
  }

  enum class claim_result {
    ok,
    taken,     ///< a live tunnel holds it
    reserved,  ///< the tokens file reserves it for another token
    held,      ///< its last holder disconnected less than tunnels.name_grace ago and may reclaim it
  };
  /// Takes `name` for `t`, connected with token `owner`. With N claims at
  /// once, exactly one wins.
  claim_result claim(const std::string& name, const std::shared_ptr<tunnel>& t, const token_digest& owner);
  /// Drops `name` if still held by `t`; the name answers 502, and only
  /// `owner` may take it, until tunnels.name_grace expires.
  void release(const std::string& name, const tunnel* t, const token_digest& owner);
  /// The token that reserves `name`, if any.
  std::optional<token_digest> reserved_by(const std::string& name) const;

  /// Failed-authentication limit per source address (auth.max_failures per
  /// auth.failure_window). `blocked` returns how long until the address may
  /// try again, 0 when it may now.
  std::chrono::milliseconds auth_blocked(const std::string& ip);
  void auth_failed(const std::string& ip);
  struct lookup {
    std::shared_ptr<tunnel> t;
    bool recently_offline = false;
  };
  lookup find(const std::string& name);
  std::string random_free_name();
  /// Counts a tunnel against its token's tunnels.max_per_token (0 = no limit);
  /// false when the token already holds that many.
  bool add_token_tunnel(const token_digest& token, unsigned limit);
  void remove_token_tunnel(const token_digest& token);
  /// Marks a TCP tunnel port taken; false if it already is.
  bool reserve_tcp_port(uint16_t port);
  void release_tcp_port(uint16_t port);
  std::vector<std::shared_ptr<tunnel>> tunnels();
  size_t tunnel_count();

  /// The public HTTP port actually bound (differs from the config for port 0).
  std::atomic<uint16_t> public_port{0};
  std::atomic<int64_t> exchanges_in_flight{0};
  std::atomic<int64_t> public_connections{0};
  /// Set on SIGTERM: new public requests get 503, new tunnels are refused.
  std::atomic<bool> draining{false};
  std::atomic<unsigned> worker_threads{0};
  std::atomic<uint64_t> reloads_ok{0};
  std::atomic<uint64_t> reloads_failed{0};
  server_detail::metrics stats;
  /// Public connections per source IP (server.max_connections_per_ip).
  ip_connection_limiter per_ip_connections;

 private:
  asio::io_context& ioc_;
  mutable std::mutex mu_;  // guards cfg_, names_, offline_
  std::shared_ptr<const server_config> cfg_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::unordered_map<std::string, std::shared_ptr<tunnel>> names_;
  struct offline_name {
    clock::time_point until;
    token_digest owner;
  };
  std::unordered_map<std::string, offline_name> offline_;
  std::unordered_map<std::string, token_digest> reserved_;
  struct failures {
    clock::time_point window_start;
    unsigned count = 0;
  };
  std::unordered_map<std::string, failures> auth_failures_;
  std::unordered_set<uint16_t> tcp_ports_;
  std::map<token_digest, unsigned> per_token_;  // keyed by token digest
};

class tunnel_call;
class listener;

class tunnel : public std::enable_shared_from_this<tunnel> {
 public:
  tunnel(server_state& state, std::string peer, uint64_t conn_id);

  /// Any thread. Exchange ids are never reused on a stream.
  uint64_t next_exchange_id() { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  /// Any thread: registers the exchange and sends its RequestHead frame.
  void open(std::shared_ptr<exchange_sink> sink, pb::Frame&& head);
  /// Any thread: queues a frame for the client.
  void send(pb::Frame&& f);
  /// Any thread: the public side is done with the exchange.
  void close_exchange(uint64_t id);
  /// Any thread: tell the client to go away and finish the stream.
  void shutdown(std::string why);
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

  /// Set once before the tunnel is registered, read-only afterwards.
  const std::string& name() const { return name_; }
  const std::string& peer() const { return peer_; }
  /// The label of the token the tunnel authenticated with (empty when the server takes any token).
  const std::string& token_label() const { return token_label_; }
  uint64_t conn_id() const { return conn_id_; }

  // Called by the stream's tunnel_call (the poll thread); each posts to the
  // strand, except a write_finished() nothing on the strand waits for.
  void post_batch(std::shared_ptr<pb::Batch> b);
  void post_read_closed();
  void write_finished(bool ok);
  void post_cancelled();
  void post_done();
  void attach(tunnel_call* r);

 private:
  enum class phase { hello, open, closing, finished };

  // strand only below
  void start_hello_timer();
  void handle_batch(pb::Batch& b);
  void handle_hello(const pb::Hello& h);
  void refuse(pb::Refused::Reason reason, const std::string& message);
  void refuse_name(const std::string& message);
  void close(grpc::Status status, const std::string& why);
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

  // strand only
  phase phase_ = phase::hello;
  tunnel_call* reactor_ = nullptr;
  frame_writer<tunnel_call> writer_;
  bool finish_pending_ = false;
  grpc::Status finish_status_;
  bool registered_ = false;
  bool token_counted_ = false;  // included in server_state's per-token count
  uint32_t client_window_ = 0;
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
  std::shared_ptr<listener> tcp_;  // TCP tunnels only
  uint16_t tcp_port_ = 0;
};

/// Accepts tunnel streams on gRPC's async API. One thread polls the
/// completion queue: it reads every tunnel's batches and posts each to its
/// tunnel's strand. Writes start on the strand itself (gRPC sends them
/// inline); only their completions come back through this thread. One
/// poller, rather than the callback API's two threads taking turns on
/// gRPC's pollset, halves the thread wake-ups per request.
class tunnel_service {
 public:
  explicit tunnel_service(server_state& state) : state_(state) {}
  ~tunnel_service();
  /// Before the server is built.
  void register_with(grpc::ServerBuilder& builder);
  /// After the server is built and started: accept streams, start polling.
  void start();
  /// After grpc::Server::Shutdown: waits until every stream has ended (an
  /// error is logged every `report_after` meanwhile), then shuts the queue
  /// down and joins the poller. The worker pool must still run: a stream
  /// ends when its tunnel's strand calls Finish.
  void stop(std::chrono::milliseconds report_after);

 private:
  friend class tunnel_call;
  server_state& state_;
  pb::Tunnel::AsyncService async_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::thread poller_;
  std::atomic<uint64_t> next_conn_{1};
  std::atomic<int64_t> calls_{0};  ///< tunnel_call objects alive, the one awaiting a stream included
};

}  // namespace grok::server_detail
