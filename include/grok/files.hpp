#pragma once
// Whole-file reads and atomic replacement: the one implementation the
// server, the client and the configuration loaders use.

#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace grok {

/// A file could not be read or written; what() is "PATH: cannot read: REASON"
/// (or "cannot write", "cannot replace").
struct file_error : std::runtime_error {
  file_error(const std::string& what, int code) : std::runtime_error(what), code(code) {}
  int code;  ///< the errno that caused it
};

/// The file's bytes. Throws file_error (a directory included).
std::string read_file(const std::string& path);

/// The file's bytes, or nullopt when it does not exist; other errors throw file_error.
std::optional<std::string> read_file_if_exists(const std::string& path);

/// Replaces `path` so that readers see the old or the new file, never part
/// of one: a temporary file in the same directory gets `text`, `mode` and
/// (unless -1) `group`; then fsync, rename, and fsync of the directory.
/// Throws file_error naming the file.
void replace_file_atomically(const std::string& path, std::string_view text, mode_t mode,
                             gid_t group = static_cast<gid_t>(-1));

}  // namespace grok
