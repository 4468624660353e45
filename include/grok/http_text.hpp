#pragma once
// Text grok writes into HTTP responses and logs (pure): reason phrases, the
// error page, and HTML and JSON escaping. One home for each, so every page
// and every JSON document escapes the same way.

#include <cstddef>
#include <string>
#include <string_view>

namespace grok {

/// "Not Found" for 404; "Unknown" for codes without a standard phrase.
std::string reason_phrase(unsigned status);

/// "HTTP/1.1 404 Not Found\r\n" (HTTP/1.0 when `version` is 10).
std::string status_line(unsigned version, unsigned status);

/// The HTML page grok answers errors with: the status and `detail`, escaped,
/// and nothing about the server's internals.
std::string error_page(unsigned status, std::string_view detail);

/// `s` with & < > " ' replaced by entities: safe in element text and quoted attributes.
std::string html_escape(std::string_view s);

/// Length of the well-formed UTF-8 sequence starting at s[i], or 0 if the
/// bytes there are not one (overlong forms, surrogates and values above
/// U+10FFFF included).
size_t utf8_sequence_length(std::string_view s, size_t i);

/// Appends `s` as a JSON string literal: quotes, backslashes and control
/// characters escaped (controls as \u00XX); bytes that are not valid UTF-8
/// become U+FFFD, so the document always parses. `Buffer` is std::string or
/// spdlog's memory buffer.
template <class Buffer>
void append_json_string(Buffer& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  auto put = [&](std::string_view t) { out.append(t.data(), t.data() + t.size()); };
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      put("\\u00");
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
      ++i;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (size_t n = utf8_sequence_length(s, i)) {
      put(s.substr(i, n));
      i += n;
    } else {
      put("\\ufffd");
      ++i;
    }
  }
  out.push_back('"');
}

/// `s` as a JSON string literal (see append_json_string).
inline std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

}  // namespace grok
