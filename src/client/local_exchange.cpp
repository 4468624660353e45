#include "local_exchange.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include "console.hpp"
#include "grok/credit.hpp"
#include "grok/http_rules.hpp"
#include "grok/response_reader.hpp"
#include "byte_pump.hpp"
#include "exchange_capture.hpp"
#include "io_errors.hpp"

namespace grok::client_detail {

namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using clock = std::chrono::steady_clock;

namespace {

/// One public request replayed against the local service. Lives on its own strand.
class local_exchange_impl final : public local_exchange, public std::enable_shared_from_this<local_exchange_impl> {
 public:
  /// `pooled` is a kept-alive connection to use (may be null); the exchange runs on its strand.
  local_exchange_impl(asio::io_context& ioc, std::shared_ptr<exchange_host> session, uint64_t id, pb::RequestHead head,
                      uint32_t send_window, uint32_t recv_window_size, uint32_t max_frame, local_pool& pool,
                      std::shared_ptr<const local_target> local, std::unique_ptr<local_conn> pooled, inspector* insp)
      : strand_(pooled ? pooled->strand : asio::make_strand(ioc)),
        session_(std::move(session)),
        pooled_(std::move(pooled)),
        id_(id),
        head_(std::move(head)),
        credit_(send_window),
        window_(recv_window_size),
        max_frame_(max_frame),
        pool_(pool),
        local_(std::move(local)),
        started_(clock::now()) {
    // The inspector records the request as the visitor sent it (a replay is
    // shaped again) and the response as the visitor gets it.
    bool shaped = !head_.tcp() && !local_->shaping.empty();
    if (insp && shaped) visitor_head_ = head_;
    if (insp) capture_ = std::make_unique<exchange_capture>(*insp, shaped ? visitor_head_ : head_, local_->inspect_index);
    if (shaped) shape_request(head_, local_->shaping, local_->authority);
  }

  void start() {
    upgraded_ = head_.tcp();  // a TCP connection is raw bytes from the start
    chunked_ = !upgraded_ && head_.content_length() < 0;
    up_ = upgraded_ ? upload::raw : head_.end_stream() ? upload::ended : upload::body;
    asio::post(strand_, [self = shared_from_this()] { self->do_connect(); });
  }
  void on_frame(pb::Frame&& f) override {
    asio::post(strand_, [self = shared_from_this(), f = std::move(f)]() mutable { self->handle_frame(f); });
  }
  void cancel() override {
    asio::post(strand_, [self = shared_from_this()] { self->abort(); });
  }

 private:
  enum class link { connecting, open };
  /// Request bytes (tunnel -> local service).
  enum class upload {
    body,    ///< request body frames are still coming
    raw,     ///< upgraded: raw bytes from the public side are still coming
    ended,   ///< every request byte arrived (they may still be being written)
    shut,    ///< upgraded: the half-close was passed on to the local service
    failed,  ///< a write to the local service failed: nothing more is written
  };
  /// Response bytes (local service -> tunnel).
  enum class download {
    head,   ///< waiting for the response head
    body,   ///< the head was sent on; body (or, upgraded, raw) bytes follow
    ended,  ///< the whole response was sent on, or the local service half-closed
  };
  /// The one read of the local connection in flight, if any.
  enum class reader { idle, reading, waiting_credit };

  void do_connect() {
    if (finished_) return;
    if (pooled_) {
      conn_ = std::move(pooled_);
      reused_ = true;
      return on_connected();
    }
    reused_ = false;
    conn_ = std::make_unique<local_conn>(strand_, local_->tls.get());
    conn_->visitor = proxy_header_for(*local_, &head_);
    conn_->stream.expires_after(std::chrono::seconds(10));
    conn_->stream.async_open(local_, conn_->visitor, [self = shared_from_this()](error_code ec, std::string why) {
      if (ec) return self->fail(pb::Reset::UPSTREAM_REFUSED, "cannot connect to local service: " + why);
      self->on_connected();
    });
  }

  void on_connected() {
    if (finished_) return;
    if (head_.tcp()) {
      // Raw bytes both ways from the start; end_stream is a half-close.
      link_ = link::open;
      if (out_.empty())
        after_writes();  // the public side may have half-closed already
      else
        do_write();
      return do_read_raw();
    }
    spdlog::debug("req={} {} {} -> local service{}", id_, head_.method(), head_.target(),
                  reused_ ? " (kept-alive connection)" : "");
    std::string out;
    out.reserve(512);
    out += head_.method();
    out += ' ';
    out += head_.target().empty() ? "/" : head_.target();
    out += " HTTP/1.1\r\n";
    for (const auto& h : head_.headers()) {
      out += h.name();
      out += ": ";
      out += h.value();
      out += "\r\n";
    }
    if (!head_.upgrade().empty()) {
      out += "Connection: Upgrade\r\nUpgrade: ";
      out += head_.upgrade();
      out += "\r\n";
    }
    auto cl = head_.content_length();
    if (chunked_) {
      out += "Transfer-Encoding: chunked\r\n";
    } else if (cl > 0 || head_.method() == "POST" || head_.method() == "PUT" || head_.method() == "PATCH") {
      out += "Content-Length: " + std::to_string(cl) + "\r\n";
    }
    out += "\r\n";
    // Body frames may have arrived while connecting; the head goes before them.
    out_.push_front({std::move(out), {}, {}, 0});
    link_ = link::open;
    do_write();
    do_read_response();
  }

  // ---- request bytes (tunnel -> local service) ------------------------------

  void handle_frame(pb::Frame& f) {
    if (finished_) return;
    switch (f.kind_case()) {
      case pb::Frame::kData: {
        auto& d = *f.mutable_data();
        auto n = d.payload().size();
        if (!window_.on_data(n)) return fail(pb::Reset::PROTOCOL_ERROR, "server overran the window");
        bytes_in_ += n;
        if (capture_ && n > 0) capture_->request_bytes(d.payload());
        if (up_ != upload::body && up_ != upload::raw) return;  // failed, or bytes past the end
        if (n > 0) {
          out_piece p{{}, std::move(*d.mutable_payload()), {}, static_cast<uint32_t>(n)};
          if (up_ == upload::body && chunked_) {
            char hex[24];
            int len = std::snprintf(hex, sizeof hex, "%zx\r\n", n);
            p.head.assign(hex, static_cast<size_t>(len));
            p.tail = "\r\n";
          }
          queue_write(std::move(p));
        }
        if (d.end_stream()) {
          if (up_ == upload::body && chunked_) queue_write(out_piece{"0\r\n\r\n", {}, {}, 0});
          up_ = upload::ended;  // for a raw stream: a half-close, sent on once the bytes before it are written
          if (out_.idle() && link_ == link::open) after_writes();
        }
        return;
      }
      case pb::Frame::kWindowUpdate:
        if (!credit_.grant(f.window_update().increment())) return fail(pb::Reset::PROTOCOL_ERROR, "window overflow");
        if (read_ == reader::waiting_credit) {
          read_ = reader::idle;
          if (upgraded_) do_read_raw();
          else pump_response();
        }
        return;
      case pb::Frame::kReset:
        reset_by_server_ = true;
        spdlog::debug("req={}: server reset: {}", id_, f.reset().message());
        return abort();
      default:
        return;
    }
  }

  void queue_write(out_piece&& p) {
    out_.push(std::move(p));
    do_write();
  }

  void do_write() {
    if (link_ != link::open) return;
    conn_->stream.expires_never();
    out_.start(conn_->stream, [self = shared_from_this(), gen = conn_gen_](error_code ec) {
      if (gen == self->conn_gen_) self->on_write(ec);
    });
  }

  void on_write(error_code ec) {
    uint64_t consumed = out_.written();
    if (finished_) return;
    if (ec) {
      // The response may already be on its way (an early error answer); let the reader decide.
      up_ = upload::failed;
      out_.reset();
      if (down_ == download::ended) return finish();
      return;
    }
    if (consumed > 0) {
      if (auto inc = window_.on_consumed(consumed)) send(make_window_update(id_, inc));
    }
    if (!out_.empty()) return do_write();
    after_writes();
  }

  void after_writes() {
    if (upgraded_ && up_ == upload::ended) {
      up_ = upload::shut;
      error_code ignored;
      conn_->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    maybe_finish();
  }

  // ---- response (local service -> tunnel) -----------------------------------

  /// Frames the response as the local service's bytes arrive (response_reader,
  /// fuzzed on its own), reading the connection only when it needs more bytes.
  void do_read_response() {
    reader_.emplace(id_, head_.method() == "HEAD", !head_.upgrade().empty(), max_frame_);
    pump_response();
  }

  /// The first try went out on a kept-alive connection and may be sent again.
  bool may_retry() const { return reused_ && !retried_ && bytes_in_ == 0 && replayable(head_); }

  /// Sends the request again, once, on a fresh connection.
  void retry() {
    retried_ = true;
    out_.reset();
    up_ = upload::ended;  // a replayable request has no body
    link_ = link::connecting;
    read_ = reader::idle;
    local_closed_ = false;
    ++conn_gen_;  // completions of the abandoned connection are ignored
    conn_.reset();
    do_connect();
  }

  void pump_response() {
    if (finished_ || read_ == reader::reading) return;
    // Frames go out in pairs: a small response's head and body leave in one batch.
    std::optional<pb::Frame> held;
    auto flush = [&] {
      if (held) send(std::move(*held));
      held.reset();
    };
    for (;;) {
      pb::Frame f;
      auto ev = local_closed_ ? reader_->eof(conn_->buffer, credit_, f) : reader_->next(conn_->buffer, credit_, f);
      using event = response_reader::event;
      switch (ev) {
        case event::frame:
          if (f.has_response_head()) {
            // Some servers answer 408 on a kept-alive connection as they close it for
            // idleness: that answer was not to this request.
            if (reader_->status() == 408 && may_retry()) return retry();
            status_ = reader_->status();
            keep_alive_ = reader_->keep_alive();
            down_ = download::body;  // raw bytes after a 101
            if (!local_->shaping.empty()) shape_response(*f.mutable_response_head(), local_->shaping);
            if (capture_) capture_->response_head(f.response_head());
          } else {
            bytes_out_ += f.data().payload().size();
            if (capture_) capture_->response_bytes(f.data().payload());
          }
          if (!held) {
            held = std::move(f);
          } else {
            send(std::move(*held), std::move(f));
            held.reset();
          }
          continue;
        case event::need_bytes:
          flush();
          return read_response_bytes();
        case event::need_credit:
          flush();
          read_ = reader::waiting_credit;
          return;
        case event::done:
          flush();
          return on_response_done();
        case event::upgraded:
          flush();
          upgraded_ = true;
          if (capture_) capture_->upgraded();
          if (up_ != upload::failed) up_ = upload::raw;
          return do_read_raw();
        case event::failed:
          flush();
          return fail(reader_->head_sent() ? pb::Reset::UPSTREAM_RESET : pb::Reset::UPSTREAM_BAD_RESPONSE,
                      reader_->error());
      }
    }
  }

  void read_response_bytes() {
    read_ = reader::reading;
    // A local service that never answers is cut by the server's response timeout.
    conn_->stream.expires_never();
    auto& buffer = conn_->buffer;
    conn_->stream.async_read_some(buffer.prepare(beast::read_size(buffer, 64 * 1024)),
                                  [self = shared_from_this(), gen = conn_gen_](error_code ec, size_t n) {
                                    if (gen == self->conn_gen_) self->on_read_response(ec, n);
                                  });
  }

  void on_read_response(error_code ec, size_t n) {
    read_ = reader::idle;
    if (finished_) return;
    conn_->buffer.commit(n);
    if (ec && !reader_->head_sent()) {
      if (!peer_closed(ec)) return fail(pb::Reset::UPSTREAM_BAD_RESPONSE, ec.message());
      // The pooled connection had been closed by the local service.
      if (reader_->nothing_received() && conn_->buffer.size() == 0 && may_retry()) return retry();
      return fail(pb::Reset::UPSTREAM_RESET, "local service closed the connection without a response");
    }
    if (ec == asio::error::eof) {
      local_closed_ = true;  // a body that runs until close ends here
    } else if (ec) {
      return fail(pb::Reset::UPSTREAM_RESET, "local service ended the body early: " + ec.message());
    }
    pump_response();
  }

  void do_read_raw() {
    if (finished_ || read_ == reader::reading || down_ == download::ended) return;
    auto want = credit_.allowance(max_frame_);
    if (want == 0) {
      read_ = reader::waiting_credit;
      return;
    }
    if (conn_->buffer.size() > 0) {
      auto chunk = take_buffered(conn_->buffer, want);
      auto n = chunk.size();
      credit_.spend(n);
      bytes_out_ += n;
      if (capture_) capture_->raw_response_bytes(n);
      send(make_data(id_, std::move(chunk), false));
      return do_read_raw();
    }
    read_ = reader::reading;
    body_buf_.resize(want);
    conn_->stream.expires_never();
    conn_->stream.async_read_some(asio::buffer(body_buf_), [self = shared_from_this()](error_code ec, size_t n) {
      self->read_ = reader::idle;
      if (self->finished_) return;
      if (ec == asio::error::eof) {
        self->down_ = download::ended;
        self->send(make_data(self->id_, std::string(), true));
        return self->maybe_finish();
      }
      if (ec) return self->fail(pb::Reset::UPSTREAM_RESET, "local service reset the connection");
      self->credit_.spend(n);
      self->bytes_out_ += n;
      if (self->capture_) self->capture_->raw_response_bytes(n);
      self->body_buf_.resize(n);
      self->send(make_data(self->id_, std::move(self->body_buf_), false));
      self->body_buf_ = std::string();
      self->do_read_raw();
    });
  }

  void on_response_done() {
    down_ = download::ended;
    maybe_finish();
  }

  // ---- endings ----------------------------------------------------------------

  void maybe_finish() {
    if (finished_ || down_ != download::ended) return;
    if (upgraded_) {
      if (up_ != upload::raw && out_.idle()) finish();
      return;
    }
    // The exchange is over once the response is; a request body the local
    // service did not wait for is dropped with the connection.
    if (up_ != upload::ended || out_.idle()) finish();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    bool reusable = keep_alive_ && !upgraded_ && up_ == upload::ended && out_.idle() && conn_ &&
                    conn_->buffer.size() == 0 && conn_->stream.socket().is_open() && poolable(*local_, head_);
    if (reusable) {
      pool_.put(std::move(conn_));
    } else if (conn_) {
      error_code ignored;
      conn_->stream.socket().close(ignored);
    }
    log_line(std::to_string(status_));
    if (capture_) capture_->end(status_, {});
    release();
  }

  void fail(pb::Reset::Code code, const std::string& why) {
    if (finished_) return;
    finished_ = true;
    if (!reset_by_server_) send(make_reset(id_, code, why));
    if (conn_) {
      error_code ignored;
      conn_->stream.socket().close(ignored);
    }
    log_line(status_ ? std::to_string(status_) + " (" + why + ")" : "502 (" + why + ")");
    if (capture_) capture_->end(status_ ? status_ : 502, why);
    release();
  }

  void abort() {
    if (finished_) return;
    finished_ = true;
    if (conn_) {
      // A reset, not a FIN: the local service must not take a cut request
      // body for a whole one, or keep working on a request nobody awaits.
      error_code ignored;
      conn_->stream.socket().set_option(asio::socket_base::linger(true, 0), ignored);
      conn_->stream.socket().close(ignored);
    }
    if (!reset_by_server_) log_line("cancelled (tunnel closed)");
    else log_line(status_ ? std::to_string(status_) + " (cancelled by the public client)" : "cancelled by the public client");
    if (capture_) {
      // A WebSocket or TCP visitor that hangs up ends its connection the normal way.
      const bool hung_up = reset_by_server_ && upgraded_;
      capture_->end(status_, hung_up            ? std::string()
                             : reset_by_server_ ? "cancelled by the public client"
                                                : "tunnel closed");
    }
    release();
  }

  void log_line(const std::string& outcome) {
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - started_);
    console().gather(strand_.get_inner_executor(), exchange_line(head_, outcome, took, bytes_in_, bytes_out_));
  }

  void send(pb::Frame&& f, std::optional<pb::Frame>&& more = std::nullopt) {
    session_->send(std::move(f), std::move(more));
  }
  void release() { session_->release(id_); }

  strand_t strand_;
  std::shared_ptr<exchange_host> session_;
  uint64_t id_;
  pb::RequestHead head_;
  send_credit credit_;
  recv_window window_;
  uint32_t max_frame_;
  local_pool& pool_;
  std::unique_ptr<local_conn> pooled_;
  std::shared_ptr<const local_target> local_;
  clock::time_point started_;
  std::unique_ptr<local_conn> conn_;
  std::optional<response_reader> reader_;
  /// Set when the inspector is on; a separate allocation keeps the exchange itself
  /// under malloc's 1 KiB small-request size (larger ones cost a heap consolidation).
  pb::RequestHead visitor_head_;  ///< the unshaped head, for the inspector (only with shaping)
  std::unique_ptr<exchange_capture> capture_;
  bool local_closed_ = false;  ///< the local service closed its end (a body may run until then)
  std::string body_buf_;
  write_queue out_;
  unsigned status_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  link link_ = link::connecting;
  upload up_ = upload::body;
  download down_ = download::head;
  reader read_ = reader::idle;
  uint32_t conn_gen_ = 0;   ///< counts connections: completions of an abandoned one are ignored
  bool chunked_ = false;    ///< the request body goes to the local service chunked
  bool upgraded_ = false;   ///< raw bytes both ways (a TCP tunnel, or after a 101)
  bool keep_alive_ = true;  ///< the local service keeps the connection after this response
  bool reused_ = false;     ///< the connection came from the keep-alive pool
  bool retried_ = false;    ///< the request was sent again on a fresh connection
  bool reset_by_server_ = false;
  bool finished_ = false;
};

}  // namespace

std::shared_ptr<local_exchange> start_local_exchange(asio::io_context& ioc, std::shared_ptr<exchange_host> host,
                                                     uint64_t id, pb::RequestHead head, uint32_t send_window,
                                                     uint32_t recv_window, uint32_t max_frame, local_pool& pool,
                                                     std::shared_ptr<const local_target> local,
                                                     std::unique_ptr<local_conn> pooled, inspector* insp) {
  auto ex = std::make_shared<local_exchange_impl>(ioc, std::move(host), id, std::move(head), send_window, recv_window,
                                                  max_frame, pool, std::move(local), std::move(pooled), insp);
  ex->start();
  return ex;
}

}  // namespace grok::client_detail
