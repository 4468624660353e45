#pragma once
// What one exchange tells the inspector: the first bytes of each body (up to
// the per-body cap), the response head, live byte counts for upgraded and
// streaming exchanges, and how it ended. Lives on the exchange's strand.
//
// Cheap on the hot path: a plain exchange is added to the ring once, when it
// ends, with the request head's strings moved (not copied) out of the
// exchange's own head. Only a page watching live, or a long-lived exchange
// (WebSocket, SSE, TCP), has it published earlier, as a copy.

#include <strings.h>

#include <chrono>
#include <memory>
#include <string>

#include "grok/capture_ring.hpp"
#include "grok/frames.hpp"
#include "inspector.hpp"

namespace grok::client_detail {

class exchange_capture {
 public:
  /// `head` is the exchange's own request head; it outlives this capture, and end() moves its strings out.
  /// `tunnel`: the inspector's index of the exchange's tunnel.
  exchange_capture(inspector& insp, pb::RequestHead& head, size_t tunnel = 0)
      : insp_(insp), tunnel_(tunnel), ring_(insp.ring()), cap_(insp.ring().bounds().max_body), head_(head),
        started_(std::chrono::steady_clock::now()) {
    rec_.what = head.tcp() ? captured_exchange::kind::tcp
                : !head.upgrade().empty() ? captured_exchange::kind::websocket
                                          : captured_exchange::kind::http;
    rec_.start = std::chrono::system_clock::now();
    raw_ = head.tcp();
    if (raw_ || insp_.watched()) publish();  // a page shows it as open
  }

  /// Request body bytes (or, raw, bytes from the visitor).
  void request_bytes(const std::string& p) {
    if (raw_) {
      rec_.request_body.size += p.size();
      return live();
    }
    rec_.request_body.append(p.data(), p.size(), cap_);
  }
  void response_head(const pb::ResponseHead& h) {
    rec_.status = h.status();
    rec_.reason = h.reason();
    rec_.response_headers.reserve(static_cast<size_t>(h.headers_size()));
    for (const auto& x : h.headers()) {
      rec_.response_headers.emplace_back(x.name(), x.value());
      if (strcasecmp(x.name().c_str(), "content-type") == 0 && x.value().starts_with("text/event-stream"))
        rec_.what = captured_exchange::kind::sse;
    }
    if (rec_.what != captured_exchange::kind::http) publish();  // the head of a long-lived exchange, at once
  }
  /// Response body bytes.
  void response_bytes(const std::string& p) {
    rec_.response_body.append(p.data(), p.size(), raw_ ? 0 : cap_);
    if (raw_ || rec_.what == captured_exchange::kind::sse) live();
  }
  /// After a 101: only byte counts from now on.
  void upgraded() { raw_ = true; }
  /// Raw bytes from the local service.
  void raw_response_bytes(size_t n) {
    rec_.response_body.size += n;
    live();
  }
  /// The exchange is over (`error` empty: it completed). Takes the request head's strings.
  void end(unsigned status, const std::string& error) {
    if (status && !rec_.status) rec_.status = status;
    rec_.error = error;
    rec_.where = error.empty() ? captured_exchange::state::done : captured_exchange::state::failed;
    rec_.duration = std::chrono::steady_clock::now() - started_;
    if (!head_taken_) take_head();
    if (seq_)
      ring_.update(seq_, std::move(rec_));
    else
      ring_.add(std::move(rec_));
  }

 private:
  void copy_head() {
    rec_.tunnel = insp_.tunnel_name(tunnel_);
    rec_.remote_addr = head_.remote_addr();
    rec_.method = head_.tcp() ? "TCP" : head_.method();
    rec_.target = head_.target();
    rec_.http_version = head_.http_version() == 10 ? 10 : 11;
    rec_.request_headers.reserve(static_cast<size_t>(head_.headers_size()));
    for (const auto& h : head_.headers()) rec_.request_headers.emplace_back(h.name(), h.value());
    head_taken_ = true;
  }
  void take_head() {
    rec_.tunnel = insp_.tunnel_name(tunnel_);
    rec_.remote_addr = std::move(*head_.mutable_remote_addr());
    rec_.method = head_.tcp() ? std::string("TCP") : std::move(*head_.mutable_method());
    rec_.target = std::move(*head_.mutable_target());
    rec_.http_version = head_.http_version() == 10 ? 10 : 11;
    rec_.request_headers.reserve(static_cast<size_t>(head_.headers_size()));
    for (auto& h : *head_.mutable_headers())
      rec_.request_headers.emplace_back(std::move(*h.mutable_name()), std::move(*h.mutable_value()));
    head_taken_ = true;
  }
  /// Long-lived exchanges publish their byte counts at most 4 times a second.
  void live() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_publish_ < std::chrono::milliseconds(250)) return;
    last_publish_ = now;
    publish();
  }
  void publish() {
    if (!head_taken_) copy_head();
    rec_.duration = std::chrono::steady_clock::now() - started_;
    if (seq_)
      ring_.update(seq_, rec_);
    else
      seq_ = ring_.add(rec_);
  }

  inspector& insp_;
  size_t tunnel_;
  capture_ring& ring_;
  uint64_t cap_;
  pb::RequestHead& head_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_publish_{};
  captured_exchange rec_;
  uint64_t seq_ = 0;  ///< 0 until first published
  bool raw_ = false;
  bool head_taken_ = false;
};

}  // namespace grok::client_detail
