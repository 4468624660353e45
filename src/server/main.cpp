// grok-server: public HTTP in, one gRPC stream per tunnel client out.

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include "grok/malloc_tuning.hpp"
#include "grok/config.hpp"
#include "grok/log.hpp"
#include "grok/server.hpp"

namespace {

/// sd_notify is a no-op without NOTIFY_SOCKET, so the same binary runs in the foreground unchanged.
void notify(const char* state) { sd_notify(0, state); }

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
  return grok::path_beside(config_path, auth["tokens_file"].Scalar());
}

std::string read_text(const std::string& path, bool& exists) {
  std::ifstream in(path, std::ios::binary);
  exists = static_cast<bool>(in);
  if (!in) {
    if (errno != ENOENT) throw std::runtime_error(path + ": cannot read: " + std::strerror(errno));
    return {};
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error(tmp + ": cannot write: " + std::strerror(errno));
  ::fchmod(fd, mode);
  if (gid != static_cast<gid_t>(-1) && ::fchown(fd, static_cast<uid_t>(-1), gid) != 0) {
    // Not fatal: an unprivileged user writing their own file keeps their group.
  }
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    auto n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw std::runtime_error(tmp + ": cannot write: " + std::strerror(err));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error(path + ": cannot replace: " + std::strerror(err));
  }
}

struct token_command {
  std::string file;
  std::string label;
  std::vector<std::string> names;
  unsigned max_tunnels = 0;
  bool no_tcp = false;
};

int run_token_add(const token_command& cmd, const std::string& config_path) {
  auto path = tokens_file_path(cmd.file, config_path);
  bool exists = false;
  auto text = read_text(path, exists);
  grok::token_entry e;
  e.label = cmd.label;
  for (auto n : cmd.names) {
    std::transform(n.begin(), n.end(), n.begin(),
                   [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
    e.names.push_back(n);
  }
  e.max_tunnels = cmd.max_tunnels;
  e.tcp = !cmd.no_tcp;
  auto token = grok::generate_token();
  e.digest = grok::sha256_digest(token);
  write_atomically(path, grok::tokens_file_add(text, path, e));
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
  auto entries = grok::parse_tokens_file(text, path);
  std::cout << "LABEL\tSHA256\tNAMES\tMAX_TUNNELS\tTCP\n";
  for (auto& e : entries) {
    std::string names;
    for (auto& n : e.names) names += (names.empty() ? "" : ",") + n;
    std::cout << e.label << "\t" << grok::digest_hex(e.digest).substr(0, 12) << "…\t" << (names.empty() ? "-" : names)
              << "\t" << (e.max_tunnels ? std::to_string(e.max_tunnels) : "default") << "\t"
              << (e.tcp ? "yes" : "no") << "\n";
  }
  return 0;
}

int run_token_remove(const token_command& cmd, const std::string& config_path) {
  auto path = tokens_file_path(cmd.file, config_path);
  bool exists = false;
  auto text = read_text(path, exists);
  if (!exists) throw std::runtime_error(path + ": no such file");
  write_atomically(path, grok::tokens_file_remove(text, path, cmd.label));
  std::cout << "Removed " << cmd.label << " from " << path
            << ". Apply it with `systemctl reload grok-server` (or SIGHUP): its tunnels are closed.\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  grok::tune_malloc();
  CLI::App app{"grok-server: the public end of grok HTTP tunnels"};
  std::string config_path = "/etc/grok/grok-server.yaml";
  bool check_only = false;
  app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  app.add_flag("--check-config", check_only, "validate the configuration file and exit (0 = valid)");
  app.set_version_flag("--version", "grok-server 0.1.0");

  token_command tok;
  auto* token_cmd = app.add_subcommand("token", "manage the tokens file (auth.tokens_file)");
  token_cmd->require_subcommand(1);
  token_cmd->fallthrough();  // --config may follow the subcommand
  auto file_opt = [&](CLI::App* sc) {
    sc->fallthrough();
    sc->add_option("--file", tok.file, "tokens file (default: auth.tokens_file of --config)");
  };
  auto* add = token_cmd->add_subcommand("add", "create a token, print it once, append its SHA-256 to the file");
  add->add_option("label", tok.label, "who the token is for (1-64 of A-Z a-z 0-9 . _ @ -)")->required();
  add->add_option("--name", tok.names, "a name only this token may take (repeatable)");
  add->add_option("--max-tunnels", tok.max_tunnels, "tunnels at once (0 = tunnels.max_per_token)");
  add->add_flag("--no-tcp", tok.no_tcp, "may not open TCP tunnels");
  file_opt(add);
  auto* list = token_cmd->add_subcommand("list", "show the tokens file's entries (labels, names, limits)");
  file_opt(list);
  auto* remove = token_cmd->add_subcommand("remove", "delete an entry; a reload closes its tunnels");
  remove->add_option("label", tok.label, "the entry's label")->required();
  file_opt(remove);
  CLI11_PARSE(app, argc, argv);

  if (token_cmd->parsed()) {
    try {
      if (add->parsed()) return run_token_add(tok, config_path);
      if (list->parsed()) return run_token_list(tok, config_path);
      return run_token_remove(tok, config_path);
    } catch (const std::exception& e) {
      std::cerr << "grok-server token: " << e.what() << "\n";
      return 1;
    }
  }

  std::shared_ptr<grok::server_config> cfg;
  unsigned workers = 0;
  try {
    cfg = std::make_shared<grok::server_config>(grok::load_server_config(config_path));
    workers = grok::effective_worker_count(*cfg, std::getenv("GROK_WORKER_POOL_SIZE"));
  } catch (const std::exception& e) {
    std::cerr << "grok-server: " << e.what() << "\n";
    return 1;
  }
  if (check_only) {
    std::cout << config_path << ": configuration is valid\n";
    return 0;
  }
  try {
    grok::setup_logging(cfg->log_level, cfg->log_format, "grok-server");
  } catch (const std::exception& e) {
    std::cerr << "grok-server: " << e.what() << "\n";
    return 1;
  }

  // Signals are taken by sigtimedwait on this thread only; block them before
  // any worker thread exists so every thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  grok::server srv(cfg, workers, config_path);
  try {
    srv.start();
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  const char* env_pool = std::getenv("GROK_WORKER_POOL_SIZE");
  spdlog::info("worker pool: {} threads ({})", srv.workers(),
               env_pool && *env_pool ? "from GROK_WORKER_POOL_SIZE"
               : cfg->worker_pool_size == 0 ? "auto: half the hardware threads"
                                            : "from tunnels.worker_pool_size");
  notify("READY=1");
  srv.responsive(std::chrono::milliseconds(0));  // primes the first watchdog probe

  uint64_t watchdog_usec = 0;
  bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  // Ping twice per watchdog period, and only while the worker pool answers.
  auto tick = watchdog ? std::chrono::microseconds(watchdog_usec / 2) : std::chrono::microseconds(1'000'000);
  for (;;) {
    timespec ts{static_cast<time_t>(tick.count() / 1'000'000), static_cast<long>((tick.count() % 1'000'000) * 1000)};
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig < 0) {
      if (watchdog && srv.responsive(std::chrono::duration_cast<std::chrono::milliseconds>(tick) * 2))
        notify("WATCHDOG=1");
      continue;
    }
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP: reloading {}", config_path);
      notify("RELOADING=1");
      auto err = srv.reload();
      notify(err.empty() ? "READY=1" : ("READY=1\nSTATUS=reload failed: " + err).c_str());
      continue;
    }
    spdlog::info("received {}, draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
    break;
  }
  notify("STOPPING=1");
  srv.drain();
  spdlog::info("grok-server stopped");
  return 0;
}
