// grok-server: public HTTP in, one gRPC stream per tunnel client out.

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>

#include "grok/config.hpp"
#include "grok/log.hpp"
#include "grok/server.hpp"

int main(int argc, char** argv) {
  CLI::App app{"grok-server: the public end of grok HTTP tunnels"};
  std::string config_path = "/etc/grok/grok-server.yaml";
  bool check_only = false;
  app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  app.add_flag("--check-config", check_only, "validate the configuration file and exit (0 = valid)");
  app.set_version_flag("--version", "grok-server 0.1.0");
  CLI11_PARSE(app, argc, argv);

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

  // Signals are taken by sigwait on this thread only; block them before any
  // worker thread exists so every thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  grok::server srv(cfg, workers);
  try {
    srv.start();
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  spdlog::info("worker pool: {} threads ({})", srv.workers(),
               std::getenv("GROK_WORKER_POOL_SIZE") ? "GROK_WORKER_POOL_SIZE"
               : cfg->worker_pool_size == 0 ? "auto" : "tunnels.worker_pool_size");
  for (;;) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGHUP) {
      spdlog::warn("SIGHUP: live reload is not available in this build; restart to apply changes");
      continue;
    }
    spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    break;
  }
  srv.stop();
  spdlog::info("grok-server stopped");
  return 0;
}
