#include "grok/http_text.hpp"

#include <ostream>  // beast/http/status.hpp uses it without including it

#include <boost/beast/http/status.hpp>

namespace grok {

std::string reason_phrase(unsigned status) {
  auto r = boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  return r.empty() ? std::string("Unknown") : std::string(r);
}

std::string status_line(unsigned version, unsigned status) {
  std::string line = version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
  line += std::to_string(status);
  line += ' ';
  line += reason_phrase(status);
  line += "\r\n";
  return line;
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
  body += html_escape(detail);
  body += "</p><hr><p>grok</p></body></html>\n";
  return body;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xbf) return 0;
  return n;
}

}  // namespace grok
