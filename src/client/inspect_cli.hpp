#pragma once
// The inspector's command-line flags (`grok http|tcp|serve`) and how they
// combine with the client configuration file: a flag beats the file.

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "grok/config.hpp"
#include "inspector.hpp"

namespace grok {

struct inspect_flags {
  std::string addr;        ///< --inspect ADDR
  bool off = false;        ///< --no-inspect
  std::string auth;        ///< --inspect-auth USER:PASS
  std::string max_memory;  ///< --inspect-max-memory SIZE
  std::string max_body;    ///< --inspect-max-body SIZE
};

/// Adds --inspect, --no-inspect, --inspect-auth, --inspect-max-memory and
/// --inspect-max-body to a subcommand.
void add_inspect_options(CLI::App& sub, inspect_flags& flags);

/// The inspector's settings from the flags and the file, or nullopt when it
/// is off. Throws std::invalid_argument naming the flag or key at fault
/// (a non-loopback address without a password, a body cap that would not
/// leave room for a few records, a malformed size).
std::optional<inspector_options> inspect_settings(const inspect_flags& flags, const client_config& cfg);

}  // namespace grok
