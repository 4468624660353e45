#pragma once
// `grok config show|set-token|set-server`: reads and rewrites the client
// configuration file (mode 0600 in a 0700 directory, replaced atomically).

#include <string>

namespace grok {

enum class config_action { show, set_token, set_server };

/// Runs one `grok config` command; returns the process exit status (2 for a usage error).
int run_config(config_action action, const std::string& config_path, std::string value);

/// "****" and the token's last 4 characters; all stars for a short token.
std::string mask_token(const std::string& token);

}  // namespace grok
