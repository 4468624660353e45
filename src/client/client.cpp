#include "grok/client.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include "grok/completion_poller.hpp"
#include "grok/credit.hpp"
#include "grok/frame_writer.hpp"
#include "grok/http_rules.hpp"
#include "grok/response_head.hpp"
#include "grok/tunnel/v1/tunnel.grpc.pb.h"

namespace grok {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using clock = std::chrono::steady_clock;
using strand_t = asio::strand<asio::io_context::executor_type>;

std::pair<std::string, uint16_t> parse_local_address(const std::string& text) {
  std::string host = "127.0.0.1";
  std::string port = text;
  if (auto colon = text.rfind(':'); colon != std::string::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) throw std::invalid_argument("'" + text + "': missing host before ':'");
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument("'" + text + "': port must be a number in 1..65535");
  auto value = std::stoul(port);
  if (value == 0 || value > 65535) throw std::invalid_argument("'" + text + "': port must be a number in 1..65535");
  return {host, static_cast<uint16_t>(value)};
}

namespace {

/// Lines a user reads on stdout: the public URL, and one line per exchange.
/// Exchange lines are gathered while the event loop is busy and written
/// together: the first line of a burst posts one flush to the loop, which
/// runs once the handlers queued before it have, so a burst of requests
/// costs one write, not one per request, and a lone request's line still
/// appears at once. What is gathered is bounded by the exchanges that end
/// in one pass of the loop.
class console_lines {
 public:
  /// An exchange's line, written by the flush this posts to `ex` (or by
  /// one already pending).
  template <class Executor>
  void gather(const Executor& ex, const std::string& line) {
    bool first = false;
    {
      std::lock_guard lk(mu_);
      first = pending_.empty();
      append_locked(line);
    }
    if (first) asio::post(ex, [this] { flush(); });
  }
  /// Writes `line` now, after anything gathered before it.
  void write(const std::string& line) {
    std::lock_guard lk(mu_);
    append_locked(line);
    write_locked();
  }
  void flush() {
    std::lock_guard lk(mu_);
    write_locked();
  }

 private:
  void append_locked(const std::string& line) {
    pending_ += line;
    pending_ += '\n';
  }
  void write_locked() {
    if (pending_.empty()) return;
    std::fwrite(pending_.data(), 1, pending_.size(), stdout);
    std::fflush(stdout);
    pending_.clear();
  }
  std::mutex mu_;
  std::string pending_;
};

console_lines& console() {
  static console_lines lines;
  return lines;
}

std::string human_bytes(uint64_t n) {
  char buf[32];
  if (n < 1024) std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(n));
  else if (n < (1u << 20)) std::snprintf(buf, sizeof buf, "%.1fKiB", n / 1024.0);
  else if (n < (1u << 30)) std::snprintf(buf, sizeof buf, "%.1fMiB", n / 1048576.0);
  else std::snprintf(buf, sizeof buf, "%.2fGiB", n / 1073741824.0);
  return buf;
}

/// A request grok may send again on a fresh connection when a kept-alive
/// one turns out closed before answering: no body, and a method that is
/// idempotent (RFC 9110 9.2.2), so a service that did act on the first try
/// is not made to act twice with a different outcome.
bool replayable(const pb::RequestHead& h) {
  if (!h.end_stream()) return false;
  const auto& m = h.method();
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

/// A connection to the local service. It stays on the strand it was opened
/// on: the next exchange that takes it from the pool runs on that strand, so
/// reuse costs no re-registration of the socket.
struct local_conn {
  // Beast reads min(capacity, 64 KiB) at a time: an unreserved buffer means 512-byte reads.
  explicit local_conn(const strand_t& ex) : strand(ex), stream(ex) { buffer.reserve(64 * 1024); }
  strand_t strand;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
};

/// Keep-alive connections to the local service, handed between exchanges.
class conn_pool {
 public:
  /// An idle connection, or null. With `probe`, one the local service has
  /// not closed meanwhile and sent nothing on (one recv(MSG_PEEK) each). A
  /// replayable request needs no probe: when its kept-alive connection turns
  /// out closed (or answers 408) before anything else, the exchange sends it
  /// again on a fresh connection (local_exchange::on_read_header). Any other
  /// request gets a probed connection.
  std::unique_ptr<local_conn> take(bool probe) {
    std::lock_guard lk(mu_);
    while (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (!probe) return c;
      char probe_byte;
      auto n = ::recv(c->stream.socket().native_handle(), &probe_byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return c;
      // EOF, an error, or bytes nobody asked for: not reusable.
    }
    return nullptr;
  }
  void put(std::unique_ptr<local_conn> c) {
    std::lock_guard lk(mu_);
    if (idle_.size() < 64) idle_.push_back(std::move(c));
  }
  void clear() {
    std::lock_guard lk(mu_);
    idle_.clear();
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<local_conn>> idle_;
};

class tunnel_session;

/// One public request replayed against the local service. Lives on its own strand.
class local_exchange : public std::enable_shared_from_this<local_exchange> {
 public:
  /// `pooled` is a kept-alive connection to use (may be null); the exchange runs on its strand.
  local_exchange(asio::io_context& ioc, std::shared_ptr<tunnel_session> session, uint64_t id, pb::RequestHead head,
                 uint32_t send_window, uint32_t recv_window_size, uint32_t max_frame, conn_pool& pool,
                 const tcp::endpoint& local, std::unique_ptr<local_conn> pooled)
      : strand_(pooled ? pooled->strand : asio::make_strand(ioc)),
        session_(std::move(session)),
        pooled_(std::move(pooled)),
        id_(id),
        head_(std::move(head)),
        credit_(send_window),
        window_(recv_window_size),
        max_frame_(max_frame),
        pool_(pool),
        local_(local),
        started_(clock::now()) {}

  void start() {
    upgraded_ = head_.tcp();  // a TCP connection is raw bytes from the start
    chunked_ = !upgraded_ && head_.content_length() < 0;
    req_done_ = head_.end_stream();
    asio::post(strand_, [self = shared_from_this()] { self->do_connect(); });
  }
  /// Tunnel strand -> ours.
  void on_frame(pb::Frame&& f) {
    asio::post(strand_, [self = shared_from_this(), f = std::move(f)]() mutable { self->handle_frame(f); });
  }
  void cancel() {
    asio::post(strand_, [self = shared_from_this()] { self->abort(); });
  }

 private:
  void do_connect() {
    if (done_) return;
    if (pooled_) {
      conn_ = std::move(pooled_);
      reused_ = true;
      return on_connected();
    }
    reused_ = false;
    conn_ = std::make_unique<local_conn>(strand_);
    conn_->stream.expires_after(std::chrono::seconds(10));
    conn_->stream.async_connect(local_, [self = shared_from_this()](error_code ec) {
      if (ec) return self->fail(pb::Reset::UPSTREAM_REFUSED, "cannot connect to local service: " + ec.message());
      self->conn_->stream.socket().set_option(tcp::no_delay(true), ec);
      self->on_connected();
    });
  }

  void on_connected() {
    if (done_) return;
    if (head_.tcp()) {
      // Raw bytes both ways from the start; end_stream is a half-close.
      connected_ = true;
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
    out_.push_front({std::move(out), 0});
    connected_ = true;
    do_write();
    do_read_header();
  }

  // ---- request bytes (tunnel -> local service) ------------------------------

  void handle_frame(pb::Frame& f) {
    if (done_) return;
    switch (f.kind_case()) {
      case pb::Frame::kData: {
        auto& d = *f.mutable_data();
        auto n = d.payload().size();
        if (!window_.on_data(n)) return fail(pb::Reset::PROTOCOL_ERROR, "server overran the window");
        bytes_in_ += n;
        if (n > 0) {
          if (chunked_ && !upgraded_) {
            char hex[24];
            int len = std::snprintf(hex, sizeof hex, "%zx\r\n", n);
            queue_write(std::string(hex, static_cast<size_t>(len)), 0);
            queue_write(std::move(*d.mutable_payload()), static_cast<uint32_t>(n));
            queue_write("\r\n", 0);
          } else {
            queue_write(std::move(*d.mutable_payload()), static_cast<uint32_t>(n));
          }
        }
        if (d.end_stream()) {
          if (upgraded_) {
            raw_out_end_ = true;
          } else {
            if (chunked_) queue_write("0\r\n\r\n", 0);
            req_done_ = true;
          }
          if (!writing_ && connected_) after_writes();
        }
        return;
      }
      case pb::Frame::kWindowUpdate:
        if (!credit_.grant(f.window_update().increment())) return fail(pb::Reset::PROTOCOL_ERROR, "window overflow");
        if (waiting_credit_) {
          waiting_credit_ = false;
          if (upgraded_) do_read_raw();
          else do_read_body();
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

  void queue_write(std::string&& bytes, uint32_t credit) {
    out_.push_back({std::move(bytes), credit});
    do_write();
  }

  void do_write() {
    if (writing_ || out_.empty() || !connected_) return;
    writing_ = true;
    bufs_.clear();
    size_t pieces = std::min<size_t>(out_.size(), 64);
    for (size_t i = 0; i < pieces; ++i) bufs_.emplace_back(out_[i].first.data(), out_[i].first.size());
    conn_->stream.expires_never();
    asio::async_write(conn_->stream, bufs_, [self = shared_from_this(), pieces, gen = conn_gen_](error_code ec, size_t) {
      if (gen == self->conn_gen_) self->on_write(ec, pieces);
    });
  }

  void on_write(error_code ec, size_t pieces) {
    writing_ = false;
    uint64_t consumed = 0;
    for (size_t i = 0; i < pieces && !out_.empty(); ++i) {
      consumed += out_.front().second;
      out_.pop_front();
    }
    if (done_) return;
    if (ec) {
      // The response may already be on its way (an early error answer); let the reader decide.
      write_failed_ = true;
      out_.clear();
      if (resp_done_) return finish();
      return;
    }
    if (consumed > 0) {
      if (auto inc = window_.on_consumed(consumed)) send(make_window_update(id_, inc));
    }
    if (!out_.empty()) return do_write();
    after_writes();
  }

  void after_writes() {
    if (upgraded_ && raw_out_end_ && !shut_out_) {
      shut_out_ = true;
      error_code ignored;
      conn_->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    maybe_finish();
  }

  // ---- response (local service -> tunnel) -----------------------------------

  void do_read_header() {
    parser_.emplace();
    parser_->header_limit(64 * 1024);
    parser_->body_limit(boost::none);
    if (head_.method() == "HEAD") parser_->skip(true);
    // A local service that never answers is cut by the server's response timeout.
    conn_->stream.expires_never();
    http::async_read_header(conn_->stream, conn_->buffer, *parser_,
                            [self = shared_from_this()](error_code ec, size_t) { self->on_read_header(ec); });
  }

  /// The first try went out on a kept-alive connection and may be sent again.
  bool may_retry() const { return reused_ && !retried_ && bytes_in_ == 0 && replayable(head_); }

  /// Sends the request again, once, on a fresh connection.
  void retry() {
    retried_ = true;
    out_.clear();
    writing_ = false;
    write_failed_ = false;
    connected_ = false;
    ++conn_gen_;  // completions of the abandoned connection are ignored
    conn_.reset();
    do_connect();
  }

  void on_read_header(error_code ec) {
    if (done_) return;
    if (ec) {
      if (ec != http::error::end_of_stream && ec != asio::error::eof && ec != asio::error::connection_reset)
        return fail(pb::Reset::UPSTREAM_BAD_RESPONSE, ec.message());
      if (may_retry()) return retry();  // the pooled connection had been closed by the local service
      return fail(pb::Reset::UPSTREAM_RESET, "local service closed the connection without a response");
    }
    auto& res = parser_->get();
    unsigned status = res.result_int();
    if (status >= 100 && status < 200 && status != 101) {
      return do_read_header();  // interim responses (100 Continue, 103) stay local
    }
    // Some servers answer 408 on a kept-alive connection as they close it for
    // idleness: that answer was not to this request.
    if (status == 408 && may_retry()) return retry();
    status_ = status;
    response_framing framing;
    framing.chunked = parser_->chunked();
    framing.content_length = parser_->content_length();
    framing.done = parser_->is_done();
    framing.keep_alive = res.keep_alive();
    auto built = build_response_head(res, framing, id_, !head_.upgrade().empty());
    if (built.upgraded) {
      upgraded_ = true;
      send(std::move(built.frame));
      return do_read_raw();
    }
    keep_alive_ = built.keep_alive;
    // Body bytes that came in with the head leave in the same batch: one
    // tunnel write for a small response, not two.
    std::optional<pb::Frame> first;
    if (!framing.done && conn_->buffer.size() > 0) {
      error_code pec;
      first = take_buffered_body(pec);
      if (pec) return fail(pb::Reset::UPSTREAM_BAD_RESPONSE, pec.message());
    }
    send(std::move(built.frame), std::move(first));
    if (parser_->is_done()) return on_response_done();
    do_read_body();
  }

  /// Parses the body bytes already in the connection's buffer (no read) into
  /// a Data frame, within the credit; nullopt when there are none to send.
  std::optional<pb::Frame> take_buffered_body(error_code& ec) {
    auto want = credit_.allowance(max_frame_);
    if (auto left = parser_->content_length_remaining()) want = std::min<uint64_t>(want, *left);
    if (want == 0) return std::nullopt;
    body_buf_.resize(want);
    auto& body = parser_->get().body();
    body.data = body_buf_.data();
    body.size = want;
    while (conn_->buffer.size() > 0 && body.size > 0 && !parser_->is_done()) {
      auto used = parser_->put(conn_->buffer.data(), ec);
      conn_->buffer.consume(used);
      if (ec == http::error::need_more || ec == http::error::need_buffer) {
        ec = {};
        if (used == 0) break;
      } else if (ec) {
        return std::nullopt;
      }
    }
    size_t got = want - body.size;
    bool done = parser_->is_done();
    if (got == 0 && !done) return std::nullopt;
    return body_frame(got, done);
  }

  /// The first `got` bytes of body_buf_ as a Data frame, their credit spent.
  pb::Frame body_frame(size_t got, bool done) {
    credit_.spend(got);
    bytes_out_ += got;
    body_buf_.resize(got);
    auto f = make_data(id_, std::move(body_buf_), done);
    body_buf_ = std::string();
    return f;
  }

  void do_read_body() {
    if (done_ || reading_ || resp_done_) return;
    auto want = credit_.allowance(max_frame_);
    // A small body gets a small buffer: no 64 KiB allocation for 13 bytes.
    if (auto left = parser_->content_length_remaining()) want = std::min<uint64_t>(want, std::max<uint64_t>(*left, 1));
    if (want == 0) {
      waiting_credit_ = true;
      return;
    }
    reading_ = true;
    body_buf_.resize(want);
    parser_->get().body().data = body_buf_.data();
    parser_->get().body().size = want;
    http::async_read_some(conn_->stream, conn_->buffer, *parser_,
                          [self = shared_from_this()](error_code ec, size_t) { self->on_read_body(ec); });
  }

  void on_read_body(error_code ec) {
    reading_ = false;
    if (done_) return;
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return fail(pb::Reset::UPSTREAM_RESET, "local service ended the body early: " + ec.message());
    size_t got = body_buf_.size() - parser_->get().body().size;
    bool done = parser_->is_done();
    if (got > 0 || done) send(body_frame(got, done));
    if (done) return on_response_done();
    do_read_body();
  }

  void do_read_raw() {
    if (done_ || reading_ || raw_in_end_) return;
    auto want = credit_.allowance(max_frame_);
    if (want == 0) {
      waiting_credit_ = true;
      return;
    }
    if (conn_->buffer.size() > 0) {
      auto n = std::min<size_t>(want, conn_->buffer.size());
      std::string chunk(static_cast<const char*>(conn_->buffer.data().data()), n);
      conn_->buffer.consume(n);
      credit_.spend(n);
      bytes_out_ += n;
      send(make_data(id_, std::move(chunk), false));
      return do_read_raw();
    }
    reading_ = true;
    body_buf_.resize(want);
    conn_->stream.expires_never();
    conn_->stream.async_read_some(asio::buffer(body_buf_), [self = shared_from_this()](error_code ec, size_t n) {
      self->reading_ = false;
      if (self->done_) return;
      if (ec == asio::error::eof) {
        self->raw_in_end_ = true;
        self->send(make_data(self->id_, std::string(), true));
        return self->maybe_finish();
      }
      if (ec) return self->fail(pb::Reset::UPSTREAM_RESET, "local service reset the connection");
      self->credit_.spend(n);
      self->bytes_out_ += n;
      self->body_buf_.resize(n);
      self->send(make_data(self->id_, std::move(self->body_buf_), false));
      self->body_buf_ = std::string();
      self->do_read_raw();
    });
  }

  void on_response_done() {
    resp_done_ = true;
    maybe_finish();
  }

  // ---- endings ----------------------------------------------------------------

  void maybe_finish() {
    if (done_) return;
    if (upgraded_) {
      if (raw_in_end_ && raw_out_end_ && !writing_ && out_.empty()) finish();
      return;
    }
    // The exchange is over once the response is; a request body the local
    // service did not wait for is dropped with the connection.
    if (resp_done_ && (write_failed_ || (req_done_ && !writing_ && out_.empty()))) finish();
    else if (resp_done_ && !req_done_) finish();
  }

  void finish() {
    if (done_) return;
    done_ = true;
    bool reusable = keep_alive_ && !upgraded_ && req_done_ && !write_failed_ && out_.empty() && !writing_ &&
                    conn_ && conn_->buffer.size() == 0 && conn_->stream.socket().is_open();
    if (reusable) {
      pool_.put(std::move(conn_));
    } else if (conn_) {
      error_code ignored;
      conn_->stream.socket().close(ignored);
    }
    log_line(std::to_string(status_));
    release();
  }

  void fail(pb::Reset::Code code, const std::string& why) {
    if (done_) return;
    done_ = true;
    if (!reset_by_server_) send(make_reset(id_, code, why));
    if (conn_) {
      error_code ignored;
      conn_->stream.socket().close(ignored);
    }
    log_line(status_ ? std::to_string(status_) + " (" + why + ")" : "502 (" + why + ")");
    release();
  }

  void abort() {
    if (done_) return;
    done_ = true;
    if (conn_) {
      // A reset, not a FIN: the local service must not take a cut request
      // body for a whole one, or keep working on a request nobody awaits.
      error_code ignored;
      conn_->stream.socket().set_option(asio::socket_base::linger(true, 0), ignored);
      conn_->stream.socket().close(ignored);
    }
    if (!reset_by_server_) log_line("cancelled (tunnel closed)");
    else log_line(status_ ? std::to_string(status_) + " (cancelled by the public client)" : "cancelled by the public client");
    release();
  }

  void log_line(const std::string& outcome) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - started_).count();
    auto line = head_.tcp() ? "TCP " + head_.remote_addr() + "  " + (outcome == "0" ? "closed" : outcome) + "  " +
                                  std::to_string(ms) + "ms  in " + human_bytes(bytes_in_) + "  out " +
                                  human_bytes(bytes_out_)
                            : head_.method() + " " + head_.target() + "  " + outcome + "  " + std::to_string(ms) +
                                  "ms  " + human_bytes(bytes_out_);
    console().gather(strand_.get_inner_executor(), line);
  }

  void send(pb::Frame&& f, std::optional<pb::Frame>&& more = std::nullopt);
  void release();

  strand_t strand_;
  std::shared_ptr<tunnel_session> session_;
  uint64_t id_;
  pb::RequestHead head_;
  send_credit credit_;
  recv_window window_;
  uint32_t max_frame_;
  conn_pool& pool_;
  std::unique_ptr<local_conn> pooled_;
  tcp::endpoint local_;
  clock::time_point started_;
  std::unique_ptr<local_conn> conn_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  std::string body_buf_;
  std::deque<std::pair<std::string, uint32_t>> out_;
  std::vector<asio::const_buffer> bufs_;
  unsigned status_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  bool chunked_ = false;
  bool req_done_ = false;
  bool resp_done_ = false;
  bool writing_ = false;
  bool write_failed_ = false;
  bool reading_ = false;
  bool waiting_credit_ = false;
  bool keep_alive_ = true;
  bool upgraded_ = false;
  bool raw_in_end_ = false;
  bool raw_out_end_ = false;
  bool shut_out_ = false;
  bool reused_ = false;
  bool connected_ = false;
  uint32_t conn_gen_ = 0;
  bool retried_ = false;
  bool reset_by_server_ = false;
  bool done_ = false;
};

/// How a stream ended, for the reconnect loop.
struct session_outcome {
  bool accepted = false;
  bool refused = false;
  bool fatal = false;  ///< retrying cannot help (bad token, bad name, old protocol)
  bool going_away = false;
  std::string message;
};

/// One gRPC stream to grok-server on the async API. All tunnel state lives
/// on strand_. Completions arrive on the client's one poll thread
/// (on_event), which hands each to the strand; writes start on the
/// strand (gRPC sends them inline). The stream is over once every
/// operation has come back and the strand has closed the session.
class tunnel_session : public std::enable_shared_from_this<tunnel_session> {
 public:
  tunnel_session(asio::io_context& ioc, grpc::CompletionQueue& cq, const client_options& opts, conn_pool& pool,
                 const tcp::endpoint& local, std::function<void(session_outcome)> on_end)
      : ioc_(ioc), strand_(asio::make_strand(ioc)), cq_(cq), opts_(opts), pool_(pool), local_(local),
        on_end_(std::move(on_end)) {}

  enum event { read, write, finish, events };

  /// Strand only (the frame_writer): one write at a time.
  void StartWrite(const pb::Batch* b) {
    refs_.fetch_add(1, std::memory_order_relaxed);
    stream_->Write(*b, &ops_[write]);
  }

  void start(pb::Tunnel::Stub& stub) {
    self_ = shared_from_this();  // released once the stream is over
    // The call's headers wait for the Hello and leave in the same write; a
    // separate start would hold the stream's one send slot until it came back.
    ctx_.set_initial_metadata_corked(true);
    stream_ = stub.PrepareAsyncConnect(&ctx_, &cq_);
    refs_.store(2, std::memory_order_relaxed);  // the strand's hold, the first read
    stream_->StartCall(nullptr);
    stream_->Read(&in_, &ops_[read]);
    pb::Frame f;
    auto* h = f.mutable_hello();
    h->set_protocol_version(1);
    h->set_token(opts_.token);
    h->set_name(opts_.subdomain);
    h->set_client_version("grok 0.1.0");
    h->set_initial_window(opts_.initial_window);
    h->set_protocol(opts_.tcp ? pb::Hello::TCP : pb::Hello::HTTP);
    asio::post(strand_, [self = shared_from_this(), f = std::move(f)]() mutable {
      if (self->closed_) return;  // stopped before it started: the stream may be over already
      self->writer_.attach(self.get());
      self->writer_.push(std::move(f));
    });
  }

  void stop() {
    asio::post(strand_, [self = shared_from_this()] {
      self->outcome_.message = "stopped";
      self->ctx_.TryCancel();
    });
  }

  /// Any thread. Frames given in one call go out in the same batch.
  void send(pb::Frame&& f, std::optional<pb::Frame>&& more = std::nullopt) {
    asio::post(strand_, [self = shared_from_this(), f = std::move(f), more = std::move(more)]() mutable {
      if (self->closed_) return;
      bool flush = self->writer_.push_deferred(std::move(f));
      if (more) flush = self->writer_.push_deferred(std::move(*more)) || flush;
      if (flush) asio::post(self->strand_, [self] { self->writer_.flush(); });
    });
  }
  void release(uint64_t id) {
    asio::post(strand_, [self = shared_from_this(), id] { self->exchanges_.erase(id); });
  }

  /// Poll thread: one of the stream's operations completed.
  void on_event(event e, bool ok) {
    switch (e) {
      case read:
        if (ok) {
          auto b = std::make_shared<pb::Batch>(std::move(in_));
          in_.Clear();
          asio::post(strand_, [self = shared_from_this(), b] { self->handle_batch(*b); });
          stream_->Read(&in_, &ops_[read]);
          return;
        }
        asio::post(strand_, [self = shared_from_this()] { self->close(); });
        refs_.fetch_add(1, std::memory_order_relaxed);
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

 private:
  /// Any thread: one operation (or the strand's hold) is over.
  void release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
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

  void handle_batch(pb::Batch& b) {
    for (auto& f : *b.mutable_frames()) {
      switch (f.kind_case()) {
        case pb::Frame::kAccepted: {
          const auto& a = f.accepted();
          outcome_.accepted = true;
          server_window_ = a.initial_window() ? a.initial_window() : 64 * 1024;
          max_frame_ = std::clamp<uint32_t>(a.max_frame_size() ? a.max_frame_size() : 64 * 1024, 1024, 1 << 20);
          console().write("Forwarding  " + a.public_url() + " -> " + (opts_.tcp ? "tcp://" : "http://") +
                  opts_.local_host + ":" + std::to_string(opts_.local_port));
          break;
        }
        case pb::Frame::kRefused:
          outcome_.refused = true;
          outcome_.fatal = f.refused().reason() == pb::Refused::BAD_TOKEN ||
                           f.refused().reason() == pb::Refused::BAD_NAME ||
                           f.refused().reason() == pb::Refused::UNSUPPORTED_VERSION;
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
          auto pooled = head.tcp() ? nullptr : pool_.take(/*probe=*/!replayable(head));
          auto ex = std::make_shared<local_exchange>(ioc_, shared_from_this(), id, std::move(*f.mutable_request_head()),
                                                     server_window_, opts_.initial_window, max_frame_, pool_, local_,
                                                     std::move(pooled));
          exchanges_.emplace(id, ex);
          ex->start();
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

  void close() {
    if (closed_) return;
    closed_ = true;
    writer_.detach();
    for (auto& [id, ex] : exchanges_) ex->cancel();
    exchanges_.clear();
    release();  // the strand's hold: no more writes start
  }

  asio::io_context& ioc_;
  strand_t strand_;
  grpc::CompletionQueue& cq_;
  const client_options& opts_;
  conn_pool& pool_;
  tcp::endpoint local_;
  std::function<void(session_outcome)> on_end_;
  std::shared_ptr<tunnel_session> self_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<pb::Batch, pb::Batch>> stream_;
  std::array<cq_tag<tunnel_session, event>, events> ops_{{{this, read}, {this, write}, {this, finish}}};
  std::atomic<int> refs_{0};
  grpc::Status status_;  // set by the finish completion
  pb::Batch in_;
  // strand only
  frame_writer<tunnel_session> writer_;
  std::unordered_map<uint64_t, std::shared_ptr<local_exchange>> exchanges_;
  session_outcome outcome_;
  uint32_t server_window_ = 64 * 1024;
  uint32_t max_frame_ = 64 * 1024;
  bool closed_ = false;
};

void local_exchange::send(pb::Frame&& f, std::optional<pb::Frame>&& more) {
  session_->send(std::move(f), std::move(more));
}
void local_exchange::release() { session_->release(id_); }

}  // namespace

struct client::impl {
  explicit impl(client_options o) : opts(std::move(o)) {}
  client_options opts;
  asio::io_context ioc;
  conn_pool pool;
  grpc::CompletionQueue cq;  // the tunnel stream's completions; one thread polls it
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::shared_ptr<tunnel_session> current;
};

client::client(client_options opts) : impl_(std::make_unique<impl>(std::move(opts))) {}
client::~client() = default;

int client::run() {
  auto& o = impl_->opts;
  tcp::endpoint local;
  {
    tcp::resolver resolver(impl_->ioc);
    error_code ec;
    auto results = resolver.resolve(o.local_host, std::to_string(o.local_port), ec);
    if (ec || results.empty()) {
      spdlog::error("cannot resolve local service {}: {}", o.local_host, ec.message());
      return 1;
    }
    local = *results.begin();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  args.SetMaxSendMessageSize(8 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (o.insecure) {
    spdlog::warn("--insecure: connecting to {} WITHOUT TLS; the token and all tunnel traffic travel in clear text",
                 o.server);
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = o.ca_pem;
    if (ssl.pem_root_certs.empty()) {
      // Debian's CA bundle: the same roots curl and browsers on this host trust.
      std::ifstream in("/etc/ssl/certs/ca-certificates.crt");
      ssl.pem_root_certs.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    creds = grpc::SslCredentials(ssl);
  }
  auto channel = grpc::CreateCustomChannel(o.server, creds, args);
  auto stub = pb::Tunnel::NewStub(channel);

  auto work = asio::make_work_guard(impl_->ioc);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < std::max(1u, o.threads); ++i) threads.emplace_back([this] { impl_->ioc.run(); });
  auto poller = start_completion_poller<tunnel_session, tunnel_session::event>(impl_->cq);

  std::mt19937 rng(std::random_device{}());
  auto backoff = std::chrono::milliseconds(1000);
  bool ever_accepted = false;
  int exit_code = 0;
  for (;;) {
    std::optional<session_outcome> outcome;
    {
      std::unique_lock lk(impl_->mu);
      if (impl_->stopping) break;
      impl_->current = std::make_shared<tunnel_session>(impl_->ioc, impl_->cq, o, impl_->pool, local, [this, &outcome](session_outcome r) {
        std::lock_guard lk2(impl_->mu);
        outcome = std::move(r);
        impl_->cv.notify_all();
      });
    }
    impl_->current->start(*stub);
    {
      std::unique_lock lk(impl_->mu);
      impl_->cv.wait(lk, [&] { return outcome.has_value(); });
      impl_->current.reset();
      if (impl_->stopping) break;
    }
    impl_->pool.clear();
    if (outcome->refused) {
      if (!ever_accepted || outcome->fatal) {
        spdlog::error("the server refused the tunnel: {}", outcome->message);
        exit_code = 1;
        break;
      }
      spdlog::warn("the server refused the tunnel: {}", outcome->message);
    }
    if (outcome->accepted) {
      ever_accepted = true;
      backoff = std::chrono::milliseconds(1000);
    }
    // Jitter spreads reconnects of many clients after a server restart.
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    auto wait = std::min(std::chrono::milliseconds(static_cast<int64_t>(backoff.count() * jitter(rng))),
                         std::chrono::milliseconds(30000));
    spdlog::warn("tunnel lost ({}); reconnecting in {:.1f}s", outcome->message, wait.count() / 1000.0);
    {
      std::unique_lock lk(impl_->mu);
      if (impl_->cv.wait_for(lk, wait, [&] { return impl_->stopping; })) break;
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
  }
  // Every session has ended (its outcome came back), so no operation is left on the queue.
  impl_->cq.Shutdown();
  poller.join();
  work.reset();
  impl_->pool.clear();
  impl_->ioc.stop();
  for (auto& t : threads) t.join();
  console().flush();  // lines whose flush the stopped loop did not run
  return exit_code;
}

void client::stop() {
  std::lock_guard lk(impl_->mu);
  impl_->stopping = true;
  if (impl_->current) impl_->current->stop();
  impl_->cv.notify_all();
}

}  // namespace grok
