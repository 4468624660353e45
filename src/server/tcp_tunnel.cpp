#include "tcp_tunnel.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <deque>

#include "grok/credit.hpp"
#include "tunnel.hpp"

namespace grok::server_detail {

using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

class tcp_session final : public exchange_sink, public std::enable_shared_from_this<tcp_session> {
 public:
  tcp_session(tcp::socket&& s, server_state& state, std::shared_ptr<tunnel> t)
      : socket_(std::move(s)), state_(state), cfg_(state.config()), tunnel_(std::move(t)),
        window_(cfg_->initial_window) {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    remote_ = ec ? std::string("unknown") : ep.address().to_string() + ":" + std::to_string(ep.port());
    state_.public_connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~tcp_session() override { state_.public_connections.fetch_sub(1, std::memory_order_relaxed); }

  void start() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      self->started_ = clock::now();
      self->id_ = self->tunnel_->next_exchange_id();
      pb::Frame f;
      f.set_exchange_id(self->id_);
      auto* h = f.mutable_request_head();
      h->set_tcp(true);
      h->set_remote_addr(self->remote_);
      h->set_content_length(-1);
      self->state_.exchanges_in_flight.fetch_add(1, std::memory_order_relaxed);
      self->counted_ = true;
      self->tunnel_->open(self, std::move(f));
    });
  }

  void on_opened(uint64_t, uint32_t window) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), window] {
      self->credit_ = send_credit(window);
      self->do_read();
    });
  }
  void on_frames(uint64_t, frame_run&& frames) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), frames = std::move(frames)]() mutable {
      for (auto& f : frames) self->handle_frame(f);
    });
  }
  void on_unavailable(uint64_t, unsigned, std::string reason) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), reason = std::move(reason)] {
      self->tunnel_done_ = true;
      self->finish(reason);
    });
  }

 private:
  void do_read() {
    if (done_ || reading_ || in_done_) return;
    auto want = credit_.allowance(cfg_->max_frame_size);
    if (want == 0) {
      waiting_credit_ = true;
      return;
    }
    reading_ = true;
    buf_.resize(want);
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](error_code ec, size_t n) {
      self->reading_ = false;
      if (self->done_) return;
      if (ec == asio::error::eof) {
        self->in_done_ = true;  // half-close travels as end_stream
        self->tunnel_->send(make_data(self->id_, std::string(), true));
        return self->maybe_finish();
      }
      if (ec) return self->finish("public connection reset");
      self->credit_.spend(n);
      self->bytes_in_ += n;
      self->buf_.resize(n);
      self->tunnel_->send(make_data(self->id_, std::move(self->buf_), false));
      self->buf_ = std::string();
      self->do_read();
    });
  }

  void handle_frame(pb::Frame& f) {
    if (done_) return;
    if (f.has_data()) {
      auto& d = *f.mutable_data();
      if (!window_.on_data(d.payload().size())) return finish("tunnel client overran its window");
      bytes_out_ += d.payload().size();
      if (!d.payload().empty()) out_.push_back(std::move(*d.mutable_payload()));
      if (d.end_stream()) out_end_ = true;
      return do_write();
    }
    if (f.has_window_update()) {
      if (!credit_.grant(f.window_update().increment())) return finish("window overflow");
      if (waiting_credit_) {
        waiting_credit_ = false;
        do_read();
      }
      return;
    }
    if (f.has_reset()) {
      tunnel_done_ = true;
      return finish(f.reset().message());
    }
  }

  void do_write() {
    if (writing_ || done_) return;
    if (out_.empty()) {
      if (out_end_ && !shut_) {
        shut_ = true;
        error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
        maybe_finish();
      }
      return;
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_.front()), [self = shared_from_this()](error_code ec, size_t n) {
      self->writing_ = false;
      if (self->done_) return;
      if (ec) return self->finish("public connection reset");
      self->out_.pop_front();
      if (auto inc = self->window_.on_consumed(n)) self->tunnel_->send(make_window_update(self->id_, inc));
      self->do_write();
    });
  }

  void maybe_finish() {
    if (in_done_ && shut_) finish("closed");
  }

  void finish(const std::string& why) {
    if (done_) return;
    done_ = true;
    if (!tunnel_done_ && !(in_done_ && shut_))
      tunnel_->send(make_reset(id_, pb::Reset::CANCELLED, why));
    tunnel_->close_exchange(id_);
    error_code ignored;
    socket_.close(ignored);
    auto took = clock::now() - started_;
    if (counted_) {
      counted_ = false;
      state_.exchanges_in_flight.fetch_sub(1, std::memory_order_relaxed);
      state_.stats.record_exchange(tunnel_->name(), 0, took, bytes_in_, bytes_out_);
    }
    spdlog::info("tunnel={} tcp remote={} req={}: {} in={}B out={}B {}ms", tunnel_->name(), remote_, id_, why,
                 bytes_in_, bytes_out_, std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
  }

  tcp::socket socket_;
  server_state& state_;
  std::shared_ptr<const server_config> cfg_;
  std::shared_ptr<tunnel> tunnel_;
  std::string remote_;
  uint64_t id_ = 0;
  clock::time_point started_;
  send_credit credit_;
  recv_window window_;
  std::string buf_;
  std::deque<std::string> out_;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  bool reading_ = false;
  bool writing_ = false;
  bool waiting_credit_ = false;
  bool in_done_ = false;
  bool out_end_ = false;
  bool shut_ = false;
  bool tunnel_done_ = false;
  bool counted_ = false;
  bool done_ = false;
};

}  // namespace

std::shared_ptr<listener> open_tcp_listener(server_state& state, std::weak_ptr<tunnel> owner, uint16_t& port) {
  auto cfg = state.config();
  if (cfg->tcp_port_start == 0) return nullptr;
  auto address = asio::ip::make_address(cfg->bind_address);
  for (uint32_t p = cfg->tcp_port_start; p <= cfg->tcp_port_end; ++p) {
    auto candidate = static_cast<uint16_t>(p);
    if (!state.reserve_tcp_port(candidate)) continue;
    try {
      auto l = std::make_shared<listener>(state.ioc(), tcp::endpoint(address, candidate),
                                          [&state, owner](tcp::socket&& s) {
                                            if (auto t = owner.lock())
                                              std::make_shared<tcp_session>(std::move(s), state, std::move(t))->start();
                                          });
      port = candidate;
      return l;
    } catch (const boost::system::system_error&) {
      state.release_tcp_port(candidate);  // taken by another program
    }
  }
  return nullptr;
}

}  // namespace grok::server_detail
