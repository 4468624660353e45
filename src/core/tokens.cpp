#include "grok/tokens.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "grok/config.hpp"
#include "grok/files.hpp"
#include "grok/host.hpp"
#include "grok/http_rules.hpp"

namespace grok {

token_digest sha256_digest(std::string_view data) {
  token_digest d{};
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

std::string digest_hex(const token_digest& d) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (auto b : d) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::optional<token_digest> parse_digest_hex(std::string_view s) {
  if (s.size() != 64) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  token_digest d{};
  for (size_t i = 0; i < 32; ++i) {
    int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return d;
}

bool valid_token_label(std::string_view label) {
  if (label.empty() || label.size() > 64) return false;
  return std::all_of(label.begin(), label.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '@' || c == '-';
  });
}

namespace {

[[noreturn]] void fail(const std::string& source, int line, const std::string& path, const std::string& reason) {
  std::string msg = source;
  if (line >= 0) msg += ":" + std::to_string(line + 1);
  msg += ": ";
  if (!path.empty()) msg += path + ": ";
  throw config_error(msg + reason);
}

std::string scalar(const std::string& source, const YAML::Node& n, const std::string& path, const char* expected) {
  if (!n.IsScalar() || n.Scalar().empty()) fail(source, n.Mark().line, path, std::string("expected ") + expected);
  return n.Scalar();
}

}  // namespace

std::vector<token_entry> parse_tokens_file(const std::string& yaml_text, const std::string& source) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(yaml_text);
  } catch (const YAML::Exception& ex) {
    fail(source, ex.mark.is_null() ? -1 : ex.mark.line, "", "syntax error: " + ex.msg);
  }
  if (docs.size() > 1) fail(source, docs[1].Mark().line, "", "expected a single YAML document, found more");
  std::vector<token_entry> out;
  if (docs.empty() || docs[0].IsNull()) return out;
  const YAML::Node& root = docs[0];
  if (!root.IsSequence())
    fail(source, root.Mark().line, "", "expected a list of tokens (\"- label: ...\") at the top level");

  std::map<std::string, size_t> labels, names;
  for (size_t i = 0; i < root.size(); ++i) {
    YAML::Node item = root[i];
    std::string at = "[" + std::to_string(i) + "]";
    if (!item.IsMap()) fail(source, item.Mark().line, at, "expected a map with label and sha256");
    token_entry e;
    e.line = item.Mark().line;
    bool have_digest = false;
    for (auto it = item.begin(); it != item.end(); ++it) {
      YAML::Node key = it->first;
      YAML::Node value = it->second;
      std::string k = key.IsScalar() ? key.Scalar() : "";
      std::string path = at + "." + k;
      int line = key.Mark().line;
      if (k == "label") {
        e.label = scalar(source, value, path, "a label");
        if (!valid_token_label(e.label)) fail(source, line, path, "use 1-64 of A-Z, a-z, 0-9, '.', '_', '@', '-'");
      } else if (k == "sha256") {
        auto d = parse_digest_hex(scalar(source, value, path, "64 hex digits"));
        if (!d) fail(source, line, path, "expected the token's SHA-256 as 64 hex digits");
        e.digest = *d;
        have_digest = true;
      } else if (k == "names") {
        if (value.IsNull()) continue;
        if (!value.IsSequence()) fail(source, line, path, "expected a list of names");
        for (size_t j = 0; j < value.size(); ++j) {
          std::string np = path + "[" + std::to_string(j) + "]";
          auto n = scalar(source, value[j], np, "a name");
          n = ascii_lower(n);
          if (!valid_tunnel_name(n)) fail(source, value[j].Mark().line, np, "'" + n + "' is not a valid tunnel name");
          auto [prev, fresh] = names.emplace(n, i);
          if (!fresh)
            fail(source, value[j].Mark().line, np,
                 "'" + n + "' is already reserved by [" + std::to_string(prev->second) + "]");
          e.names.push_back(n);
        }
      } else if (k == "max_tunnels") {
        auto s = scalar(source, value, path, "an integer");
        unsigned long long v = 0;
        auto res = std::from_chars(s.data(), s.data() + s.size(), v);
        if (res.ec != std::errc() || res.ptr != s.data() + s.size() || v > std::numeric_limits<uint32_t>::max())
          fail(source, line, path, "expected an integer in 0..4294967295, got '" + s + "'");
        e.max_tunnels = static_cast<unsigned>(v);
      } else if (k == "pool") {
        e.pool = scalar(source, value, path, "a pool label");
        if (!valid_token_label(e.pool)) fail(source, line, path, "use 1-64 of A-Z, a-z, 0-9, '.', '_', '@', '-'");
      } else if (k == "tcp" || k == "require_basic_auth") {
        auto s = scalar(source, value, path, "true or false");
        bool v = false;
        if (s == "true" || s == "yes" || s == "on") v = true;
        else if (s != "false" && s != "no" && s != "off") fail(source, line, path, "expected true or false, got '" + s + "'");
        (k == "tcp" ? e.tcp : e.require_basic_auth) = v;
      } else if (k == "allow_cidr" || k == "deny_cidr") {
        if (value.IsNull()) continue;
        if (!value.IsSequence()) fail(source, line, path, "expected a list of networks such as [10.0.0.0/8]");
        auto& into = k == "allow_cidr" ? e.allow_cidr : e.deny_cidr;
        for (size_t j = 0; j < value.size(); ++j) {
          std::string np = path + "[" + std::to_string(j) + "]";
          auto text = scalar(source, value[j], np, "a network");
          auto n = parse_ip_network(text);
          if (!n) fail(source, value[j].Mark().line, np, "'" + text + "' is not an IPv4 or IPv6 address or network");
          into.push_back(*n);
        }
      } else {
        fail(source, line, path,
             "unknown key (expected label, sha256, names, max_tunnels, pool, tcp, allow_cidr, deny_cidr, "
             "require_basic_auth)");
      }
    }
    if (e.label.empty()) fail(source, e.line, at, "missing label");
    if (!have_digest) fail(source, e.line, at, "missing sha256");
    auto [prev, fresh] = labels.emplace(e.label, i);
    if (!fresh) fail(source, e.line, at + ".label", "duplicate of [" + std::to_string(prev->second) + "]");
    for (size_t j = 0; j < out.size(); ++j)
      if (out[j].digest == e.digest)
        fail(source, e.line, at + ".sha256", "the same token as [" + std::to_string(j) + "]");
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<token_entry> load_tokens_file(const std::string& path) {
  try {
    return parse_tokens_file(read_file(path), path);
  } catch (const file_error& e) {
    throw config_error(e.what());
  }
}

std::string generate_token() {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::array<unsigned char, 32> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
    throw std::runtime_error("cannot generate a token: the system random source failed");
  // base64url without padding: 32 bytes -> 43 characters.
  std::string out = "grok_";
  uint32_t acc = 0;
  int bits = 0;
  for (auto b : raw) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += alphabet[(acc << (6 - bits)) & 63];
  OPENSSL_cleanse(raw.data(), raw.size());
  return out;
}

std::string render_token_entry(const token_entry& e) {
  std::string out = "- label: " + e.label + "\n  sha256: " + digest_hex(e.digest) + "\n";
  if (!e.names.empty()) {
    out += "  names: [";
    for (size_t i = 0; i < e.names.size(); ++i) out += (i ? ", " : "") + e.names[i];
    out += "]\n";
  }
  if (e.max_tunnels != 0) out += "  max_tunnels: " + std::to_string(e.max_tunnels) + "\n";
  if (!e.pool.empty()) out += "  pool: " + e.pool + "\n";
  if (!e.tcp) out += "  tcp: false\n";
  auto networks = [&](const char* key, const std::vector<ip_network>& list) {
    if (list.empty()) return;
    out += std::string("  ") + key + ": [";
    for (size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + list[i].to_string();
    out += "]\n";
  };
  networks("allow_cidr", e.allow_cidr);
  networks("deny_cidr", e.deny_cidr);
  if (e.require_basic_auth) out += "  require_basic_auth: true\n";
  return out;
}

token_digest pool_key(const token_digest& token, const token_entry* entry) {
  if (!entry || entry->pool.empty()) return token;
  return sha256_digest("grok-pool:" + entry->pool);
}

int find_token(const std::vector<token_entry>& entries, const token_digest& d) {
  int found = -1;
  for (size_t i = 0; i < entries.size(); ++i) {
    int eq = CRYPTO_memcmp(entries[i].digest.data(), d.data(), d.size()) == 0;
    // Branch-free select: every entry costs the same whether it matched or not.
    found = eq * static_cast<int>(i) + (1 - eq) * found;
  }
  return found;
}

namespace {

const char* new_file_header =
    "# grok-server tokens (auth.tokens_file): one entry per token.\n"
    "# Only each token's SHA-256 is kept here; `grok-server token add LABEL` prints a new token once\n"
    "# and appends its entry. Keys: label, sha256, names (reserved for this token), max_tunnels\n"
    "# (0 = tunnels.max_per_token), pool (tokens naming the same pool may serve one name together\n"
    "# with `grok --pool`), tcp (may open TCP tunnels, default true).\n"
    "# Apply changes with `systemctl reload grok-server`.\n";

}  // namespace

std::string tokens_file_add(const std::string& text, const std::string& source, const token_entry& e) {
  if (!valid_token_label(e.label))
    throw std::invalid_argument("'" + e.label + "' is not a valid label: use 1-64 of A-Z, a-z, 0-9, '.', '_', '@', '-'");
  for (const auto& n : e.names)
    if (!valid_tunnel_name(n))
      throw std::invalid_argument("'" + n + "' is not a valid name: use 1-63 of a-z, 0-9 and '-'");
  std::vector<token_entry> existing;
  try {
    existing = parse_tokens_file(text, source);
  } catch (const config_error& ex) {
    throw std::invalid_argument(std::string(ex.what()) + " (fix the file first)");
  }
  for (const auto& x : existing) {
    if (x.label == e.label) throw std::invalid_argument("label '" + e.label + "' already exists in " + source);
    for (const auto& n : e.names)
      if (std::find(x.names.begin(), x.names.end(), n) != x.names.end())
        throw std::invalid_argument("name '" + n + "' is already reserved by '" + x.label + "'");
  }
  std::string out = text.empty() ? std::string(new_file_header) : text;
  if (!out.empty() && out.back() != '\n') out += '\n';
  // An empty list written as "[]" cannot take appended items.
  if (existing.empty()) {
    auto docs = YAML::LoadAll(out);
    if (!docs.empty() && docs[0].IsSequence() && docs[0].size() == 0 && docs[0].Style() == YAML::EmitterStyle::Flow)
      throw std::invalid_argument(source + " holds an empty flow list ([]); remove it and run again");
  }
  out += render_token_entry(e);
  parse_tokens_file(out, source);  // the result must read back
  return out;
}

std::string tokens_file_remove(const std::string& text, const std::string& source, const std::string& label) {
  auto entries = parse_tokens_file(text, source);
  auto it = std::find_if(entries.begin(), entries.end(), [&](const token_entry& e) { return e.label == label; });
  if (it == entries.end()) throw std::invalid_argument("no token labelled '" + label + "' in " + source);
  // Remove the entry's lines: from its first line up to the next entry's first line.
  int first = it->line;
  int end = std::next(it) == entries.end() ? std::numeric_limits<int>::max() : std::next(it)->line;
  std::string out;
  std::istringstream in(text);
  std::string line;
  for (int n = 0; std::getline(in, line); ++n) {
    if (n >= first && n < end) continue;
    out += line;
    out += '\n';
  }
  auto rest = parse_tokens_file(out, source);
  if (rest.size() + 1 != entries.size())
    throw std::invalid_argument("cannot remove '" + label + "' from " + source + " cleanly; edit it by hand");
  return out;
}

}  // namespace grok
