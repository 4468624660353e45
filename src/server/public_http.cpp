#include "public_http.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <type_traits>
#include <deque>
#include <optional>

#include "grok/credit.hpp"
#include "grok/host.hpp"
#include "grok/http_rules.hpp"

namespace grok::server_detail {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

bool expected_disconnect(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::operation_aborted ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == http::error::end_of_stream || ec == beast::error::timeout;
}

std::string reason_phrase(unsigned status) {
  auto r = http::obsolete_reason(static_cast<http::status>(status));
  return r.empty() ? std::string("Unknown") : std::string(r);
}

std::string error_page(unsigned status, std::string_view detail) {
  std::string title = std::to_string(status) + " " + reason_phrase(status);
  std::string body;
  body.reserve(256 + detail.size());
  body += "<!doctype html><html><head><meta charset=\"utf-8\"><title>";
  body += title;
  body += "</title></head><body><h1>";
  body += title;
  body += "</h1><p>";
  for (char c : detail) {
    switch (c) {
      case '<': body += "&lt;"; break;
      case '>': body += "&gt;"; break;
      case '&': body += "&amp;"; break;
      case '"': body += "&quot;"; break;
      default: body += c;
    }
  }
  body += "</p><hr><p>grok</p></body></html>\n";
  return body;
}

/// Strips "http://authority" from an absolute-form target, returning the
/// authority through `authority` (RFC 9112 §3.2.2).
std::string origin_form(std::string_view target, std::string& authority) {
  auto scheme_end = target.find("://");
  if (target.empty() || target.front() == '/' || scheme_end == std::string_view::npos) return std::string(target);
  auto rest = target.substr(scheme_end + 3);
  auto slash = rest.find_first_of("/?");
  authority = std::string(rest.substr(0, slash));
  if (slash == std::string_view::npos) return "/";
  auto path = std::string(rest.substr(slash));
  if (path.front() == '?') path.insert(path.begin(), '/');
  return path;
}

/// One queued write to the public socket: a framing prefix, a payload
/// moved out of a Data frame, a framing suffix, and the credit the payload
/// returns to the tunnel client once written.
struct out_piece {
  std::string head;
  std::string body;
  std::string_view tail;
  uint32_t credit = 0;
};

/// One public connection; Stream is a plain beast::tcp_stream or a TLS stream over one.
template <class Stream>
class http_session final : public exchange_sink, public std::enable_shared_from_this<http_session<Stream>> {
  static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;
 public:
  template <class... TlsContext>
  http_session(tcp::socket&& socket, server_state& state, uint64_t conn_id, TlsContext&... tls)
      : stream_(std::move(socket), tls...),
        state_(state),
        cfg_(state.config()),
        conn_id_(conn_id),
        response_timer_(stream_.get_executor()) {
    error_code ec;
    auto ep = lowest().socket().remote_endpoint(ec);
    remote_ip_ = ec ? std::string("unknown") : ep.address().to_string();
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
  void on_opened(uint64_t id, uint32_t window) override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this(), id, window] { self->handle_opened(id, window); });
  }
  void on_frame(uint64_t id, pb::Frame&& f) override {
    asio::post(stream_.get_executor(),
               [self = this->shared_from_this(), id, f = std::move(f)]() mutable { self->handle_frame(id, f); });
  }
  void on_unavailable(uint64_t id, unsigned status, std::string reason) override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this(), id, status, reason = std::move(reason)] {
      if (id != self->ex_.id || self->ex_.finished) return;
      self->ex_.tunnel_done = true;
      self->fail_exchange(status, reason);
    });
  }

 private:
  /// State of the exchange in progress; reset for each request.
  struct exchange {
    uint64_t id = 0;
    std::string method;
    std::string target;
    std::string host;
    std::string upgrade;
    unsigned version = 11;
    bool is_head = false;
    bool keep_alive = true;
    bool expect_continue = false;
    clock::time_point started;

    // request direction (public client -> tunnel)
    bool opened = false;
    bool req_done = false;
    bool reading = false;
    bool waiting_credit = false;
    send_credit credit;
    uint64_t bytes_in = 0;

    // response direction (tunnel -> public client)
    bool head_received = false;
    bool head_queued = false;
    bool chunked = false;
    bool upgraded = false;
    bool resp_end = false;     // all response bytes are queued
    bool raw_in_done = false;  // upgraded: public client half-closed
    int64_t resp_expected = -1;
    uint64_t resp_bytes = 0;
    unsigned status = 0;
    std::optional<recv_window> window;

    bool discard_body = false; // response complete: the rest of the upload is read and dropped
    uint64_t discarded = 0;
    bool counted = false;      // included in exchanges_in_flight
    bool tunnel_done = false;  // the tunnel dropped the exchange (reset or gone)
    bool finished = false;
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
    lowest().expires_after(requests_ == 0 ? cfg_->read_header_timeout : cfg_->idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](error_code ec, size_t) { self->on_read_header(ec); });
  }

  void on_read_header(error_code ec) {
    if (ec == beast::error::timeout) {
      if (buffer_.size() > 0) return reply_and_close(408, "The request head was not received in time.");
      return close();
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset)
      return close();
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

    // Host: exactly one, valid, and equal to an absolute-form target's authority.
    size_t host_count = req.count(http::field::host);
    if (host_count != 1) return reply_and_close(400, "The request must carry exactly one Host header.");
    auto raw_host = std::string(req[http::field::host]);
    auto host = normalize_host(raw_host);
    if (!host) return reply_and_close(400, "Invalid Host header.");
    std::string authority;
    ex_.target = origin_form(req.target(), authority);
    if (!authority.empty()) {
      auto a = normalize_host(authority);
      if (!a || *a != *host) return reply_and_close(400, "The request target's authority does not match Host.");
    }
    ex_.host = *host;

    // Framing: only a final "chunked" transfer coding is safe to relay.
    size_t te_count = req.count(http::field::transfer_encoding);
    if (te_count > 0) {
      if (ex_.version < 11) return reply_and_close(400, "Transfer-Encoding is not allowed in HTTP/1.0.");
      if (!parser_->chunked()) return reply_and_close(501, "Unsupported Transfer-Encoding.");
      if (req.count(http::field::content_length) > 0)
        return reply_and_close(400, "Both Transfer-Encoding and Content-Length are present.");
    }

    if (state_.draining.load(std::memory_order_relaxed)) {
      ex_.keep_alive = false;
      return reply_error(503, "The server is shutting down; try again shortly.");
    }
    if (!is_tls && cfg_->tls_redirect_http && cfg_->https_port != 0) {
      auto location = "https://" + *host +
                      (cfg_->https_port == 443 ? std::string() : ":" + std::to_string(cfg_->https_port)) + ex_.target;
      return reply_redirect(location);
    }
    auto name = tunnel_name_for_host(*host, cfg_->domain);
    if (!name) return reply_error(404, "No tunnel is served at " + *host + ".");
    auto found = state_.find(*name);
    if (found.t && found.t->is_tcp()) found.t.reset();  // a TCP tunnel's name serves no HTTP
    if (!found.t) {
      if (found.recently_offline) return reply_error(502, "Tunnel " + *host + " is offline.");
      return reply_error(404, "Tunnel " + *host + " not found.");
    }
    tunnel_ = std::move(found.t);

    pb::Frame frame;
    ex_.id = tunnel_->next_exchange_id();
    frame.set_exchange_id(ex_.id);
    auto* head = frame.mutable_request_head();
    head->set_method(ex_.method);
    head->set_target(ex_.target);
    head->set_http_version(ex_.version);
    head->set_remote_addr(remote_ip_);
    auto conn_tokens = connection_tokens(req[http::field::connection]);
    bool wants_upgrade = req.count(http::field::upgrade) > 0 && has_token(req[http::field::connection], "upgrade");
    if (wants_upgrade) ex_.upgrade = std::string(req[http::field::upgrade]);
    ex_.expect_continue = iequals(req[http::field::expect], "100-continue");
    for (const auto& field : req) {
      auto n = field.name_string();
      if (strip_on_forward(n, conn_tokens)) continue;
      switch (field.name()) {
        case http::field::content_length:
        case http::field::expect:
        case http::field::forwarded:
          continue;
        default:
          break;
      }
      if (iequals(n, "x-forwarded-for") || iequals(n, "x-forwarded-proto") || iequals(n, "x-forwarded-host") || iequals(n, "x-real-ip")) continue;
      auto* h = head->add_headers();
      h->set_name(std::string(n));
      h->set_value(std::string(field.value()));
    }
    auto add = [&](const char* n, std::string v) {
      auto* h = head->add_headers();
      h->set_name(n);
      h->set_value(std::move(v));
    };
    add("X-Forwarded-For", remote_ip_);
    add("X-Forwarded-Proto", is_tls ? "https" : "http");
    add("X-Forwarded-Host", raw_host);
    head->set_upgrade(ex_.upgrade);
    if (parser_->chunked()) {
      head->set_content_length(-1);
    } else {
      auto cl = parser_->content_length();
      head->set_content_length(cl ? static_cast<int64_t>(*cl) : 0);
      ex_.req_done = !cl || *cl == 0;
    }
    if (parser_->is_done()) ex_.req_done = true;
    head->set_end_stream(ex_.req_done);

    response_timer_.expires_after(cfg_->response_timeout);
    response_timer_.async_wait([self = this->shared_from_this(), id = ex_.id](error_code ec) {
      if (ec || id != self->ex_.id || self->ex_.head_received || self->ex_.finished) return;
      spdlog::warn("tunnel={} conn={} req={}: no response head within {}ms", self->tunnel_->name(), self->conn_id_,
                   id, self->cfg_->response_timeout.count());
      self->tunnel_->send(make_reset(id, pb::Reset::UPSTREAM_TIMEOUT, "no response in time"));
      self->ex_.tunnel_done = true;
      self->fail_exchange(504, "The local service did not respond in time.");
    });
    ex_.counted = true;
    state_.exchanges_in_flight.fetch_add(1, std::memory_order_relaxed);
    tunnel_->open(this->shared_from_this(), std::move(frame));
  }

  void handle_opened(uint64_t id, uint32_t window) {
    if (id != ex_.id || ex_.finished) return;
    ex_.opened = true;
    ex_.credit = send_credit(window);
    ex_.window.emplace(cfg_->initial_window);
    if (ex_.req_done) return;
    grow_buffer();
    if (ex_.expect_continue && ex_.version >= 11) {
      // The tunnel took the exchange, so ask for the body ourselves.
      queue_write(out_piece{"HTTP/1.1 100 Continue\r\n\r\n", {}, {}, 0});
    }
    do_read_body();
  }

  // ---- request body (public client -> tunnel) -------------------------------

  void do_read_body() {
    if (ex_.req_done || ex_.reading || ex_.finished || !ex_.opened) return;
    // Discarded bytes go nowhere, so they need no credit.
    auto want = ex_.discard_body ? uint64_t{cfg_->max_frame_size} : ex_.credit.allowance(cfg_->max_frame_size);
    if (want == 0) {
      ex_.waiting_credit = true;
      return;
    }
    // A small body gets a small buffer: no 64 KiB allocation for a few bytes.
    if (auto left = parser_->content_length_remaining()) want = std::min<uint64_t>(want, std::max<uint64_t>(*left, 1));
    ex_.reading = true;
    body_buf_.resize(want);
    parser_->get().body().data = body_buf_.data();
    parser_->get().body().size = want;
    lowest().expires_after(cfg_->idle_timeout);
    http::async_read_some(stream_, buffer_, *parser_,
                          [self = this->shared_from_this(), id = ex_.id](error_code ec, size_t) {
                            self->on_read_body(ec, id);
                          });
  }

  void on_read_body(error_code ec, uint64_t id) {
    ex_.reading = false;
    if (id != ex_.id || ex_.finished) return;
    if (ec == http::error::need_buffer) ec = {};
    if (ec == http::error::body_limit) {
      cancel_upstream("request body too large");
      return fail_exchange(413, "The request body is too large.");
    }
    if (ec) {
      spdlog::debug("tunnel={} conn={} req={}: public client went away during upload: {}", tunnel_->name(),
                    conn_id_, id, ec.message());
      cancel_upstream("public client went away");
      return abort_exchange();
    }
    size_t got = body_buf_.size() - parser_->get().body().size;
    bool done = parser_->is_done();
    if (ex_.discard_body) {
      ex_.discarded += got;
      if (done) {
        ex_.req_done = true;
        return maybe_finish();
      }
      if (ex_.discarded > discard_limit) {
        finish_exchange();
        return close();
      }
      return do_read_body();
    }
    if (got > 0 || done) {
      ex_.credit.spend(got);
      ex_.bytes_in += got;
      body_buf_.resize(got);
      tunnel_->send(make_data(id, std::move(body_buf_), done));
      body_buf_ = std::string();
    }
    if (done) {
      ex_.req_done = true;
      return maybe_finish();
    }
    do_read_body();
  }

  // ---- upgraded connections: raw bytes from the public client ----------------

  void do_read_raw() {
    if (ex_.raw_in_done || ex_.reading || ex_.finished) return;
    auto want = ex_.credit.allowance(cfg_->max_frame_size);
    if (want == 0) {
      ex_.waiting_credit = true;
      return;
    }
    if (buffer_.size() > 0) {
      // Bytes the client sent right behind the upgrade request go first.
      auto n = std::min<size_t>(want, buffer_.size());
      std::string chunk(static_cast<const char*>(buffer_.data().data()), n);
      buffer_.consume(n);
      ex_.credit.spend(n);
      ex_.bytes_in += n;
      tunnel_->send(make_data(ex_.id, std::move(chunk), false));
      return do_read_raw();
    }
    ex_.reading = true;
    body_buf_.resize(want);
    lowest().expires_never();
    stream_.async_read_some(asio::buffer(body_buf_), [self = this->shared_from_this(), id = ex_.id](error_code ec, size_t n) {
      self->on_read_raw(ec, n, id);
    });
  }

  void on_read_raw(error_code ec, size_t n, uint64_t id) {
    ex_.reading = false;
    if (id != ex_.id || ex_.finished) return;
    if (ec == asio::error::eof) {
      ex_.raw_in_done = true;
      tunnel_->send(make_data(id, std::string(), true));
      return maybe_finish();
    }
    if (ec) {
      cancel_upstream("public client went away");
      return abort_exchange();
    }
    ex_.credit.spend(n);
    ex_.bytes_in += n;
    body_buf_.resize(n);
    tunnel_->send(make_data(id, std::move(body_buf_), false));
    body_buf_ = std::string();
    do_read_raw();
  }

  // ---- frames from the tunnel ----------------------------------------------

  void handle_frame(uint64_t id, pb::Frame& f) {
    if (id != ex_.id || ex_.finished) return;
    switch (f.kind_case()) {
      case pb::Frame::kResponseHead:
        return handle_response_head(*f.mutable_response_head());
      case pb::Frame::kData:
        return handle_data(*f.mutable_data());
      case pb::Frame::kWindowUpdate:
        if (!ex_.credit.grant(f.window_update().increment())) return protocol_error("window overflow");
        if (ex_.waiting_credit) {
          ex_.waiting_credit = false;
          if (ex_.upgraded)
            do_read_raw();
          else
            do_read_body();
        }
        return;
      case pb::Frame::kReset:
        ex_.tunnel_done = true;
        return handle_reset(f.reset());
      default:
        return;
    }
  }

  void handle_reset(const pb::Reset& r) {
    switch (r.code()) {
      case pb::Reset::UPSTREAM_REFUSED:
        return fail_exchange(502, "The local service refused the connection (" + r.message() + ").");
      case pb::Reset::UPSTREAM_RESET:
        return fail_exchange(502, "The local service closed the connection (" + r.message() + ").");
      case pb::Reset::UPSTREAM_BAD_RESPONSE:
        return fail_exchange(502, "The local service sent an invalid response (" + r.message() + ").");
      case pb::Reset::UPSTREAM_TIMEOUT:
        return fail_exchange(504, "The local service did not respond in time.");
      default:
        return fail_exchange(502, "The tunnel client ended the request (" + r.message() + ").");
    }
  }

  void handle_response_head(pb::ResponseHead& h) {
    if (ex_.head_received) return protocol_error("duplicate response head");
    response_timer_.cancel();
    unsigned status = h.status();
    // What comes back from a tunnel client is untrusted: nothing it sends
    // may split the response or inject a header.
    if (!valid_status(status) || (status == 101 && ex_.upgrade.empty()) || (status >= 100 && status < 200 && status != 101))
      return protocol_error("invalid status " + std::to_string(status));
    for (const auto& hd : h.headers()) {
      if (!valid_header_name(hd.name()) || !valid_header_value(hd.value()))
        return protocol_error("invalid response header");
    }
    ex_.head_received = true;
    ex_.status = status;
    std::string reason = valid_header_value(h.reason()) && !h.reason().empty() ? h.reason() : reason_phrase(status);
    bool no_body = ex_.is_head || status == 204 || status == 304 || status == 101;
    std::string out;
    out.reserve(256);
    out += ex_.version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
    out += std::to_string(status);
    out += ' ';
    out += reason;
    out += "\r\n";
    for (const auto& hd : h.headers()) {
      if (is_hop_by_hop(hd.name()) || iequals(hd.name(), "content-length")) continue;
      out += hd.name();
      out += ": ";
      out += hd.value();
      out += "\r\n";
    }
    if (status == 101) {
      ex_.upgraded = true;
      out += "Connection: Upgrade\r\nUpgrade: ";
      out += ex_.upgrade;
      out += "\r\n";
    } else if (no_body) {
      if (h.content_length() >= 0 && status != 204) out += "Content-Length: " + std::to_string(h.content_length()) + "\r\n";
    } else if (h.content_length() >= 0) {
      ex_.resp_expected = h.content_length();
      out += "Content-Length: " + std::to_string(h.content_length()) + "\r\n";
    } else if (ex_.version >= 11) {
      ex_.chunked = true;
      out += "Transfer-Encoding: chunked\r\n";
    } else {
      ex_.keep_alive = false;  // the body ends when the connection does
    }
    if (!ex_.upgraded) {
      if (!ex_.keep_alive)
        out += "Connection: close\r\n";
      else if (ex_.version < 11)
        out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
    ex_.head_queued = true;
    queue_write(out_piece{std::move(out), {}, {}, 0});
    if (ex_.upgraded) {
      grow_buffer();
      do_read_raw();  // raw bytes spend the request-direction credit
    }
    if (h.end_stream() || (no_body && !ex_.upgraded)) end_response();
  }

  void handle_data(pb::Data& d) {
    if (!ex_.head_received || ex_.resp_end) return protocol_error("data outside a response body");
    auto n = d.payload().size();
    if (!ex_.window->on_data(n)) return protocol_error("tunnel client overran its window");
    ex_.resp_bytes += n;
    if (ex_.resp_expected >= 0 && ex_.resp_bytes > static_cast<uint64_t>(ex_.resp_expected))
      return protocol_error("more body than Content-Length");
    if (n > 0) {
      out_piece p;
      if (ex_.chunked) {
        char hex[24];
        int len = std::snprintf(hex, sizeof hex, "%zx\r\n", n);
        p.head.assign(hex, static_cast<size_t>(len));
        p.tail = "\r\n";
      }
      p.body = std::move(*d.mutable_payload());
      p.credit = static_cast<uint32_t>(n);
      queue_write(std::move(p));
    }
    if (d.end_stream()) {
      if (ex_.resp_expected >= 0 && ex_.resp_bytes != static_cast<uint64_t>(ex_.resp_expected))
        return protocol_error("body shorter than Content-Length");
      end_response();
    }
  }

  void end_response() {
    ex_.resp_end = true;
    if (ex_.chunked) queue_write(out_piece{"0\r\n\r\n", {}, {}, 0});
    if (!writing_) maybe_finish();
  }

  // ---- writes to the public client ------------------------------------------

  void queue_write(out_piece&& p) {
    out_.push_back(std::move(p));
    do_write();
  }

  void do_write() {
    if (writing_ || out_.empty()) return;
    writing_ = true;
    write_bufs_.clear();
    size_t pieces = std::min<size_t>(out_.size(), 64);
    for (size_t i = 0; i < pieces; ++i) {
      auto& p = out_[i];
      if (!p.head.empty()) write_bufs_.emplace_back(p.head.data(), p.head.size());
      if (!p.body.empty()) write_bufs_.emplace_back(p.body.data(), p.body.size());
      if (!p.tail.empty()) write_bufs_.emplace_back(p.tail.data(), p.tail.size());
    }
    lowest().expires_after(cfg_->idle_timeout);
    asio::async_write(stream_, write_bufs_, [self = this->shared_from_this(), pieces](error_code ec, size_t) {
      self->on_write(ec, pieces);
    });
  }

  void on_write(error_code ec, size_t pieces) {
    writing_ = false;
    uint64_t consumed = 0;
    for (size_t i = 0; i < pieces && !out_.empty(); ++i) {
      consumed += out_.front().credit;
      out_.pop_front();
    }
    if (ec) {
      if (!expected_disconnect(ec))
        spdlog::debug("conn={}: write to public client failed: {}", conn_id_, ec.message());
      if (!ex_.finished && ex_.id != 0) cancel_upstream("public client went away");
      return abort_exchange();
    }
    if (consumed > 0 && !ex_.finished && ex_.window && !ex_.tunnel_done) {
      if (auto inc = ex_.window->on_consumed(consumed)) tunnel_->send(make_window_update(ex_.id, inc));
    }
    if (!out_.empty()) return do_write();
    if (closing_after_write_) return close();
    if (pending_next_) {
      pending_next_ = false;
      return do_read_header();
    }
    maybe_finish();
  }

  // ---- endings ---------------------------------------------------------------

  void maybe_finish() {
    if (ex_.finished || writing_ || !out_.empty() || !ex_.resp_end) return;
    if (ex_.upgraded) {
      if (!ex_.raw_in_done) {
        // The local side closed: half-close towards the public client.
        error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
    } else if (!ex_.req_done) {
      // The local service answered before the whole upload arrived. Read and
      // drop the rest (bounded) so the connection, and any requests pipelined
      // behind the body, stay usable; a larger remainder closes it.
      if (!ex_.discard_body) {
        ex_.discard_body = true;
        ex_.waiting_credit = false;
        do_read_body();
      }
      return;
    }
    finish_exchange();
    if (ex_.upgraded || !ex_.keep_alive) return close();
    do_read_header();
  }

  void finish_exchange() {
    if (ex_.finished) return;
    ex_.finished = true;
    response_timer_.cancel();
    if (tunnel_ && ex_.id != 0) tunnel_->close_exchange(ex_.id);
    auto took = clock::now() - ex_.started;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    if (ex_.counted) {
      ex_.counted = false;
      state_.exchanges_in_flight.fetch_sub(1, std::memory_order_relaxed);
      state_.stats.record_exchange(tunnel_->name(), ex_.status, took, ex_.bytes_in, ex_.resp_bytes);
    }
    spdlog::info("tunnel={} conn={} req={} remote={} \"{} {}\" {} in={}B out={}B {}ms", tunnel_ ? tunnel_->name() : "-",
                 conn_id_, ex_.id, remote_ip_, ex_.method, ex_.target, ex_.status, ex_.bytes_in, ex_.resp_bytes, ms);
  }

  void cancel_upstream(const char* why) {
    if (tunnel_ && ex_.id != 0 && !ex_.tunnel_done && !ex_.finished) {
      tunnel_->send(make_reset(ex_.id, pb::Reset::CANCELLED, why));
      ex_.tunnel_done = true;
    }
  }

  void protocol_error(const std::string& what) {
    spdlog::warn("tunnel={} conn={} req={}: bad response from tunnel client: {}", tunnel_ ? tunnel_->name() : "-",
                 conn_id_, ex_.id, what);
    if (tunnel_ && !ex_.tunnel_done) tunnel_->send(make_reset(ex_.id, pb::Reset::PROTOCOL_ERROR, what));
    ex_.tunnel_done = true;
    fail_exchange(502, "The tunnel client sent an invalid response.");
  }

  /// Answers `status` if nothing of the response went out yet, else cuts the
  /// connection so the public client never takes a truncated body as whole.
  void fail_exchange(unsigned status, const std::string& detail) {
    if (ex_.finished) return;
    if (ex_.head_queued) return abort_exchange();
    ex_.status = status;
    ex_.head_queued = true;
    ex_.resp_end = true;
    response_timer_.cancel();
    finish_exchange();
    write_error(status, detail, true);
  }

  void abort_exchange() {
    finish_exchange();
    close();
  }

  /// An error answered before any exchange started (routing, bad request).
  void reply_error(unsigned status, const std::string& detail) {
    ex_.status = status;
    bool keep = ex_.keep_alive && parser_ && parser_->is_done();
    spdlog::info("conn={} remote={} \"{} {}\" {} host={}", conn_id_, remote_ip_, ex_.method, ex_.target, status,
                 ex_.host);
    write_error(status, detail, !keep);
    if (keep) {
      ex_.finished = true;
      pending_next_ = true;
    }
  }

  void reply_redirect(const std::string& location) {
    if (!valid_header_value(location)) return reply_and_close(400, "Invalid request target.");
    bool keep = ex_.keep_alive && parser_ && parser_->is_done();
    std::string out = (ex_.version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ") + std::string("308 Permanent Redirect\r\nLocation: ") +
                      location + "\r\nContent-Length: 0\r\n" + (keep ? "\r\n" : "Connection: close\r\n\r\n");
    ex_.status = 308;
    if (!keep) closing_after_write_ = true;
    queue_write(out_piece{std::move(out), {}, {}, 0});
    if (keep) {
      ex_.finished = true;
      pending_next_ = true;
    }
  }

  void reply_and_close(unsigned status, const std::string& detail) {
    spdlog::info("conn={} remote={}: {} {}", conn_id_, remote_ip_, status, detail);
    write_error(status, detail, true);
  }

  void write_error(unsigned status, const std::string& detail, bool close_after) {
    auto body = error_page(status, detail);
    std::string out = (ex_.version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ") + std::to_string(status) + " " +
                      reason_phrase(status) + "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nCache-Control: no-store\r\n";
    out += close_after ? "Connection: close\r\n\r\n" : "\r\n";
    if (!ex_.is_head) out += body;
    if (close_after) closing_after_write_ = true;
    queue_write(out_piece{std::move(out), {}, {}, 0});
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    response_timer_.cancel();
    if (!ex_.finished && ex_.id != 0) {
      cancel_upstream("public connection closed");
      finish_exchange();
    }
    error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest().close();
  }

  auto& lowest() { return beast::get_lowest_layer(stream_); }

  Stream stream_;
  beast::flat_buffer buffer_;
  server_state& state_;
  std::shared_ptr<const server_config> cfg_;
  uint64_t conn_id_;
  std::string remote_ip_;
  asio::steady_timer response_timer_;
  std::optional<http::request_parser<http::buffer_body>> parser_;
  std::shared_ptr<tunnel> tunnel_;
  exchange ex_;
  std::string body_buf_;
  std::deque<out_piece> out_;
  std::vector<asio::const_buffer> write_bufs_;
  bool writing_ = false;
  bool closing_after_write_ = false;
  bool closed_ = false;
  bool pending_next_ = false;
  uint64_t requests_ = 0;
};

}  // namespace

std::shared_ptr<listener> make_public_listener(server_state& state, const tcp::endpoint& ep, bool tls) {
  auto next_conn = std::make_shared<std::atomic<uint64_t>>(1);
  return std::make_shared<listener>(state.ioc(), ep, [&state, tls, next_conn](tcp::socket&& s) {
    auto conn = next_conn->fetch_add(1, std::memory_order_relaxed);
    if (tls) {
      auto ctx = state.tls_context();
      std::make_shared<http_session<beast::ssl_stream<beast::tcp_stream>>>(std::move(s), state, conn, *ctx)->start();
    } else {
      std::make_shared<http_session<beast::tcp_stream>>(std::move(s), state, conn)->start();
    }
  });
}

}  // namespace grok::server_detail
