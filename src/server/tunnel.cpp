#include "tunnel.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <boost/asio/post.hpp>

#include "cluster.hpp"
#include "grok/admission.hpp"
#include "grpc_peer.hpp"
#include "tcp_tunnel.hpp"

namespace grok::server_detail {

namespace {

/// A random name: 10 of a-z and 0-9.
std::string random_name() {
  static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::array<unsigned char, 10> raw{};
  RAND_bytes(raw.data(), raw.size());
  std::string name;
  for (auto c : raw) name += alphabet[c % 36];
  return name;
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

tunnel::tunnel(server_state& state, std::string peer, uint64_t conn_id)
    : state_(state),
      cfg_(state.config()),
      strand_(asio::make_strand(state.ioc())),
      hello_timer_(strand_),
      peer_(std::move(peer)),
      conn_id_(conn_id),
      window_growth_(std::make_shared<window_budget>(4ull * cfg_->max_window)) {}

void tunnel::attach(tunnel_stream* s) {
  asio::post(strand_, [self = shared_from_this(), s] {
    self->stream_ = s;
    self->writer_.attach(s);
    self->start_hello_timer();
  });
}

void tunnel::start_hello_timer() {
  // An unauthenticated stream holds nothing for long.
  hello_timer_.expires_after(cfg_->hello_timeout);
  hello_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->phase_ != phase::hello) return;
    auto why = fmt::format("no Hello within {}ms (tunnels.hello_timeout)", self->cfg_->hello_timeout.count());
    // Not a warning: anyone can open streams; an address doing it again and again is banned, and that is logged.
    spdlog::debug("tunnel conn={} peer={}: {}, closing", self->conn_id_, self->peer_, why);
    self->close(stream_end::deadline_exceeded, why, "no hello");
  });
}

void tunnel::post_batch(std::shared_ptr<pb::Batch> b) {
  asio::post(strand_, [self = shared_from_this(), b = std::move(b)] { self->handle_batch(*b); });
}

void tunnel::post_read_closed() {
  asio::post(strand_, [self = shared_from_this()] {
    self->close(stream_end::ok, "", "client closed the stream");
  });
}

void tunnel::write_finished(bool ok) {
  if (!writer_.write_finished(ok)) return;  // nothing on the strand waits for it
  asio::post(strand_, [self = shared_from_this(), ok] {
    self->writer_.on_write_done(ok);
    self->update_gauges();
    if (!ok) {
      self->close(stream_end::unavailable, "write failed", "stream write failed");
    }
    self->maybe_finish();
  });
}

void tunnel::post_cancelled() {
  asio::post(strand_, [self = shared_from_this()] {
    self->close(stream_end::cancelled, "", "stream cancelled");
  });
}

void tunnel::post_done() {
  asio::post(strand_, [self = shared_from_this()] {
    self->phase_ = phase::finished;
    self->stream_ = nullptr;
    spdlog::debug("tunnel conn={} name={}: stream done", self->conn_id_, self->name_);
  });
}

void tunnel::open(std::shared_ptr<exchange_sink> sink, pb::Frame&& head) {
  opening_.fetch_add(1, std::memory_order_relaxed);
  asio::post(strand_, [self = shared_from_this(), sink = std::move(sink), head = std::move(head)]() mutable {
    self->opening_.fetch_sub(1, std::memory_order_relaxed);
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
    self->exchanges_total_.fetch_add(1, std::memory_order_relaxed);
    self->queue(std::move(head));
    self->update_gauges();
    sink->on_opened(id, self->client_window_, self->response_window_);
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
      self->close(stream_end::resource_exhausted, "client is not reading", "queue limit");
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
    auto why = recheck_after_reload(*cfg, self->who_, self->name_, self->state_.names.reservation(self->name_),
                                    self->is_tcp_);
    if (!why) return;
    spdlog::warn("tunnel={} conn={}: {} (reload); closing", self->name_, self->conn_id_, why->message);
    pb::Frame f;
    auto* r = f.mutable_refused();
    r->set_reason(why->reason);
    r->set_message(why->message);
    self->writer_.push(std::move(f));
    self->close(stream_end::permission_denied, why->message, why->message);
  });
}

void tunnel::taken_over() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->phase_ != phase::open && self->phase_ != phase::claiming) return;
    self->registered_ = false;  // the name belongs to the new session now
    self->refuse(refusal{pb::Refused::TAKEN_OVER,
                         "name '" + self->name_ + "' was taken over by a new session with the same token"});
  });
}

void tunnel::shutdown(std::string why) {
  asio::post(strand_, [self = shared_from_this(), why = std::move(why)] {
    if (self->phase_ == phase::open) {
      pb::Frame f;
      f.mutable_go_away()->set_message(why);
      self->writer_.push(std::move(f));
    }
    self->close(stream_end::unavailable, why, why);
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
        refuse(refusal{pb::Refused::PROTOCOL_ERROR, "the first frame must be Hello"});
        return;
      }
      handle_hello(f.hello());
      continue;
    }
    if (phase_ == phase::claiming) {
      // Only a few frames come before Accepted (a Health behind the Hello).
      if (early_.size() >= 16) {
        refuse(refusal{pb::Refused::PROTOCOL_ERROR, "too many frames before Accepted"});
        return;
      }
      early_.push_back(std::move(f));
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
        if (registered_ && state_.names.release(name_, this) && state_.cluster)
          state_.cluster->release(name_, cfg_->name_grace);
        registered_ = false;
        break;
      case pb::Frame::kHealth:
        handle_health(f.health());
        break;
      default:
        deliver();
        spdlog::warn("tunnel={} conn={}: unexpected frame kind {} from client; closing", name_, conn_id_,
                     static_cast<int>(f.kind_case()));
        close(stream_end::invalid_argument, "unexpected frame", "protocol error");
        return;
    }
  }
  deliver();
}

void tunnel::handle_hello(const pb::Hello& h) {
  hello_timer_.cancel();
  hello_seen_ = true;
  auto ip = peer_ip(peer_);
  // A connection that carried a Hello is spared by a ban of its address (a
  // bad token is the failed-attempt limiter's business).
  state_.tunnel_connections.said_hello(ip, peer_port(peer_));
  auto checked = admit_hello(h, *cfg_, state_.draining.load(), state_.auth_failures.blocked(ip));
  if (auto* r = std::get_if<refusal>(&checked)) {
    if (r->bad_token) {
      state_.auth_failures.failed(ip);
      state_.stats.auth_failures.fetch_add(1, std::memory_order_relaxed);
    }
    return refuse(*r);
  }
  auto& a = std::get<admission>(checked);
  token_digest_ = a.token;
  token_label_ = a.token_label;
  if (!state_.names.add_token_tunnel(token_digest_, a.tunnel_limit)) return refuse(refuse_token_limit(a));
  token_counted_ = true;
  name_ = a.name.empty() ? state_.names.free_name(random_name) : a.name;
  is_tcp_ = a.tcp;
  // With tokens, a session of the same token takes a live name over (the
  // old one may be frozen: a laptop lid, a partition); without, every
  // client has the same identity and a name stays with whoever holds it.
  who_ = a.who();
  std::string rules;  // for the log line
  if (!a.rules.empty()) rules += "; visitor rules: " + describe(a.rules);
  if (!a.token_rules.empty()) rules += "; the token's rules: " + describe(a.token_rules);
  for (auto* r : {&a.rules, &a.token_rules})
    if (!r->empty()) access_.push_back(std::move(*r));
  asks_credentials_ = std::any_of(access_.begin(), access_.end(), [](const auto& r) { return !r.basic_auth.empty(); });
  std::shared_ptr<tunnel> displaced;
  size_t members = 0;
  auto claimed = state_.names.claim(name_, shared_from_this(), who_, cfg_->auth_required() ? &displaced : nullptr,
                                    &members);
  if (claimed == claim_result::taken_over) {
    spdlog::info("tunnel={} conn={}: taking the name over from conn={}", name_, conn_id_, displaced->conn_id());
    displaced->taken_over();
  } else if (claimed != claim_result::ok && claimed != claim_result::joined) {
    auto r = refuse_claim(claimed, name_, *cfg_);
    name_.clear();
    return refuse(r);
  }
  registered_ = true;
  client_window_ = a.client_window;
  if (state_.cluster) {
    // The name is this node's; now it must be the cluster's too (a pool
    // member or a take-over as well: the record must stand under the node's
    // current lease before the tunnel serves).
    phase_ = phase::claiming;
    state_.cluster->claim(name_, who_, is_tcp_, token_label_,
                          [self = shared_from_this(), claimed, members, rules](std::optional<refusal> r) mutable {
                            asio::post(self->strand_, [self, r = std::move(r), claimed, members,
                                                       rules = std::move(rules)] {
                              if (self->phase_ != phase::claiming) return;  // closed meanwhile
                              if (r) {
                                // Refused by the cluster: the name was never this tunnel's. A
                                // record an earlier tunnel of the name left goes its usual way.
                                if (self->state_.names.release(self->name_, self.get(), false))
                                  self->state_.cluster->release(self->name_, self->cfg_->name_grace);
                                self->registered_ = false;
                                return self->refuse(*r);
                              }
                              self->finish_hello(claimed, members, rules);
                            });
                          });
    return;
  }
  finish_hello(claimed, members, std::move(rules));
}

void tunnel::finish_hello(claim_result claimed, size_t members, std::string rules) {
  if (phase_ == phase::claiming) {
    // While the cluster claimed the name, the server may have begun to drain or reloaded.
    phase_ = phase::hello;
    if (state_.draining.load()) return refuse(refusal{pb::Refused::DRAINING, "the server is shutting down; try again shortly"});
    if (auto why = recheck_after_reload(*cfg_, who_, name_, state_.names.reservation(name_), is_tcp_)) return refuse(*why);
  }
  if (claimed == claim_result::joined) {
    auto first = state_.names.members(name_);
    if (!first.empty() && first.front()->is_tcp() != is_tcp_)
      return refuse(refusal{pb::Refused::POOL_MISMATCH, "the pool for '" + name_ + "' serves " +
                                                            (is_tcp_ ? "HTTP" : "TCP") + ", not " +
                                                            (is_tcp_ ? "TCP" : "HTTP")});
    // Visitors must meet the same rules whichever member they reach.
    if (!first.empty() && first.front()->access() != access_)
      return refuse(refusal{pb::Refused::POOL_MISMATCH,
                            "the pool for '" + name_ + "' has other access rules; every member must give the same "
                            "--basic-auth, --allow-cidr and --deny-cidr (and hold tokens with the same tokens-file rules)"});
  }
  uint16_t port = 0;
  if (is_tcp_) {
    tcp_ = std::static_pointer_cast<tcp_port>(
        state_.names.shared(name_, [this]() -> std::shared_ptr<void> { return open_tcp_port(state_, name_); }));
    if (!tcp_) return refuse(refuse_tcp_port(*cfg_));
    port = tcp_->port();
  }
  phase_ = phase::open;
  pb::Frame f;
  auto* acc = f.mutable_accepted();
  acc->set_protocol_version(protocol_version);
  acc->set_name(name_);
  if (who_.pool) acc->set_pool_members(static_cast<uint32_t>(members));
  public_url_ = tcp_ ? "tcp://" + cfg_->domain + ":" + std::to_string(port)
                     : make_public_url(*cfg_, state_.public_port.load(), name_);
  acc->set_tcp_port(port);
  connected_at_ = clock::now();
  acc->set_public_url(public_url_);
  response_window_ = cfg_->initial_window;  // cfg_ may change on reload; the client keeps this one
  acc->set_initial_window(response_window_);
  acc->set_max_frame_size(cfg_->max_frame_size);
  acc->set_max_exchanges(cfg_->max_exchanges);
  writer_.push(std::move(f));
  spdlog::info("tunnel={} conn={} peer={}{}{}: online at {}{}{}", name_, conn_id_, peer_,
               token_label_.empty() ? "" : " token=", token_label_, public_url_,
               who_.pool ? fmt::format(" (pool member {} of {})", members, members) : std::string(), rules);
  if (!early_.empty()) {
    pb::Batch later;
    for (auto& f : early_) *later.add_frames() = std::move(f);
    early_.clear();
    handle_batch(later);
  }
}

void tunnel::handle_health(const pb::Health& h) {
  bool was = healthy_.exchange(h.healthy(), std::memory_order_relaxed);
  bool first = std::exchange(first_health_, false);
  if (was == h.healthy() && !first) return;
  auto detail = h.detail().substr(0, 200);
  if (h.healthy())
    spdlog::info("tunnel={} conn={}: local service healthy; taking requests ({})", name_, conn_id_, detail);
  else if (first)
    spdlog::info("tunnel={} conn={}: no requests until its first health check passes", name_, conn_id_);
  else
    spdlog::warn("tunnel={} conn={}: local service unhealthy ({}); no new requests until it recovers", name_,
                 conn_id_, detail);
}

void tunnel::refuse(const refusal& r) {
  // Another stream of a client already served here is how a client meets a server at several addresses.
  spdlog::log(r.reason == pb::Refused::SAME_CLIENT ? spdlog::level::info : spdlog::level::warn,
              "tunnel conn={} peer={}{}{}: refused: {}", conn_id_, peer_, token_label_.empty() ? "" : " token=",
              token_label_, r.message);
  pb::Frame f;
  auto* out = f.mutable_refused();
  out->set_reason(r.reason);
  out->set_message(r.message);
  writer_.push(std::move(f));
  close(stream_end::permission_denied, r.message, "refused: " + r.message);
}

void tunnel::close(stream_end how, const std::string& message, const std::string& why) {
  if (phase_ == phase::closing || phase_ == phase::finished) {
    // A cancel drops what is queued; Finish still waits for the write in
    // flight, which a cancelled stream completes at once.
    if (how == stream_end::cancelled && finish_pending_) {
      writer_.detach();
      maybe_finish();
    }
    return;
  }
  bool was_open = phase_ == phase::open;
  // A stream that ends before any Hello counts against its address (rapid
  // resets, streams opened and dropped); enough of them ban it.
  if (phase_ == phase::hello && !hello_seen_) state_.tunnel_connections.abandoned(peer_ip(peer_));
  phase_ = phase::closing;
  hello_timer_.cancel();
  if (registered_ && state_.names.release(name_, this) && state_.cluster)
    state_.cluster->release(name_, cfg_->name_grace);
  registered_ = false;
  early_.clear();
  if (token_counted_) state_.names.remove_token_tunnel(token_digest_);
  token_counted_ = false;
  tcp_.reset();  // the last member's closes the port
  // In-flight exchanges learn at once; they answer 502 instead of waiting for a timeout.
  auto exchanges = std::move(exchanges_);
  exchanges_.clear();
  for (auto& [id, sink] : exchanges) sink->on_unavailable(id, 502, "tunnel closed");
  update_gauges();
  if (was_open) spdlog::info("tunnel={} conn={}: offline ({})", name_, conn_id_, why);
  finish_pending_ = true;
  finish_how_ = how;
  finish_message_ = message;
  if (how == stream_end::cancelled) writer_.detach();
  maybe_finish();
}

void tunnel::maybe_finish() {
  if (!finish_pending_ || stream_ == nullptr || writer_.await_write()) return;
  finish_pending_ = false;
  writer_.detach();
  stream_->Finish(finish_how_, finish_message_);
}

}  // namespace grok::server_detail
