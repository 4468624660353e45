#include "grok/response_reader.hpp"

#include <boost/beast/http/error.hpp>

#include "grok/response_head.hpp"

namespace grok {

namespace http = boost::beast::http;
using error_code = boost::system::error_code;

response_reader::response_reader(uint64_t exchange_id, bool head_request, bool upgrade_requested, uint32_t max_frame)
    : id_(exchange_id), head_request_(head_request), upgrade_requested_(upgrade_requested), max_frame_(max_frame) {
  fresh_parser();
}

void response_reader::fresh_parser() {
  parser_.emplace();
  parser_->header_limit(64 * 1024);
  parser_->body_limit(boost::none);
  if (head_request_) parser_->skip(true);
}

response_reader::event response_reader::fail(std::string why) {
  state_ = state::failed;
  error_ = std::move(why);
  return event::failed;
}

response_reader::event response_reader::next(boost::beast::flat_buffer& buffer, send_credit& credit, pb::Frame& out) {
  switch (state_) {
    case state::head:
      return next_head(buffer, out);
    case state::body:
      return next_body(buffer, credit, out);
    case state::finished:
      return event::done;
    case state::raw:
      return event::upgraded;
    case state::failed:
      return event::failed;
  }
  return event::failed;
}

response_reader::event response_reader::next_head(boost::beast::flat_buffer& buffer, pb::Frame& out) {
  for (;;) {
    if (buffer.size() == 0) return event::need_bytes;
    error_code ec;
    auto used = parser_->put(buffer.data(), ec);
    buffer.consume(used);
    received_ = received_ || used > 0;
    if (ec == http::error::need_more) return event::need_bytes;
    if (ec) return fail(ec.message());
    if (!parser_->is_header_done()) return event::need_bytes;
    auto& res = parser_->get();
    status_ = res.result_int();
    if (status_ >= 100 && status_ < 200 && status_ != 101) {
      fresh_parser();  // interim responses (100 Continue, 103) stay local
      continue;
    }
    response_framing framing;
    framing.chunked = parser_->chunked();
    framing.content_length = parser_->content_length();
    framing.done = parser_->is_done();
    framing.keep_alive = res.keep_alive();
    auto built = build_response_head(res, framing, id_, upgrade_requested_);
    keep_alive_ = built.keep_alive;
    out = std::move(built.frame);
    head_sent_ = true;
    state_ = built.upgraded ? state::raw : framing.done ? state::finished : state::body;
    return event::frame;
  }
}

response_reader::event response_reader::next_body(boost::beast::flat_buffer& buffer, send_credit& credit,
                                                  pb::Frame& out) {
  uint64_t want = credit.allowance(max_frame_);
  if (want == 0) return event::need_credit;
  // A small body gets a small buffer: no 64 KiB allocation for 13 bytes.
  if (auto left = parser_->content_length_remaining()) want = std::min<uint64_t>(want, std::max<uint64_t>(*left, 1));
  if (buffer.size() == 0) return event::need_bytes;
  body_buf_.resize(want);
  auto& body = parser_->get().body();
  body.data = body_buf_.data();
  body.size = want;
  while (buffer.size() > 0 && body.size > 0 && !parser_->is_done()) {
    error_code ec;
    auto used = parser_->put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == http::error::need_more || ec == http::error::need_buffer) {
      if (used == 0) break;
    } else if (ec) {
      return fail("local service ended the body early: " + ec.message());
    }
  }
  size_t got = want - body.size;
  bool done = parser_->is_done();
  if (got == 0 && !done) return event::need_bytes;
  credit.spend(got);
  body_bytes_ += got;
  body_buf_.resize(got);
  out = make_data(id_, std::move(body_buf_), done);
  body_buf_ = std::string();
  if (done) state_ = state::finished;
  return event::frame;
}

response_reader::event response_reader::eof(boost::beast::flat_buffer& buffer, send_credit& credit, pb::Frame& out) {
  if (state_ != state::body) {
    if (state_ == state::head) return fail("local service closed the connection without a response");
    return next(buffer, credit, out);
  }
  // What is still buffered goes first; a body that runs until close ends here.
  if (buffer.size() > 0) {
    auto ev = next_body(buffer, credit, out);
    if (ev != event::need_bytes) return ev;
  }
  error_code ec;
  parser_->put_eof(ec);
  if (ec || !parser_->is_done()) return fail("local service ended the body early: " + (ec ? ec.message() : "closed"));
  out = make_data(id_, std::string(), true);
  state_ = state::finished;
  return event::frame;
}

}  // namespace grok
