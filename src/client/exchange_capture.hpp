#pragma once
// What one exchange tells the inspector: its head when it starts, the first
// bytes of each body (up to the per-body cap), the response head, live byte
// counts for upgraded and streaming exchanges, and how it ended. Lives on
// the exchange's strand; touches the ring only to publish a new version.

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
  exchange_capture(inspector& insp, const pb::RequestHead& head)
      : ring_(insp.ring()), cap_(insp.ring().bounds().max_body), started_(std::chrono::steady_clock::now()) {
    rec_.tunnel = insp.tunnel_name();
    rec_.what = head.tcp() ? captured_exchange::kind::tcp
                : !head.upgrade().empty() ? captured_exchange::kind::websocket
                                          : captured_exchange::kind::http;
    rec_.start = std::chrono::system_clock::now();
    rec_.remote_addr = head.remote_addr();
    rec_.method = head.tcp() ? "TCP" : head.method();
    rec_.target = head.target();
    rec_.http_version = head.http_version() == 10 ? 10 : 11;
    rec_.request_headers.reserve(static_cast<size_t>(head.headers_size()));
    for (const auto& h : head.headers()) rec_.request_headers.emplace_back(h.name(), h.value());
    seq_ = ring_.add(rec_);
    raw_ = head.tcp();
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
    if (raw_ || rec_.what == captured_exchange::kind::sse) {
      rec_.response_body.append(p.data(), p.size(), raw_ ? 0 : cap_);
      return live();
    }
    rec_.response_body.append(p.data(), p.size(), cap_);
  }
  /// After a 101 (or from the start, for TCP): only byte counts from now on.
  void upgraded() { raw_ = true; }
  /// Raw bytes from the local service.
  void raw_response_bytes(size_t n) {
    rec_.response_body.size += n;
    live();
  }
  void end(unsigned status, const std::string& error) {
    if (status && !rec_.status) rec_.status = status;
    rec_.error = error;
    rec_.where = error.empty() ? captured_exchange::state::done : captured_exchange::state::failed;
    rec_.duration = std::chrono::steady_clock::now() - started_;
    ring_.update(seq_, std::move(rec_));
  }

 private:
  /// Long-lived exchanges publish their byte counts at most 4 times a second.
  void live() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_publish_ < std::chrono::milliseconds(250)) return;
    last_publish_ = now;
    publish();
  }
  void publish() {
    rec_.duration = std::chrono::steady_clock::now() - started_;
    ring_.update(seq_, rec_);
  }

  capture_ring& ring_;
  uint64_t cap_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_publish_{};
  captured_exchange rec_;
  uint64_t seq_ = 0;
  bool raw_ = false;
};

}  // namespace grok::client_detail
