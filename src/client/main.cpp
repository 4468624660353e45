// grok: expose a local HTTP service at http://NAME.DOMAIN through grok-server.

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "grok/client.hpp"
#include "grok/config.hpp"
#include "grok/log.hpp"

namespace {

std::string default_config_path() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/grok/grok.yaml";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.config/grok/grok.yaml";
  return "grok.yaml";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"grok: expose a local HTTP service through grok-server"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "grok 0.1.0");
  std::string config_path = default_config_path();
  app.add_option("--config", config_path, "client configuration file")->capture_default_str();

  grok::client_options opts;
  std::string local, server, token, log_level;
  auto* http = app.add_subcommand("http", "expose a local HTTP service");
  http->add_option("address", local, "[HOST:]PORT of the local service")->required();
  http->add_option("-s,--subdomain", opts.subdomain, "tunnel name to ask for (default: the server picks one)");
  http->add_option("--server", server, "grok-server tunnel address HOST:PORT (default from the config file)");
  http->add_option("--token", token, "authentication token (default from the config file)");
  http->add_option("--log-level", log_level, "trace|debug|info|warn|error");
  CLI11_PARSE(app, argc, argv);

  grok::client_config cfg;
  try {
    if (std::filesystem::exists(config_path)) cfg = grok::load_client_config(config_path);
    std::tie(opts.local_host, opts.local_port) = grok::parse_local_address(local);
  } catch (const std::exception& e) {
    std::cerr << "grok: " << e.what() << "\n";
    return 2;
  }
  opts.server = server.empty() ? cfg.server : server;
  opts.token = token.empty() ? cfg.token : token;
  try {
    grok::setup_logging(log_level.empty() ? cfg.log_level : log_level, "text", "grok");
  } catch (const std::exception& e) {
    std::cerr << "grok: --log-level: " << e.what() << "\n";
    return 2;
  }

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

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
  return rc;
}
