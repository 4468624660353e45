#include "tcp_tunnel.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "byte_pump.hpp"
#include "cluster.hpp"
#include "proxy_header_reader.hpp"
#include "grok/credit.hpp"
#include "grok/log.hpp"
#include "tunnel.hpp"

namespace grok::server_detail {

using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

class tcp_session final : public exchange_sink, public std::enable_shared_from_this<tcp_session> {
 public:
  /// `proxied`: the visitor a trusted proxy's PROXY header named.
  tcp_session(tcp::socket&& s, server_state& state, std::shared_ptr<tunnel> t, std::optional<proxied_peer> proxied)
      : socket_(std::move(s)), state_(state), cfg_(state.config()), tunnel_(std::move(t)),
        window_(cfg_->initial_window, cfg_->max_window, tunnel_->window_growth()), proxied_(std::move(proxied)) {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    remote_ip_ = ec ? std::string("unknown") : ep.address().to_string();
    remote_port_ = ec ? 0 : ep.port();
    // A raw TCP visitor may wait for the service to speak first, so an
    // untrusted peer is not held back for a header: its first bytes are
    // looked at instead.
    check_first_bytes_ = cfg_->proxy_protocol && !proxied_ && !ip_in_any(remote_ip_, cfg_->trusted_proxies);
    if (proxied_) {
      remote_ip_ = proxied_->ip;
      remote_port_ = proxied_->port;
    }
    remote_ = remote_ip_ + ":" + std::to_string(remote_port_);
    state_.public_connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~tcp_session() override { state_.public_connections.fetch_sub(1, std::memory_order_relaxed); }

  void start() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      if (!self->tunnel_->address_allowed(self->remote_ip_)) {
        spdlog::info("tunnel={} tcp remote={}: refused by the tunnel's address rules", self->tunnel_->name(),
                     self->remote_);
        error_code ignored;
        self->socket_.close(ignored);
        return;
      }
      self->started_ = clock::now();
      self->id_ = self->tunnel_->next_exchange_id();
      pb::Frame f;
      f.set_exchange_id(self->id_);
      auto* h = f.mutable_request_head();
      h->set_tcp(true);
      h->set_remote_addr(self->remote_ip_);
      h->set_remote_port(self->remote_port_);
      error_code ec;
      if (self->proxied_) {
        h->set_public_addr(self->proxied_->public_addr);
        h->set_public_port(self->proxied_->public_port);
      } else if (auto local = self->socket_.local_endpoint(ec); !ec) {
        h->set_public_addr(local.address().to_string());
        h->set_public_port(local.port());
      }
      h->set_content_length(-1);
      self->state_.exchanges_in_flight.fetch_add(1, std::memory_order_relaxed);  // until finish()
      self->tunnel_->open(self, std::move(f));
    });
  }

  void on_opened(uint64_t, uint32_t window, uint32_t response_window) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), window, response_window] {
      self->credit_ = send_credit(window);
      self->window_ = recv_window(response_window, self->cfg_->max_window, self->tunnel_->window_growth());
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
      self->tunnel_gone_ = true;
      self->finish(reason);
    });
  }

 private:
  /// Visitor -> tunnel.
  enum class upload { open, ended };
  /// Tunnel -> visitor.
  enum class download {
    open,   ///< Data frames are still coming
    ended,  ///< end_stream arrived; the half-close waits for the bytes before it
    shut,   ///< the half-close was passed on to the visitor
  };
  enum class reader { idle, reading, waiting_credit };

  void do_read() {
    if (finished_ || read_ != reader::idle || up_ == upload::ended) return;
    auto want = credit_.allowance(cfg_->max_frame_size);
    if (want == 0) {
      read_ = reader::waiting_credit;
      return;
    }
    read_ = reader::reading;
    buf_.resize(want);
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](error_code ec, size_t n) {
      self->read_ = reader::idle;
      if (self->finished_) return;
      if (ec == asio::error::eof) {
        self->up_ = upload::ended;  // half-close travels as end_stream
        self->tunnel_->send(make_data(self->id_, std::string(), true));
        return self->maybe_finish();
      }
      if (ec) return self->finish("public connection reset");
      if (std::exchange(self->check_first_bytes_, false)) {
        auto r = parse_proxy_header(std::string_view(self->buf_.data(), n));
        if (r.status == proxy_parse_result::state::done ||
            (r.status == proxy_parse_result::state::error && r.error != proxy_not_a_header)) {
          spdlog::info("tunnel={} tcp remote={}: connection closed: a PROXY header from an address not in "
                       "server.trusted_proxies", self->tunnel_->name(), self->remote_);
          return self->finish("PROXY header from an untrusted address");
        }
      }
      self->credit_.spend(n);
      self->bytes_in_ += n;
      self->buf_.resize(n);
      self->tunnel_->send(make_data(self->id_, std::move(self->buf_), false));
      self->buf_ = std::string();
      self->do_read();
    });
  }

  void handle_frame(pb::Frame& f) {
    if (finished_) return;
    if (f.has_data()) {
      auto& d = *f.mutable_data();
      auto n = d.payload().size();
      if (!window_.on_data(n)) return finish("tunnel client overran its window");
      if (down_ != download::open) return;  // bytes past end_stream
      bytes_out_ += n;
      if (n > 0) out_.push(out_piece{{}, std::move(*d.mutable_payload()), {}, static_cast<uint32_t>(n)});
      if (d.end_stream()) down_ = download::ended;
      return do_write();
    }
    if (f.has_window_update()) {
      if (!credit_.grant(f.window_update().increment())) return finish("window overflow");
      if (read_ == reader::waiting_credit) {
        read_ = reader::idle;
        do_read();
      }
      return;
    }
    if (f.has_reset()) {
      tunnel_gone_ = true;
      return finish(f.reset().message());
    }
  }

  void do_write() {
    if (finished_ || out_.writing()) return;
    if (out_.empty()) {
      if (down_ == download::ended) {
        down_ = download::shut;
        error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
        maybe_finish();
      }
      return;
    }
    out_.start(socket_, [self = shared_from_this()](error_code ec) {
      auto written = self->out_.written();
      if (self->finished_) return;
      if (ec) return self->finish("public connection reset");
      if (auto inc = self->window_.on_consumed(written)) self->tunnel_->send(make_window_update(self->id_, inc));
      self->do_write();
    });
  }

  void maybe_finish() {
    if (up_ == upload::ended && down_ == download::shut) finish("closed");
  }

  void finish(const std::string& why) {
    if (finished_) return;
    finished_ = true;
    bool closed_both_ways = up_ == upload::ended && down_ == download::shut;
    if (!tunnel_gone_ && !closed_both_ways) tunnel_->send(make_reset(id_, pb::Reset::CANCELLED, why));
    tunnel_->close_exchange(id_);
    error_code ignored;
    socket_.close(ignored);
    auto took = clock::now() - started_;
    state_.exchanges_in_flight.fetch_sub(1, std::memory_order_relaxed);
    state_.stats.record_tcp_connection(tunnel_->name(), bytes_in_, bytes_out_);
    if (!spdlog::should_log(spdlog::level::info)) return;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    log_fields(spdlog::level::info,
               fmt::format("tunnel={} tcp remote={} req={}: {} in={}B out={}B {}ms", tunnel_->name(), remote_, id_,
                           why, bytes_in_, bytes_out_, ms),
               {{"tunnel", tunnel_->name()},
                {"remote", remote_},
                {"req", static_cast<int64_t>(id_)},
                {"outcome", why},
                {"bytes_in", static_cast<int64_t>(bytes_in_)},
                {"bytes_out", static_cast<int64_t>(bytes_out_)},
                {"duration_ms", static_cast<int64_t>(ms)}});
  }

  tcp::socket socket_;
  server_state& state_;
  std::shared_ptr<const server_config> cfg_;
  std::shared_ptr<tunnel> tunnel_;
  std::string remote_;     ///< "ip:port" for logs
  std::string remote_ip_;  ///< what the address rules match
  uint16_t remote_port_ = 0;
  std::optional<proxied_peer> proxied_;
  bool check_first_bytes_ = false;  ///< server.proxy_protocol, untrusted peer: its first read must not be a PROXY header
  uint64_t id_ = 0;
  clock::time_point started_;
  send_credit credit_;
  recv_window window_;
  std::string buf_;
  write_queue out_;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  upload up_ = upload::open;
  download down_ = download::open;
  reader read_ = reader::idle;
  bool tunnel_gone_ = false;  ///< the tunnel dropped the exchange: send it nothing more
  bool finished_ = false;
};

}  // namespace

tcp_port::~tcp_port() {
  listener_->stop([&state = state_, port = port_] { state.release_tcp_port(port); });
}

std::shared_ptr<tcp_port> open_tcp_port(server_state& state, const std::string& name) {
  auto cfg = state.config();
  if (cfg->tcp_port_start == 0) return nullptr;
  auto address = asio::ip::make_address(cfg->bind_address);
  for (uint32_t p = cfg->tcp_port_start; p <= cfg->tcp_port_end; ++p) {
    auto candidate = static_cast<uint16_t>(p);
    if (!state.reserve_tcp_port(candidate)) continue;
    try {
      auto serve = [&state, name](tcp::socket&& s, std::optional<proxied_peer> who) {
        // A node that cannot show its cluster lease is alive may no longer own the name: the connection closes.
        if (state.cluster && !state.cluster->serving()) return;
        auto found = state.names.find(name);
        if (found.t && found.t->is_tcp())
          std::make_shared<tcp_session>(std::move(s), state, std::move(found.t), std::move(who))->start();
      };
      auto l = std::make_shared<listener>(state.ioc(), tcp::endpoint(address, candidate),
                                          [&state, serve](tcp::socket&& s) {
                                            auto cfg = state.config();
                                            error_code ec;
                                            auto peer = s.remote_endpoint(ec);
                                            auto ip = ec ? std::string("unknown") : peer.address().to_string();
                                            if (cfg->proxy_protocol && ip_in_any(ip, cfg->trusted_proxies))
                                              return proxy_header_reader::start(std::move(s), ip, true,
                                                                                cfg->read_header_timeout, serve);
                                            serve(std::move(s), std::nullopt);
                                          });
      l->start();
      return std::make_shared<tcp_port>(state, std::move(l), candidate);
    } catch (const boost::system::system_error&) {
      state.release_tcp_port(candidate);  // taken by another program
    }
  }
  return nullptr;
}

}  // namespace grok::server_detail
