#include "http_session.hpp"

#include "cluster.hpp"
#include "relay.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>
#include <type_traits>
#include <utility>

#include "grok/credit.hpp"
#include "grok/header_shaping.hpp"
#include "grok/host.hpp"
#include "grok/http_rules.hpp"
#include "grok/http_text.hpp"
#include "grok/log.hpp"
#include "grok/request_head.hpp"
#include "grok/response_relay.hpp"
#include "byte_pump.hpp"
#include "proxy_header_reader.hpp"
#include "io_errors.hpp"
#include "tunnel.hpp"

namespace grok::server_detail {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

/// One public connection; Stream is a plain beast::tcp_stream or a TLS stream over one.
template <class Stream>
class http_session final : public exchange_sink, public std::enable_shared_from_this<http_session<Stream>> {
  static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;
 public:
  /// `proxied`: the visitor a trusted proxy's PROXY header named.
  template <class... TlsContext>
  http_session(tcp::socket&& socket, server_state& state, uint64_t conn_id, ip_connection_limiter::slot&& slot,
               const std::optional<proxied_peer>& proxied, TlsContext&... tls)
      : stream_(std::move(socket), tls...),
        ip_slot_(std::move(slot)),
        state_(state),
        cfg_(state.config()),
        conn_id_(conn_id),
        response_timer_(stream_.get_executor()),
        head_timer_(stream_.get_executor()) {
    error_code ec;
    auto ep = lowest().socket().remote_endpoint(ec);
    remote_ip_ = ec ? std::string("unknown") : ep.address().to_string();
    remote_port_ = ec ? 0 : ep.port();
    auto local = lowest().socket().local_endpoint(ec);
    if (!ec) {
      public_addr_ = local.address().to_string();
      public_port_ = local.port();
    }
    if (proxied) {
      remote_ip_ = proxied->ip;
      remote_port_ = proxied->port;
      public_addr_ = proxied->public_addr;
      public_port_ = proxied->public_port;
    }
    buffer_.reserve(16 * 1024);  // or Beast reads headers in 512-byte pieces
    state_.public_connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~http_session() override { state_.public_connections.fetch_sub(1, std::memory_order_relaxed); }

  void start() {
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (is_tls) {
        self->lowest().expires_after(self->cfg_->read_header_timeout);
        self->stream_.async_handshake(asio::ssl::stream_base::server,
                                      [self](error_code ec) {
                                        if (ec) {
                                          spdlog::debug("conn={} remote={}: TLS handshake failed: {}", self->conn_id_,
                                                        self->remote_ip_, ec.message());
                                          return self->close();
                                        }
                                        self->do_read_header();
                                      });
      } else {
        self->do_read_header();
      }
    });
  }

  // exchange_sink: called on the tunnel strand, hop to ours.
  void on_opened(uint64_t id, uint32_t window, uint32_t response_window) override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this(), id, window, response_window] {
      self->handle_opened(id, window, response_window);
    });
  }
  void on_frames(uint64_t id, frame_run&& frames) override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this(), id, frames = std::move(frames)]() mutable {
      // One write to the public client for the whole run.
      self->hold_writes_ = true;
      for (auto& f : frames) self->handle_frame(id, f);
      self->hold_writes_ = false;
      if (!self->closed_) self->do_write();
    });
  }
  void on_unavailable(uint64_t id, unsigned status, std::string reason) override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this(), id, status, reason = std::move(reason)] {
      if (id != self->ex_.id || self->ex_.finished()) return;
      self->ex_.tunnel_gone = true;
      self->fail_exchange(status, reason);
    });
  }

 private:
  /// The request direction of an exchange (public client -> tunnel).
  enum class upload {
    waiting,     ///< a body is coming, but the tunnel has not taken the exchange yet
    body,        ///< reading the request body into Data frames
    raw,         ///< upgraded: relaying raw bytes from the public client
    discarding,  ///< the response is complete: the rest of the body is read and dropped (bounded)
    done,        ///< every request byte was read, or the public client half-closed
  };
  /// The response direction (tunnel -> public client).
  enum class download {
    awaiting_head,  ///< nothing of the response is queued yet
    streaming,      ///< a head (the tunnel's, or an error of ours) is queued; more may follow
    complete,       ///< every response byte is queued
  };
  /// The one read of the public socket an exchange may have in flight.
  enum class reader { idle, reading, waiting_credit };
  enum class stage {
    routing,   ///< the head is being checked; no tunnel has the exchange
    open,      ///< the tunnel has it (counted in exchanges_in_flight)
    finished,  ///< logged and counted; late events are ignored
  };

  /// State of the exchange in progress; reset for each request.
  /// What a retry on another pool member needs: the head, and the request
  /// bytes sent so far. Kept only until the member returns credit or starts
  /// its response (then its local service has the request), so never more
  /// than one window.
  struct replay {
    pb::Frame head;
    std::string body;
    bool body_done = false;
  };

  struct exchange {
    uint64_t seq = 0; ///< this connection's count of requests
    uint64_t id = 0;  ///< 0 until a tunnel takes the exchange
    stage at = stage::routing;
    upload up = upload::waiting;
    download down = download::awaiting_head;
    reader read = reader::idle;
    bool upgraded = false;     ///< a 101 was relayed: raw bytes both ways
    bool tunnel_gone = false;  ///< the tunnel dropped the exchange (reset or gone): send it nothing more

    clock::time_point started;
    clock::time_point last_upload;  ///< the last request bytes sent on (for response_timeout)
    std::string method;
    std::string target;
    std::string host;
    std::string upgrade;
    unsigned version = 11;
    bool is_head = false;
    bool keep_alive = true;
    bool expect_continue = false;
    uint64_t bytes_in = 0;
    uint64_t discarded = 0;
    std::optional<response_relay> relay;  ///< set once the RequestHead is sent
    std::unique_ptr<replay> again;        ///< see replay; only on a pool
    bool retried = false;                 ///< a pool member refused it; another took it
    uint64_t resp_bytes = 0;
    unsigned status = 0;

    bool finished() const { return at == stage::finished; }
  };

  /// What the connection does once everything queued is written.
  enum class then {
    carry_on,   ///< the exchange decides (maybe_finish)
    read_head,  ///< an error was answered on a kept-alive connection: read the next request
    close,      ///< the answer ends the connection
  };

  // ---- request head --------------------------------------------------------

  /// Upload bytes read and dropped after a complete response before the
  /// connection is closed instead.
  static constexpr uint64_t discard_limit = 1 << 20;

  /// Beast reads min(free capacity, 64 KiB) per call; bodies get the full
  /// 64 KiB, idle connections keep only what a request head needs.
  void grow_buffer() { buffer_.reserve(64 * 1024); }

  void do_read_header() {
    ex_ = exchange{};
    ex_.seq = ++requests_started_;
    cfg_ = state_.config();  // a reload applies from the next request on
    if (buffer_.capacity() > 16 * 1024 && buffer_.size() < 16 * 1024) {
      buffer_.shrink_to_fit();
      buffer_.reserve(16 * 1024);
    }
    parser_.emplace();
    parser_->header_limit(cfg_->max_header_bytes);
    if (cfg_->max_body_size > 0)
      parser_->body_limit(cfg_->max_body_size);
    else
      parser_->body_limit(boost::none);
    // A timer of our own rather than the stream's expiry: the stream's closes
    // the socket, and a client that sent part of a head gets a 408 first.
    auto head_deadline = requests_ == 0 ? cfg_->read_header_timeout : cfg_->idle_timeout;
    // The stream's own expiry stays as a backstop a second later: it closes without a 408.
    lowest().expires_after(head_deadline + std::chrono::seconds(1));
    head_deadline_hit_ = false;
    head_timer_.expires_after(head_deadline);
    auto gen = ++head_gen_;
    head_timer_.async_wait([self = this->shared_from_this(), gen](error_code ec) {
      // A wait that already completed cannot be cancelled: the generation says whether it is stale.
      if (ec || self->closed_ || gen != self->head_gen_) return;
      self->head_deadline_hit_ = true;
      error_code ignored;
      self->lowest().socket().cancel(ignored);
    });
    head_bytes_ = 0;
    read_header_some();
  }

  // The head is read here rather than by http::async_read_some, which keeps
  // reading while the parser takes nothing: a short malformed request line
  // ("GET / " CRLF CRLF) would then wait for the header timeout. Beast applies
  // header_limit to the bytes not yet parsed only, so a head sent in pieces
  // could grow without bound: every byte it consumed is counted too.
  void read_header_some() {
    if (buffer_.size() > 0) {  // pipelined requests arrive with the one before
      error_code ec;
      auto used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      head_bytes_ += used;
      if (ec == http::error::need_more) ec = {};
      if (!ec && head_bytes_ > cfg_->max_header_bytes) ec = http::error::header_limit;
      if (ec || parser_->is_header_done()) return on_read_header(ec);
      auto buffered = buffer_.data();
      if (holds_complete_head({static_cast<const char*>(buffered.data()), buffered.size()}))
        return on_read_header(http::error::bad_version);  // a whole head the parser cannot take: 400 now
    }
    stream_.async_read_some(buffer_.prepare(beast::read_size(buffer_, 64 * 1024)),
                            [self = this->shared_from_this()](error_code ec, size_t n) {
                              self->buffer_.commit(n);
                              // The deadline may have fired after this read had already completed (its
                              // cancel then found nothing to cancel): stop here, not start another read.
                              if (self->head_deadline_hit_) ec = asio::error::operation_aborted;
                              if (ec == asio::error::eof)
                                ec = self->parser_->got_some() || self->buffer_.size() > 0
                                         ? http::error::partial_message
                                         : http::error::end_of_stream;
                              if (ec) return self->on_read_header(ec);
                              self->read_header_some();
                            });
  }

  void on_read_header(error_code ec) {
    ++head_gen_;
    head_timer_.cancel();
    if (ec == beast::error::timeout) return close();
    if (ec && head_deadline_hit_) {
      if (head_bytes_ > 0 || buffer_.size() > 0) {
        lowest().expires_after(std::chrono::seconds(5));  // bounds the 408's write
        return reply_and_close(408, "The request head was not received in time.");
      }
      return close();
    }
    if (peer_closed(ec)) return close();
    if (ec == http::error::header_limit) return reply_and_close(431, "The request head is too large.");
    if (ec == http::error::body_limit) return reply_and_close(413, "The request body is too large.");
    if (ec) {
      spdlog::debug("conn={} remote={}: bad request: {}", conn_id_, remote_ip_, ec.message());
      return reply_and_close(400, "Malformed request.");
    }
    ++requests_;
    lowest().expires_never();
    auto& req = parser_->get();
    ex_.started = clock::now();
    ex_.method = std::string(req.method_string());
    ex_.version = req.version();
    ex_.keep_alive = req.keep_alive();
    ex_.is_head = req.method() == http::verb::head;

    request_framing framing;
    framing.chunked = parser_->chunked();
    framing.content_length = parser_->content_length();
    framing.done = parser_->is_done();
    request_context ctx;
    ctx.remote_ip = remote_ip_;
    ctx.tls = is_tls;
    ctx.max_header_count = cfg_->max_header_count;
    ctx.trusted_proxies = &cfg_->trusted_proxies;
    auto built = build_request_head(req, framing, ctx);
    if (built.error) return reply_and_close(built.error->status, built.error->detail);
    auto& ok = built.ok;
    ex_.target = ok.target;
    ex_.host = ok.host;
    const auto& host = ok.host;

    if (state_.draining.load(std::memory_order_relaxed)) {
      ex_.keep_alive = false;
      return reply_error(503, "The server is shutting down; try again shortly.");
    }
    if (!is_tls && cfg_->tls_redirect_http && cfg_->https_port != 0) {
      auto location = "https://" + host +
                      (cfg_->https_port == 443 ? std::string() : ":" + std::to_string(cfg_->https_port)) + ex_.target;
      return reply_redirect(location);
    }
    auto name = tunnel_name_for_host(host, cfg_->domain);
    if (!name) return reply_error(404, "No tunnel is served at " + host + ".");
    auto found = state_.names.find(*name);
    if (found.t && found.t->is_tcp()) found.t.reset();  // a TCP tunnel's name serves no HTTP
    std::shared_ptr<exchange_target> relay;
    if (!found.t) {
      // Online at another node of the cluster: that node's tunnel carries it.
      if (state_.relays) relay = state_.relays->route(*name);
      if (!relay) {
        if (found.recently_offline) return reply_error(502, "Tunnel " + host + " is offline.");
        if (found.unhealthy)
          return reply_error(503, "Tunnel " + host + " is online, but its local service fails its health check.");
        return reply_error(404, "Tunnel " + host + " not found.");
      }
    } else {
      // A node that cannot show its cluster lease is alive may no longer own the name.
      if (state_.cluster && !state_.cluster->serving())
        return reply_error(503, "This server node lost contact with its cluster; try again shortly.");
      // Visitor rules, before anything crosses the tunnel (a pool's members all
      // have the same). A relayed request meets them at the tunnel's node.
      switch (found.t->check_visitor(ok.visitor_ip, req[http::field::authorization])) {
        case access_verdict::pass:
          break;
        case access_verdict::forbidden:
          return reply_error(403, "Your address may not reach " + host + ".");
        case access_verdict::unauthorized:
          return reply_error(401, "Sign in to reach " + host + ".",
                             "WWW-Authenticate: Basic realm=\"" + host + "\", charset=\"UTF-8\"\r\n");
      }
    }
    route_name_ = *name;
    local_ = found.t.get();
    bool asks_credentials = local_ && local_->asks_credentials();
    if (relay)
      tunnel_ = std::move(relay);
    else
      tunnel_ = std::move(found.t);
    bool others = local_ && found.members > 1;  // a pool member to retry on, should this one refuse

    pb::Frame frame = std::move(ok.frame);
    {
      auto* h = frame.mutable_request_head();
      // The peer's port names the visitor only when the peer is the visitor.
      if (ok.visitor_ip == remote_ip_) h->set_remote_port(remote_port_);
      h->set_public_addr(public_addr_);
      h->set_public_port(public_port_);
    }
    // The credentials were for grok-server; the local service does not see them.
    if (asks_credentials) remove_headers(*frame.mutable_request_head()->mutable_headers(), "authorization");
    if (!local_) frame.mutable_request_head()->set_relay_name(route_name_);
    ex_.id = tunnel_->next_exchange_id();
    frame.set_exchange_id(ex_.id);
    if (others) ex_.again = std::make_unique<replay>(replay{frame, {}, false});
    ex_.upgrade = std::move(ok.upgrade);
    ex_.expect_continue = ok.expect_continue;
    ex_.up = ok.req_done ? upload::done : upload::waiting;

    ex_.last_upload = clock::now();
    arm_response_timer(cfg_->response_timeout);
    make_relay();
    ex_.at = stage::open;
    state_.exchanges_in_flight.fetch_add(1, std::memory_order_relaxed);
    tunnel_->open(this->shared_from_this(), std::move(frame));
  }

  void make_relay() {
    response_relay::params rp;
    rp.id = ex_.id;
    rp.version = ex_.version;
    rp.is_head = ex_.is_head;
    rp.keep_alive = ex_.keep_alive;
    rp.upgrade = ex_.upgrade;
    rp.initial_window = cfg_->initial_window;
    rp.max_window = cfg_->max_window;
    if (local_) rp.growth = local_->window_growth();  // a relayed exchange keeps its window
    ex_.relay.emplace(std::move(rp));
  }

  /// A pool member's local service refused the connection before it took
  /// any byte of the request: the exchange starts over, once, on another
  /// member. False when there is none, or it cannot be replayed.
  bool retry_elsewhere(const std::string& why) {
    if (!ex_.again || ex_.retried || !local_) return false;
    auto found = state_.names.find(route_name_, local_);
    if (!found.t || found.t->is_tcp()) return false;
    spdlog::info("tunnel={} conn={} req={}: the local service of tunnel conn={} refused ({}); trying conn={}",
                 route_name_, conn_id_, ex_.id, tunnel_->conn_id(), why, found.t->conn_id());
    ex_.retried = true;
    tunnel_->close_exchange(ex_.id);
    local_ = found.t.get();
    tunnel_ = std::move(found.t);
    ex_.id = tunnel_->next_exchange_id();
    ex_.tunnel_gone = false;
    pb::Frame head = std::move(ex_.again->head);
    head.set_exchange_id(ex_.id);
    make_relay();
    tunnel_->open(this->shared_from_this(), std::move(head));
    return true;
  }

  void handle_opened(uint64_t id, uint32_t window, uint32_t response_window) {
    if (id != ex_.id || ex_.finished()) return;
    ex_.relay->opened(window, response_window);
    if (ex_.retried && ex_.again) {
      // The bytes the refusing member was sent go to this one first.
      auto again = std::move(ex_.again);
      // A read of the public socket may still be on its way: its bytes go behind these.
      auto pending = ex_.read == reader::reading ? body_buf_.size() : 0;
      if (again->body.size() + pending > window) return fail_exchange(502, "The local service refused the connection.");
      ex_.relay->credit().spend(again->body.size());
      std::string_view rest = again->body;
      do {
        auto piece = rest.substr(0, cfg_->max_frame_size);
        rest.remove_prefix(piece.size());
        bool last = rest.empty();
        if (!piece.empty() || (last && again->body_done))
          tunnel_->send(make_data(id, std::string(piece), last && again->body_done));
      } while (!rest.empty());
      if (ex_.up == upload::body && ex_.read == reader::waiting_credit) {
        ex_.read = reader::idle;
        do_read_body();
      }
    }
    if (ex_.up != upload::waiting) return;  // no body, or it is already on its way
    ex_.up = upload::body;
    grow_buffer();
    if (ex_.expect_continue && ex_.version >= 11) {
      // The tunnel took the exchange, so ask for the body ourselves.
      queue_write(out_piece{"HTTP/1.1 100 Continue\r\n\r\n", {}, {}, 0});
    }
    do_read_body();
  }

  // ---- request body (public client -> tunnel) -------------------------------

  void do_read_body() {
    if ((ex_.up != upload::body && ex_.up != upload::discarding) || ex_.read == reader::reading || ex_.finished())
      return;
    // Discarded bytes go nowhere, so they need no credit.
    auto want = ex_.up == upload::discarding ? uint64_t{cfg_->max_frame_size}
                                             : ex_.relay->credit().allowance(cfg_->max_frame_size);
    if (want == 0) {
      ex_.read = reader::waiting_credit;
      return;
    }
    // A small body gets a small buffer: no 64 KiB allocation for a few bytes.
    if (auto left = parser_->content_length_remaining()) want = std::min<uint64_t>(want, std::max<uint64_t>(*left, 1));
    ex_.read = reader::reading;
    body_buf_.resize(want);
    parser_->get().body().data = body_buf_.data();
    parser_->get().body().size = want;
    lowest().expires_after(cfg_->idle_timeout);
    http::async_read_some(stream_, buffer_, *parser_,
                          [self = this->shared_from_this(), seq = ex_.seq](error_code ec, size_t) {
                            self->on_read_body(ec, seq);
                          });
  }

  void on_read_body(error_code ec, uint64_t seq) {
    ex_.read = reader::idle;
    if (seq != ex_.seq || ex_.finished()) return;
    auto id = ex_.id;  // a retry on another pool member changes it
    if (ec == http::error::need_buffer) ec = {};
    if (ec == http::error::body_limit) {
      cancel_upstream("request body too large");
      return fail_exchange(413, "The request body is too large.");
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_chunk).category() &&
        ec != http::error::partial_message && ec != http::error::end_of_stream) {
      // Malformed body framing (bad chunk, a trailer Beast rejects): the local
      // service saw a truncated request; the public client gets a 400.
      spdlog::debug("tunnel={} conn={} req={}: malformed request body: {}", route_name_, conn_id_, id,
                    ec.message());
      cancel_upstream("malformed request body");
      return fail_exchange(400, "Malformed request body.");
    }
    if (ec) {
      spdlog::debug("tunnel={} conn={} req={}: public client went away during upload: {}", route_name_,
                    conn_id_, id, ec.message());
      cancel_upstream("public client went away");
      return abort_exchange();
    }
    size_t got = body_buf_.size() - parser_->get().body().size;
    bool done = parser_->is_done();
    if (ex_.up == upload::discarding) {
      ex_.discarded += got;
      if (done) {
        ex_.up = upload::done;
        return maybe_finish();
      }
      if (ex_.discarded > discard_limit) {
        finish_exchange();
        return close();
      }
      return do_read_body();
    }
    if (got > 0 || done) {
      ex_.last_upload = clock::now();
      ex_.bytes_in += got;
      body_buf_.resize(got);
      if (ex_.again) {
        ex_.again->body += body_buf_;
        ex_.again->body_done = done;
      }
      // On the way to another pool member: these go after what the first was sent.
      if (!(ex_.retried && ex_.again)) {
        ex_.relay->credit().spend(got);
        tunnel_->send(make_data(id, std::move(body_buf_), done));
      }
      body_buf_ = std::string();
    }
    if (done) {
      ex_.up = upload::done;
      return maybe_finish();
    }
    do_read_body();
  }

  // ---- upgraded connections: raw bytes from the public client ----------------

  void do_read_raw() {
    if (ex_.up != upload::raw || ex_.read == reader::reading || ex_.finished()) return;
    auto want = ex_.relay->credit().allowance(cfg_->max_frame_size);
    if (want == 0) {
      ex_.read = reader::waiting_credit;
      return;
    }
    if (buffer_.size() > 0) {
      // Bytes the client sent right behind the upgrade request go first.
      auto chunk = take_buffered(buffer_, want);
      auto n = chunk.size();
      ex_.relay->credit().spend(n);
      ex_.bytes_in += n;
      tunnel_->send(make_data(ex_.id, std::move(chunk), false));
      return do_read_raw();
    }
    ex_.read = reader::reading;
    body_buf_.resize(want);
    lowest().expires_never();
    stream_.async_read_some(asio::buffer(body_buf_), [self = this->shared_from_this(), id = ex_.id](error_code ec, size_t n) {
      self->on_read_raw(ec, n, id);
    });
  }

  void on_read_raw(error_code ec, size_t n, uint64_t id) {
    ex_.read = reader::idle;
    if (id != ex_.id || ex_.finished()) return;
    if (ec == asio::error::eof) {
      ex_.up = upload::done;
      tunnel_->send(make_data(id, std::string(), true));
      return maybe_finish();
    }
    if (ec) {
      cancel_upstream("public client went away");
      return abort_exchange();
    }
    ex_.relay->credit().spend(n);
    ex_.bytes_in += n;
    body_buf_.resize(n);
    tunnel_->send(make_data(id, std::move(body_buf_), false));
    body_buf_ = std::string();
    do_read_raw();
  }

  // ---- frames from the tunnel ----------------------------------------------

  void handle_frame(uint64_t id, pb::Frame& f) {
    if (id != ex_.id || ex_.finished() || !ex_.relay) return;
    auto st = ex_.relay->on_frame(id, f, out_.pieces());
    ex_.resp_bytes = ex_.relay->response_bytes();
    using kind = response_relay::step::kind;
    switch (st.what) {
      case kind::ignored:
        return;
      case kind::protocol_error:
        return protocol_error(st.reason);
      case kind::reset:
        ex_.tunnel_gone = true;
        if (st.reset_code == pb::Reset::UPSTREAM_REFUSED && retry_elsewhere(st.reset_message)) return;
        return handle_reset(st.reset_code, st.reset_message);
      case kind::progress:
        break;
    }
    // Credit back or a response started: the member's local service has the
    // request, so it is not sent anywhere else.
    if (st.credit_granted || st.head) ex_.again.reset();
    if (st.head) {
      response_timer_.cancel();
      ex_.down = download::streaming;
      ex_.status = ex_.relay->status();
      ex_.keep_alive = ex_.relay->keep_alive();
    }
    if (st.credit_granted && ex_.read == reader::waiting_credit) {
      ex_.read = reader::idle;
      if (ex_.up == upload::raw)
        do_read_raw();
      else
        do_read_body();
    }
    do_write();
    if (st.start_raw) {
      ex_.upgraded = true;
      ex_.up = upload::raw;
      grow_buffer();
      do_read_raw();  // raw bytes spend the request-direction credit
    }
    if (st.response_end) {
      ex_.down = download::complete;
      if (!out_.writing()) maybe_finish();
    }
  }

  void handle_reset(pb::Reset::Code code, const std::string& message) {
    switch (code) {
      case pb::Reset::UPSTREAM_REFUSED:
        return fail_exchange(502, "The local service refused the connection (" + message + ").");
      case pb::Reset::UPSTREAM_RESET:
        return fail_exchange(502, "The local service closed the connection (" + message + ").");
      case pb::Reset::UPSTREAM_BAD_RESPONSE:
        return fail_exchange(502, "The local service sent an invalid response (" + message + ").");
      case pb::Reset::UPSTREAM_TIMEOUT:
        return fail_exchange(504, "The local service did not respond in time.");
      default:
        return fail_exchange(502, "The tunnel client ended the request (" + message + ").");
    }
  }

  // ---- writes to the public client ------------------------------------------

  void queue_write(out_piece&& p) {
    out_.push(std::move(p));
    do_write();
  }

  void do_write() {
    if (hold_writes_ || out_.writing() || out_.empty()) return;
    lowest().expires_after(cfg_->idle_timeout);
    out_.start(stream_, [self = this->shared_from_this()](error_code ec) { self->on_write(ec); });
  }

  void on_write(error_code ec) {
    uint64_t consumed = out_.written();
    if (ec) {
      if (!expected_disconnect(ec))
        spdlog::debug("conn={}: write to public client failed: {}", conn_id_, ec.message());
      if (!ex_.finished() && ex_.id != 0) cancel_upstream("public client went away");
      return abort_exchange();
    }
    if (consumed > 0 && !ex_.finished() && ex_.relay && !ex_.tunnel_gone) {
      if (auto inc = ex_.relay->on_written(consumed)) tunnel_->send(make_window_update(ex_.id, inc));
    }
    if (!out_.empty()) return do_write();
    switch (std::exchange(then_, then::carry_on)) {
      case then::close:
        return close();
      case then::read_head:
        return do_read_header();
      case then::carry_on:
        return maybe_finish();
    }
  }

  /// After what is queued is written: `next`, unless the connection is to close anyway.
  void then_after_write(then next) {
    if (then_ != then::close) then_ = next;
  }

  // ---- endings ---------------------------------------------------------------

  void maybe_finish() {
    if (ex_.finished() || !out_.idle() || ex_.down != download::complete) return;
    if (ex_.upgraded) {
      if (ex_.up != upload::done) {
        // The local side closed: half-close towards the public client.
        error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
    } else if (ex_.up != upload::done) {
      // The local service answered before the whole upload arrived. Read and
      // drop the rest (bounded) so the connection, and any requests pipelined
      // behind the body, stay usable; a larger remainder closes it.
      if (ex_.up != upload::discarding) {
        ex_.up = upload::discarding;
        if (ex_.read == reader::waiting_credit) ex_.read = reader::idle;
        do_read_body();
      }
      return;
    }
    finish_exchange();
    if (ex_.upgraded || !ex_.keep_alive) return close();
    do_read_header();
  }

  void finish_exchange() {
    if (ex_.finished()) return;
    bool was_open = ex_.at == stage::open;
    ex_.at = stage::finished;
    if (ex_.relay) ex_.relay->close();
    response_timer_.cancel();
    if (tunnel_ && ex_.id != 0) tunnel_->close_exchange(ex_.id);
    auto took = clock::now() - ex_.started;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    // A response that ended before all of it went out is "cut", not its status;
    // an exchange that ended before any response is "no_response". An upgraded
    // connection ends whenever either side closes it.
    bool complete = ex_.upgraded || ex_.down == download::complete;
    std::string outcome = complete                               ? std::to_string(ex_.status)
                          : ex_.down == download::streaming ? "cut"
                                                            : "no_response";
    if (was_open) {
      state_.exchanges_in_flight.fetch_sub(1, std::memory_order_relaxed);
      state_.stats.record_exchange(route_name_, outcome, took, ex_.bytes_in, ex_.resp_bytes);
    }
    // No request reached a tunnel: nothing to log as an exchange. Nothing to format either
    // when access lines are not logged.
    if (ex_.id == 0 || !spdlog::should_log(spdlog::level::info)) return;
    static const std::string none = "-";
    const std::string& tunnel = tunnel_ ? route_name_ : none;
    log_fields(spdlog::level::info,
               fmt::format("tunnel={} conn={} req={} remote={} \"{} {}\" {} in={}B out={}B {}ms", tunnel, conn_id_,
                           ex_.id, remote_ip_, ex_.method, ex_.target, outcome, ex_.bytes_in, ex_.resp_bytes, ms),
               {{"tunnel", tunnel},
                {"conn", static_cast<int64_t>(conn_id_)},
                {"req", static_cast<int64_t>(ex_.id)},
                {"remote", remote_ip_},
                {"method", ex_.method},
                {"path", ex_.target},
                {"status", static_cast<int64_t>(ex_.status)},
                {"outcome", complete ? std::string_view("complete") : std::string_view(outcome)},
                {"bytes_in", static_cast<int64_t>(ex_.bytes_in)},
                {"bytes_out", static_cast<int64_t>(ex_.resp_bytes)},
                {"duration_ms", static_cast<int64_t>(ms)}});
  }

  /// tunnels.response_timeout counts from the last request byte sent on, so
  /// a long upload is not cut while it is still moving.
  void arm_response_timer(clock::duration after) {
    response_timer_.expires_after(after);
    response_timer_.async_wait([self = this->shared_from_this(), seq = ex_.seq](error_code ec) {
      auto id = self->ex_.id;
      if (ec || seq != self->ex_.seq || !self->ex_.relay || self->ex_.relay->head_received() || self->ex_.finished()) return;
      auto due = self->ex_.last_upload + self->cfg_->response_timeout;
      if (due > clock::now()) return self->arm_response_timer(due - clock::now());
      spdlog::warn("tunnel={} conn={} req={}: no response head within {}ms", self->route_name_, self->conn_id_,
                   id, self->cfg_->response_timeout.count());
      self->tunnel_->send(make_reset(id, pb::Reset::UPSTREAM_TIMEOUT, "no response in time"));
      self->ex_.tunnel_gone = true;
      self->fail_exchange(504, "The local service did not respond in time.");
    });
  }

  void cancel_upstream(const char* why) {
    if (tunnel_ && ex_.id != 0 && !ex_.tunnel_gone && !ex_.finished()) {
      tunnel_->send(make_reset(ex_.id, pb::Reset::CANCELLED, why));
      ex_.tunnel_gone = true;
    }
  }

  void protocol_error(const std::string& what) {
    spdlog::warn("tunnel={} conn={} req={}: bad response from tunnel client: {}", tunnel_ ? route_name_ : std::string("-"),
                 conn_id_, ex_.id, what);
    if (tunnel_ && !ex_.tunnel_gone) tunnel_->send(make_reset(ex_.id, pb::Reset::PROTOCOL_ERROR, what));
    ex_.tunnel_gone = true;
    fail_exchange(502, "The tunnel client sent an invalid response.");
  }

  /// Answers `status` if nothing of the response went out yet, else cuts the
  /// connection so the public client never takes a truncated body as whole.
  void fail_exchange(unsigned status, const std::string& detail) {
    if (ex_.finished()) return;
    if (ex_.down != download::awaiting_head) return abort_exchange();
    ex_.status = status;
    ex_.down = download::complete;
    response_timer_.cancel();
    finish_exchange();
    write_error(status, detail, true);
  }

  void abort_exchange() {
    finish_exchange();
    if (hold_writes_ && !out_.empty()) {
      // Mid-run: what the run's earlier frames queued goes out first, then the cut.
      then_after_write(then::close);
      return;
    }
    close();
  }

  /// An error answered before any exchange started (routing, bad request).
  /// `extra_headers`: whole header lines ("Name: value\r\n") added to the answer.
  void reply_error(unsigned status, const std::string& detail, const std::string& extra_headers = {}) {
    ex_.status = status;
    bool keep = ex_.keep_alive && parser_ && parser_->is_done();
    spdlog::info("conn={} remote={} \"{} {}\" {} host={}", conn_id_, remote_ip_, ex_.method, ex_.target, status,
                 ex_.host);
    write_error(status, detail, !keep, extra_headers);
    if (keep) {
      ex_.at = stage::finished;
      then_after_write(then::read_head);
    }
  }

  void reply_redirect(const std::string& location) {
    if (!valid_header_value(location)) return reply_and_close(400, "Invalid request target.");
    bool keep = ex_.keep_alive && parser_ && parser_->is_done();
    std::string out = status_line(ex_.version, 308) + "Location: " + location + "\r\nContent-Length: 0\r\n" +
                      (keep ? "\r\n" : "Connection: close\r\n\r\n");
    ex_.status = 308;
    if (!keep) then_after_write(then::close);
    queue_write(out_piece{std::move(out), {}, {}, 0});
    if (keep) {
      ex_.at = stage::finished;
      then_after_write(then::read_head);
    }
  }

  void reply_and_close(unsigned status, const std::string& detail) {
    spdlog::info("conn={} remote={}: {} {}", conn_id_, remote_ip_, status, detail);
    write_error(status, detail, true);
  }

  void write_error(unsigned status, const std::string& detail, bool close_after, const std::string& extra_headers = {}) {
    auto body = error_page(status, detail);
    std::string out = status_line(ex_.version, status) + "Content-Type: text/html; charset=utf-8\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nCache-Control: no-store\r\n" + extra_headers;
    out += close_after ? "Connection: close\r\n\r\n" : "\r\n";
    if (!ex_.is_head) out += body;
    if (close_after) then_after_write(then::close);
    queue_write(out_piece{std::move(out), {}, {}, 0});
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    response_timer_.cancel();
    head_timer_.cancel();
    if (!ex_.finished() && ex_.id != 0) {
      cancel_upstream("public connection closed");
      finish_exchange();
    }
    error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest().close();
  }

  auto& lowest() { return beast::get_lowest_layer(stream_); }

  Stream stream_;
  ip_connection_limiter::slot ip_slot_;  // released when the session is destroyed
  beast::flat_buffer buffer_;
  server_state& state_;
  std::shared_ptr<const server_config> cfg_;
  uint64_t conn_id_;
  std::string remote_ip_;
  uint16_t remote_port_ = 0;
  std::string public_addr_;  ///< the server's address the visitor connected to
  uint16_t public_port_ = 0;
  asio::steady_timer response_timer_;
  asio::steady_timer head_timer_;  // read_header_timeout / idle_timeout between requests
  bool head_deadline_hit_ = false;
  uint64_t head_gen_ = 0;
  std::optional<http::request_parser<http::buffer_body>> parser_;
  std::shared_ptr<exchange_target> tunnel_;  ///< a tunnel here, or the relay to the node that holds it
  tunnel* local_ = nullptr;                  ///< tunnel_ when it is a tunnel here
  std::string route_name_;                   ///< the name the exchange is for
  exchange ex_;
  std::string body_buf_;
  write_queue out_;
  then then_ = then::carry_on;
  bool hold_writes_ = false;  // frames of one run are being handled: write once after them
  bool closed_ = false;
  uint64_t requests_ = 0;
  uint64_t requests_started_ = 0;
  uint64_t head_bytes_ = 0;  // bytes of the current request head parsed so far
};

}  // namespace

namespace {

void start_session(server_state& state, tcp::socket&& s, uint64_t conn, bool tls, ip_connection_limiter::slot&& slot,
                   const std::optional<proxied_peer>& proxied) {
  if (tls) {
    auto ctx = state.tls_context();
    std::make_shared<http_session<beast::ssl_stream<beast::tcp_stream>>>(std::move(s), state, conn, std::move(slot),
                                                                         proxied, *ctx)
        ->start();
  } else {
    std::make_shared<http_session<beast::tcp_stream>>(std::move(s), state, conn, std::move(slot), proxied)->start();
  }
}

}  // namespace

std::shared_ptr<listener> make_public_listener(server_state& state, const tcp::endpoint& ep, bool tls) {
  auto next_conn = std::make_shared<std::atomic<uint64_t>>(1);
  return std::make_shared<listener>(state.ioc(), ep, [&state, tls, next_conn](tcp::socket&& s) {
    error_code ec;
    auto peer = s.remote_endpoint(ec);
    auto ip = ec ? std::string("unknown") : peer.address().to_string();
    auto cfg = state.config();
    auto conn = next_conn->fetch_add(1, std::memory_order_relaxed);
    bool trusted_proxy = cfg->proxy_protocol && ip_in_any(ip, cfg->trusted_proxies);
    if (trusted_proxy) {
      // The visitor the header names is the one counted against the per-IP limit.
      return proxy_header_reader::start(
          std::move(s), ip, true, cfg->read_header_timeout,
          [&state, conn, tls, ip](tcp::socket&& s2, std::optional<proxied_peer> who) {
            error_code ec;
            auto slot = state.per_ip_connections.try_acquire(who ? who->ip : ip, state.config()->max_connections_per_ip);
            if (!slot) return s2.close(ec);
            start_session(state, std::move(s2), conn, tls, std::move(*slot), who);
          });
    }
    auto slot = state.per_ip_connections.try_acquire(ip, cfg->max_connections_per_ip);
    if (!slot) {
      // Over the per-IP limit: costs this accept and a close, nothing more.
      s.close(ec);
      return;
    }
    if (!cfg->proxy_protocol) return start_session(state, std::move(s), conn, tls, std::move(*slot), std::nullopt);
    // Anyone else: served as it is, unless it sends a PROXY header.
    auto held = std::make_shared<ip_connection_limiter::slot>(std::move(*slot));
    proxy_header_reader::start(std::move(s), ip, false, cfg->read_header_timeout,
                               [&state, conn, tls, held](tcp::socket&& s2, std::optional<proxied_peer>) {
                                 start_session(state, std::move(s2), conn, tls, std::move(*held), std::nullopt);
                               });
  });
}

}  // namespace grok::server_detail
