#pragma once
// Tunnel tokens: the tokens file (auth.tokens_file), digests, generation and
// lookup. The server keeps only SHA-256 digests; a token itself is shown
// once, by `grok-server token add`, and never stored or logged.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grok/ip_network.hpp"

namespace grok {

using token_digest = std::array<unsigned char, 32>;

token_digest sha256_digest(std::string_view data);
std::string digest_hex(const token_digest& d);
/// Parses 64 hex digits; nullopt otherwise.
std::optional<token_digest> parse_digest_hex(std::string_view hex);

/// One accepted token.
struct token_entry {
  std::string label;               ///< who holds it; shown in logs and /api/tunnels
  token_digest digest{};           ///< SHA-256 of the token
  std::vector<std::string> names;  ///< names only this token may take
  unsigned max_tunnels = 0;        ///< tunnels at once; 0 = tunnels.max_per_token
  bool tcp = true;                 ///< may open TCP tunnels
  std::string pool;                ///< tokens naming the same pool may serve one name together
  std::vector<ip_network> allow_cidr;  ///< its tunnels' visitors must come from one of these (empty: anywhere)
  std::vector<ip_network> deny_cidr;   ///< its tunnels refuse visitors from these
  bool require_basic_auth = false;     ///< its tunnels must ask visitors for credentials (--basic-auth)
  int line = -1;                   ///< 0-based line in its file, -1 if inline
};

/// Parses a tokens file: a YAML list of maps with keys label (required),
/// sha256 (required, 64 hex digits), names (list), max_tunnels, pool, tcp,
/// allow_cidr and deny_cidr (lists of networks), require_basic_auth.
/// Errors are config_error "FILE:LINE: [i].key: reason". Labels, digests and
/// reserved names must be unique across entries.
std::vector<token_entry> parse_tokens_file(const std::string& yaml_text, const std::string& source);
std::vector<token_entry> load_tokens_file(const std::string& path);

/// The key that decides who may join a pool: the pool label's when the
/// entry names one, else the token's own digest.
token_digest pool_key(const token_digest& token, const token_entry* entry);

/// A new random token: "grok_" followed by 43 base64url characters (256 bits).
std::string generate_token();

/// YAML text for one list item of a tokens file (ends with a newline).
std::string render_token_entry(const token_entry& e);

/// Index of the entry whose digest equals `d`, or -1. Every entry is
/// compared in full, so the time taken says nothing about which (if any) matched.
int find_token(const std::vector<token_entry>& entries, const token_digest& d);

/// Label rule for `token add`: 1..64 of [A-Za-z0-9._@-].
bool valid_token_label(std::string_view label);

/// What `grok-server token add|remove` does to a tokens file. Each returns the
/// new file text; `text` is the current content ("" for a new file).
/// Throws std::invalid_argument with a readable reason (duplicate label, a
/// name another entry reserves, unknown label, ...).
std::string tokens_file_add(const std::string& text, const std::string& source, const token_entry& e);
std::string tokens_file_remove(const std::string& text, const std::string& source, const std::string& label);

}  // namespace grok
