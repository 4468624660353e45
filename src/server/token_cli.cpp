#include "token_cli.hpp"

#include "grok/access_rules.hpp"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <iostream>
#include <stdexcept>

#include "grok/config.hpp"
#include "grok/files.hpp"
#include "grok/http_rules.hpp"
#include "grok/tokens.hpp"

namespace grok {

namespace {

/// The tokens file for `token` commands: --file, else auth.tokens_file of the
/// configuration (read without the rest of the validation, so the first
/// `token add` can create the file the configuration names).
std::string tokens_file_path(const std::string& file_opt, const std::string& config_path) {
  if (!file_opt.empty()) return file_opt;
  YAML::Node root;
  try {
    root = YAML::LoadFile(config_path);
  } catch (const std::exception& e) {
    throw std::runtime_error(config_path + ": " + e.what());
  }
  auto auth = root["auth"];
  if (!auth || !auth.IsMap() || !auth["tokens_file"] || !auth["tokens_file"].IsScalar())
    throw std::runtime_error(config_path + " sets no auth.tokens_file; set it (e.g. tokens_file: tokens.yaml) or pass --file");
  return path_beside(config_path, auth["tokens_file"].Scalar());
}

std::string read_text(const std::string& path, bool& exists) {
  auto text = read_file_if_exists(path);
  exists = text.has_value();
  return text ? std::move(*text) : std::string();
}

/// Replaces `path` atomically, keeping its mode and group (a new file gets
/// 0640 and the directory's group, like /etc/grok/grok-server.yaml).
void write_atomically(const std::string& path, const std::string& text) {
  struct stat st {};
  mode_t mode = 0640;
  gid_t gid = static_cast<gid_t>(-1);
  if (::stat(path.c_str(), &st) == 0) {
    mode = st.st_mode & 07777;
    gid = st.st_gid;
  } else {
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
    if (::stat(dir.c_str(), &st) == 0) gid = st.st_gid;
  }
  replace_file_atomically(path, text, mode, gid);
}


}  // namespace

int run_token_add(const token_command& cmd, const std::string& config_path) {
  auto path = tokens_file_path(cmd.file, config_path);
  bool exists = false;
  auto text = read_text(path, exists);
  token_entry e;
  e.label = cmd.label;
  for (const auto& n : cmd.names) e.names.push_back(ascii_lower(n));
  e.max_tunnels = cmd.max_tunnels;
  e.tcp = !cmd.no_tcp;
  e.pool = cmd.pool;
  auto networks = [](const char* flag, const std::vector<std::string>& texts, std::vector<ip_network>& into) {
    for (const auto& c : texts) {
      try {
        into.push_back(parse_cidr_rule(c));
      } catch (const std::invalid_argument& ex) {
        throw std::invalid_argument(std::string(flag) + ": " + ex.what());
      }
    }
  };
  networks("--allow-cidr", cmd.allow_cidr, e.allow_cidr);
  networks("--deny-cidr", cmd.deny_cidr, e.deny_cidr);
  e.require_basic_auth = cmd.require_basic_auth;
  auto token = generate_token();
  e.digest = sha256_digest(token);
  write_atomically(path, tokens_file_add(text, path, e));
  std::cout << "Token for " << e.label << " (shown only now; the server keeps only its SHA-256):\n\n  " << token
            << "\n\n";
  if (!e.names.empty()) {
    std::cout << "Reserved names:";
    for (auto& n : e.names) std::cout << " " << n;
    std::cout << "\n";
  }
  std::cout << (exists ? "Added to " : "Created ") << path
            << ". Apply it with `systemctl reload grok-server` (or SIGHUP).\n"
            << "On the client: grok config set-token " << token.substr(0, 9) << "...\n";
  return 0;
}

int run_token_list(const token_command& cmd, const std::string& config_path) {
  auto path = tokens_file_path(cmd.file, config_path);
  bool exists = false;
  auto text = read_text(path, exists);
  if (!exists) throw std::runtime_error(path + ": no such file (grok-server token add LABEL creates it)");
  auto entries = parse_tokens_file(text, path);
  std::cout << "LABEL\tSHA256\tNAMES\tMAX_TUNNELS\tPOOL\tTCP\n";
  for (auto& e : entries) {
    std::string names;
    for (auto& n : e.names) names += (names.empty() ? "" : ",") + n;
    std::cout << e.label << "\t" << digest_hex(e.digest).substr(0, 12) << "…\t" << (names.empty() ? "-" : names)
              << "\t" << (e.max_tunnels ? std::to_string(e.max_tunnels) : "default") << "\t"
              << (e.pool.empty() ? "-" : e.pool) << "\t"
              << (e.tcp ? "yes" : "no") << "\n";
  }
  return 0;
}

int run_token_remove(const token_command& cmd, const std::string& config_path) {
  auto path = tokens_file_path(cmd.file, config_path);
  bool exists = false;
  auto text = read_text(path, exists);
  if (!exists) throw std::runtime_error(path + ": no such file");
  write_atomically(path, tokens_file_remove(text, path, cmd.label));
  std::cout << "Removed " << cmd.label << " from " << path
            << ". Apply it with `systemctl reload grok-server` (or SIGHUP): its tunnels are closed.\n";
  return 0;
}

}  // namespace grok
