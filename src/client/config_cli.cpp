#include "config_cli.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <system_error>

#include "grok/config.hpp"
#include "grok/files.hpp"

namespace grok {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The file a write lands in: a symlinked config (dotfile managers) is
// updated at its target rather than replaced by a regular file.
fs::path write_target(const std::string& config_path) {
  fs::path p(config_path);
  std::error_code ec;
  if (fs::is_symlink(p, ec)) {
    auto target = fs::weakly_canonical(p, ec);
    if (!ec) return target;
  }
  return p;
}

// Creates the missing directories leading to `dir`, each mode 0700.
void make_private_dirs(const fs::path& dir) {
  fs::path cur;
  for (const auto& part : dir) {
    cur /= part;
    if (::mkdir(cur.c_str(), 0700) == 0) {
      if (::chmod(cur.c_str(), 0700) != 0) throw_errno("cannot set mode of " + cur.string());
    } else if (errno != EEXIST) {
      throw_errno("cannot create directory " + cur.string());
    }
  }
}

// Writes `text` to `path` with mode 0600, creating its directory (0700).
void write_private_file(const fs::path& path, const std::string& text) {
  fs::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  make_private_dirs(dir);
  replace_file_atomically(path.string(), text, 0600);
}

}  // namespace

// "****" plus the last 4 characters; short tokens are masked entirely so
// that the hint never gives away most of the secret.
std::string mask_token(const std::string& token) {
  if (token.empty()) return "(not set)";
  if (token.size() < 8) return "****";
  return "****" + token.substr(token.size() - 4);
}

namespace {

// Why `token` cannot be stored, or empty: the same rules as the file's
// `token` key (gRPC metadata values are printable ASCII).
std::string token_problem(const std::string& token) {
  if (token.empty()) return "the token must not be empty";
  for (char c : token) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) return "the token must contain only printable ASCII characters, without whitespace";
  }
  return {};
}

}  // namespace

int run_config(config_action action, const std::string& config_path, std::string value) {
  const char* cmd = action == config_action::show        ? "config show"
                    : action == config_action::set_token ? "config set-token"
                                                         : "config set-server";
  // Check the argument first: a usage error is exit 2, like CLI11's own.
  if (action == config_action::set_token) {
    if (value == "-") {
      if (!std::getline(std::cin, value)) {
        std::cerr << "grok: " << cmd << ": no token on standard input\n";
        return 2;
      }
      if (!value.empty() && value.back() == '\r') value.pop_back();
    }
    if (auto problem = token_problem(value); !problem.empty()) {
      std::cerr << "grok: " << cmd << ": " << problem << "\n";
      return 2;
    }
  } else if (action == config_action::set_server) {
    try {
      check_server_address(value);
    } catch (const std::invalid_argument& e) {
      std::cerr << "grok: " << cmd << ": invalid address: " << e.what() << "\n";
      return 2;
    }
  }

  client_config cfg;
  bool exists = false;
  try {
    std::error_code ec;
    exists = fs::exists(config_path, ec);
    if (ec) throw std::runtime_error(config_path + ": cannot read: " + ec.message());
    if (exists) cfg = load_client_config(config_path);
  } catch (const std::exception& e) {
    std::cerr << "grok: " << e.what() << "\n";
    if (action != config_action::show) std::cerr << "grok: " << cmd << ": file left unchanged\n";
    return 1;
  }

  if (action == config_action::show) {
    std::cout << "config:    " << config_path << (exists ? "" : " (not found; built-in defaults)") << "\n"
              << "server:    " << (cfg.server.empty() ? "(not set)" : cfg.server) << "\n"
              << "token:     " << mask_token(cfg.token) << "\n"
              << "log_level: " << cfg.log_level << "\n";
    if (cfg.insecure) std::cout << "insecure:  true (no TLS to the server)\n";
    if (!cfg.ca.empty()) std::cout << "ca:        " << cfg.ca << "\n";
    return 0;
  }

  if (action == config_action::set_token)
    cfg.token = value;
  else
    cfg.server = value;
  try {
    std::string text = render_client_config(cfg);
    // What we write must load back as exactly what we meant.
    auto back = parse_client_config(text, config_path);
    if (back.server != cfg.server || back.token != cfg.token || back.log_level != cfg.log_level ||
        back.insecure != cfg.insecure || back.ca != cfg.ca)
      throw std::runtime_error("internal error: the rendered configuration does not read back unchanged");
    write_private_file(write_target(config_path), text);
  } catch (const std::exception& e) {
    std::cerr << "grok: " << cmd << ": " << e.what() << "\n";
    return 1;
  }
  if (action == config_action::set_token)
    std::cout << "token " << mask_token(cfg.token) << " saved to " << config_path << "\n";
  else
    std::cout << "server " << cfg.server << " saved to " << config_path << "\n";
  return 0;
}

}  // namespace grok
