#include "grok/response_relay.hpp"

#include <boost/beast/http/status.hpp>
#include <cstdio>

#include "grok/http_rules.hpp"
#include "grok/http_text.hpp"

namespace grok {

response_relay::response_relay(params p)
    : p_(std::move(p)), window_(p_.initial_window, p_.max_window, p_.growth), keep_alive_(p_.keep_alive) {}

response_relay::step response_relay::protocol_error(std::string what) {
  closed_ = true;
  step s;
  s.what = step::kind::protocol_error;
  s.reason = std::move(what);
  return s;
}

response_relay::step response_relay::on_frame(uint64_t id, pb::Frame& f, std::deque<out_piece>& out) {
  if (id != p_.id || closed_) return {};
  switch (f.kind_case()) {
    case pb::Frame::kResponseHead:
      return on_response_head(*f.mutable_response_head(), out);
    case pb::Frame::kData:
      return on_data(*f.mutable_data(), out);
    case pb::Frame::kWindowUpdate: {
      if (!credit_.grant(f.window_update().increment())) return protocol_error("window overflow");
      step s;
      s.what = step::kind::progress;
      s.credit_granted = true;
      return s;
    }
    case pb::Frame::kReset: {
      closed_ = true;
      step s;
      s.what = step::kind::reset;
      s.reset_code = f.reset().code();
      s.reset_message = f.reset().message();
      return s;
    }
    default:
      return {};
  }
}

response_relay::step response_relay::on_response_head(pb::ResponseHead& h, std::deque<out_piece>& out) {
  if (head_received_) return protocol_error("duplicate response head");
  unsigned status = h.status();
  // What comes back from a tunnel client is untrusted: nothing it sends
  // may split the response or inject a header.
  if (!valid_status(status) || (status == 101 && p_.upgrade.empty()) || (status >= 100 && status < 200 && status != 101))
    return protocol_error("invalid status " + std::to_string(status));
  for (const auto& hd : h.headers()) {
    if (!valid_header_name(hd.name()) || !valid_header_value(hd.value())) return protocol_error("invalid response header");
  }
  bool no_body = p_.is_head || status == 204 || status == 304 || status == 101;
  // A head that ends the response must not promise a body: the public client
  // would take the next response on the connection as the rest of this one.
  if (h.end_stream() && !no_body && h.content_length() > 0) return protocol_error("body shorter than Content-Length");
  head_received_ = true;
  status_ = status;
  std::string reason = valid_header_value(h.reason()) && !h.reason().empty() ? h.reason() : reason_phrase(status);
  std::string head;
  head.reserve(256);
  head += p_.version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
  head += std::to_string(status);
  head += ' ';
  head += reason;
  head += "\r\n";
  for (const auto& hd : h.headers()) {
    if (is_hop_by_hop(hd.name()) || iequals(hd.name(), "content-length")) continue;
    head += hd.name();
    head += ": ";
    head += hd.value();
    head += "\r\n";
  }
  if (status == 101) {
    upgraded_ = true;
    head += "Connection: Upgrade\r\nUpgrade: ";
    head += p_.upgrade;
    head += "\r\n";
  } else if (no_body) {
    if (h.content_length() >= 0 && status != 204) head += "Content-Length: " + std::to_string(h.content_length()) + "\r\n";
  } else if (h.content_length() >= 0) {
    resp_expected_ = h.content_length();
    head += "Content-Length: " + std::to_string(h.content_length()) + "\r\n";
  } else if (p_.version >= 11) {
    chunked_ = true;
    head += "Transfer-Encoding: chunked\r\n";
  } else {
    keep_alive_ = false;  // the body ends when the connection does
  }
  if (!upgraded_) {
    if (!keep_alive_)
      head += "Connection: close\r\n";
    else if (p_.version < 11)
      head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";
  out.push_back(out_piece{std::move(head), {}, {}, 0});
  step s;
  s.what = step::kind::progress;
  s.head = true;
  s.start_raw = upgraded_;
  if (h.end_stream() || (no_body && !upgraded_)) return end_response(std::move(s), out);
  return s;
}

response_relay::step response_relay::on_data(pb::Data& d, std::deque<out_piece>& out) {
  if (!head_received_ || resp_end_) return protocol_error("data outside a response body");
  auto n = d.payload().size();
  if (!window_.on_data(n)) return protocol_error("tunnel client overran its window");
  resp_bytes_ += n;
  if (resp_expected_ >= 0 && resp_bytes_ > static_cast<uint64_t>(resp_expected_))
    return protocol_error("more body than Content-Length");
  // Checked before anything is queued: no byte of a rejected frame goes out.
  if (d.end_stream() && resp_expected_ >= 0 && resp_bytes_ != static_cast<uint64_t>(resp_expected_))
    return protocol_error("body shorter than Content-Length");
  if (n > 0) {
    out_piece p;
    if (chunked_) {
      char hex[24];
      int len = std::snprintf(hex, sizeof hex, "%zx\r\n", n);
      p.head.assign(hex, static_cast<size_t>(len));
      p.tail = "\r\n";
    }
    p.body = std::move(*d.mutable_payload());
    p.credit = static_cast<uint32_t>(n);
    out.push_back(std::move(p));
  }
  step s;
  s.what = step::kind::progress;
  if (d.end_stream()) return end_response(std::move(s), out);
  return s;
}

response_relay::step response_relay::end_response(step s, std::deque<out_piece>& out) {
  resp_end_ = true;
  if (chunked_) out.push_back(out_piece{"0\r\n\r\n", {}, {}, 0});
  s.response_end = true;
  return s;
}

uint32_t response_relay::on_written(uint64_t n) {
  if (n == 0 || closed_) return 0;
  return window_.on_consumed(n);
}

}  // namespace grok
