#pragma once
// A tunnel's visitor rules and header shaping, as `grok http|tcp` flags and
// as keys of a tunnel in the client configuration's `tunnels:` section: one
// set of texts, checked in one place.

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "grok/client.hpp"
#include "grok/config.hpp"

namespace grok {

struct tunnel_flags {
  std::vector<std::string> basic_auth;  ///< USER:PASS each
  std::vector<std::string> allow_cidr;
  std::vector<std::string> deny_cidr;
  std::string host_header;              ///< "rewrite" or a host
  std::vector<std::string> request_header_add;   ///< "Name: value" each
  std::vector<std::string> request_header_remove;
  std::vector<std::string> response_header_add;
  std::vector<std::string> response_header_remove;
};

/// Adds --basic-auth, --allow-cidr, --deny-cidr and (HTTP) --host-header and
/// the four header flags to a subcommand.
void add_tunnel_options(CLI::App& sub, tunnel_flags& flags, bool http);

/// Checks the texts and puts them into `o.rules` and `o.shaping`. Throws
/// std::invalid_argument naming the flag (`--allow-cidr: '10.0.0.300/8' is
/// not ...`); `prefix` replaces the "--" of flag names for config keys.
void apply_tunnel_flags(const tunnel_flags& flags, client_options& o, const std::string& prefix = "--");

/// A tunnel of the client configuration's `tunnels:` section as the options
/// `grok http|tcp` would give it (the connection settings left to the
/// caller). Throws std::invalid_argument naming the key at fault.
client_options tunnel_options(const tunnel_definition& t);

}  // namespace grok
