#include "health_check.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <charconv>

namespace grok::client_detail {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

unsigned parse_status_line(std::string_view line) {
  // HTTP/1.x SP 3DIGIT
  if (line.size() < 12 || !line.starts_with("HTTP/1.") || line[8] != ' ') return 0;
  unsigned status = 0;
  auto digits = line.substr(9, 3);
  auto r = std::from_chars(digits.data(), digits.data() + digits.size(), status);
  if (r.ec != std::errc() || r.ptr != digits.data() + 3 || status < 100) return 0;
  if (line.size() > 12 && line[12] != ' ' && line[12] != '\r') return 0;
  return status;
}

health_check::health_check(asio::io_context& ioc, settings s, std::function<void(const probe_result&)> changed)
    : strand_(asio::make_strand(ioc)),
      s_(std::move(s)),
      changed_(std::move(changed)),
      next_(strand_),
      deadline_(strand_) {
  request_ = "GET " + s_.path + " HTTP/1.1\r\nHost: " + s_.host +
             "\r\nUser-Agent: grok-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
}

void health_check::start() {
  asio::post(strand_, [self = shared_from_this()] { self->probe(); });
}

void health_check::stop() {
  asio::post(strand_, [self = shared_from_this()] {
    self->stopped_ = true;
    self->next_.cancel();
    self->deadline_.cancel();
    if (self->stream_) {
      error_code ignored;
      self->stream_->socket().close(ignored);
    }
  });
}

void health_check::probe() {
  if (stopped_ || in_probe_) return;
  in_probe_ = true;
  reply_.clear();
  deadline_.expires_after(s_.timeout);
  deadline_.async_wait([self = shared_from_this()](error_code ec) {
    if (ec || !self->in_probe_) return;
    self->done(false, "no answer within " + std::to_string(self->s_.timeout.count()) + "ms");
  });
  // Each handler holds the stream it was started on: a probe cut short by
  // its deadline leaves completions behind on a stream no longer current.
  auto stream = stream_ = std::make_shared<local_stream>(strand_, s_.local->tls.get());
  stream->async_open(s_.local, proxy_header_for(*s_.local, nullptr), [self = shared_from_this(), stream](error_code ec, std::string why) {
    if (!self->in_probe_ || stream != self->stream_) return;
    if (ec) return self->done(false, why);
    asio::async_write(*stream, asio::buffer(self->request_), [self, stream](error_code ec, size_t) {
      if (!self->in_probe_ || stream != self->stream_) return;
      if (ec) return self->done(false, ec.message());
      // The status line is all that is needed: read until its end (bounded).
      self->reply_.resize(512);
      stream->async_read_some(asio::buffer(self->reply_), [self, stream](error_code ec, size_t n) {
        if (!self->in_probe_ || stream != self->stream_) return;
        if (ec && n == 0) return self->done(false, ec == asio::error::eof ? "closed without answering" : ec.message());
        self->reply_.resize(n);
        auto status = parse_status_line(std::string_view(self->reply_).substr(0, self->reply_.find('\n')));
        if (status == 0) return self->done(false, "not an HTTP answer");
        self->done(status >= 200 && status < 400, std::to_string(status));
      });
    });
  });
}

void health_check::done(bool healthy, std::string detail) {
  in_probe_ = false;
  deadline_.cancel();
  error_code ignored;
  stream_->socket().close(ignored);
  if (stopped_) return;
  if (!reported_ || healthy != healthy_) {
    reported_ = true;
    healthy_ = healthy;
    changed_(probe_result{healthy, "GET " + s_.path + ": " + detail});
  }
  next_.expires_after(s_.interval);
  next_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec) self->probe();
  });
}

}  // namespace grok::client_detail
