#pragma once
// `grok-server token add|list|remove`: edits the tokens file
// (auth.tokens_file) in place, atomically, keeping its mode and group.

#include <string>
#include <vector>

namespace grok {

struct token_command {
  std::string file;
  std::string label;
  std::vector<std::string> names;
  unsigned max_tunnels = 0;
  std::string pool;
  bool no_tcp = false;
  std::vector<std::string> allow_cidr;  ///< its tunnels' visitors must come from these
  std::vector<std::string> deny_cidr;
  bool require_basic_auth = false;
};

/// Each returns the process exit status; errors throw std::exception naming the file.
int run_token_add(const token_command& cmd, const std::string& config_path);
int run_token_list(const token_command& cmd, const std::string& config_path);
int run_token_remove(const token_command& cmd, const std::string& config_path);

}  // namespace grok
