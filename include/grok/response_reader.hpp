#pragma once
// The client's response path without sockets: the bytes a local service
// sends, in whatever pieces they arrive, become the ResponseHead frame and
// then Data frames, never more payload than the server's credit allows nor
// larger than the max frame size. Interim 1xx heads stay local; a 101 to an
// upgrade request switches the exchange to raw bytes, which the caller
// relays itself. The client's exchange does the I/O (it reads into the
// connection's buffer and sends what this returns); the fuzz target drives
// the same code with arbitrary bytes and splits.

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "grok/credit.hpp"
#include "grok/frames.hpp"

namespace grok {

class response_reader {
 public:
  /// `head_request`: the request was HEAD (the response has no body).
  /// `upgrade_requested`: the request asked for an upgrade (a 101 is then legal).
  response_reader(uint64_t exchange_id, bool head_request, bool upgrade_requested, uint32_t max_frame);

  enum class event {
    need_bytes,   ///< read more from the local service into the buffer, then call next() again
    need_credit,  ///< the server's credit is spent: call next() again once it grants more
    frame,        ///< `out` holds the next frame to send (the head, or body bytes)
    done,         ///< every frame of the response was returned (the last one had end_stream)
    upgraded,     ///< after the 101's head: raw bytes from here on (the buffer may hold some)
    failed,       ///< the local service sent no valid response: error() says why
  };

  /// Parses what `buffer` holds (consuming it) into the next frame, spending
  /// `credit` for the body bytes it returns.
  event next(boost::beast::flat_buffer& buffer, send_credit& credit, pb::Frame& out);
  /// The local service closed its end after what `buffer` holds: ends a body
  /// that runs until close (as a frame with end_stream), else fails.
  event eof(boost::beast::flat_buffer& buffer, send_credit& credit, pb::Frame& out);

  /// The head has been returned; status() and keep_alive() are its.
  bool head_sent() const { return head_sent_; }
  /// The response so far consumed no byte of the connection (nothing was
  /// sent back: a kept-alive connection that was closed, not an answer).
  bool nothing_received() const { return !received_; }
  unsigned status() const { return status_; }
  /// The local connection may be reused once the response is done.
  bool keep_alive() const { return keep_alive_; }
  uint64_t body_bytes() const { return body_bytes_; }
  const std::string& error() const { return error_; }

 private:
  enum class state { head, body, finished, raw, failed };
  void fresh_parser();
  event fail(std::string why);
  event next_head(boost::beast::flat_buffer& buffer, pb::Frame& out);
  event next_body(boost::beast::flat_buffer& buffer, send_credit& credit, pb::Frame& out);

  uint64_t id_;
  bool head_request_;
  bool upgrade_requested_;
  uint32_t max_frame_;
  std::optional<boost::beast::http::response_parser<boost::beast::http::buffer_body>> parser_;
  std::string body_buf_;
  state state_ = state::head;
  bool received_ = false;
  bool head_sent_ = false;
  unsigned status_ = 0;
  bool keep_alive_ = true;
  uint64_t body_bytes_ = 0;
  std::string error_;
};

}  // namespace grok
