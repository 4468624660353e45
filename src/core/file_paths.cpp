// Pure helpers of `grok serve` (see include/grok/file_server.hpp): request
// path resolution, content types, Range, Basic auth, listing HTML.


#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <stdexcept>
#include <system_error>

#include "grok/file_server.hpp"
#include "grok/http_text.hpp"

namespace grok {

namespace fs = std::filesystem;

namespace {

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Calls f(segment) for each '/'-separated piece of s (empty pieces included);
// stops and returns false as soon as f does.
template <class F>
bool for_each_segment(std::string_view s, F&& f) {
  for (;;) {
    auto slash = s.find('/');
    if (!f(s.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    s.remove_prefix(slash + 1);
  }
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool path_within(const fs::path& canonical_root, const fs::path& p) {
  auto r = canonical_root.begin();
  auto q = p.begin();
  for (; r != canonical_root.end(); ++r, ++q) {
    if (r->empty()) continue;  // a trailing separator on the root
    if (q == p.end() || *q != *r) return false;
  }
  return true;
}

std::optional<fs::path> resolve_request_path(const fs::path& canonical_root, std::string_view target) {
  std::string_view raw = target.substr(0, target.find_first_of("?#"));
  if (raw.empty() || raw.front() != '/') return std::nullopt;
  for (char c : raw) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') return std::nullopt;
  }
  if (!for_each_segment(raw, [](std::string_view seg) { return seg != ".."; })) return std::nullopt;
  // Encoded separators would let "a%2F..%2Fb" turn into ".." after decoding
  // in some other layer; nothing legitimate needs them.
  for (size_t i = 0; i + 2 < raw.size(); ++i) {
    if (raw[i] != '%') continue;
    char a = raw[i + 1], b = lower(raw[i + 2]);
    if ((a == '2' && b == 'f') || (a == '5' && b == 'c')) return std::nullopt;
  }
  auto decoded = percent_decode(raw);
  if (!decoded) return std::nullopt;
  for (char c : *decoded) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') return std::nullopt;
  }
  fs::path rel;
  bool ok = for_each_segment(*decoded, [&](std::string_view seg) {
    if (seg == "..") return false;
    if (!seg.empty() && seg != ".") rel /= fs::path(std::string(seg));
    return true;
  });
  if (!ok) return std::nullopt;
  std::error_code ec;
  fs::path resolved = fs::weakly_canonical(canonical_root / rel, ec);
  if (ec) return std::nullopt;
  if (!path_within(canonical_root, resolved)) return std::nullopt;
  return resolved;
}

std::string content_type_for(const fs::path& p) {
  std::string ext = p.extension().string();
  if (!ext.empty()) ext.erase(0, 1);
  for (char& c : ext) c = lower(c);
  struct entry {
    std::string_view ext, type;
  };
  static constexpr entry table[] = {
      {"html", "text/html; charset=utf-8"},
      {"htm", "text/html; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"},
      {"json", "application/json"},
      {"map", "application/json"},
      {"txt", "text/plain; charset=utf-8"},
      {"md", "text/markdown; charset=utf-8"},
      {"csv", "text/csv; charset=utf-8"},
      {"xml", "text/xml; charset=utf-8"},
      {"svg", "image/svg+xml"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"webp", "image/webp"},
      {"avif", "image/avif"},
      {"ico", "image/x-icon"},
      {"wasm", "application/wasm"},
      {"pdf", "application/pdf"},
      {"zip", "application/zip"},
      {"gz", "application/gzip"},
      {"tar", "application/x-tar"},
      {"mp4", "video/mp4"},
      {"webm", "video/webm"},
      {"mp3", "audio/mpeg"},
      {"ogg", "audio/ogg"},
      {"wav", "audio/wav"},
      {"woff", "font/woff"},
      {"woff2", "font/woff2"},
      {"ttf", "font/ttf"},
      {"otf", "font/otf"},
  };
  for (const auto& e : table)
    if (e.ext == ext) return std::string(e.type);
  return "application/octet-stream";
}

namespace {

struct range_spec {
  bool suffix = false;
  bool has_last = false;
  uint64_t first = 0;
  uint64_t last = 0;
};

// Digits only, non-empty; saturates at UINT64_MAX (a first position that
// large is simply unsatisfiable, a last position or suffix is clamped).
std::optional<uint64_t> parse_digits(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    auto d = static_cast<uint64_t>(c - '0');
    v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
  }
  return v;
}

std::optional<range_spec> parse_range_spec(std::string_view header) {
  header = trim(header);
  auto eq = header.find('=');
  if (eq == std::string_view::npos || !iequals(trim(header.substr(0, eq)), "bytes")) return std::nullopt;
  auto set = trim(header.substr(eq + 1));
  if (set.find(',') != std::string_view::npos) return std::nullopt;  // multi-range: ignored
  auto dash = set.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  range_spec r;
  if (dash == 0) {
    auto n = parse_digits(set.substr(1));
    if (!n) return std::nullopt;
    r.suffix = true;
    r.last = *n;
    return r;
  }
  auto first = parse_digits(set.substr(0, dash));
  if (!first) return std::nullopt;
  r.first = *first;
  auto last_text = set.substr(dash + 1);
  if (!last_text.empty()) {
    auto last = parse_digits(last_text);
    if (!last || *last < *first) return std::nullopt;
    r.has_last = true;
    r.last = *last;
  }
  return r;
}

std::optional<std::pair<uint64_t, uint64_t>> satisfy(const range_spec& r, uint64_t size) {
  if (size == 0) return std::nullopt;
  if (r.suffix) {
    if (r.last == 0) return std::nullopt;
    return std::pair<uint64_t, uint64_t>{r.last >= size ? 0 : size - r.last, size - 1};
  }
  if (r.first >= size) return std::nullopt;
  return std::pair<uint64_t, uint64_t>{r.first, r.has_last ? std::min(r.last, size - 1) : size - 1};
}

}  // namespace

std::optional<std::pair<uint64_t, uint64_t>> parse_range(std::string_view header, uint64_t size) {
  auto spec = parse_range_spec(header);
  if (!spec) return std::nullopt;
  return satisfy(*spec, size);
}

bool range_unsatisfiable(std::string_view header, uint64_t size) {
  auto spec = parse_range_spec(header);
  return spec && !satisfy(*spec, size);
}

std::string url_encode_segment(std::string_view s) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += digits[u >> 4];
      out += digits[u & 15];
    }
  }
  return out;
}

std::string make_etag(uint64_t size, std::chrono::nanoseconds mtime_since_epoch) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "\"%llx-%llx\"", static_cast<unsigned long long>(size),
                static_cast<unsigned long long>(mtime_since_epoch.count()));
  return buf;
}

bool etag_matches_any(std::string_view if_none_match, std::string_view etag) {
  auto strip_weak = [](std::string_view t) {
    if (t.size() >= 2 && t[0] == 'W' && t[1] == '/') t.remove_prefix(2);
    return t;
  };
  etag = strip_weak(etag);
  auto s = trim(if_none_match);
  if (s == "*") return true;
  while (!s.empty()) {
    while (!s.empty() && (is_ows(s.front()) || s.front() == ',')) s.remove_prefix(1);
    if (s.empty()) break;
    s = strip_weak(s);
    if (s.empty() || s.front() != '"') return false;  // malformed: no match
    auto close = s.find('"', 1);
    if (close == std::string_view::npos) return false;
    if (s.substr(0, close + 1) == etag) return true;
    s.remove_prefix(close + 1);
  }
  return false;
}

std::string http_date(std::chrono::system_clock::time_point t) {
  static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
                months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string directory_listing_html(std::string_view url_path, std::vector<std::pair<std::string, bool>> entries) {
  std::sort(entries.begin(), entries.end());
  std::string title = "Index of " + html_escape(url_path);
  std::string out =
      "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" "
      "content=\"width=device-width\">\n<title>" +
      title + "</title>\n</head>\n<body>\n<h1>" + title + "</h1>\n<ul>\n";
  if (url_path != "/") out += "<li><a href=\"../\">../</a></li>\n";
  for (const auto& [name, is_dir] : entries) {
    std::string slash = is_dir ? "/" : "";
    out += "<li><a href=\"" + url_encode_segment(name) + slash + "\">" + html_escape(name) + slash + "</a></li>\n";
  }
  out += "</ul>\n</body>\n</html>\n";
  return out;
}

}  // namespace grok
