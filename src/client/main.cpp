// grok: expose a local HTTP service at http://NAME.DOMAIN through grok-server.

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>

#include "grok/malloc_tuning.hpp"
#include "grok/client.hpp"
#include "grok/config.hpp"
#include "grok/file_server.hpp"
#include "grok/log.hpp"

namespace {

std::string default_config_path() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/grok/grok.yaml";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.config/grok/grok.yaml";
  return "grok.yaml";
}

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

// Writes `text` to `path` with mode 0600 so that readers see either the old
// or the new file, never a partial one: temp file in the same directory,
// fsync, rename, fsync the directory.
void write_file_atomically(const fs::path& path, const std::string& text) {
  fs::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  make_private_dirs(dir);
  std::string tmp = (dir / ("." + path.filename().string() + ".tmp.XXXXXX")).string();
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) throw_errno("cannot create a temporary file in " + dir.string());
  try {
    if (::fchmod(fd, 0600) != 0) throw_errno("cannot set mode of " + tmp);
    std::string_view rest(text);
    while (!rest.empty()) {
      ssize_t n = ::write(fd, rest.data(), rest.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("cannot write " + tmp);
      }
      rest.remove_prefix(static_cast<size_t>(n));
    }
    if (::fsync(fd) != 0) throw_errno("cannot write " + tmp);
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) throw_errno("cannot write " + tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("cannot replace " + path.string());
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // best effort: the rename itself has already happened
    ::close(dfd);
  }
}

// "****" plus the last 4 characters; short tokens are masked entirely so
// that the hint never gives away most of the secret.
std::string mask_token(const std::string& token) {
  if (token.empty()) return "(not set)";
  if (token.size() < 8) return "****";
  return "****" + token.substr(token.size() - 4);
}

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

enum class config_action { show, set_token, set_server };

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
      grok::check_server_address(value);
    } catch (const std::invalid_argument& e) {
      std::cerr << "grok: " << cmd << ": invalid address: " << e.what() << "\n";
      return 2;
    }
  }

  grok::client_config cfg;
  bool exists = false;
  try {
    std::error_code ec;
    exists = fs::exists(config_path, ec);
    if (ec) throw std::runtime_error(config_path + ": cannot read: " + ec.message());
    if (exists) cfg = grok::load_client_config(config_path);
  } catch (const std::exception& e) {
    std::cerr << "grok: " << e.what() << "\n";
    if (action != config_action::show) std::cerr << "grok: " << cmd << ": file left unchanged\n";
    return 1;
  }

  if (action == config_action::show) {
    std::cout << "config:    " << config_path << (exists ? "" : " (not found; built-in defaults)") << "\n"
              << "server:    " << cfg.server << "\n"
              << "token:     " << mask_token(cfg.token) << "\n"
              << "log_level: " << cfg.log_level << "\n";
    return 0;
  }

  if (action == config_action::set_token)
    cfg.token = value;
  else
    cfg.server = value;
  try {
    std::string text = grok::render_client_config(cfg);
    // What we write must load back as exactly what we meant.
    auto back = grok::parse_client_config(text, config_path);
    if (back.server != cfg.server || back.token != cfg.token || back.log_level != cfg.log_level)
      throw std::runtime_error("internal error: the rendered configuration does not read back unchanged");
    write_file_atomically(write_target(config_path), text);
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

}  // namespace

int main(int argc, char** argv) {
  grok::tune_malloc();
  CLI::App app{"grok: expose a local HTTP service through grok-server"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "grok 0.1.0");
  std::string config_path = default_config_path();
  app.add_option("--config", config_path, "client configuration file")->capture_default_str();
  bool insecure = false;
  std::string ca_file;
  app.add_flag("--insecure", insecure,
               "connect to grok-server WITHOUT TLS (development only: the token and all traffic travel in clear)");
  app.add_option("--ca", ca_file, "PEM file of CA certificates to verify grok-server with (default: the system CAs)");

  grok::client_options opts;
  std::string local, server, token, log_level;
  auto* http = app.add_subcommand("http", "expose a local HTTP service");
  http->fallthrough();  // --insecure, --ca and --config work after the subcommand too
  http->add_option("address", local, "[HOST:]PORT of the local service")->required();
  http->add_option("-s,--subdomain", opts.subdomain, "tunnel name to ask for (default: the server picks one)");
  http->add_option("--server", server, "grok-server tunnel address HOST:PORT (default from the config file)");
  http->add_option("--token", token, "authentication token (default from the config file)");
  http->add_option("--log-level", log_level, "trace|debug|info|warn|error");

  auto* tcp = app.add_subcommand("tcp", "expose a local TCP service on a public port of the server");
  tcp->fallthrough();
  tcp->add_option("address", local, "[HOST:]PORT of the local service")->required();
  tcp->add_option("--server", server, "grok-server tunnel address HOST:PORT (default from the config file)");
  tcp->add_option("--token", token, "authentication token (default from the config file)");
  tcp->add_option("--log-level", log_level, "trace|debug|info|warn|error");

  std::string serve_dir, serve_auth;
  auto* serve = app.add_subcommand("serve", "serve the files of a folder through the tunnel (no local server needed)");
  serve->fallthrough();
  serve->add_option("dir", serve_dir, "folder to serve")->required();
  serve->add_option("--auth", serve_auth, "require HTTP Basic authentication with USER:PASS");
  serve->add_option("-s,--subdomain", opts.subdomain, "tunnel name to ask for (default: the server picks one)");
  serve->add_option("--server", server, "grok-server tunnel address HOST:PORT (default from the config file)");
  serve->add_option("--token", token, "authentication token (default from the config file)");
  serve->add_option("--log-level", log_level, "trace|debug|info|warn|error");

  auto* config = app.add_subcommand("config", "show or change the client configuration file (see --config)");
  config->require_subcommand(1);
  config->fallthrough();  // `grok config show --config FILE` works too
  std::string config_value;
  auto* set_token = config->add_subcommand("set-token", "store the authentication token");
  set_token->add_option("token", config_value, "the token; - reads it from standard input")->required();
  set_token->fallthrough();
  auto* set_server = config->add_subcommand("set-server", "store the grok-server tunnel address");
  set_server->add_option("address", config_value, "HOST:PORT, e.g. tunnel.example.com:4443 or [::1]:4443")->required();
  set_server->fallthrough();
  auto* show = config->add_subcommand("show", "print the effective configuration (token masked)");
  show->fallthrough();
  CLI11_PARSE(app, argc, argv);

  if (*config) {
    auto action = *set_token ? config_action::set_token : *set_server ? config_action::set_server : config_action::show;
    return run_config(action, config_path, config_value);
  }

  // `grok serve`: check the folder and --auth before anything else (usage
  // errors, exit 2).
  std::optional<std::pair<std::string, std::string>> basic_auth;
  fs::path serve_root;
  if (*serve) {
    std::error_code ec;
    auto st = fs::status(serve_dir, ec);
    if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory) {
      std::cerr << "grok: serve: " << serve_dir << ": " << ec.message() << "\n";
      return 2;
    }
    if (!fs::exists(st)) {
      std::cerr << "grok: serve: " << serve_dir << ": no such directory\n";
      return 2;
    }
    if (!fs::is_directory(st)) {
      std::cerr << "grok: serve: " << serve_dir << ": not a directory\n";
      return 2;
    }
    serve_root = fs::canonical(serve_dir, ec);
    if (ec) {
      std::cerr << "grok: serve: " << serve_dir << ": " << ec.message() << "\n";
      return 2;
    }
    if (serve->count("--auth") > 0) {
      auto colon = serve_auth.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == serve_auth.size()) {
        std::cerr << "grok: serve: --auth: expected USER:PASS with a non-empty user and password\n";
        return 2;
      }
      basic_auth.emplace(serve_auth.substr(0, colon), serve_auth.substr(colon + 1));
    }
  }

  grok::client_config cfg;
  try {
    if (std::filesystem::exists(config_path)) cfg = grok::load_client_config(config_path);
    if (*http || *tcp) std::tie(opts.local_host, opts.local_port) = grok::parse_local_address(local);
    opts.tcp = static_cast<bool>(*tcp);
  } catch (const std::exception& e) {
    std::cerr << "grok: " << e.what() << "\n";
    return 2;
  }
  opts.server = server.empty() ? cfg.server : server;
  opts.token = token.empty() ? cfg.token : token;
  opts.insecure = insecure;
  if (!ca_file.empty()) {
    std::ifstream in(ca_file);
    if (!in) {
      std::cerr << "grok: --ca: cannot read " << ca_file << "\n";
      return 2;
    }
    opts.ca_pem.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  try {
    grok::setup_logging(log_level.empty() ? cfg.log_level : log_level, "text", "grok");
  } catch (const std::exception& e) {
    std::cerr << "grok: --log-level: " << e.what() << "\n";
    return 2;
  }
  spdlog::debug("configuration: {}; server {}, token {}",
                std::filesystem::exists(config_path) ? config_path : config_path + " (not found; built-in defaults)",
                opts.server, mask_token(opts.token));

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  // `grok serve`: the tunnel forwards to our own file server on loopback.
  std::unique_ptr<grok::file_server> files;
  if (*serve) {
    try {
      files = std::make_unique<grok::file_server>(serve_root, basic_auth);
      opts.local_host = "127.0.0.1";
      opts.local_port = files->start();
    } catch (const std::exception& e) {
      std::cerr << "grok: serve: cannot start the file server: " << e.what() << "\n";
      return 1;
    }
    std::cout << "Serving     " << serve_root.string() << (basic_auth ? " (basic auth)" : "") << std::endl;
  }

  grok::client c(opts);
  std::thread signals([&] {
    int sig = 0;
    sigwait(&set, &sig);
    c.stop();
  });
  int rc = c.run();
  // run() returns on its own only for a refusal; wake the signal thread.
  if (signals.joinable()) {
    pthread_kill(signals.native_handle(), SIGTERM);
    signals.join();
  }
  if (files) files->stop();
  return rc;
}
