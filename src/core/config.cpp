#include "grok/config.hpp"

#include "grok/access_rules.hpp"
#include "grok/header_shaping.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <thread>
#include <unistd.h>
#include <unordered_map>

#include <boost/asio/ip/address.hpp>

#include "grok/files.hpp"
#include "grok/host.hpp"
#include "grok/http_rules.hpp"

namespace grok {
namespace {

constexpr uint64_t kib = 1024;
constexpr uint64_t mib = 1024 * kib;

// A year is far beyond any sane timeout, and the cap keeps deadline
// arithmetic in nanoseconds (steady_clock) far from overflow.
constexpr int64_t max_duration_ms = 8760LL * 3600 * 1000;

const char* const log_levels = "trace, debug, info, warn, error, critical, off";

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Digits only: yaml-cpp's own conversions accept hex, signs and spaces,
// which would let "0x10" or "-1" slip through as something unintended.
std::optional<uint64_t> parse_uint(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    auto d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::string format_size(uint64_t bytes) {
  if (bytes != 0 && bytes % mib == 0) return std::to_string(bytes / mib) + "MiB";
  if (bytes != 0 && bytes % kib == 0) return std::to_string(bytes / kib) + "KiB";
  return std::to_string(bytes) + " bytes";
}

// Optimal string alignment distance, so a swapped pair ("prot") counts as one edit.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// Case and '-' vs '_' are the commonest slips, so they cost nothing here.
std::string suggestion_form(std::string_view key) {
  std::string s = ascii_lower(key);
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

bool valid_hostname(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (start <= name.size()) {
    auto dot = name.find('.', start);
    auto label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!(is_digit(c) || (c >= 'a' && c <= 'z') || c == '-')) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

bool valid_log_level(const std::string& s) {
  static constexpr std::array<std::string_view, 7> levels = {"trace", "debug", "info",    "warn",
                                                             "error", "critical", "off"};
  return std::find(levels.begin(), levels.end(), s) != levels.end();
}

// Keeps a multi-line or binary value from breaking the one-line error format.
std::string printable(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "nothing";
    default: return "'" + n.Scalar() + "'";
  }
}

// Never echoes the value: used where the value may be a secret.
std::string describe_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "nothing";
    default: return "a string";
  }
}

struct entry {
  std::string path;
  int line;  // 0-based, from yaml-cpp; -1 when unknown
  YAML::Node value;
};

struct key_handler {
  const char* name;
  std::function<void(const entry&)> apply;
};

class reader {
 public:
  explicit reader(const std::string& source) : source_(source) {}

  [[noreturn]] void fail(int line, const std::string& path, const std::string& reason) const {
    std::string msg = source_;
    if (line >= 0) msg += ":" + std::to_string(line + 1);
    msg += ": ";
    if (!path.empty()) msg += path + ": ";
    throw config_error(printable(msg + reason));
  }
  [[noreturn]] void fail(const entry& e, const std::string& reason) const { fail(e.line, e.path, reason); }

  // Parses the whole text into one document; nullopt for an empty one.
  std::optional<YAML::Node> load(const std::string& text) const {
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(text);
    } catch (const YAML::Exception& ex) {
      fail(ex.mark.is_null() ? -1 : ex.mark.line, "", "syntax error: " + ex.msg);
    }
    if (docs.size() > 1) fail(docs[1].Mark().line, "", "expected a single YAML document, found more");
    if (docs.empty() || docs[0].IsNull()) return std::nullopt;
    if (!docs[0].IsMap()) fail(docs[0].Mark().line, "", "expected a map at the top level, got " + describe(docs[0]));
    return docs[0];
  }

  // Walks a map, rejecting non-string, duplicate and unknown keys before
  // handing each value to its handler.
  void read_map(const YAML::Node& map, const std::string& prefix, const std::vector<key_handler>& keys) const {
    std::unordered_map<std::string, int> seen;
    // Copies, not references: yaml-cpp's iterator hands out a temporary proxy.
    for (auto it = map.begin(); it != map.end(); ++it) {
      YAML::Node key = it->first;
      YAML::Node value = it->second;
      int line = key.Mark().line;
      if (!key.IsScalar()) fail(line, prefix, "keys must be strings, got " + describe_kind(key));
      const std::string& name = key.Scalar();
      std::string path = prefix.empty() ? name : prefix + "." + name;
      auto [prev, fresh] = seen.emplace(name, line);
      if (!fresh) fail(line, path, "duplicate key (first set on line " + std::to_string(prev->second + 1) + ")");
      auto h = std::find_if(keys.begin(), keys.end(), [&](const key_handler& k) { return name == k.name; });
      if (h == keys.end()) fail(line, path, unknown_key_reason(name, keys));
      h->apply(entry{path, line, value});
    }
  }

  // A section written with all of its keys commented out is null; that
  // means "all defaults", not an error.
  void read_section(const entry& e, const std::vector<key_handler>& keys) const {
    if (e.value.IsNull()) return;
    if (!e.value.IsMap()) fail(e, "expected a map, got " + describe(e.value));
    read_map(e.value, e.path, keys);
  }

  const std::string& scalar(const entry& e, const std::string& expected) const {
    if (e.value.IsNull()) fail(e, "missing value (expected " + expected + ")");
    if (!e.value.IsScalar()) fail(e, "expected " + expected + ", got " + describe(e.value));
    return e.value.Scalar();
  }

  uint64_t integer(const entry& e, uint64_t lo, uint64_t hi) const {
    std::string expected = "an integer in " + std::to_string(lo) + ".." + std::to_string(hi);
    const auto& s = scalar(e, expected);
    auto v = parse_uint(s);
    if (!v || *v < lo || *v > hi) fail(e, "expected " + expected + ", got '" + s + "'");
    return *v;
  }

  uint16_t port(const entry& e) const { return static_cast<uint16_t>(integer(e, 0, 65535)); }

  bool boolean(const entry& e) const {
    const auto& s = scalar(e, "true or false");
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
    fail(e, "expected true or false, got '" + s + "'");
  }

  /// A path to a file this process can read now (checked so --check-config catches it).
  std::string readable_file(const entry& e) const {
    const auto& s = scalar(e, "a file path");
    if (s.empty()) fail(e, "must not be empty");
    std::ifstream in(s);
    if (!in) fail(e, "cannot read '" + s + "': " + std::strerror(errno));
    return s;
  }

  std::chrono::milliseconds duration(const entry& e, bool allow_zero) const {
    const auto& s = scalar(e, "a duration such as 30s");
    std::chrono::milliseconds d;
    try {
      d = parse_duration(s);
    } catch (const std::invalid_argument& ex) {
      fail(e, ex.what());
    }
    if (!allow_zero && d.count() == 0) fail(e, "must be greater than 0, got '" + s + "'");
    return d;
  }

  uint64_t size(const entry& e, uint64_t lo, uint64_t hi) const {
    const auto& s = scalar(e, "a size such as 64KiB");
    uint64_t v = 0;
    try {
      v = parse_size(s);
    } catch (const std::invalid_argument& ex) {
      fail(e, ex.what());
    }
    if (v < lo || v > hi) {
      std::string range = hi == std::numeric_limits<uint64_t>::max()
                              ? "of at least " + format_size(lo)
                              : "in " + format_size(lo) + ".." + format_size(hi);
      fail(e, "expected a size " + range + ", got '" + s + "'");
    }
    return v;
  }

  std::string address(const entry& e) const {
    const auto& s = scalar(e, "an address");
    if (s.empty()) fail(e, "must not be empty");
    if (std::any_of(s.begin(), s.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); }))
      fail(e, "must not contain whitespace, got '" + s + "'");
    return s;
  }

  std::string log_level(const entry& e) const {
    const auto& s = scalar(e, std::string("one of ") + log_levels);
    if (!valid_log_level(s)) fail(e, std::string("expected one of ") + log_levels + ", got '" + s + "'");
    return s;
  }

  // Token values are secrets: errors name the position, never the value.
  std::string token(const entry& e, bool allow_empty) const {
    if (e.value.IsNull()) {
      if (allow_empty) return {};
      fail(e, "token must not be empty");
    }
    if (!e.value.IsScalar()) fail(e, "expected a string, got " + describe_kind(e.value));
    const auto& s = e.value.Scalar();
    if (s.empty() && !allow_empty) fail(e, "token must not be empty");
    for (char c : s) {
      auto u = static_cast<unsigned char>(c);
      if (std::isspace(u)) fail(e, "token must not contain whitespace");
      // gRPC metadata values must be printable ASCII.
      if (u < 0x21 || u > 0x7e) fail(e, "token must contain only printable ASCII characters");
    }
    return s;
  }

 private:
  static std::string unknown_key_reason(const std::string& name, const std::vector<key_handler>& keys) {
    std::string wanted = suggestion_form(name);
    const char* best = nullptr;
    size_t best_distance = 3;
    for (const auto& k : keys) {
      size_t d = edit_distance(wanted, k.name);
      if (d < best_distance) {
        best_distance = d;
        best = k.name;
      }
    }
    if (!best) return "unknown key";
    return std::string("unknown key, did you mean '") + best + "'?";
  }

  const std::string& source_;
};

}  // namespace

std::chrono::milliseconds parse_duration(const std::string& text) {
  const std::string usage = "invalid duration '" + text + "': expected whole numbers with units ms, s, m or h, " +
                            "e.g. 30s, 250ms, 2m30s (a bare number is seconds)";
  if (text.empty()) throw std::invalid_argument("invalid duration '': must not be empty");
  if (text.front() == '-') throw std::invalid_argument("invalid duration '" + text + "': must not be negative");
  auto too_large = [&] {
    return std::invalid_argument("invalid duration '" + text + "': too large (at most 8760h)");
  };

  if (auto secs = parse_uint(text)) {
    if (*secs > static_cast<uint64_t>(max_duration_ms / 1000)) throw too_large();
    return std::chrono::milliseconds(static_cast<int64_t>(*secs) * 1000);
  }

  struct unit {
    std::string_view name;
    int64_t ms;
  };
  static constexpr std::array<unit, 4> units = {{{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}}};

  int64_t total = 0;
  size_t last_rank = units.size();  // none yet
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    if (i == start) throw std::invalid_argument(usage);
    auto n = parse_uint(std::string_view(text).substr(start, i - start));
    size_t ustart = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    auto name = std::string_view(text).substr(ustart, i - ustart);
    if (name.empty()) throw std::invalid_argument(usage);
    auto u = std::find_if(units.begin(), units.end(), [&](const unit& x) { return x.name == name; });
    if (u == units.end())
      throw std::invalid_argument("invalid duration '" + text + "': unknown unit '" + std::string(name) +
                                  "' (use ms, s, m or h)");
    auto rank = static_cast<size_t>(u - units.begin());
    if (last_rank != units.size() && rank <= last_rank)
      throw std::invalid_argument("invalid duration '" + text + "': units must go from largest to smallest, each once");
    last_rank = rank;
    if (!n || *n > static_cast<uint64_t>(max_duration_ms / u->ms)) throw too_large();
    total += static_cast<int64_t>(*n) * u->ms;
    if (total > max_duration_ms) throw too_large();
  }
  return std::chrono::milliseconds(total);
}

uint64_t parse_size(const std::string& text) {
  const std::string usage = "invalid size '" + text + "': expected a whole number with an optional unit " +
                            "B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, e.g. 64KiB";
  size_t i = 0;
  while (i < text.size() && is_digit(text[i])) ++i;
  if (i == 0) throw std::invalid_argument(usage);
  auto n = parse_uint(std::string_view(text).substr(0, i));
  if (!n) throw std::invalid_argument("invalid size '" + text + "': too large");
  size_t ustart = i;
  while (ustart < text.size() && text[ustart] == ' ') ++ustart;
  auto name = std::string_view(text).substr(ustart);

  struct unit {
    std::string_view name;
    uint64_t bytes;
  };
  static constexpr std::array<unit, 10> units = {{{"", 1},
                                                  {"B", 1},
                                                  {"KB", 1000},
                                                  {"MB", 1000 * 1000},
                                                  {"GB", 1000 * 1000 * 1000},
                                                  {"TB", 1000ull * 1000 * 1000 * 1000},
                                                  {"KiB", kib},
                                                  {"MiB", mib},
                                                  {"GiB", 1024 * mib},
                                                  {"TiB", 1024 * 1024 * mib}}};
  if (ustart != i && name.empty()) throw std::invalid_argument(usage);
  auto u = std::find_if(units.begin(), units.end(), [&](const unit& x) { return x.name == name; });
  if (u == units.end()) {
    bool alpha = std::all_of(name.begin(), name.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
    if (!alpha) throw std::invalid_argument(usage);
    throw std::invalid_argument("invalid size '" + text + "': unknown unit '" + std::string(name) +
                                "' (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)");
  }
  if (*n > std::numeric_limits<uint64_t>::max() / u->bytes)
    throw std::invalid_argument("invalid size '" + text + "': too large");
  return *n * u->bytes;
}

namespace {

/// A YAML list of distinct tokens; empty or null means an empty list.
void read_token_list(reader& r, const entry& f, std::vector<std::string>& out) {
  out.clear();
  if (f.value.IsNull()) return;  // every token commented out
  if (!f.value.IsSequence()) r.fail(f, "expected a list of strings, got " + describe_kind(f.value));
  for (size_t i = 0; i < f.value.size(); ++i) {
    YAML::Node item = f.value[i];
    entry t{f.path + "[" + std::to_string(i) + "]", item.Mark().line, item};
    auto tok = r.token(t, false);
    auto dup = std::find(out.begin(), out.end(), tok);
    if (dup != out.end()) r.fail(t, "duplicate of " + f.path + "[" + std::to_string(dup - out.begin()) + "]");
    out.push_back(std::move(tok));
  }
}

/// A YAML list of IP addresses or CIDR networks; empty or null means none.
void read_network_list(reader& r, const entry& f, std::vector<ip_network>& out) {
  out.clear();
  if (f.value.IsNull()) return;
  if (!f.value.IsSequence()) r.fail(f, "expected a list of IP addresses or CIDRs, got " + describe_kind(f.value));
  for (size_t i = 0; i < f.value.size(); ++i) {
    YAML::Node item = f.value[i];
    entry t{f.path + "[" + std::to_string(i) + "]", item.Mark().line, item};
    const auto& s = r.scalar(t, "an IP address or CIDR such as 10.0.0.0/8 or fd00::/8");
    auto n = parse_ip_network(s);
    if (!n) r.fail(t, "expected an IP address or CIDR such as 10.0.0.0/8 or fd00::/8, got '" + s + "'");
    out.push_back(*n);
  }
}

}  // namespace

std::string path_beside(const std::string& config_path, const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  auto slash = config_path.rfind('/');
  return slash == std::string::npos ? path : config_path.substr(0, slash + 1) + path;
}

namespace {

void read_checked_list(reader& r, const entry& f, std::vector<std::string>& out,
                       const std::function<void(const std::string&)>& check) {
  out.clear();
  if (f.value.IsNull()) return;
  auto one = [&](const entry& t) {
    const auto& s = r.scalar(t, "a string");
    try {
      check(s);
    } catch (const std::invalid_argument& ex) {
      r.fail(t, ex.what());
    }
    out.push_back(s);
  };
  if (f.value.IsScalar()) return one(f);  // one value may stand alone
  if (!f.value.IsSequence()) r.fail(f, "expected a list of strings, got " + describe_kind(f.value));
  for (size_t i = 0; i < f.value.size(); ++i) one(entry{f.path + "[" + std::to_string(i) + "]", f.value[i].Mark().line, f.value[i]});
}

/// A cluster node id: 1-63 of a-z, 0-9, '-', '_' and '.'.
void check_node_id(const std::string& s) {
  if (s.empty() || s.size() > 63 || !std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_' || c == '.';
      }))
    throw std::invalid_argument("expected 1-63 of a-z, 0-9, '-', '_' and '.', got '" + s + "'");
}

/// HOST:PORT with a port in 1..65535, after an optional http:// or https://.
void check_endpoint(const std::string& raw) {
  std::string_view s = raw;
  if (s.starts_with("http://")) s.remove_prefix(7);
  else if (s.starts_with("https://")) s.remove_prefix(8);
  else if (s.find("://") != std::string_view::npos)
    throw std::invalid_argument("expected HOST:PORT, http://HOST:PORT or https://HOST:PORT, got '" + raw + "'");
  if (!s.empty() && s.back() == '/') s.remove_suffix(1);
  auto colon = s.rfind(':');
  auto port = colon == std::string_view::npos ? std::nullopt : parse_uint(s.substr(colon + 1));
  auto host = colon == std::string_view::npos ? std::string_view() : s.substr(0, colon);
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  if (host.empty() || !port || *port < 1 || *port > 65535 ||
      std::any_of(host.begin(), host.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)) || c == '/'; }))
    throw std::invalid_argument("expected HOST:PORT (port 1-65535), got '" + raw + "'");
}

/// The host name, lower-cased, as a default node id ("grok" if it has none).
std::string default_node_id() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "grok";
  std::string s = ascii_lower(buf);
  try {
    check_node_id(s);
  } catch (const std::invalid_argument&) {
    return "grok";
  }
  return s;
}

}  // namespace

server_config parse_server_config(const std::string& yaml_text, const std::string& source) {
  reader r(source);
  server_config cfg;
  cfg.source = source;
  auto root = r.load(yaml_text);
  if (!root) return cfg;

  std::optional<int> initial_window_line;
  std::optional<int> tcp_range_line;
  std::optional<int> tcp_tokens_line;
  std::optional<int> tokens_file_line;
  std::optional<int> https_port_line;
  std::optional<int> proxy_protocol_line;
  std::optional<int> tls_line;
  std::optional<int> max_frame_size_line;
  std::optional<int> max_window_line;
  std::optional<int> cluster_line;
  std::optional<int> cluster_tls_line;
  const uint64_t u32_max = std::numeric_limits<uint32_t>::max();

  r.read_map(*root, "", {
    {"server", [&](const entry& e) {
      r.read_section(e, {
        {"domain", [&](const entry& f) {
          const auto& raw = r.scalar(f, "a hostname");
          auto d = normalize_domain(raw);
          if (d.empty()) r.fail(f, "must not be empty");
          if (!valid_hostname(d)) r.fail(f, "expected a hostname such as tunnel.example.com, got '" + raw + "'");
          cfg.domain = d;
        }},
        {"bind_address", [&](const entry& f) { cfg.bind_address = r.address(f); }},
        {"http_port", [&](const entry& f) { cfg.http_port = r.port(f); }},
        {"grpc_address", [&](const entry& f) { cfg.grpc_address = r.address(f); }},
        {"grpc_port", [&](const entry& f) { cfg.grpc_port = r.port(f); }},
        {"https_port", [&](const entry& f) {
          cfg.https_port = r.port(f);
          https_port_line = f.line;
        }},
        {"api_address", [&](const entry& f) { cfg.api_address = r.address(f); }},
        {"api_port", [&](const entry& f) { cfg.api_port = r.port(f); }},
        {"api_token", [&](const entry& f) { cfg.api_token = r.token(f, false); }},
        {"drain_timeout", [&](const entry& f) { cfg.drain_timeout = r.duration(f, false); }},
        {"max_body_size", [&](const entry& f) {
          cfg.max_body_size = r.size(f, 0, std::numeric_limits<uint64_t>::max());
        }},
        {"max_header_bytes", [&](const entry& f) {
          cfg.max_header_bytes = static_cast<uint32_t>(r.size(f, kib, mib));
        }},
        {"read_header_timeout", [&](const entry& f) { cfg.read_header_timeout = r.duration(f, false); }},
        {"idle_timeout", [&](const entry& f) { cfg.idle_timeout = r.duration(f, false); }},
        {"max_header_count", [&](const entry& f) {
          cfg.max_header_count = static_cast<uint32_t>(r.integer(f, 1, 10000));
        }},
        {"trusted_proxies", [&](const entry& f) { read_network_list(r, f, cfg.trusted_proxies); }},
        {"proxy_protocol", [&](const entry& f) {
          cfg.proxy_protocol = r.boolean(f);
          proxy_protocol_line = f.line;
        }},
        {"max_connections_per_ip", [&](const entry& f) {
          cfg.max_connections_per_ip = static_cast<uint32_t>(r.integer(f, 0, 1000000));
        }},
      });
    }},
    {"tunnels", [&](const entry& e) {
      r.read_section(e, {
        {"worker_pool_size", [&](const entry& f) {
          cfg.worker_pool_size = static_cast<unsigned>(r.integer(f, 0, 1024));
        }},
        {"response_timeout", [&](const entry& f) { cfg.response_timeout = r.duration(f, false); }},
        {"heartbeat_interval", [&](const entry& f) { cfg.heartbeat_interval = r.duration(f, false); }},
        {"heartbeat_timeout", [&](const entry& f) { cfg.heartbeat_timeout = r.duration(f, false); }},
        {"max_per_token", [&](const entry& f) {
          cfg.max_per_token = static_cast<unsigned>(r.integer(f, 0, u32_max));
        }},
        {"initial_window", [&](const entry& f) {
          cfg.initial_window = static_cast<uint32_t>(r.size(f, kib, 16 * mib));
          initial_window_line = f.line;
        }},
        {"max_window", [&](const entry& f) {
          cfg.max_window = static_cast<uint32_t>(r.size(f, kib, 64 * mib));
          max_window_line = f.line;
        }},
        {"max_frame_size", [&](const entry& f) {
          cfg.max_frame_size = static_cast<uint32_t>(r.size(f, kib, mib));
          max_frame_size_line = f.line;
        }},
        {"max_exchanges", [&](const entry& f) {
          cfg.max_exchanges = static_cast<uint32_t>(r.integer(f, 1, 100000));
        }},
        {"max_queued_bytes", [&](const entry& f) {
          cfg.max_queued_bytes = r.size(f, kib, std::numeric_limits<uint64_t>::max());
        }},
        {"name_grace", [&](const entry& f) { cfg.name_grace = r.duration(f, true); }},
        {"max_pool_members", [&](const entry& f) {
          cfg.max_pool_members = static_cast<unsigned>(r.integer(f, 1, 1024));
        }},
        {"tcp_port_start", [&](const entry& f) {
          cfg.tcp_port_start = static_cast<uint16_t>(r.integer(f, 0, 65535));
          tcp_range_line = f.line;
        }},
        {"tcp_port_end", [&](const entry& f) {
          cfg.tcp_port_end = static_cast<uint16_t>(r.integer(f, 0, 65535));
          tcp_range_line = f.line;
        }},
        {"max_streams_per_connection", [&](const entry& f) {
          cfg.max_streams_per_connection = static_cast<unsigned>(r.integer(f, 1, 1000));
        }},
        {"max_connections_per_ip", [&](const entry& f) {
          cfg.tunnel_max_connections_per_ip = static_cast<uint32_t>(r.integer(f, 0, 1000000));
        }},
        {"max_connections", [&](const entry& f) {
          cfg.tunnel_max_connections = static_cast<uint32_t>(r.integer(f, 0, 10000000));
        }},
        {"hello_timeout", [&](const entry& f) {
          cfg.hello_timeout = r.duration(f, false);
          if (cfg.hello_timeout > std::chrono::minutes(10)) r.fail(f, "at most 10m");
        }},
        {"grpc_memory_quota", [&](const entry& f) { cfg.grpc_memory_quota = r.size(f, 16 * mib, 1ull << 40); }},
        {"grpc_poll_threads", [&](const entry& f) {
          cfg.grpc_poll_threads = static_cast<unsigned>(r.integer(f, 1, 16));
        }},
      });
    }},
    {"tls", [&](const entry& e) {
      r.read_section(e, {
        {"cert_file", [&](const entry& f) {
          cfg.tls_cert_file = r.readable_file(f);
          tls_line = f.line;
        }},
        {"key_file", [&](const entry& f) {
          cfg.tls_key_file = r.readable_file(f);
          tls_line = f.line;
        }},
        {"grpc", [&](const entry& f) { cfg.tls_grpc = r.boolean(f); }},
        {"redirect_http", [&](const entry& f) { cfg.tls_redirect_http = r.boolean(f); }},
      });
    }},
    {"auth", [&](const entry& e) {
      r.read_section(e, {
        {"tokens", [&](const entry& f) { read_token_list(r, f, cfg.tokens); }},
        {"tcp_tokens", [&](const entry& f) {
          read_token_list(r, f, cfg.tcp_tokens);
          tcp_tokens_line = f.line;
        }},
        {"tokens_file", [&](const entry& f) {
          const auto& s = r.scalar(f, "a file path");
          if (s.empty()) r.fail(f, "must not be empty");
          cfg.tokens_file = s;
          tokens_file_line = f.line;
        }},
        {"allow_anonymous", [&](const entry& f) { cfg.allow_anonymous = r.boolean(f); }},
        {"max_failures", [&](const entry& f) {
          cfg.max_auth_failures = static_cast<unsigned>(r.integer(f, 0, 1000000));
        }},
        {"failure_window", [&](const entry& f) { cfg.auth_failure_window = r.duration(f, false); }},
      });
    }},
    {"cluster", [&](const entry& e) {
      cluster_line = e.line;
      cfg.cluster = true;
      r.read_section(e, {
        {"etcd_endpoints", [&](const entry& f) { read_checked_list(r, f, cfg.etcd_endpoints, check_endpoint); }},
        {"node_id", [&](const entry& f) {
          const auto& s = r.scalar(f, "a node id");
          try {
            check_node_id(s);
          } catch (const std::invalid_argument& ex) {
            r.fail(f, ex.what());
          }
          cfg.node_id = s;
        }},
        {"advertise", [&](const entry& f) {
          const auto& s = r.address(f);
          try {
            check_endpoint(s);
          } catch (const std::invalid_argument& ex) {
            r.fail(f, ex.what());
          }
          if (s.find("://") != std::string::npos) r.fail(f, "expected HOST:PORT, got '" + s + "'");
          cfg.advertise = s;
        }},
        {"lease_ttl", [&](const entry& f) {
          cfg.lease_ttl = r.duration(f, false);
          if (cfg.lease_ttl < std::chrono::seconds(2) || cfg.lease_ttl > std::chrono::minutes(5))
            r.fail(f, "expected a duration in 2s..5m, got '" + f.value.Scalar() + "'");
          if (cfg.lease_ttl.count() % 1000 != 0) r.fail(f, "etcd leases count whole seconds, got '" + f.value.Scalar() + "'");
        }},
        {"prefix", [&](const entry& f) {
          const auto& s = r.scalar(f, "a key prefix such as /grok/");
          if (s.empty() || s.size() > 200 || s.back() != '/' ||
              std::any_of(s.begin(), s.end(), [](char c) { return c < 0x21 || c > 0x7e; }))
            r.fail(f, "expected printable ASCII ending in '/', such as /grok/, got '" + s + "'");
          cfg.cluster_prefix = s;
        }},
        {"secret", [&](const entry& f) {
          cfg.cluster_secret = r.token(f, false);
          if (cfg.cluster_secret.size() < 16) r.fail(f, "must be at least 16 characters");
        }},
        {"tls", [&](const entry& t) {
          cluster_tls_line = t.line;
          r.read_section(t, {
            {"ca_file", [&](const entry& f) { cfg.cluster_ca_file = r.readable_file(f); }},
            {"cert_file", [&](const entry& f) { cfg.cluster_cert_file = r.readable_file(f); }},
            {"key_file", [&](const entry& f) { cfg.cluster_key_file = r.readable_file(f); }},
          });
        }},
      });
    }},
    {"logging", [&](const entry& e) {
      r.read_section(e, {
        {"level", [&](const entry& f) { cfg.log_level = r.log_level(f); }},
        {"format", [&](const entry& f) {
          const auto& s = r.scalar(f, "text or json");
          if (s != "text" && s != "json") r.fail(f, "expected text or json, got '" + s + "'");
          cfg.log_format = s;
        }},
      });
    }},
  });

  if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty())
    r.fail(tls_line.value_or(-1), cfg.tls_cert_file.empty() ? "tls.cert_file" : "tls.key_file",
           "tls.cert_file and tls.key_file must be set together");
  if (cfg.https_port != 0 && cfg.tls_cert_file.empty())
    r.fail(https_port_line.value_or(-1), "server.https_port", "needs tls.cert_file and tls.key_file");
  if (cfg.proxy_protocol && cfg.trusted_proxies.empty())
    r.fail(proxy_protocol_line.value_or(-1), "server.proxy_protocol",
           "needs server.trusted_proxies: the load balancers whose PROXY headers are believed");
  for (size_t i = 0; i < cfg.tcp_tokens.size(); ++i) {
    if (!cfg.tokens.empty() && std::find(cfg.tokens.begin(), cfg.tokens.end(), cfg.tcp_tokens[i]) == cfg.tokens.end())
      r.fail(tcp_tokens_line.value_or(-1), "auth.tcp_tokens[" + std::to_string(i) + "]",
             "is not one of auth.tokens");
  }
  for (size_t i = 0; i < cfg.tokens.size(); ++i) {
    token_entry t;
    t.label = "auth.tokens[" + std::to_string(i) + "]";
    t.digest = sha256_digest(cfg.tokens[i]);
    t.tcp = cfg.tcp_tokens.empty() ||
            std::find(cfg.tcp_tokens.begin(), cfg.tcp_tokens.end(), cfg.tokens[i]) != cfg.tcp_tokens.end();
    cfg.token_table.push_back(std::move(t));
  }
  for (const auto& tok : cfg.tcp_tokens) cfg.tcp_token_table.push_back(token_entry{.digest = sha256_digest(tok)});
  if (!cfg.tokens_file.empty()) {
    std::string path = path_beside(source, cfg.tokens_file);
    cfg.tokens_file = path;
    std::string text;
    try {
      text = read_file(path);
    } catch (const file_error& e) {
      r.fail(tokens_file_line.value_or(-1), "auth.tokens_file", "cannot read '" + path + "': " + std::strerror(e.code));
    }
    for (auto& t : parse_tokens_file(text, path)) {
      if (find_token(cfg.token_table, t.digest) >= 0)
        r.fail(tokens_file_line.value_or(-1), "auth.tokens_file",
               path + ":" + std::to_string(t.line + 1) + ": '" + t.label + "' is the same token as one in auth.tokens");
      cfg.token_table.push_back(std::move(t));
    }
  }
  if (cfg.tcp_port_start > cfg.tcp_port_end)
    r.fail(tcp_range_line.value_or(-1), "tunnels.tcp_port_end",
           "must not be below tunnels.tcp_port_start (" + std::to_string(cfg.tcp_port_start) + ")");
  if (cfg.cluster) {
    if (cfg.etcd_endpoints.empty())
      r.fail(cluster_line.value_or(-1), "cluster.etcd_endpoints",
             "a cluster needs at least one etcd endpoint (HOST:PORT); remove the cluster section to run alone");
    if (cfg.advertise.empty())
      r.fail(cluster_line.value_or(-1), "cluster.advertise",
             "must be set: the HOST:PORT of this node's tunnel port that the other nodes connect to");
    if (cfg.node_id.empty()) cfg.node_id = default_node_id();
    if (cfg.cluster_secret.empty())
      r.fail(cluster_line.value_or(-1), "cluster.secret",
             "must be set: the same 16+ characters on every node, which nodes show each other when they relay "
             "requests");
    if (cfg.cluster_cert_file.empty() != cfg.cluster_key_file.empty())
      r.fail(cluster_tls_line.value_or(-1), cfg.cluster_cert_file.empty() ? "cluster.tls.cert_file" : "cluster.tls.key_file",
             "cluster.tls.cert_file and cluster.tls.key_file must be set together");
  }
  if (!max_window_line) {
    cfg.max_window = std::max(cfg.max_window, cfg.initial_window);
  } else if (cfg.max_window < cfg.initial_window) {
    r.fail(*max_window_line, "tunnels.max_window",
           "must be at least tunnels.initial_window (" + format_size(cfg.initial_window) + ")");
  }
  if (cfg.max_frame_size > cfg.initial_window) {
    if (max_frame_size_line)
      r.fail(*max_frame_size_line, "tunnels.max_frame_size",
             "must not exceed tunnels.initial_window (" + format_size(cfg.initial_window) + ")");
    r.fail(initial_window_line.value_or(-1), "tunnels.initial_window",
           "must be at least tunnels.max_frame_size (" + format_size(cfg.max_frame_size) + ")");
  }
  return cfg;
}

namespace {

// Why `s` is not a usable HOST:PORT for the client's `server`, or nullopt.
std::optional<std::string> server_address_problem(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return "expected host:port such as tunnel.example.com:4443, got '" + s + "'";
  auto host = std::string_view(s).substr(0, colon);
  auto port = parse_uint(std::string_view(s).substr(colon + 1));
  if (!port || *port == 0 || *port > 65535) return "expected a port in 1..65535 after the last ':', got '" + s + "'";
  bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  if (!bracketed && host.find(':') != std::string_view::npos)
    return "IPv6 addresses must be in brackets, e.g. [::1]:4443, got '" + s + "'";
  if (std::any_of(s.begin(), s.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); }))
    return "must not contain whitespace, got '" + s + "'";
  return std::nullopt;
}

/// The same for a comma-separated list of addresses (one tunnel held on each
/// node of a cluster).
std::optional<std::string> server_list_problem(const std::string& s) {
  std::vector<std::string> seen;
  size_t start = 0;
  for (;;) {
    auto comma = s.find(',', start);
    auto one = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (one.empty()) return "expected host:port or a comma-separated list of them, got '" + s + "'";
    if (auto problem = server_address_problem(one)) return problem;
    if (std::find(seen.begin(), seen.end(), one) != seen.end()) return "'" + one + "' is listed twice in '" + s + "'";
    seen.push_back(one);
    if (comma == std::string::npos) return std::nullopt;
    start = comma + 1;
  }
}

}  // namespace

void check_server_address(const std::string& address) {
  if (auto problem = server_list_problem(address)) throw std::invalid_argument(printable(*problem));
}

std::vector<std::string> split_server_list(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    auto comma = list.find(',', start);
    out.push_back(list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

std::string render_client_config(const client_config& cfg) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  if (!cfg.server.empty()) out << YAML::Key << "server" << YAML::Value << cfg.server;
  // Always quoted: a plain token such as "null", "~" or "123" would not
  // read back as the same string.
  out << YAML::Key << "token" << YAML::Value << YAML::DoubleQuoted << cfg.token;
  out << YAML::Key << "log_level" << YAML::Value << cfg.log_level;
  if (cfg.insecure) out << YAML::Key << "insecure" << YAML::Value << true;
  if (!cfg.ca.empty()) out << YAML::Key << "ca" << YAML::Value << YAML::DoubleQuoted << cfg.ca;
  client_config defaults;
  if (!cfg.inspect) out << YAML::Key << "inspect" << YAML::Value << false;
  if (!cfg.inspect_addr.empty()) out << YAML::Key << "inspect_addr" << YAML::Value << YAML::DoubleQuoted << cfg.inspect_addr;
  if (!cfg.inspect_auth.empty()) out << YAML::Key << "inspect_auth" << YAML::Value << YAML::DoubleQuoted << cfg.inspect_auth;
  if (cfg.inspect_max_memory != defaults.inspect_max_memory)
    out << YAML::Key << "inspect_max_memory" << YAML::Value << std::to_string(cfg.inspect_max_memory);
  if (cfg.inspect_max_body != defaults.inspect_max_body)
    out << YAML::Key << "inspect_max_body" << YAML::Value << std::to_string(cfg.inspect_max_body);
  if (!cfg.proxy.empty()) out << YAML::Key << "proxy" << YAML::Value << YAML::DoubleQuoted << cfg.proxy;
  if (!cfg.tunnels.empty()) {
    out << YAML::Key << "tunnels" << YAML::Value << YAML::BeginMap;
    auto text = [&](const char* key, const std::string& v) {
      if (!v.empty()) out << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << v;
    };
    auto list = [&](const char* key, const std::vector<std::string>& v) {
      if (v.empty()) return;
      out << YAML::Key << key << YAML::Value << YAML::BeginSeq;
      for (const auto& x : v) out << YAML::DoubleQuoted << x;
      out << YAML::EndSeq;
    };
    auto seconds = [](std::chrono::milliseconds d) { return std::to_string(d.count()) + "ms"; };
    for (const auto& t : cfg.tunnels) {
      out << YAML::Key << t.name << YAML::Value << YAML::BeginMap;
      out << YAML::Key << "proto" << YAML::Value << t.proto;
      text("addr", t.addr);
      text("subdomain", t.subdomain);
      if (t.pool) out << YAML::Key << "pool" << YAML::Value << true;
      text("health_check", t.health_check);
      if (t.health_interval.count()) text("health_interval", seconds(t.health_interval));
      if (t.health_timeout.count()) text("health_timeout", seconds(t.health_timeout));
      list("basic_auth", t.basic_auth);
      list("allow_cidr", t.allow_cidr);
      list("deny_cidr", t.deny_cidr);
      text("host_header", t.host_header);
      list("request_header_add", t.request_header_add);
      list("request_header_remove", t.request_header_remove);
      list("response_header_add", t.response_header_add);
      list("response_header_remove", t.response_header_remove);
      if (t.upstream_insecure) out << YAML::Key << "upstream_insecure" << YAML::Value << true;
      text("proxy_protocol", t.proxy_protocol);
      out << YAML::EndMap;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  if (!out.good()) throw std::invalid_argument(std::string("cannot render client configuration: ") + out.GetLastError());
  return std::string("# grok client configuration (rewritten by `grok config`)\n") + out.c_str() + "\n";
}

namespace {

/// A list of strings, each checked by `check` (which throws std::invalid_argument).
void read_tunnels(reader& r, const entry& e, std::vector<tunnel_definition>& out) {
  if (e.value.IsNull()) return;
  if (!e.value.IsMap()) r.fail(e, "expected a map of tunnel names to their settings, got " + describe(e.value));
  for (auto it = e.value.begin(); it != e.value.end(); ++it) {
    YAML::Node key = it->first;
    if (!key.IsScalar() || key.Scalar().empty()) r.fail(key.Mark().line, e.path, "tunnel names must be strings");
    tunnel_definition t;
    t.name = key.Scalar();
    entry te{e.path + "." + t.name, key.Mark().line, it->second};
    if (std::any_of(out.begin(), out.end(), [&](const auto& o) { return o.name == t.name; }))
      r.fail(te, "duplicate tunnel name");
    if (!it->second.IsMap()) r.fail(te, "expected a map with at least addr, got " + describe(it->second));
    bool have_addr = false;
    auto headers_added = [](const std::string& s) { parse_header_add(s); };
    auto headers_removed = [](const std::string& s) { parse_header_remove(s); };
    r.read_map(it->second, te.path, {
      {"proto", [&](const entry& f) {
        t.proto = r.scalar(f, "http or tcp");
        if (t.proto != "http" && t.proto != "tcp") r.fail(f, "expected http or tcp, got '" + t.proto + "'");
      }},
      {"addr", [&](const entry& f) {
        t.addr = r.scalar(f, "the local service's [HOST:]PORT or URL");
        if (t.addr.empty()) r.fail(f, "must not be empty");
        have_addr = true;
      }},
      {"subdomain", [&](const entry& f) {
        t.subdomain = ascii_lower(r.scalar(f, "a name"));
        if (!valid_tunnel_name(t.subdomain)) r.fail(f, "'" + t.subdomain + "' is not a valid name: use 1-63 of a-z, 0-9 and '-'");
      }},
      {"pool", [&](const entry& f) { t.pool = r.boolean(f); }},
      {"health_check", [&](const entry& f) {
        t.health_check = r.scalar(f, "a path such as /health");
        if (t.health_check.empty() || t.health_check.front() != '/' ||
            t.health_check.find_first_of(" \r\n\t") != std::string::npos)
          r.fail(f, "expected a path such as /health, got '" + t.health_check + "'");
      }},
      {"health_interval", [&](const entry& f) { t.health_interval = r.duration(f, false); }},
      {"health_timeout", [&](const entry& f) { t.health_timeout = r.duration(f, false); }},
      {"basic_auth", [&](const entry& f) {
        read_checked_list(r, f, t.basic_auth, [](const std::string& s) { parse_basic_credential(s); });
      }},
      {"allow_cidr", [&](const entry& f) { read_checked_list(r, f, t.allow_cidr, [](const std::string& s) { parse_cidr_rule(s); }); }},
      {"deny_cidr", [&](const entry& f) { read_checked_list(r, f, t.deny_cidr, [](const std::string& s) { parse_cidr_rule(s); }); }},
      {"host_header", [&](const entry& f) {
        t.host_header = r.scalar(f, "rewrite or a host");
        try {
          parse_host_header_option(t.host_header);
        } catch (const std::invalid_argument& ex) {
          r.fail(f, ex.what());
        }
      }},
      {"request_header_add", [&](const entry& f) { read_checked_list(r, f, t.request_header_add, headers_added); }},
      {"request_header_remove", [&](const entry& f) { read_checked_list(r, f, t.request_header_remove, headers_removed); }},
      {"response_header_add", [&](const entry& f) { read_checked_list(r, f, t.response_header_add, headers_added); }},
      {"response_header_remove", [&](const entry& f) { read_checked_list(r, f, t.response_header_remove, headers_removed); }},
      {"upstream_insecure", [&](const entry& f) { t.upstream_insecure = r.boolean(f); }},
      {"proxy_protocol", [&](const entry& f) {
        t.proxy_protocol = r.scalar(f, "v1 or v2");
        if (t.proxy_protocol != "v1" && t.proxy_protocol != "v2") r.fail(f, "expected v1 or v2, got '" + t.proxy_protocol + "'");
      }},
    });
    if (!have_addr) r.fail(te, "missing addr (the local service, e.g. addr: 3000)");
    if (t.proto == "tcp" && (!t.basic_auth.empty() || !t.host_header.empty() || !t.health_check.empty() ||
                             !t.request_header_add.empty() || !t.request_header_remove.empty() ||
                             !t.response_header_add.empty() || !t.response_header_remove.empty()))
      r.fail(te, "basic_auth, host_header, health_check and the header keys apply to http tunnels only");
    if (t.pool && t.subdomain.empty()) r.fail(te, "pool: true needs a subdomain (the name the pool's members share)");
    out.push_back(std::move(t));
  }
}

}  // namespace

void check_proxy_url(const std::string& url) {
  std::string_view rest = url;
  if (rest.starts_with("https://"))
    throw std::invalid_argument("'" + url + "': grok reaches proxies with plain HTTP CONNECT (the tunnel inside stays "
                                "TLS); use http://");
  if (!rest.starts_with("http://")) throw std::invalid_argument("expected http://[USER:PASS@]HOST:PORT, got '" + url + "'");
  rest.remove_prefix(7);
  if (auto at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty() || rest.find('/') != std::string_view::npos)
    throw std::invalid_argument("expected http://[USER:PASS@]HOST:PORT, got '" + url + "'");
  if (server_address_problem(std::string(rest)))
    throw std::invalid_argument("expected http://[USER:PASS@]HOST:PORT, got '" + url + "'");
}

client_config parse_client_config(const std::string& yaml_text, const std::string& source) {
  reader r(source);
  client_config cfg;
  cfg.source = source;
  auto root = r.load(yaml_text);
  if (!root) return cfg;

  r.read_map(*root, "", {
    {"server", [&](const entry& e) {
      const auto& s = r.scalar(e, "host:port");
      if (auto problem = server_list_problem(s)) r.fail(e, *problem);
      cfg.server = s;
    }},
    {"token", [&](const entry& e) { cfg.token = r.token(e, true); }},
    {"log_level", [&](const entry& e) { cfg.log_level = r.log_level(e); }},
    {"insecure", [&](const entry& e) { cfg.insecure = r.boolean(e); }},
    {"heartbeat_interval", [&](const entry& e) {
      cfg.heartbeat_interval = r.duration(e, false);
      // grok-server treats pings more often than this as abuse and closes the connection.
      if (cfg.heartbeat_interval < std::chrono::seconds(1)) r.fail(e, "must be at least 1s");
    }},
    {"heartbeat_timeout", [&](const entry& e) { cfg.heartbeat_timeout = r.duration(e, false); }},
    {"ca", [&](const entry& e) {
      const auto& given = r.scalar(e, "a file path");
      if (given.empty()) r.fail(e, "must not be empty");
      auto path = path_beside(source, given);
      if (!std::ifstream(path)) r.fail(e, "cannot read '" + path + "': " + std::strerror(errno));
      cfg.ca = path;
    }},
    {"inspect", [&](const entry& e) { cfg.inspect = r.boolean(e); }},
    {"inspect_addr", [&](const entry& e) {
      const auto& s = r.scalar(e, "HOST:PORT");
      auto colon = s.rfind(':');
      auto port = parse_uint(colon == std::string::npos ? std::string_view(s) : std::string_view(s).substr(colon + 1));
      if (s.empty() || !port || *port > 65535)
        r.fail(e, "expected HOST:PORT such as 127.0.0.1:4040 (or a port), got '" + s + "'");
      cfg.inspect_addr = s;
    }},
    {"inspect_auth", [&](const entry& e) {
      const auto& s = r.scalar(e, "USER:PASS");
      auto colon = s.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
        r.fail(e, "expected USER:PASS with a non-empty user and password");
      cfg.inspect_auth = s;
    }},
    {"inspect_max_memory", [&](const entry& e) { cfg.inspect_max_memory = r.size(e, 1ull << 20, 1ull << 40); }},
    {"inspect_max_body", [&](const entry& e) { cfg.inspect_max_body = r.size(e, 0, 1ull << 30); }},
    {"proxy", [&](const entry& e) {
      const auto& url = r.scalar(e, "a URL such as http://proxy.example:3128");
      try {
        check_proxy_url(url);
      } catch (const std::invalid_argument& ex) {
        r.fail(e, ex.what());
      }
      cfg.proxy = url;
    }},
    {"tunnels", [&](const entry& e) { read_tunnels(r, e, cfg.tunnels); }},
  });
  return cfg;
}

namespace {

std::string read_config_file(const std::string& path) {
  try {
    return read_file(path);
  } catch (const file_error& e) {
    throw config_error(e.what());
  }
}

}  // namespace

server_config load_server_config(const std::string& path) { return parse_server_config(read_config_file(path), path); }

client_config load_client_config(const std::string& path) { return parse_client_config(read_config_file(path), path); }

unsigned effective_worker_count(const server_config& cfg, const char* env_value) {
  unsigned n = cfg.worker_pool_size;
  if (env_value && *env_value) {
    auto v = parse_uint(env_value);
    if (!v || *v > 1024)
      throw config_error(std::string("GROK_WORKER_POOL_SIZE: expected an integer in 0..1024, got '") + env_value + "'");
    n = static_cast<unsigned>(*v);
  }
  if (n == 0) n = auto_worker_count();
  return n;
}

namespace {

bool loopback(const std::string& address) {
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(address, ec);
  return !ec && a.is_loopback();
}

}  // namespace

std::vector<std::string> unsafe_settings(const server_config& cfg) {
  std::vector<std::string> out;
  if (!cfg.auth_required() && !cfg.allow_anonymous)
    out.push_back("auth: no tokens are set, so anyone who reaches the tunnel port could open tunnels; create one "
                  "with `grok-server token add NAME` (auth.tokens_file) or list them in auth.tokens, or set "
                  "auth.allow_anonymous: true");
  for (const auto& t : cfg.tokens)
    if (t == example_token)
      out.push_back("auth.tokens: '" + std::string(example_token) +
                    "' is the example configuration's placeholder; replace it with a real token (`grok-server "
                    "token add NAME` makes one)");
  if (cfg.api_port != 0 && !loopback(cfg.api_address) && cfg.api_token.empty())
    out.push_back("server.api_address: the admin endpoint on " + cfg.api_address +
                  " is reachable from other hosts; set server.api_token (requests then send "
                  "Authorization: Bearer TOKEN) or bind it to 127.0.0.1");
  return out;
}

std::vector<std::string> risky_settings(const server_config& cfg) {
  std::vector<std::string> out;
  if ((cfg.tls_cert_file.empty() || !cfg.tls_grpc) && !loopback(cfg.grpc_address))
    out.push_back("the tunnel port " + cfg.grpc_address + ":" + std::to_string(cfg.grpc_port) +
                  " is plaintext on a non-loopback address: tokens and tunnel traffic travel in clear text; set "
                  "tls.cert_file and tls.key_file");
  if (cfg.allow_anonymous && !cfg.auth_required())
    out.push_back("auth.allow_anonymous: anyone who reaches the tunnel port can open tunnels");
  return out;
}

unsigned auto_worker_count() { return std::max(1u, std::thread::hardware_concurrency() / 2); }

}  // namespace grok
