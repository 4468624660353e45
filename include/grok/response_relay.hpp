#pragma once
// The response half of one public exchange as a pure state machine: frames
// from the tunnel client (ResponseHead, Data, WindowUpdate, Reset) become
// bytes for the public client, with credit accounting both ways. No I/O:
// the public HTTP session feeds it and performs what each step asks; the
// exchange fuzz target feeds it arbitrary frame sequences.

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "grok/credit.hpp"
#include "grok/frames.hpp"

namespace grok {

class response_relay {
 public:
  struct params {
    uint64_t id = 0;
    unsigned version = 11;        ///< the public client's HTTP version (10 or 11)
    bool is_head = false;         ///< HEAD request: the response has no body
    bool keep_alive = true;       ///< the public client wants the connection kept
    std::string upgrade;          ///< non-empty: the request asked to upgrade to this
    uint32_t initial_window = 0;  ///< response bytes the tunnel client may send ahead
    uint32_t max_window = 0;      ///< what that window may grow to (recv_window)
    std::shared_ptr<window_budget> growth;  ///< what it grows out of; none: it never grows
  };

  /// What one frame asks of the session.
  struct step {
    enum class kind { ignored, progress, protocol_error, reset };
    kind what = kind::ignored;
    std::string reason;               ///< protocol_error: what the tunnel client got wrong
    pb::Reset::Code reset_code = pb::Reset::CANCELLED;  ///< reset: the tunnel client's code
    std::string reset_message;        ///< reset: its message
    bool head = false;                ///< the response head was queued
    bool start_raw = false;           ///< 101: relay raw bytes from the public client from now on
    bool credit_granted = false;      ///< request-direction credit grew
    bool response_end = false;        ///< every response byte is queued
  };

  explicit response_relay(params p);

  uint64_t id() const { return p_.id; }
  /// The tunnel took the exchange and grants `window` bytes of request body;
  /// its client may send `response_window` bytes of response ahead (the
  /// window its tunnel was given, which may differ from params' after a
  /// reload or on another node). Comes before any response frame.
  void opened(uint32_t window, uint32_t response_window) {
    credit_ = send_credit(window);
    if (response_window && !head_received_) window_ = recv_window(response_window, p_.max_window, p_.growth);
  }
  /// Request-direction credit (the session spends it as it reads the public client).
  send_credit& credit() { return credit_; }

  /// Handles a frame the tunnel delivered for exchange `id`; what the public
  /// client should receive is appended to `out`. Frames for another id, or
  /// after the exchange closed, are ignored and append nothing.
  step on_frame(uint64_t id, pb::Frame& f, std::deque<out_piece>& out);
  /// `n` bytes of response payload were written to the public client; returns
  /// the WindowUpdate increment to send the tunnel client now (0 = none yet).
  uint32_t on_written(uint64_t n);
  /// The exchange is over for the session (finished, failed, cancelled):
  /// later frames are ignored.
  void close() { closed_ = true; }

  bool closed() const { return closed_; }
  bool head_received() const { return head_received_; }
  unsigned status() const { return status_; }
  bool upgraded() const { return upgraded_; }
  bool chunked() const { return chunked_; }
  bool response_end() const { return resp_end_; }
  /// False once the response can only end with the connection (HTTP/1.0, no length).
  bool keep_alive() const { return keep_alive_; }
  uint64_t response_bytes() const { return resp_bytes_; }
  /// Response payload bytes received and not yet written (bounded by the window).
  uint64_t buffered_bytes() const { return window_.outstanding(); }
  uint32_t window() const { return window_.window(); }

 private:
  step on_response_head(pb::ResponseHead& h, std::deque<out_piece>& out);
  step on_data(pb::Data& d, std::deque<out_piece>& out);
  step end_response(step s, std::deque<out_piece>& out);
  step protocol_error(std::string what);

  params p_;
  send_credit credit_;
  recv_window window_;
  bool head_received_ = false;
  bool upgraded_ = false;
  bool chunked_ = false;
  bool resp_end_ = false;
  bool keep_alive_;
  bool closed_ = false;
  int64_t resp_expected_ = -1;
  uint64_t resp_bytes_ = 0;
  unsigned status_ = 0;
};

}  // namespace grok
