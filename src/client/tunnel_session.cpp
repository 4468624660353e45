#include "tunnel_session.hpp"

#include <spdlog/spdlog.h>

#include "console.hpp"
#include "inspector.hpp"

namespace grok::client_detail {

void tunnel_session::start(pb::Tunnel::Stub& stub) {
  self_ = shared_from_this();  // released once the stream is over
  // The session was made on this tunnel's thread; its tags complete on the poll thread.
  publish_tags();
  // The call's headers wait for the Hello and leave in the same write; a
  // separate start would hold the stream's one send slot until it came back.
  ctx_.set_initial_metadata_corked(true);
  stream_ = stub.PrepareAsyncConnect(&ctx_, &cq_);
  set_holds(2);  // the strand's hold, the first read
  stream_->StartCall(nullptr);
  arm_read(*stream_, &ops_[read]);
  pb::Frame f;
  auto* h = f.mutable_hello();
  h->set_protocol_version(protocol_version);
  h->set_token(opts_.token);
  h->set_name(name_);
  h->set_client_version("grok 0.1.0");
  h->set_initial_window(opts_.initial_window);
  h->set_protocol(opts_.tcp ? pb::Hello::TCP : pb::Hello::HTTP);
  h->set_pool(opts_.pool);
  h->set_client_id(opts_.client_id);
  h->set_stream(opts_.stream);
  rules_to_hello(opts_.rules, h->mutable_rules());
  std::optional<pb::Frame> unchecked;
  if (!opts_.health_path.empty()) {
    // No request until the first check passes.
    unchecked.emplace();
    unchecked->mutable_health()->set_healthy(false);
    unchecked->mutable_health()->set_detail("not checked yet");
  }
  asio::post(strand_, [self = shared_from_this(), f = std::move(f), unchecked = std::move(unchecked)]() mutable {
    if (self->closed_) return;  // stopped before it started: the stream may be over already
    self->writer_.attach(self.get());
    self->writer_.push_deferred(std::move(f));
    if (unchecked) self->writer_.push_deferred(std::move(*unchecked));
    self->writer_.flush();
  });
}

void tunnel_session::on_event(event e, bool ok) {
  switch (e) {
    case read:
      if (ok) {
        on_read(*stream_, &ops_[read], [this](std::shared_ptr<pb::Batch> b) {
          asio::post(strand_, [self = shared_from_this(), b = std::move(b)] { self->handle_batch(*b); });
        });
        return;
      }
      asio::post(strand_, [self = shared_from_this()] { self->close(); });
      add_hold();
      stream_->Finish(&status_, &ops_[finish]);  // nothing more to read: collect the status
      break;
    case write:
      if (writer_.write_finished(ok)) {  // else nothing on the strand waits for it
        asio::post(strand_, [self = shared_from_this(), ok] {
          self->writer_.on_write_done(ok);
          if (!ok) self->close();
        });
      }
      break;
    case finish:
    case events:
      break;
  }
  release();
}

void tunnel_session::release() {
  if (!drop_hold()) return;
  asio::post(strand_, [self = shared_from_this()] {
    const auto& s = self->status_;
    if (!self->outcome_.refused && self->outcome_.message.empty())
      self->outcome_.message = s.ok() ? "server closed the tunnel" : s.error_message();
    auto cb = std::move(self->on_end_);
    auto outcome = self->outcome_;
    self->self_.reset();
    if (cb) cb(outcome);
  });
}

void tunnel_session::handle_batch(pb::Batch& b) {
  for (auto& f : *b.mutable_frames()) {
    switch (f.kind_case()) {
      case pb::Frame::kAccepted: {
        const auto& a = f.accepted();
        outcome_.accepted = true;
        outcome_.name = a.name();
        server_window_ = a.initial_window() ? a.initial_window() : 64 * 1024;
        max_frame_ = std::clamp<uint32_t>(a.max_frame_size() ? a.max_frame_size() : 64 * 1024, 1024, 1 << 20);
        console().write("Forwarding  " + a.public_url() + " -> " +
                        (opts_.tcp ? "tcp://" : opts_.local_tls ? "https://" : "http://") +
                        opts_.local_host + ":" + std::to_string(opts_.local_port) +
                        (a.pool_members() ? " (pool member " + std::to_string(a.pool_members()) + " of " +
                                                std::to_string(a.pool_members()) + ")"
                                          : std::string()) +
                        (opts_.via.empty() ? std::string() : " via " + opts_.via));
        if (!opts_.rules.empty()) console().write("Visitors    " + describe(opts_.rules));
        if (opts_.inspect) {
          opts_.inspect->set_tunnel(local_->inspect_index, a.name(), a.public_url());
          console().write("Inspector   " + opts_.inspect->url());
        }
        start_health_check();
        if (on_accepted) on_accepted(a.name());
        break;
      }
      case pb::Frame::kRefused:
        outcome_.refused = true;
        outcome_.reason = f.refused().reason();
        outcome_.message = f.refused().message();
        break;
      case pb::Frame::kGoAway:
        outcome_.going_away = true;
        outcome_.message = "server is going away: " + f.go_away().message();
        break;
      case pb::Frame::kRequestHead: {
        auto id = f.exchange_id();
        if (!outcome_.accepted || exchanges_.contains(id)) break;
        const auto& head = f.request_head();
        auto pooled =
            head.tcp() ? nullptr : pool_.take(/*probe=*/!replayable(head), proxy_header_for(*local_, &head));
        exchanges_.emplace(id, start_local_exchange(ioc_, shared_from_this(), id,
                                                    std::move(*f.mutable_request_head()), server_window_,
                                                    opts_.initial_window, max_frame_, pool_, local_,
                                                    std::move(pooled), opts_.inspect.get()));
        break;
      }
      case pb::Frame::kData:
      case pb::Frame::kWindowUpdate:
      case pb::Frame::kReset: {
        auto it = exchanges_.find(f.exchange_id());
        if (it == exchanges_.end()) break;  // finished: late frames are expected
        auto ex = it->second;
        if (f.has_reset()) exchanges_.erase(it);
        ex->on_frame(std::move(f));
        break;
      }
      default:
        break;
    }
  }
}

void tunnel_session::start_health_check() {
  if (opts_.health_path.empty() || health_) return;
  health_check::settings hs;
  hs.local = local_;
  hs.host = opts_.local_host + ":" + std::to_string(opts_.local_port);
  hs.path = opts_.health_path;
  hs.interval = opts_.health_interval;
  hs.timeout = opts_.health_timeout;
  health_ = std::make_shared<health_check>(ioc_, std::move(hs), [weak = weak_from_this()](const probe_result& r) {
    auto self = weak.lock();
    if (!self) return;
    console().write(std::string(r.healthy ? "Healthy     " : "Unhealthy   ") + r.detail +
                    (r.healthy ? "" : " (no new requests until it passes)"));
    pb::Frame f;
    f.mutable_health()->set_healthy(r.healthy);
    f.mutable_health()->set_detail(r.detail);
    self->send(std::move(f));
  });
  health_->start();
}

void tunnel_session::close() {
  if (closed_) return;
  closed_ = true;
  if (health_) health_->stop();
  writer_.detach();
  for (auto& [id, ex] : exchanges_) ex->cancel();
  exchanges_.clear();
  release();  // the strand's hold: no more writes start
}

}  // namespace grok::client_detail
