#include "relay.hpp"

#include <grpcpp/grpcpp.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "cluster.hpp"
#include "grok/cluster/v1/cluster.grpc.pb.h"
#include "grok/completion_poller.hpp"
#include "grok/files.hpp"
#include "grok/frame_writer.hpp"
#include "grok/header_shaping.hpp"
#include "grok/http_text.hpp"
#include "grpc_peer.hpp"
#include "server_state.hpp"
#include "stream_call.hpp"
#include "tunnel.hpp"

namespace grok::server_detail {

namespace {

namespace cpb = grok::cluster::v1;
constexpr const char* secret_header = "grok-node-secret";
constexpr const char* node_header = "grok-node";
/// Exchanges one relay stream may carry at once, each way.
constexpr size_t max_relayed_exchanges = 10000;

pb::Frame relay_unavailable(uint64_t id, unsigned status, std::string message) {
  auto f = make_reset(id, pb::Reset::RELAY_UNAVAILABLE, std::move(message));
  f.mutable_reset()->set_status(status);
  return f;
}

uint64_t payload_bytes(const pb::Frame& f) { return f.has_data() ? f.data().payload().size() : 0; }

/// Counts an object while it lives (declared first in a call, so the count
/// drops only after the call's gRPC state is gone).
struct counted {
  explicit counted(std::atomic<int64_t>& n) : n_(n) { n_.fetch_add(1, std::memory_order_relaxed); }
  ~counted() { n_.fetch_sub(1, std::memory_order_release); }
  counted(const counted&) = delete;
  counted& operator=(const counted&) = delete;
  std::atomic<int64_t>& n_;
};

/// What one relay stream may hold queued: every exchange's window (credit
/// bounds each; a relayed exchange's window does not grow) on top of the
/// tunnel's usual limit.
uint64_t queue_limit(const server_config& c, size_t exchanges) {
  return c.max_queued_bytes + static_cast<uint64_t>(exchanges) * c.initial_window;
}

std::string header_value(const pb::RequestHead& h, std::string_view name) {
  for (const auto& x : h.headers())
    if (x.name().size() == name.size() &&
        std::equal(name.begin(), name.end(), x.name().begin(),
                   [](char a, char b) {
                     return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
                   }))
      return x.value();
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------
// The tunnel's node: one stream from a public node.

class relay_inbound;

/// One relayed exchange as the local tunnel sees it: its sink.
class relay_exchange final : public exchange_sink {
 public:
  relay_exchange(std::weak_ptr<relay_inbound> in, uint64_t id) : in_(std::move(in)), id_(id) {}
  void on_opened(uint64_t, uint32_t window, uint32_t response_window) override;
  void on_frames(uint64_t, frame_run&& frames) override;
  void on_unavailable(uint64_t, unsigned status, std::string reason) override;

 private:
  std::weak_ptr<relay_inbound> in_;
  uint64_t id_;  ///< the public node's id for it
};

class relay_inbound : public std::enable_shared_from_this<relay_inbound> {
 public:
  relay_inbound(server_state& state, std::string peer)
      : state_(state), cfg_(state.config()), strand_(asio::make_strand(state.ioc())), peer_(std::move(peer)) {}

  // From the gRPC call (the relay poll thread).
  void attach(tunnel_stream* s) {
    asio::post(strand_, [self = shared_from_this(), s] {
      self->stream_ = s;
      self->writer_.attach(s);
    });
  }
  void post_batch(std::shared_ptr<pb::Batch> b) {
    asio::post(strand_, [self = shared_from_this(), b = std::move(b)] { self->handle_batch(*b); });
  }
  void post_end(stream_end how, std::string why) {
    asio::post(strand_, [self = shared_from_this(), how, why = std::move(why)] { self->close(how, why); });
  }
  void write_finished(bool ok) {
    if (!writer_.write_finished(ok)) return;
    asio::post(strand_, [self = shared_from_this(), ok] {
      self->writer_.on_write_done(ok);
      if (!ok) self->close(stream_end::unavailable, "write failed");
      self->maybe_finish();
    });
  }
  void post_done() {
    asio::post(strand_, [self = shared_from_this()] { self->stream_ = nullptr; });
  }
  /// This server stops: end the stream now rather than at the tunnel port's grace.
  void shutdown() {
    asio::post(strand_, [self = shared_from_this()] { self->close(stream_end::unavailable, "server shutting down"); });
  }

  // From relayed exchanges (a tunnel's strand).
  void opened(uint64_t id, uint32_t window, uint32_t response_window) {
    asio::post(strand_, [self = shared_from_this(), id, window, response_window] {
      if (!self->exchanges_.contains(id)) return;
      // The public node's on_opened: both windows, before any frame of the response.
      auto f = make_window_update(id, window);
      f.mutable_window_update()->set_response_window(response_window);
      self->queue(std::move(f));
    });
  }
  void from_tunnel(uint64_t id, frame_run&& frames) {
    asio::post(strand_, [self = shared_from_this(), id, frames = std::move(frames)]() mutable {
      auto it = self->exchanges_.find(id);
      if (it == self->exchanges_.end()) return;
      for (auto& f : frames) {
        bool reset = f.has_reset();
        f.set_exchange_id(id);
        self->queue(std::move(f));
        if (reset) {  // the tunnel ended it
          self->forget(it);
          break;
        }
      }
      self->check_queue();
    });
  }
  void unavailable(uint64_t id, unsigned status, std::string reason) {
    asio::post(strand_, [self = shared_from_this(), id, status, reason = std::move(reason)]() mutable {
      auto it = self->exchanges_.find(id);
      if (it == self->exchanges_.end()) return;
      self->forget(it);
      self->queue(relay_unavailable(id, status, std::move(reason)));
    });
  }

 private:
  struct mapped {
    std::shared_ptr<tunnel> t;
    uint64_t tunnel_id;
  };

  void forget(std::unordered_map<uint64_t, mapped>::iterator it) {
    exchanges_.erase(it);
    state_.exchanges_in_flight.fetch_sub(1, std::memory_order_relaxed);
  }

  void handle_batch(pb::Batch& b) {
    if (closed_) return;
    for (auto& f : *b.mutable_frames()) {
      if (f.has_request_head()) {
        open(std::move(f));
        continue;
      }
      auto it = exchanges_.find(f.exchange_id());
      if (it == exchanges_.end()) continue;  // ended meanwhile: late frames are expected
      auto [t, tid] = it->second;
      if (f.has_reset() && f.reset().code() == pb::Reset::RELAY_CLOSED) {
        forget(it);
        t->close_exchange(tid);
        continue;
      }
      if (!f.has_data() && !f.has_window_update() && !f.has_reset()) {
        spdlog::warn("relay from {}: unexpected frame kind {}; closing", peer_, static_cast<int>(f.kind_case()));
        return close(stream_end::invalid_argument, "unexpected frame");
      }
      f.set_exchange_id(tid);
      t->send(std::move(f));
    }
  }

  void open(pb::Frame&& f) {
    const uint64_t id = f.exchange_id();
    auto* head = f.mutable_request_head();
    const std::string name = head->relay_name();
    const std::string host = name + "." + cfg_->domain;
    if (exchanges_.contains(id)) return close(stream_end::invalid_argument, "exchange id reused");
    if (exchanges_.size() >= max_relayed_exchanges)
      return queue(relay_unavailable(id, 503, "Too many requests are relayed to this node at once."));
    if (state_.draining.load(std::memory_order_relaxed))
      return queue(relay_unavailable(id, 503, "The server is shutting down; try again shortly."));
    auto found = state_.names.find(name);
    if (found.t && found.t->is_tcp()) found.t.reset();
    if (!found.t) {
      if (found.unhealthy)
        return queue(relay_unavailable(id, 503, "Tunnel " + host + " is online, but its local service fails its health check."));
      return queue(relay_unavailable(id, 502, "Tunnel " + host + " is not online at node " + state_.cluster->node_id() + "."));
    }
    if (state_.cluster && !state_.cluster->serving())
      return queue(relay_unavailable(id, 503, "This server node lost contact with its cluster; try again shortly."));
    // The tunnel's visitor rules, once, here: this node knows them.
    switch (found.t->check_visitor(head->remote_addr(), header_value(*head, "authorization"))) {
      case access_verdict::pass:
        break;
      case access_verdict::forbidden:
        return answer(id, 403, "Your address may not reach " + host + ".", {});
      case access_verdict::unauthorized:
        return answer(id, 401, "Sign in to reach " + host + ".",
                      {"WWW-Authenticate", "Basic realm=\"" + host + "\", charset=\"UTF-8\""});
    }
    if (found.t->asks_credentials()) remove_headers(*head->mutable_headers(), "authorization");
    head->clear_relay_name();
    auto t = std::move(found.t);
    const uint64_t tid = t->next_exchange_id();
    f.set_exchange_id(tid);
    exchanges_.emplace(id, mapped{t, tid});
    state_.exchanges_in_flight.fetch_add(1, std::memory_order_relaxed);  // a drain waits for it too
    t->open(std::make_shared<relay_exchange>(weak_from_this(), id), std::move(f));
  }

  /// A response this node makes itself (a visitor rule refused the request).
  void answer(uint64_t id, unsigned status, const std::string& detail, std::pair<std::string, std::string> extra) {
    auto body = error_page(status, detail);
    pb::Frame head;
    head.set_exchange_id(id);
    auto* h = head.mutable_response_head();
    h->set_status(status);
    h->set_reason(reason_phrase(status));
    auto* ct = h->add_headers();
    ct->set_name("Content-Type");
    ct->set_value("text/html; charset=utf-8");
    if (!extra.first.empty()) {
      auto* x = h->add_headers();
      x->set_name(extra.first);
      x->set_value(extra.second);
    }
    h->set_content_length(static_cast<int64_t>(body.size()));
    queue(std::move(head));
    queue(make_data(id, std::move(body), true));
  }

  void queue(pb::Frame&& f) {
    if (closed_) return;
    if (!writer_.push_deferred(std::move(f))) return;
    asio::post(strand_, [self = shared_from_this()] { self->writer_.flush(); });
  }

  void check_queue() {
    if (writer_.queued_bytes() > queue_limit(*cfg_, exchanges_.size())) {
      spdlog::warn("relay from {}: {} bytes queued, the node is not reading; closing", peer_, writer_.queued_bytes());
      close(stream_end::resource_exhausted, "not reading");
    }
  }

  void close(stream_end how, const std::string& why) {
    if (closed_) return;
    closed_ = true;
    // The tunnels' clients stop the exchanges the public node can no longer see.
    for (auto& [id, m] : exchanges_) {
      m.t->send(make_reset(m.tunnel_id, pb::Reset::CANCELLED, "the public node went away"));
      m.t->close_exchange(m.tunnel_id);
    }
    state_.exchanges_in_flight.fetch_sub(static_cast<int64_t>(exchanges_.size()), std::memory_order_relaxed);
    exchanges_.clear();
    spdlog::debug("relay from {}: closed ({})", peer_, why);
    finish_how_ = how;
    finish_message_ = why;
    finish_pending_ = true;
    if (how == stream_end::cancelled) writer_.detach();
    maybe_finish();
  }

  void maybe_finish() {
    if (!finish_pending_ || stream_ == nullptr || writer_.await_write()) return;
    finish_pending_ = false;
    writer_.detach();
    stream_->Finish(finish_how_, finish_message_);
  }

  server_state& state_;
  std::shared_ptr<const server_config> cfg_;
  asio::strand<asio::io_context::executor_type> strand_;
  std::string peer_;
  // strand only
  tunnel_stream* stream_ = nullptr;
  frame_writer<tunnel_stream> writer_;
  std::unordered_map<uint64_t, mapped> exchanges_;  ///< the public node's id -> the tunnel and its id
  bool closed_ = false;
  bool finish_pending_ = false;
  stream_end finish_how_ = stream_end::ok;
  std::string finish_message_;
};

void relay_exchange::on_opened(uint64_t, uint32_t window, uint32_t response_window) {
  if (auto in = in_.lock()) in->opened(id_, window, response_window);
}
void relay_exchange::on_frames(uint64_t, frame_run&& frames) {
  if (auto in = in_.lock()) in->from_tunnel(id_, std::move(frames));
}
void relay_exchange::on_unavailable(uint64_t, unsigned status, std::string reason) {
  if (auto in = in_.lock()) in->unavailable(id_, status, std::move(reason));
}

// ---------------------------------------------------------------------------
// The public node: one stream to a node that holds tunnels.

class relay_peer;

struct relay_hub::impl {
  explicit impl(server_state& s) : state(s), cfg(s.config()) {}
  server_state& state;
  std::shared_ptr<const server_config> cfg;
  cpb::Relay::AsyncService service;
  std::unique_ptr<grpc::ServerCompletionQueue> in_cq;
  grpc::CompletionQueue out_cq;
  std::vector<std::thread> pollers;
  std::atomic<int64_t> in_calls{0};
  std::atomic<int64_t> out_calls{0};
  std::atomic<bool> stopping{false};
  bool registered = false;

  struct node_entry {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<cpb::Relay::Stub> stub;
    std::shared_ptr<relay_peer> peer;  ///< the current stream; replaced once it broke
    std::atomic<uint64_t> exchanges{0}, bytes_out{0}, bytes_in{0}, errors{0};
    std::atomic<int64_t> down_until{0};  ///< steady-clock ticks: a stream to it could not be opened
  };
  mutable std::mutex mu;  // guards nodes and inbound
  std::map<std::string, std::unique_ptr<node_entry>> nodes;
  std::vector<std::weak_ptr<relay_inbound>> inbound;
  std::atomic<uint64_t> turn{0};

  std::shared_ptr<grpc::Channel> channel_to(const std::string& address) const;
};

/// The gRPC side of an outbound stream: completions arrive on the hub's
/// client poll thread. Deletes itself when every operation is back and the
/// peer gave it up.
class relay_out_call final : public tunnel_stream, public stream_call_base {
 public:
  enum event { read, write, finish, events };

  relay_out_call(relay_hub::impl& hub, std::shared_ptr<relay_peer> peer);
  /// Starts the call.
  void begin(relay_hub::impl& hub, cpb::Relay::Stub& stub);
  void StartWrite(const pb::Batch* b) override { start_write(*stream_, *b, &ops_[write]); }
  void Finish(stream_end, const std::string&) override {
    // The public node ends its side: the other node sees the stream cancelled.
    ctx_.TryCancel();
    release();  // the peer's hold
  }
  void cancel() { ctx_.TryCancel(); }
  void on_event(event e, bool ok);

 private:
  void release();
  counted counted_;  // before the gRPC state: the count drops once that is gone
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<pb::Batch, pb::Batch>> stream_;
  grpc::Status status_;
  std::array<cq_tag<relay_out_call, event>, events> ops_{{{this, read}, {this, write}, {this, finish}}};
  std::shared_ptr<relay_peer> peer_;
};

class relay_peer final : public exchange_target, public std::enable_shared_from_this<relay_peer> {
 public:
  relay_peer(server_state& state, relay_hub::impl::node_entry& node, std::string id)
      : cfg_(state.config()), strand_(asio::make_strand(state.ioc())), node_(node), id_(std::move(id)) {}

  void start(relay_hub::impl& hub) {
    // call_ is set before the call can complete anything on the poll thread.
    call_ = new relay_out_call(hub, shared_from_this());
    call_->begin(hub, *node_.stub);
  }
  bool broken() const { return broken_.load(std::memory_order_acquire); }
  void stop() {
    asio::post(strand_, [self = shared_from_this()] { self->fail("this server is shutting down"); });
  }

  // exchange_target (any thread)
  uint64_t next_exchange_id() override { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t conn_id() const override { return 0; }
  void open(std::shared_ptr<exchange_sink> sink, pb::Frame&& head) override {
    asio::post(strand_, [self = shared_from_this(), sink = std::move(sink), head = std::move(head)]() mutable {
      auto id = head.exchange_id();
      if (self->failed_) return sink->on_unavailable(id, 502, "The relay to node " + self->id_ + " is down.");
      if (self->exchanges_.size() >= max_relayed_exchanges)
        return sink->on_unavailable(id, 503, "Too many requests are relayed to node " + self->id_ + " at once.");
      self->exchanges_.emplace(id, sink);
      self->node_.exchanges.fetch_add(1, std::memory_order_relaxed);
      self->queue(std::move(head));
      self->check_queue();
      // The sink hears on_opened when the tunnel's node says the tunnel took it (handle_batch).
    });
  }
  void send(pb::Frame&& f) override {
    node_.bytes_out.fetch_add(payload_bytes(f), std::memory_order_relaxed);
    asio::post(strand_, [self = shared_from_this(), f = std::move(f)]() mutable {
      if (self->failed_) return;
      self->queue(std::move(f));
      self->check_queue();
    });
  }
  void close_exchange(uint64_t id) override {
    asio::post(strand_, [self = shared_from_this(), id] {
      if (self->exchanges_.erase(id) == 0 || self->failed_) return;
      self->queue(make_reset(id, pb::Reset::RELAY_CLOSED, {}));
      self->check_queue();
    });
  }

  // From the call (the client poll thread).
  void post_started(bool ok) {
    asio::post(strand_, [self = shared_from_this(), ok] {
      if (!ok) return self->fail("could not open a relay stream to node " + self->id_);
      if (self->failed_) return;
      self->attached_ = true;
      self->writer_.attach(self->call_);
      for (auto& f : self->pending_) self->writer_.push(std::move(f));
      self->pending_.clear();
      self->pending_bytes_ = 0;
    });
  }
  void post_batch(std::shared_ptr<pb::Batch> b) {
    asio::post(strand_, [self = shared_from_this(), b = std::move(b)] { self->handle_batch(*b); });
  }
  void write_finished(bool ok) {
    if (!writer_.write_finished(ok)) return;
    asio::post(strand_, [self = shared_from_this(), ok] {
      self->writer_.on_write_done(ok);
      if (!ok) self->fail("the relay stream to node " + self->id_ + " broke");
    });
  }
  void post_ended(std::string why) {
    asio::post(strand_, [self = shared_from_this(), why = std::move(why)] { self->fail(why); });
  }

 private:
  void handle_batch(pb::Batch& b) {
    // Each exchange's frames of the batch reach its sink in one hop, in order.
    heard_ = true;
    groups_.clear();
    for (auto& f : *b.mutable_frames()) {
      const uint64_t id = f.exchange_id();
      auto it = exchanges_.find(id);
      if (it == exchanges_.end()) continue;  // closed meanwhile
      auto sink = it->second;
      if (f.has_reset() && f.reset().code() == pb::Reset::RELAY_UNAVAILABLE) {
        exchanges_.erase(it);
        node_.errors.fetch_add(1, std::memory_order_relaxed);
        unsigned status = f.reset().status() >= 400 && f.reset().status() <= 599 ? f.reset().status() : 502;
        deliver(id);  // what came before it first
        sink->on_unavailable(id, status, f.reset().message());
        continue;
      }
      if (!f.has_response_head() && !f.has_data() && !f.has_window_update() && !f.has_reset()) {
        spdlog::warn("relay to {}: unexpected frame kind {}; closing", id_, static_cast<int>(f.kind_case()));
        deliver_all();
        return fail("node " + id_ + " broke the relay protocol");
      }
      if (f.has_window_update() && f.window_update().response_window()) {
        // The tunnel took the exchange: its windows, after what came before.
        deliver(id);
        sink->on_opened(id, f.window_update().increment(), f.window_update().response_window());
        continue;
      }
      if (f.has_reset()) exchanges_.erase(it);
      node_.bytes_in.fetch_add(payload_bytes(f), std::memory_order_relaxed);
      auto g = std::find_if(groups_.begin(), groups_.end(), [id](const auto& x) { return x.id == id; });
      if (g == groups_.end()) g = groups_.insert(groups_.end(), group{id, std::move(sink), {}});
      g->frames.push_back(std::move(f));
    }
    deliver_all();
  }

  void deliver(uint64_t id) {
    auto g = std::find_if(groups_.begin(), groups_.end(), [id](const auto& x) { return x.id == id; });
    if (g == groups_.end() || g->frames.empty()) return;
    g->sink->on_frames(g->id, std::move(g->frames));
    g->frames.clear();
  }
  void deliver_all() {
    for (auto& g : groups_)
      if (!g.frames.empty()) g.sink->on_frames(g.id, std::move(g.frames));
    groups_.clear();
  }

  void queue(pb::Frame&& f) {
    if (attached_) {
      if (writer_.push_deferred(std::move(f)))
        asio::post(strand_, [self = shared_from_this()] { self->writer_.flush(); });
      return;
    }
    pending_bytes_ += f.ByteSizeLong();
    pending_.push_back(std::move(f));
  }
  uint64_t queued() const { return writer_.queued_bytes() + pending_bytes_; }
  void check_queue() {
    if (queued() > queue_limit(*cfg_, exchanges_.size())) fail("node " + id_ + " is not reading");
  }

  void fail(const std::string& why) {
    if (failed_) return;
    failed_ = true;
    broken_.store(true, std::memory_order_release);
    if (!heard_)  // the node never answered on it: pass it over for a while
      node_.down_until.store((std::chrono::steady_clock::now() + std::chrono::seconds(2)).time_since_epoch().count(),
                             std::memory_order_relaxed);
    if (!exchanges_.empty())
      spdlog::warn("relay to node {}: {}; {} request(s) in flight fail", id_, why, exchanges_.size());
    auto lost = std::move(exchanges_);
    exchanges_.clear();
    for (auto& [id, sink] : lost) {
      node_.errors.fetch_add(1, std::memory_order_relaxed);
      sink->on_unavailable(id, 502, "The relay to node " + id_ + " broke.");
    }
    pending_.clear();
    writer_.detach();
    if (call_ && !finished_) {
      finished_ = true;
      call_->Finish(stream_end::cancelled, why);
    }
  }

  friend class relay_out_call;
  std::shared_ptr<const server_config> cfg_;
  asio::strand<asio::io_context::executor_type> strand_;
  relay_hub::impl::node_entry& node_;
  std::string id_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<bool> broken_{false};
  relay_out_call* call_ = nullptr;  // set in start(), before anything reaches the strand
  // strand only
  bool attached_ = false;
  bool heard_ = false;  ///< a batch came from the node on this stream
  bool failed_ = false;
  bool finished_ = false;
  frame_writer<tunnel_stream> writer_;
  std::vector<pb::Frame> pending_;  ///< frames before the stream started
  uint64_t pending_bytes_ = 0;
  std::unordered_map<uint64_t, std::shared_ptr<exchange_sink>> exchanges_;
  struct group {
    uint64_t id;
    std::shared_ptr<exchange_sink> sink;
    frame_run frames;
  };
  std::vector<group> groups_;  ///< handle_batch's scratch
};

relay_out_call::relay_out_call(relay_hub::impl& hub, std::shared_ptr<relay_peer> peer)
    : counted_(hub.out_calls), peer_(std::move(peer)) {
  ctx_.AddMetadata(secret_header, hub.cfg->cluster_secret);
  ctx_.AddMetadata(node_header, hub.cfg->node_id);
}

void relay_out_call::begin(relay_hub::impl& hub, cpb::Relay::Stub& stub) {
  // As grok's own tunnel stream does: no start event; the first read is armed
  // here, on this thread, and a failed connection ends it.
  publish_tags();
  // The call's headers leave with the first write (the request that made
  // this stream), so the start has no completion of its own.
  ctx_.set_initial_metadata_corked(true);
  stream_ = stub.PrepareAsyncExchanges(&ctx_, &hub.out_cq);
  set_holds(2);  // the peer's hold, the read
  stream_->StartCall(nullptr);
  arm_read(*stream_, &ops_[read]);
  peer_->post_started(true);
}

void relay_out_call::on_event(event e, bool ok) {
  switch (e) {
    case read:
      if (!ok) {
        add_hold();
        stream_->Finish(&status_, &ops_[finish]);
        break;
      }
      on_read(*stream_, &ops_[read], [this](std::shared_ptr<pb::Batch> b) { peer_->post_batch(std::move(b)); });
      return;
    case write:
      peer_->write_finished(ok);
      break;
    case finish:
      peer_->post_ended(status_.ok() ? "node " + peer_->id_ + " closed the relay stream"
                                     : "the relay stream to node " + peer_->id_ + " ended: " + status_.error_message());
      break;
    case events:
      return;
  }
  release();
}

void relay_out_call::release() {
  if (!drop_hold()) return;
  delete this;
}

// ---------------------------------------------------------------------------
// The server side of a stream from a public node.

class relay_in_call final : public tunnel_stream, public stream_call_base {
 public:
  enum event { accepted, read, write, finish, done, events };

  explicit relay_in_call(relay_hub::impl& hub) : hub_(hub), counted_(hub.in_calls), stream_(&ctx_) {
    publish_tags();
    ctx_.AsyncNotifyWhenDone(&ops_[done]);
    hub_.service.RequestExchanges(&ctx_, &stream_, hub_.in_cq.get(), hub_.in_cq.get(), &ops_[accepted]);
  }

  void StartWrite(const pb::Batch* b) override { start_write(stream_, *b, &ops_[write]); }
  void Finish(stream_end how, const std::string& message) override {
    add_hold();
    stream_.Finish(grpc::Status(how == stream_end::invalid_argument   ? grpc::StatusCode::INVALID_ARGUMENT
                                : how == stream_end::resource_exhausted ? grpc::StatusCode::RESOURCE_EXHAUSTED
                                : how == stream_end::ok                 ? grpc::StatusCode::OK
                                                                        : grpc::StatusCode::UNAVAILABLE,
                                message),
                   &ops_[finish]);
    release();  // the owner's hold
  }

  void on_event(event e, bool ok) {
    switch (e) {
      case accepted: {
        if (!ok) {
          delete this;
          return;
        }
        if (!hub_.stopping) new relay_in_call(hub_);
        auto md = ctx_.client_metadata();
        auto secret = md.find(secret_header);
        auto node = md.find(node_header);
        const auto& want = hub_.cfg->cluster_secret;
        bool good = secret != md.end() && secret->second.size() == want.size() &&
                    CRYPTO_memcmp(secret->second.data(), want.data(), want.size()) == 0;
        peer_ = node == md.end() ? ctx_.peer() : std::string(node->second.data(), node->second.size()).substr(0, 64);
        // A node that showed the secret is no stranger to the tunnel port's guard.
        if (good) hub_.state.tunnel_connections.said_hello(peer_ip(ctx_.peer()), peer_port(ctx_.peer()));
        if (!good) {
          spdlog::warn("relay: refused a stream from {} ({}): wrong cluster.secret", ctx_.peer(), peer_);
          set_holds(2);  // done, the refusal's finish
          in_ = nullptr;
          set_up_.store(true, std::memory_order_release);
          stream_.Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "wrong cluster secret"), &ops_[finish]);
          return;
        }
        in_ = std::make_shared<relay_inbound>(hub_.state, peer_);
        {
          std::lock_guard lk(hub_.mu);
          std::erase_if(hub_.inbound, [](const auto& w) { return w.expired(); });
          hub_.inbound.push_back(in_);
          if (hub_.stopping) in_->shutdown();
        }
        set_holds(3);  // the owner's hold, done, the read below
        in_->attach(this);
        set_up_.store(true, std::memory_order_release);
        arm_read(stream_, &ops_[read]);
        return;
      }
      case read:
        set_up_.load(std::memory_order_acquire);
        if (!ok) {
          in_->post_end(stream_end::ok, "the public node closed it");
          break;
        }
        on_read(stream_, &ops_[read], [this](std::shared_ptr<pb::Batch> b) { in_->post_batch(std::move(b)); });
        return;
      case write:
        set_up_.load(std::memory_order_acquire);
        in_->write_finished(ok);
        break;
      case finish:
        set_up_.load(std::memory_order_acquire);
        break;
      case done:
        while (!set_up_.load(std::memory_order_acquire)) std::this_thread::yield();
        if (in_ && ctx_.IsCancelled()) in_->post_end(stream_end::cancelled, "cancelled");
        break;
      case events:
        return;
    }
    release();
  }

 private:
  void release() {
    if (!drop_hold()) return;
    if (in_) in_->post_done();
    delete this;
  }
  relay_hub::impl& hub_;
  counted counted_;  // before the gRPC state: the count drops once that is gone
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<pb::Batch, pb::Batch> stream_;
  std::array<cq_tag<relay_in_call, event>, events> ops_{
      {{this, accepted}, {this, read}, {this, write}, {this, finish}, {this, done}}};
  std::shared_ptr<relay_inbound> in_;
  std::string peer_;
  std::atomic<bool> set_up_{false};
};

// ---------------------------------------------------------------------------

std::shared_ptr<grpc::Channel> relay_hub::impl::channel_to(const std::string& address) const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(cfg->heartbeat_interval.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(cfg->heartbeat_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!cfg->tls_cert_file.empty() && cfg->tls_grpc) {
    // Every node has the domain's wildcard certificate: ask for a name under it.
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read_file_if_exists("/etc/ssl/certs/ca-certificates.crt").value_or("") +
                         read_file_if_exists(cfg->tls_cert_file).value_or("");
    creds = grpc::SslCredentials(ssl);
    args.SetSslTargetNameOverride("relay." + cfg->domain);
  }
  return grpc::CreateCustomChannel(address, creds, args);
}

relay_hub::relay_hub(server_state& state) : impl_(std::make_unique<impl>(state)) {}

relay_hub::~relay_hub() {
  stop();
  join();
}

void relay_hub::add_to(grpc::ServerBuilder& builder) {
  builder.RegisterService(&impl_->service);
  impl_->in_cq = builder.AddCompletionQueue();
  impl_->registered = true;
}

void relay_hub::start() {
  if (!impl_->registered) return;
  new relay_in_call(*impl_);
  impl_->pollers.push_back(start_completion_poller<relay_in_call, relay_in_call::event>(*impl_->in_cq));
  impl_->pollers.push_back(start_completion_poller<relay_out_call, relay_out_call::event>(impl_->out_cq));
}

void relay_hub::stop() {
  std::lock_guard lk(impl_->mu);
  if (impl_->stopping.exchange(true)) return;
  for (auto& [id, n] : impl_->nodes)
    if (n->peer) n->peer->stop();
  for (auto& w : impl_->inbound)
    if (auto in = w.lock()) in->shutdown();
}

void relay_hub::join() {
  if (impl_->pollers.empty()) return;
  // Outbound calls end once cancelled; inbound ones once the tunnel port shut down.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  {
    std::lock_guard lk(impl_->mu);
    for (auto& [id, n] : impl_->nodes) n->peer.reset();
  }
  while ((impl_->in_calls.load(std::memory_order_acquire) > 0 || impl_->out_calls.load(std::memory_order_acquire) > 0) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (impl_->out_calls.load() > 0 || impl_->in_calls.load() > 0)
    spdlog::error("relay: {} stream(s) to and {} from other nodes still open at shutdown", impl_->out_calls.load(),
                  impl_->in_calls.load());
  impl_->in_cq->Shutdown();
  impl_->out_cq.Shutdown();
  for (auto& p : impl_->pollers) p.join();
  impl_->pollers.clear();
}

std::shared_ptr<exchange_target> relay_hub::route(const std::string& name) {
  auto& m = *impl_;
  if (!m.state.cluster || m.stopping) return nullptr;
  auto holders = m.state.cluster->remote_holders(name);
  if (holders.empty()) return nullptr;
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  std::lock_guard lk(m.mu);
  // Turns among the nodes that hold it, passing over one whose stream could
  // not be opened a moment ago (it may have died; its lease has not run out yet).
  const size_t start = m.turn.fetch_add(1, std::memory_order_relaxed);
  const name_record* pick = nullptr;
  for (size_t i = 0; i < holders.size() && !pick; ++i) {
    const auto& h = holders[(start + i) % holders.size()];
    auto it = m.nodes.find(h.node);
    bool down = it != m.nodes.end() && it->second->down_until.load(std::memory_order_relaxed) > now;
    if (!down || i + 1 == holders.size()) pick = &h;
  }
  auto address = m.state.cluster->advertise_of(pick->node);
  if (!address) return nullptr;
  if (m.stopping) return nullptr;
  auto& n = m.nodes[pick->node];
  if (!n) n = std::make_unique<impl::node_entry>();
  if (n->address != *address) {  // first use, or the node moved
    n->address = *address;
    n->channel = m.channel_to(*address);
    n->stub = cpb::Relay::NewStub(n->channel);
    if (n->peer) n->peer->stop();
    n->peer.reset();
  }
  if (!n->peer || n->peer->broken()) {
    n->peer = std::make_shared<relay_peer>(m.state, *n, pick->node);
    n->peer->start(m);
  }
  return n->peer;
}

std::vector<relay_hub::peer_stats> relay_hub::stats() const {
  std::lock_guard lk(impl_->mu);
  std::vector<peer_stats> out;
  for (auto& [id, n] : impl_->nodes)
    out.push_back({id, n->exchanges.load(), n->bytes_out.load(), n->bytes_in.load(), n->errors.load()});
  return out;
}

}  // namespace grok::server_detail
