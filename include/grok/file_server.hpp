#pragma once
// `grok serve DIR`: a small in-process HTTP/1.1 file server on 127.0.0.1 that
// the tunnel client forwards to. The class lives in src/client/file_server.cpp
// (Boost.Beast, kept out of this header); the pure helpers below live in
// src/core/file_paths.cpp so that the unit tests can reach them.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grok/basic_auth.hpp"

namespace grok {

class file_server {
 public:
  /// `root` must name a directory; it is made canonical here (throws
  /// std::filesystem::filesystem_error if it cannot be). `basic_auth` is
  /// {user, password}; when set, every request needs those credentials.
  file_server(std::filesystem::path root, std::optional<std::pair<std::string, std::string>> basic_auth);
  ~file_server();
  file_server(const file_server&) = delete;
  file_server& operator=(const file_server&) = delete;

  /// Binds 127.0.0.1 on an OS-chosen port, starts the I/O threads and
  /// returns the port. Throws std::system_error when it cannot listen.
  uint16_t start();
  /// Stops accepting, drops every connection and joins the threads. Idempotent.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// ---- pure helpers (no I/O except resolve_request_path's filesystem look-ups) ----

/// Maps a request target to a path inside `canonical_root` (which must
/// already be canonical). Strips the query, percent-decodes the path once and
/// returns nullopt for anything that could leave the root or is malformed:
/// no leading '/', bad %-escapes, NUL, backslashes, encoded '/', `..`
/// segments (before and after decoding) and any path whose resolution
/// (symlinks included, via weakly_canonical) is not inside the root. The
/// returned path is the resolved one; it need not exist.
std::optional<std::filesystem::path> resolve_request_path(const std::filesystem::path& canonical_root,
                                                          std::string_view target);

/// True when `p` (canonical) is `canonical_root` or below it.
bool path_within(const std::filesystem::path& canonical_root, const std::filesystem::path& p);

/// Content-Type for a file name by its extension (case-insensitive); text
/// types carry `; charset=utf-8`; unknown: application/octet-stream.
std::string content_type_for(const std::filesystem::path& p);

/// Parses a Range header against a representation of `size` bytes. Accepts
/// exactly one `bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX` and
/// returns the inclusive {first, last} byte positions (LAST is clamped to
/// size-1). nullopt for malformed, multi-range and unsatisfiable headers.
std::optional<std::pair<uint64_t, uint64_t>> parse_range(std::string_view header, uint64_t size);

/// True when `header` is one well-formed byte range that cannot be satisfied
/// for `size` bytes (FIRST >= size, `-0`, or any range of an empty file):
/// the answer is 416. Malformed or multi-range headers are false (ignore them, 200).
bool range_unsatisfiable(std::string_view header, uint64_t size);

/// Percent-decodes `s` once; nullopt for a '%' not followed by two hex digits.
std::optional<std::string> percent_decode(std::string_view s);

/// Percent-encodes everything except RFC 3986 unreserved characters (for
/// one path segment of a link).
std::string url_encode_segment(std::string_view s);

/// Strong ETag: "<size hex>-<mtime in ns since the epoch, hex>" (quotes included).
std::string make_etag(uint64_t size, std::chrono::nanoseconds mtime_since_epoch);

/// True when an If-None-Match value (a list of entity tags or `*`) matches
/// `etag` using the weak comparison (W/ prefixes ignored).
bool etag_matches_any(std::string_view if_none_match, std::string_view etag);

/// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
std::string http_date(std::chrono::system_clock::time_point t);

/// The directory listing page for `url_path` (decoded, ends with '/').
/// `entries` are {name, is_directory}; they are sorted by name here.
std::string directory_listing_html(std::string_view url_path,
                                   std::vector<std::pair<std::string, bool>> entries);

}  // namespace grok
