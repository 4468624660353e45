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
#include "grpc_log.hpp"
#include "grpc_runtime.hpp"
#include "token_cli.hpp"

namespace {

/// sd_notify is a no-op without NOTIFY_SOCKET, so the same binary runs in the foreground unchanged.
void notify(const char* state) { sd_notify(0, state); }

}  // namespace

int main(int argc, char** argv) {
  grok::tune_malloc();
  CLI::App app{"grok-server: the public end of grok HTTP tunnels"};
  std::string config_path = "/etc/grok/grok-server.yaml";
  bool check_only = false;
  app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  app.add_flag("--check-config", check_only, "validate the configuration file and exit (0 = valid)");
  app.set_version_flag("--version", "grok-server 0.1.0");

  grok::token_command tok;
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
  add->add_option("--pool", tok.pool, "tokens with the same pool label may serve one name together (grok --pool)");
  add->add_flag("--no-tcp", tok.no_tcp, "may not open TCP tunnels");
  add->add_option("--allow-cidr", tok.allow_cidr, "its tunnels take visitors only from this network (repeatable)")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  add->add_option("--deny-cidr", tok.deny_cidr, "its tunnels refuse visitors from this network (repeatable)")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  add->add_flag("--require-basic-auth", tok.require_basic_auth,
                "its HTTP tunnels must ask visitors for credentials (grok http --basic-auth)");
  file_opt(add);
  auto* list = token_cmd->add_subcommand("list", "show the tokens file's entries (labels, names, limits)");
  file_opt(list);
  auto* remove = token_cmd->add_subcommand("remove", "delete an entry; a reload closes its tunnels");
  remove->add_option("label", tok.label, "the entry's label")->required();
  file_opt(remove);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help exits 0, a usage error 2
  }

  if (token_cmd->parsed()) {
    try {
      if (add->parsed()) return grok::run_token_add(tok, config_path);
      if (list->parsed()) return grok::run_token_list(tok, config_path);
      return grok::run_token_remove(tok, config_path);
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
  if (auto problems = grok::unsafe_settings(*cfg); !problems.empty()) {
    for (const auto& p : problems) std::cerr << "grok-server: " << config_path << ": " << p << "\n";
    return 1;
  }
  if (check_only) {
    for (const auto& w : grok::risky_settings(*cfg)) std::cerr << "grok-server: warning: " << w << "\n";
    std::cout << config_path << ": configuration is valid\n";
    return 0;
  }
  try {
    grok::setup_logging(cfg->log_level, cfg->log_format, "grok-server");
    grok::route_grpc_logs<spdlog::level::warn>();
    grok::tune_grpc_runtime();
    for (const auto& w : grok::risky_settings(*cfg)) spdlog::warn("{}", w);
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
