#include "grok/http_rules.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace grok {

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

namespace {

std::string_view trim(std::string_view s) { return trim_ows(s); }

template <class F>
void for_each_token(std::string_view value, F&& f) {
  while (!value.empty()) {
    auto comma = value.find(',');
    auto part = trim(value.substr(0, comma));
    if (!part.empty()) f(part);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

}  // namespace

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::array<std::string_view, 10> names = {
      "connection", "keep-alive",       "proxy-connection", "te",        "trailer",
      "trailers",   "transfer-encoding", "upgrade",         "proxy-authenticate", "proxy-authorization"};
  return std::any_of(names.begin(), names.end(), [&](std::string_view n) { return iequals(n, name); });
}

std::vector<std::string> connection_tokens(std::string_view value) {
  std::vector<std::string> out;
  for_each_token(value, [&](std::string_view t) {
    out.push_back(ascii_lower(t));
  });
  return out;
}

bool strip_on_forward(std::string_view name, const std::vector<std::string>& connection) {
  if (is_hop_by_hop(name)) return true;
  return std::any_of(connection.begin(), connection.end(),
                     [&](const std::string& t) { return iequals(t, name); });
}

bool valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    if (std::isalnum(static_cast<unsigned char>(c))) return true;
    switch (c) {
      case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
      case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
      default:
        return false;
    }
  });
}

bool valid_header_value(std::string_view value) {
  return std::none_of(value.begin(), value.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

bool has_token(std::string_view value, std::string_view token) {
  bool found = false;
  for_each_token(value, [&](std::string_view t) { found = found || iequals(t, token); });
  return found;
}

}  // namespace grok
