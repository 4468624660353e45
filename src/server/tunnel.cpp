#include "tunnel.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/post.hpp>

#include "grok/completion_poller.hpp"
#include "grok/host.hpp"
#include "tcp_tunnel.hpp"

namespace grok::server_detail {

namespace {

/// The address part of a gRPC peer string ("ipv4:1.2.3.4:5", "ipv6:[::1]:5").
std::string peer_ip(const std::string& peer) {
  std::string_view p = peer;
  if (p.starts_with("ipv4:")) {
    p.remove_prefix(5);
    return std::string(p.substr(0, p.rfind(':')));
  }
  if (p.starts_with("ipv6:")) {
    p.remove_prefix(5);
    if (p.starts_with('[')) return std::string(p.substr(1, p.find(']') - 1));
    return std::string(p.substr(0, p.rfind(':')));
  }
  return peer;
}

/// The token-table entry for `d`, or nullptr.
const token_entry* lookup_token(const server_config& cfg, const token_digest& d) {
  int i = find_token(cfg.token_table, d);
  return i < 0 ? nullptr : &cfg.token_table[static_cast<size_t>(i)];
}

std::string make_public_url(const server_config& cfg, uint16_t port, const std::string& name) {
  if (cfg.https_port != 0) {
    std::string url = "https://" + name + "." + cfg.domain;
    if (cfg.https_port != 443) url += ":" + std::to_string(cfg.https_port);
    return url;
  }
  std::string url = "http://" + name + "." + cfg.domain;
  if (port != 80) url += ":" + std::to_string(port);
  return url;
}

}  // namespace

/// One tunnel stream. Its completions arrive on the service's poll thread
/// (on_event); StartWrite and Finish come from the tunnel's strand, at most
/// one write at a time and Finish once, after the last write came back.
/// The object deletes itself when the call is over, every operation has
/// come back and the tunnel has called Finish.
class tunnel_call {
 public:
  explicit tunnel_call(tunnel_service& svc) : svc_(svc), counted_(svc.calls_), stream_(&ctx_) {
    ctx_.AsyncNotifyWhenDone(&ops_[done]);
    svc_.async_.RequestConnect(&ctx_, &stream_, svc_.cq_.get(), svc_.cq_.get(), &ops_[accepted]);
  }

  enum event { accepted, read, write, finish, done, events };

  // Strand only.
  void StartWrite(const pb::Batch* b) {
    refs_.fetch_add(1, std::memory_order_relaxed);
    stream_.Write(*b, &ops_[write]);
  }
  void Finish(const grpc::Status& s) {
    refs_.fetch_add(1, std::memory_order_relaxed);
    stream_.Finish(s, &ops_[finish]);
    release();  // the tunnel's hold: it calls nothing more
  }

  /// Poll thread: one of this call's operations completed.
  void on_event(event e, bool ok) {
    switch (e) {
      case accepted:
        if (!ok) {  // the server is shutting down; no call was started
          delete this;
          return;
        }
        new tunnel_call(svc_);  // waits for the next stream
        t_ = std::make_shared<tunnel>(svc_.state_, ctx_.peer(), svc_.next_conn_.fetch_add(1));
        refs_.store(3, std::memory_order_relaxed);  // the tunnel's hold, done, the read below
        t_->attach(this);
        stream_.Read(&in_, &ops_[read]);
        return;
      case read:
        if (!ok) {
          t_->post_read_closed();
          break;
        }
        // Hand the batch off before re-arming the read, so frames keep their order.
        t_->post_batch(std::make_shared<pb::Batch>(std::move(in_)));
        in_.Clear();
        stream_.Read(&in_, &ops_[read]);
        return;
      case write:
        t_->write_finished(ok);
        break;
      case finish:
        break;
      case done:
        if (ctx_.IsCancelled()) t_->post_cancelled();
        break;
      case events:
        return;
    }
    release();
  }

 private:
  void release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    t_->post_done();
    delete this;
  }

  /// Counts the call while it lives; declared first, so the count drops
  /// only after the call's gRPC state (ctx_, stream_) is gone.
  struct counted {
    explicit counted(std::atomic<int64_t>& n) : n_(n) { n_.fetch_add(1, std::memory_order_relaxed); }
    ~counted() { n_.fetch_sub(1, std::memory_order_release); }
    std::atomic<int64_t>& n_;
  };

  tunnel_service& svc_;
  counted counted_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<pb::Batch, pb::Batch> stream_;
  std::array<cq_tag<tunnel_call, event>, events> ops_{
      {{this, accepted}, {this, read}, {this, write}, {this, finish}, {this, done}}};
  std::atomic<int> refs_{0};
  std::shared_ptr<tunnel> t_;
  pb::Batch in_;
};

// ---- server_state ---------------------------------------------------------

void server_state::set_config(std::shared_ptr<const server_config> c) {
  std::unordered_map<std::string, token_digest> reserved;
  for (const auto& t : c->token_table)
    for (const auto& n : t.names) reserved.emplace(n, t.digest);
  std::lock_guard lk(mu_);
  cfg_ = std::move(c);
  reserved_ = std::move(reserved);
}

server_state::claim_result server_state::claim(const std::string& name, const std::shared_ptr<tunnel>& t,
                                               const token_digest& owner) {
  std::lock_guard lk(mu_);
  if (names_.contains(name)) return claim_result::taken;
  if (auto r = reserved_.find(name); r != reserved_.end() && r->second != owner) return claim_result::reserved;
  if (auto off = offline_.find(name); off != offline_.end()) {
    if (off->second.until > clock::now() && off->second.owner != owner) return claim_result::held;
    offline_.erase(off);
  }
  names_.emplace(name, t);
  return claim_result::ok;
}

void server_state::release(const std::string& name, const tunnel* t, const token_digest& owner) {
  std::lock_guard lk(mu_);
  auto it = names_.find(name);
  if (it == names_.end() || it->second.get() != t) return;
  names_.erase(it);
  auto now = clock::now();
  std::erase_if(offline_, [&](const auto& kv) { return kv.second.until <= now; });
  offline_[name] = offline_name{now + cfg_->name_grace, owner};
}

std::optional<token_digest> server_state::reserved_by(const std::string& name) const {
  std::lock_guard lk(mu_);
  auto r = reserved_.find(name);
  if (r == reserved_.end()) return std::nullopt;
  return r->second;
}

std::chrono::milliseconds server_state::auth_blocked(const std::string& ip) {
  std::lock_guard lk(mu_);
  if (cfg_->max_auth_failures == 0) return std::chrono::milliseconds(0);
  auto it = auth_failures_.find(ip);
  if (it == auth_failures_.end() || it->second.count < cfg_->max_auth_failures) return std::chrono::milliseconds(0);
  auto until = it->second.window_start + cfg_->auth_failure_window;
  auto now = clock::now();
  if (until <= now) {
    auth_failures_.erase(it);
    return std::chrono::milliseconds(0);
  }
  return std::chrono::ceil<std::chrono::milliseconds>(until - now);
}

void server_state::auth_failed(const std::string& ip) {
  std::lock_guard lk(mu_);
  if (cfg_->max_auth_failures == 0) return;
  auto now = clock::now();
  // Bounded: past 65 536 addresses, forget the windows that have ended; if
  // every one is still live, start over rather than grow.
  if (auth_failures_.size() >= 65536) {
    std::erase_if(auth_failures_, [&](const auto& kv) { return kv.second.window_start + cfg_->auth_failure_window <= now; });
    if (auth_failures_.size() >= 65536) auth_failures_.clear();
  }
  auto& f = auth_failures_[ip];
  if (f.count == 0 || f.window_start + cfg_->auth_failure_window <= now) f = failures{now, 0};
  ++f.count;
}

server_state::lookup server_state::find(const std::string& name) {
  std::lock_guard lk(mu_);
  if (auto it = names_.find(name); it != names_.end()) return {it->second, false};
  auto off = offline_.find(name);
  return {nullptr, off != offline_.end() && off->second.until > clock::now()};
}

std::string server_state::random_free_name() {
  static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  for (;;) {
    std::array<unsigned char, 10> raw{};
    RAND_bytes(raw.data(), raw.size());
    std::string name;
    for (auto c : raw) name += alphabet[c % 36];
    std::lock_guard lk(mu_);
    if (!names_.contains(name) && !offline_.contains(name) && !reserved_.contains(name)) return name;
  }
}

bool server_state::add_token_tunnel(const token_digest& token, unsigned limit) {
  std::lock_guard lk(mu_);
  auto& n = per_token_[token];
  if (limit != 0 && n >= limit) return false;
  ++n;
  return true;
}

void server_state::remove_token_tunnel(const token_digest& token) {
  std::lock_guard lk(mu_);
  auto it = per_token_.find(token);
  if (it == per_token_.end()) return;
  if (--it->second == 0) per_token_.erase(it);
}

bool server_state::reserve_tcp_port(uint16_t port) {
  std::lock_guard lk(mu_);
  return tcp_ports_.insert(port).second;
}

void server_state::release_tcp_port(uint16_t port) {
  std::lock_guard lk(mu_);
  tcp_ports_.erase(port);
}

std::vector<std::shared_ptr<tunnel>> server_state::tunnels() {
  std::lock_guard lk(mu_);
  std::vector<std::shared_ptr<tunnel>> out;
  out.reserve(names_.size());
  for (auto& [_, t] : names_) out.push_back(t);
  return out;
}

size_t server_state::tunnel_count() {
  std::lock_guard lk(mu_);
  return names_.size();
}

// ---- tunnel ---------------------------------------------------------------

tunnel::tunnel(server_state& state, std::string peer, uint64_t conn_id)
    : state_(state),
      cfg_(state.config()),
      strand_(asio::make_strand(state.ioc())),
      hello_timer_(strand_),
      peer_(std::move(peer)),
      conn_id_(conn_id) {}

void tunnel::attach(tunnel_call* r) {
  asio::post(strand_, [self = shared_from_this(), r] {
    self->reactor_ = r;
    self->writer_.attach(r);
    self->start_hello_timer();
  });
}

void tunnel::start_hello_timer() {
  // An unauthenticated stream holds nothing for long.
  hello_timer_.expires_after(std::chrono::seconds(10));
  hello_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->phase_ != phase::hello) return;
    spdlog::warn("tunnel conn={} peer={}: no Hello within 10s, closing", self->conn_id_, self->peer_);
    self->close(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no Hello within 10s"), "no hello");
  });
}

void tunnel::post_batch(std::shared_ptr<pb::Batch> b) {
  asio::post(strand_, [self = shared_from_this(), b = std::move(b)] { self->handle_batch(*b); });
}

void tunnel::post_read_closed() {
  asio::post(strand_, [self = shared_from_this()] {
    self->close(grpc::Status::OK, "client closed the stream");
  });
}

void tunnel::write_finished(bool ok) {
  if (!writer_.write_finished(ok)) return;  // nothing on the strand waits for it
  asio::post(strand_, [self = shared_from_this(), ok] {
    self->writer_.on_write_done(ok);
    self->update_gauges();
    if (!ok) {
      self->close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"), "stream write failed");
    }
    self->maybe_finish();
  });
}

void tunnel::post_cancelled() {
  asio::post(strand_, [self = shared_from_this()] {
    self->close(grpc::Status::CANCELLED, "stream cancelled");
  });
}

void tunnel::post_done() {
  asio::post(strand_, [self = shared_from_this()] {
    self->phase_ = phase::finished;
    self->reactor_ = nullptr;
    spdlog::debug("tunnel conn={} name={}: stream done", self->conn_id_, self->name_);
  });
}

void tunnel::open(std::shared_ptr<exchange_sink> sink, pb::Frame&& head) {
  asio::post(strand_, [self = shared_from_this(), sink = std::move(sink), head = std::move(head)]() mutable {
    auto id = head.exchange_id();
    if (self->phase_ != phase::open) {
      sink->on_unavailable(id, 502, "tunnel offline");
      return;
    }
    if (self->exchanges_.size() >= self->cfg_->max_exchanges) {
      sink->on_unavailable(id, 503, "too many requests in flight on this tunnel");
      return;
    }
    self->exchanges_.emplace(id, sink);
    self->queue(std::move(head));
    self->update_gauges();
    sink->on_opened(id, self->client_window_);
  });
}

void tunnel::send(pb::Frame&& f) {
  asio::post(strand_, [self = shared_from_this(), f = std::move(f)]() mutable {
    if (self->phase_ != phase::open) return;
    self->queue(std::move(f));
    self->update_gauges();
    if (self->writer_.queued_bytes() > self->cfg_->max_queued_bytes) {
      spdlog::warn("tunnel={} conn={}: {} bytes queued, client is not reading; closing",
                   self->name_, self->conn_id_, self->writer_.queued_bytes());
      self->close(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "client is not reading"),
                  "queue limit");
    }
  });
}

void tunnel::queue(pb::Frame&& f) {
  if (!writer_.push_deferred(std::move(f))) return;
  asio::post(strand_, [self = shared_from_this()] {
    self->writer_.flush();
    self->update_gauges();
  });
}

void tunnel::close_exchange(uint64_t id) {
  asio::post(strand_, [self = shared_from_this(), id] {
    self->exchanges_.erase(id);
    self->update_gauges();
  });
}

void tunnel::update_gauges() {
  queued_bytes_.store(writer_.queued_bytes(), std::memory_order_relaxed);
  in_flight_.store(static_cast<uint32_t>(exchanges_.size()), std::memory_order_relaxed);
}

void tunnel::go_away(std::string why) {
  asio::post(strand_, [self = shared_from_this(), why = std::move(why)] {
    if (self->phase_ != phase::open) return;
    pb::Frame f;
    f.mutable_go_away()->set_message(why);
    self->writer_.push(std::move(f));
  });
}

void tunnel::apply_config(std::shared_ptr<const server_config> cfg) {
  asio::post(strand_, [self = shared_from_this(), cfg = std::move(cfg)] {
    self->cfg_ = cfg;
    if (self->phase_ != phase::open) return;
    const token_entry* t = lookup_token(*cfg, self->token_digest_);
    std::string why;
    auto reason = pb::Refused::BAD_TOKEN;
    if (!t && cfg->auth_required()) {
      why = "token revoked";
    } else if (auto owner = self->state_.reserved_by(self->name_); owner && *owner != self->token_digest_) {
      why = "name '" + self->name_ + "' is now reserved for another token";
      reason = pb::Refused::NAME_TAKEN;
    } else if (self->is_tcp_ && t && !t->tcp) {
      why = "this token may no longer open TCP tunnels";
    }
    if (why.empty()) return;
    spdlog::warn("tunnel={} conn={}: {} (reload); closing", self->name_, self->conn_id_, why);
    pb::Frame f;
    auto* r = f.mutable_refused();
    r->set_reason(reason);
    r->set_message(why);
    self->writer_.push(std::move(f));
    self->close(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, why), why);
  });
}

void tunnel::shutdown(std::string why) {
  asio::post(strand_, [self = shared_from_this(), why = std::move(why)] {
    if (self->phase_ == phase::open) {
      pb::Frame f;
      f.mutable_go_away()->set_message(why);
      self->writer_.push(std::move(f));
    }
    self->close(grpc::Status(grpc::StatusCode::UNAVAILABLE, why), why);
  });
}

void tunnel::handle_batch(pb::Batch& b) {
  // Each exchange's frames in this batch reach its sink in one hop, in their
  // order. The client's outbox puts every head before any body, so one
  // exchange's frames are not adjacent; exchanges are independent of each other.
  groups_.clear();
  group_index_.clear();
  auto deliver = [&] {
    for (auto& g : groups_)
      if (!g.frames.empty()) g.sink->on_frames(g.id, std::move(g.frames));
    groups_.clear();
    group_index_.clear();
  };
  for (auto& f : *b.mutable_frames()) {
    if (phase_ == phase::hello) {
      if (!f.has_hello()) {
        refuse(pb::Refused::PROTOCOL_ERROR, "the first frame must be Hello");
        return;
      }
      handle_hello(f.hello());
      continue;
    }
    if (phase_ != phase::open) return;
    switch (f.kind_case()) {
      case pb::Frame::kResponseHead:
      case pb::Frame::kData:
      case pb::Frame::kWindowUpdate:
      case pb::Frame::kReset: {
        auto id = f.exchange_id();
        auto [slot, added] = group_index_.try_emplace(id, groups_.size());
        if (added) {
          auto it = exchanges_.find(id);
          if (it == exchanges_.end()) {  // finished or cancelled: late frames are expected
            group_index_.erase(slot);
            break;
          }
          groups_.push_back({id, it->second, {}, false});
        }
        auto& g = groups_[slot->second];
        if (g.ended) break;  // after its Reset
        g.ended = f.has_reset();
        g.frames.push_back(std::move(f));
        if (g.ended) {
          exchanges_.erase(id);
          update_gauges();
        }
        break;
      }
      case pb::Frame::kGoAway:
        // The client is leaving: route nothing new here, finish what is in flight.
        if (registered_) state_.release(name_, this, token_digest_);
        registered_ = false;
        break;
      default:
        deliver();
        spdlog::warn("tunnel={} conn={}: unexpected frame kind {} from client; closing", name_, conn_id_,
                     static_cast<int>(f.kind_case()));
        close(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unexpected frame"), "protocol error");
        return;
    }
  }
  deliver();
}

void tunnel::handle_hello(const pb::Hello& h) {
  hello_timer_.cancel();
  if (h.protocol_version() != protocol_version) {
    refuse(pb::Refused::UNSUPPORTED_VERSION,
           "protocol version " + std::to_string(h.protocol_version()) + " is not supported; this server speaks " +
               std::to_string(protocol_version));
    return;
  }
  if (state_.draining.load()) {
    refuse(pb::Refused::LIMIT, "the server is shutting down; try again shortly");
    return;
  }
  auto ip = peer_ip(peer_);
  if (auto wait = state_.auth_blocked(ip); wait.count() > 0) {
    auto secs = std::to_string((wait.count() + 999) / 1000);
    spdlog::warn("tunnel conn={} peer={}: refused: too many failed attempts from this address", conn_id_, peer_);
    refuse(pb::Refused::LIMIT, "too many failed attempts from this address; try again in " + secs + "s");
    return;
  }
  token_digest_ = sha256_digest(h.token());
  const token_entry* entry = lookup_token(*cfg_, token_digest_);
  if (!entry && cfg_->auth_required()) {
    state_.auth_failed(ip);
    state_.stats.auth_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("tunnel conn={} peer={}: refused: invalid token", conn_id_, peer_);
    refuse(pb::Refused::BAD_TOKEN, "invalid token");
    return;
  }
  if (entry) token_label_ = entry->label;
  unsigned limit = entry && entry->max_tunnels != 0 ? entry->max_tunnels : cfg_->max_per_token;
  if (!state_.add_token_tunnel(token_digest_, limit)) {
    auto msg = "this token already holds " + std::to_string(limit) + " tunnel(s), its limit" +
               (entry && entry->max_tunnels != 0 ? std::string(" (max_tunnels in the tokens file)")
                                                 : std::string(" (tunnels.max_per_token)"));
    spdlog::warn("tunnel conn={} peer={} token={}: refused: {}", conn_id_, peer_, token_label_, msg);
    refuse(pb::Refused::LIMIT, msg);
    return;
  }
  token_counted_ = true;
  std::string wanted = h.name();
  std::transform(wanted.begin(), wanted.end(), wanted.begin(),
                 [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
  if (wanted.empty()) {
    wanted = state_.random_free_name();
  } else if (!valid_tunnel_name(wanted)) {
    refuse(pb::Refused::BAD_NAME, "'" + h.name() + "' is not a valid name: use 1-63 of a-z, 0-9 and '-'");
    return;
  }
  name_ = wanted;
  is_tcp_ = h.protocol() == pb::Hello::TCP;
  // With any token accepted (no entry), a non-empty auth.tcp_tokens still limits TCP.
  bool tcp_allowed = entry ? entry->tcp
                           : cfg_->tcp_token_table.empty() || find_token(cfg_->tcp_token_table, token_digest_) >= 0;
  if (is_tcp_ && !tcp_allowed) {
    refuse(pb::Refused::BAD_TOKEN, "this token may not open TCP tunnels");
    return;
  }
  switch (state_.claim(name_, shared_from_this(), token_digest_)) {
    case server_state::claim_result::ok:
      break;
    case server_state::claim_result::taken:
      refuse_name("name '" + name_ + "' is already in use by another tunnel");
      return;
    case server_state::claim_result::reserved:
      refuse_name("name '" + name_ + "' is reserved for another token");
      return;
    case server_state::claim_result::held:
      refuse_name("name '" + name_ + "' was in use moments ago; only its owner may take it for up to " +
                  std::to_string(std::chrono::duration_cast<std::chrono::seconds>(cfg_->name_grace).count()) +
                  "s (tunnels.name_grace)");
      return;
  }
  registered_ = true;
  uint16_t tcp_port = 0;
  if (h.protocol() == pb::Hello::TCP) {
    tcp_ = open_tcp_listener(state_, weak_from_this(), tcp_port_);
    if (!tcp_) {
      auto msg = cfg_->tcp_port_start == 0
                     ? std::string("TCP tunnels are turned off on this server")
                     : "no free TCP port in " + std::to_string(cfg_->tcp_port_start) + ".." +
                           std::to_string(cfg_->tcp_port_end);
      spdlog::warn("tunnel conn={} peer={}: refused: {}", conn_id_, peer_, msg);
      refuse(pb::Refused::LIMIT, msg);
      return;
    }
    tcp_port = tcp_port_;
  }
  client_window_ = h.initial_window() == 0 ? cfg_->initial_window
                                           : std::clamp<uint32_t>(h.initial_window(), 1024, 16u << 20);
  phase_ = phase::open;
  pb::Frame f;
  auto* a = f.mutable_accepted();
  a->set_protocol_version(protocol_version);
  a->set_name(name_);
  public_url_ = tcp_ ? "tcp://" + cfg_->domain + ":" + std::to_string(tcp_port)
                     : make_public_url(*cfg_, state_.public_port.load(), name_);
  a->set_tcp_port(tcp_port);
  connected_at_ = clock::now();
  a->set_public_url(public_url_);
  a->set_initial_window(cfg_->initial_window);
  a->set_max_frame_size(cfg_->max_frame_size);
  a->set_max_exchanges(cfg_->max_exchanges);
  writer_.push(std::move(f));
  if (tcp_) tcp_->start();
  spdlog::info("tunnel={} conn={} peer={}{}{}: online at {}", name_, conn_id_, peer_,
               token_label_.empty() ? "" : " token=", token_label_, public_url_);
}

void tunnel::refuse_name(const std::string& message) {
  spdlog::warn("tunnel conn={} peer={} token={}: refused: {}", conn_id_, peer_, token_label_, message);
  name_.clear();
  refuse(pb::Refused::NAME_TAKEN, message);
}

void tunnel::refuse(pb::Refused::Reason reason, const std::string& message) {
  pb::Frame f;
  auto* r = f.mutable_refused();
  r->set_reason(reason);
  r->set_message(message);
  writer_.push(std::move(f));
  close(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, message), "refused: " + message);
}

void tunnel::close(grpc::Status status, const std::string& why) {
  if (phase_ == phase::closing || phase_ == phase::finished) {
    // A cancel drops what is queued; Finish still waits for the write in
    // flight, which a cancelled stream completes at once.
    if (status.error_code() == grpc::StatusCode::CANCELLED && finish_pending_) {
      writer_.detach();
      maybe_finish();
    }
    return;
  }
  bool was_open = phase_ == phase::open;
  phase_ = phase::closing;
  hello_timer_.cancel();
  if (registered_) state_.release(name_, this, token_digest_);
  registered_ = false;
  if (token_counted_) state_.remove_token_tunnel(token_digest_);
  token_counted_ = false;
  if (tcp_) tcp_->stop([&state = state_, port = tcp_port_] { state.release_tcp_port(port); });
  tcp_.reset();
  // In-flight exchanges learn at once; they answer 502 instead of waiting for a timeout.
  auto exchanges = std::move(exchanges_);
  exchanges_.clear();
  for (auto& [id, sink] : exchanges) sink->on_unavailable(id, 502, "tunnel closed");
  update_gauges();
  if (was_open) spdlog::info("tunnel={} conn={}: offline ({})", name_, conn_id_, why);
  finish_pending_ = true;
  finish_status_ = std::move(status);
  if (finish_status_.error_code() == grpc::StatusCode::CANCELLED) writer_.detach();
  maybe_finish();
}

void tunnel::maybe_finish() {
  if (!finish_pending_ || reactor_ == nullptr || writer_.await_write()) return;
  finish_pending_ = false;
  writer_.detach();
  auto* r = reactor_;
  r->Finish(finish_status_);
}

// ---- tunnel_service -------------------------------------------------------

void tunnel_service::register_with(grpc::ServerBuilder& builder) {
  builder.RegisterService(&async_);
  cq_ = builder.AddCompletionQueue();
}

void tunnel_service::start() {
  new tunnel_call(*this);
  poller_ = start_completion_poller<tunnel_call, tunnel_call::event>(*cq_);
}

void tunnel_service::stop(std::chrono::milliseconds report_after) {
  if (!poller_.joinable()) return;
  // grpc::Server::Shutdown has cancelled every stream by now; each ends as
  // soon as its tunnel's strand calls Finish. A stream still open would use
  // the queue after its shutdown, so this waits for all of them, saying so
  // when it takes longer than it should (a stuck worker).
  auto next_report = clock::now() + report_after;
  while (calls_.load(std::memory_order_acquire) > 0) {
    if (clock::now() >= next_report) {
      spdlog::error("{} tunnel stream(s) have not ended; still waiting for their tunnels to finish",
                    calls_.load(std::memory_order_acquire));
      next_report = clock::now() + report_after;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  cq_->Shutdown();
  poller_.join();
}

tunnel_service::~tunnel_service() {
  if (poller_.joinable()) {
    stop(std::chrono::seconds(5));
  } else if (cq_) {  // never started: drain what the shutdown queues
    cq_->Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq_->Next(&tag, &ok)) {
    }
  }
}

}  // namespace grok::server_detail
