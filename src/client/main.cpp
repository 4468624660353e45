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
#include "grok/files.hpp"
#include "grok/file_server.hpp"
#include "grok/log.hpp"
#include "config_cli.hpp"
#include "grpc_log.hpp"
#include "grpc_runtime.hpp"
#include "inspect_cli.hpp"
#include "tunnel_cli.hpp"
#include "inspector.hpp"

namespace {

std::string default_config_path() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/grok/grok.yaml";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.config/grok/grok.yaml";
  return "grok.yaml";
}

namespace fs = std::filesystem;

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
  std::string proxy;
  app.add_option("--proxy", proxy,
                 "reach grok-server through this HTTP proxy, http://[USER:PASS@]HOST:PORT (default: https_proxy and "
                 "no_proxy from the environment)");

  grok::client_options opts;
  std::string local, server, token, log_level;
  auto* http = app.add_subcommand("http", "expose a local HTTP service");
  http->fallthrough();  // --insecure, --ca and --config work after the subcommand too
  http->add_option("address", local, "the local service: [HOST:]PORT, http://HOST[:PORT] or https://HOST[:PORT]")
      ->required();
  http->add_flag("--upstream-insecure", opts.upstream_insecure,
                 "with an https:// local service: accept any certificate (a self-signed development one)");
  std::string proxy_protocol;
  const char* proxy_help = "v1|v2: start each connection to the local service with a PROXY header naming the visitor";
  http->add_option("--proxy-protocol", proxy_protocol, proxy_help);
  http->add_option("-s,--subdomain", opts.subdomain, "tunnel name to ask for (default: the server picks one)");
  http->add_option("--server", server, "grok-server tunnel address HOST:PORT, or several (comma-separated; or a name with several addresses) to hold a stream to each node of a cluster (default from the config file)");
  http->add_option("--token", token, "authentication token (default from the config file)");
  http->add_option("--log-level", log_level, "trace|debug|info|warn|error");
  std::string health_interval, health_timeout;
  http->add_flag("--pool", opts.pool,
                 "share the name with other grok processes that ask for it with --pool (same token, or tokens of one "
                 "pool): the server spreads requests over them");
  http->add_option("--health-check", opts.health_path,
                   "GET this path on the local service; while it fails (not 2xx/3xx) the tunnel gets no new request");
  http->add_option("--health-interval", health_interval, "time between health checks (default 10s)");
  http->add_option("--health-timeout", health_timeout, "how long a health check may take (default 2s)");
  grok::tunnel_flags tunnel_flags;
  grok::add_tunnel_options(*http, tunnel_flags, true);
  grok::inspect_flags inspect;
  grok::add_inspect_options(*http, inspect);

  auto* tcp = app.add_subcommand("tcp", "expose a local TCP service on a public port of the server");
  tcp->fallthrough();
  tcp->add_option("address", local, "[HOST:]PORT of the local service")->required();
  tcp->add_option("--proxy-protocol", proxy_protocol, proxy_help);
  tcp->add_option("--server", server, "grok-server tunnel address HOST:PORT, or several (comma-separated; or a name with several addresses) to hold a stream to each node of a cluster (default from the config file)");
  tcp->add_option("--token", token, "authentication token (default from the config file)");
  tcp->add_option("--log-level", log_level, "trace|debug|info|warn|error");
  tcp->add_option("-s,--subdomain", opts.subdomain, "tunnel name to ask for (a pool's members name the same one)");
  tcp->add_flag("--pool", opts.pool,
                "share the name and its public port with other `grok tcp --pool` processes: each connection goes to one");
  grok::add_tunnel_options(*tcp, tunnel_flags, false);
  grok::add_inspect_options(*tcp, inspect);

  std::string serve_dir, serve_auth;
  auto* serve = app.add_subcommand("serve", "serve the files of a folder through the tunnel (no local server needed)");
  serve->fallthrough();
  serve->add_option("dir", serve_dir, "folder to serve")->required();
  serve->add_option("--auth", serve_auth, "require HTTP Basic authentication with USER:PASS");
  serve->add_option("-s,--subdomain", opts.subdomain, "tunnel name to ask for (default: the server picks one)");
  serve->add_option("--server", server, "grok-server tunnel address HOST:PORT, or several (comma-separated; or a name with several addresses) to hold a stream to each node of a cluster (default from the config file)");
  serve->add_option("--token", token, "authentication token (default from the config file)");
  serve->add_option("--log-level", log_level, "trace|debug|info|warn|error");
  grok::add_tunnel_options(*serve, tunnel_flags, true);
  grok::add_inspect_options(*serve, inspect);

  std::vector<std::string> start_names;
  bool start_all = false;
  auto* start = app.add_subcommand("start", "start tunnels named in the `tunnels:` section of the client configuration");
  start->fallthrough();
  start->add_option("names", start_names, "the tunnels to start");
  start->add_flag("--all", start_all, "start every tunnel of the section");
  start->add_option("--server", server, "grok-server tunnel address HOST:PORT, or several (comma-separated; or a name with several addresses) to hold a stream to each node of a cluster (default from the config file)");
  start->add_option("--token", token, "authentication token (default from the config file)");
  start->add_option("--log-level", log_level, "trace|debug|info|warn|error");
  grok::add_inspect_options(*start, inspect);

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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // `grok htpp 3000`: say which word was not a command, and what the commands are.
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg == "--config" || arg == "--ca") {
        ++i;  // its value
        continue;
      }
      if (arg.starts_with('-')) continue;
      std::string names;
      bool known = false;
      for (const auto* sc : app.get_subcommands([](CLI::App*) { return true; })) {
        names += (names.empty() ? "" : ", ") + sc->get_name();
        known = known || sc->get_name() == arg;
      }
      if (known) break;
      std::cerr << "grok: unknown command '" << arg << "'; the commands are: " << names
                << " (grok --help explains them)\n";
      return 2;
    }
    // --help and --version exit 0; every usage error exits 2, as the checks below do.
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (*config) {
    auto action = *set_token ? grok::config_action::set_token : *set_server ? grok::config_action::set_server : grok::config_action::show;
    return grok::run_config(action, config_path, config_value);
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
    // A file named with --config must exist; the default one may not.
    if (app.count("--config") > 0 || std::filesystem::exists(config_path)) cfg = grok::load_client_config(config_path);
    if (*http || *tcp) {
      auto where = grok::parse_local_url(local, /*url_allowed=*/static_cast<bool>(*http));
      opts.local_host = where.host;
      opts.local_port = where.port;
      opts.local_tls = where.tls;
      if (opts.upstream_insecure && !opts.local_tls)
        throw std::invalid_argument("--upstream-insecure is for an https:// local service");
      if (!proxy_protocol.empty() && proxy_protocol != "v1" && proxy_protocol != "v2")
        throw std::invalid_argument("--proxy-protocol: expected v1 or v2, got '" + proxy_protocol + "'");
      opts.proxy_protocol = proxy_protocol.empty() ? 0 : proxy_protocol == "v1" ? 1 : 2;
    }
    opts.tcp = static_cast<bool>(*tcp);
    grok::apply_tunnel_flags(tunnel_flags, opts);
    if (opts.pool && opts.subdomain.empty())
      throw std::invalid_argument("--pool needs --subdomain NAME: the name the pool's members share");
    if (*http) {
      if (!opts.health_path.empty() && (opts.health_path.front() != '/' ||
                                        opts.health_path.find_first_of(" \r\n\t") != std::string::npos))
        throw std::invalid_argument("--health-check: expected a path such as /health, got '" + opts.health_path + "'");
      if (opts.health_path.empty() && (!health_interval.empty() || !health_timeout.empty()))
        throw std::invalid_argument("--health-interval and --health-timeout need --health-check PATH");
      auto duration = [](const std::string& flag, const std::string& text) {
        try {
          auto d = grok::parse_duration(text);
          if (d.count() <= 0) throw std::invalid_argument("must be more than 0");
          return d;
        } catch (const std::exception& e) {
          throw std::invalid_argument(flag + ": " + e.what());
        }
      };
      if (!health_interval.empty()) opts.health_interval = duration("--health-interval", health_interval);
      if (!health_timeout.empty()) opts.health_timeout = duration("--health-timeout", health_timeout);
    }
  } catch (const std::exception& e) {
    std::cerr << "grok: " << e.what() << "\n";
    return 2;
  }
  // `grok start`: the tunnels the file defines.
  std::vector<grok::client_options> started;
  if (*start) {
    if (cfg.tunnels.empty()) {
      std::cerr << "grok: start: " << config_path << " has no tunnels: section (README \"Several tunnels\" shows one)\n";
      return 2;
    }
    std::string known;
    for (const auto& t : cfg.tunnels) known += (known.empty() ? "" : ", ") + t.name;
    if (start_all == !start_names.empty()) {
      std::cerr << "grok: start: name the tunnels to start, or --all (" << config_path << " has: " << known << ")\n";
      return 2;
    }
    for (const auto& t : cfg.tunnels) {
      bool wanted = start_all || std::find(start_names.begin(), start_names.end(), t.name) != start_names.end();
      if (!wanted) continue;
      try {
        started.push_back(grok::tunnel_options(t));
      } catch (const std::invalid_argument& e) {
        std::cerr << "grok: start: " << config_path << ": tunnels." << t.name << ": " << e.what() << "\n";
        return 2;
      }
    }
    for (const auto& n : start_names) {
      if (std::none_of(cfg.tunnels.begin(), cfg.tunnels.end(), [&](const auto& t) { return t.name == n; })) {
        std::cerr << "grok: start: no tunnel named '" << n << "' in " << config_path << " (it has: " << known << ")\n";
        return 2;
      }
    }
  }
  // A flag beats the environment, which beats the file. A token in the
  // environment stays out of `ps`, unlike --token.
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  opts.server = !server.empty() ? server : !env("GROK_SERVER").empty() ? env("GROK_SERVER") : cfg.server;
  opts.token = !token.empty() ? token : !env("GROK_TOKEN").empty() ? env("GROK_TOKEN") : cfg.token;
  if (opts.server.empty()) {
    std::cerr << "grok: no grok-server address set. Save it once with `grok config set-server HOST:PORT`,\n"
                 "      or pass --server HOST:PORT, or set GROK_SERVER.\n";
    return 2;
  }
  if (!server.empty() || !env("GROK_SERVER").empty()) {
    try {
      grok::check_server_address(opts.server);
    } catch (const std::invalid_argument& e) {
      std::cerr << "grok: " << (server.empty() ? "GROK_SERVER" : "--server") << ": invalid address: " << e.what()
                << "\n";
      return 2;
    }
  }
  std::optional<grok::inspector_options> inspect_opts;
  try {
    inspect_opts = grok::inspect_settings(inspect, cfg);
  } catch (const std::invalid_argument& e) {
    std::cerr << "grok: " << e.what() << "\n";
    return 2;
  }
  opts.insecure = insecure || cfg.insecure;
  opts.heartbeat_interval = cfg.heartbeat_interval;
  opts.heartbeat_timeout = cfg.heartbeat_timeout;
  opts.proxy = !proxy.empty() ? proxy : cfg.proxy;
  if (!proxy.empty()) {
    try {
      grok::check_proxy_url(proxy);
    } catch (const std::invalid_argument& e) {
      std::cerr << "grok: --proxy: " << e.what() << "\n";
      return 2;
    }
  }
  if (ca_file.empty()) ca_file = cfg.ca;
  if (!ca_file.empty()) {
    try {
      opts.ca_pem = grok::read_file(ca_file);
    } catch (const grok::file_error& e) {
      std::cerr << "grok: --ca: " << e.what() << "\n";
      return 2;
    }
  }
  try {
    grok::setup_logging(log_level.empty() ? cfg.log_level : log_level, "text", "grok");
    grok::route_grpc_logs<spdlog::level::debug>();
    grok::tune_grpc_runtime();
  } catch (const std::exception& e) {
    std::cerr << "grok: --log-level: " << e.what() << "\n";
    return 2;
  }
  spdlog::debug("configuration: {}; server {}, token {}",
                std::filesystem::exists(config_path) ? config_path : config_path + " (not found; built-in defaults)",
                opts.server, grok::mask_token(opts.token));

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

  if (*start) {
    // Each tunnel takes the connection settings worked out above.
    for (auto& t : started) {
      t.server = opts.server;
      t.token = opts.token;
      t.insecure = opts.insecure;
      t.ca_pem = opts.ca_pem;
      t.heartbeat_interval = opts.heartbeat_interval;
      t.heartbeat_timeout = opts.heartbeat_timeout;
      t.proxy = opts.proxy;
    }
    opts = started.front();
  }
  if (inspect_opts) {
    inspect_opts->local_host = opts.local_host;
    inspect_opts->local_port = opts.local_port;
    inspect_opts->proto = opts.tcp ? "tcp" : "http";
    inspect_opts->tunnel_name = opts.subdomain;
    opts.inspect = std::make_shared<grok::inspector>(*inspect_opts);
    try {
      opts.inspect->start();
    } catch (const std::exception& e) {
      std::cerr << "grok: inspector: " << e.what() << " (--inspect ADDR picks another address, --no-inspect turns it off)\n";
      return 1;
    }
  }

  if (*start) {
    started.front().inspect = opts.inspect;
    for (size_t i = 1; i < started.size(); ++i) {
      auto& t = started[i];
      if (!opts.inspect) continue;
      t.inspect = opts.inspect;
      t.inspect_index = opts.inspect->add_tunnel(t.subdomain, t.tcp ? "tcp" : "http", t.local_host, t.local_port);
    }
  }
  grok::client c = *start ? grok::client(std::move(started)) : grok::client(opts);
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
  if (opts.inspect) opts.inspect->stop();
  if (files) files->stop();
  return rc;
}
