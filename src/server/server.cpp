#include "grok/server.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <list>
#include <stdexcept>
#include <thread>

#include "admin_http.hpp"
#include "cluster.hpp"
#include "relay.hpp"
#include "grok/log.hpp"
#include "http_session.hpp"
#include "tunnel.hpp"
#include "tunnel_service.hpp"

namespace grok {

using namespace server_detail;

namespace {

/// Loads the certificate chain and key; throws naming the file that failed.
std::shared_ptr<asio::ssl::context> make_tls_context(const server_config& c) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                   asio::ssl::context::single_dh_use);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(c.tls_cert_file, ec);
  if (ec) throw std::runtime_error("tls.cert_file " + c.tls_cert_file + ": " + ec.message());
  ctx->use_private_key_file(c.tls_key_file, asio::ssl::context::pem, ec);
  if (ec) throw std::runtime_error("tls.key_file " + c.tls_key_file + ": " + ec.message());
  return ctx;
}

// A worker that runs a retire token leaves the pool; which worker does so
// does not matter, they are interchangeable.
thread_local bool retire_this_worker = false;
}  // namespace

struct server::impl {
  impl(std::shared_ptr<const server_config> c, unsigned n, std::string path)
      : cfg(std::move(c)), config_path(std::move(path)), initial_workers(n == 0 ? 1 : n),
        state(ioc, cfg), service(state) {}

  struct worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  std::shared_ptr<const server_config> cfg;  // guarded by the caller: start/reload/stop run on the main thread
  std::string config_path;
  unsigned initial_workers;
  // No concurrency hint: the pool grows and shrinks on reload, and a hint of 1
  // would let Asio keep work in a thread-private queue no other worker is woken for.
  asio::io_context ioc;
  server_state state;
  tunnel_service service;
  std::shared_ptr<server_detail::listener> public_http;
  std::shared_ptr<server_detail::listener> public_https;
  std::shared_ptr<server_detail::listener> admin;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::list<worker> workers;  // list: a worker's address stays put while its thread runs
  unsigned target_workers = 0;
  uint16_t http_port = 0;
  uint16_t https_port = 0;
  uint16_t grpc_port = 0;
  uint16_t api_port = 0;
  bool stopped = false;
  std::atomic<int64_t> last_probe_ns{0};

  void spawn_worker() {
    auto& w = workers.emplace_back();
    w.thread = std::thread([this, &w] {
      pthread_setname_np(pthread_self(), "grok-worker");  // top -H, perf and the watchdog test find it by name
      retire_this_worker = false;
      while (!retire_this_worker && !ioc.stopped()) ioc.run_one();
      w.done = true;
    });
  }

  void reap_workers() {
    for (auto it = workers.begin(); it != workers.end();) {
      if (it->done) {
        it->thread.join();
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
  }
};

server::server(std::shared_ptr<const server_config> cfg, unsigned workers, std::string config_path)
    : impl_(std::make_unique<impl>(std::move(cfg), workers, std::move(config_path))) {}

server::~server() { stop(); }

void server::start() {
  auto& c = *impl_->cfg;
  try {
    asio::ip::tcp::endpoint ep(asio::ip::make_address(c.bind_address), c.http_port);
    impl_->public_http = make_public_listener(impl_->state, ep, false);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen for public HTTP on " + c.bind_address + ":" +
                             std::to_string(c.http_port) + ": " + e.what());
  }
  impl_->http_port = impl_->public_http->local_endpoint().port();
  impl_->state.public_port = impl_->http_port;
  if (!c.tls_cert_file.empty()) impl_->state.set_tls_context(make_tls_context(c));
  if (c.https_port != 0) {
    try {
      asio::ip::tcp::endpoint ep(asio::ip::make_address(c.bind_address), c.https_port);
      impl_->public_https = make_public_listener(impl_->state, ep, true);
    } catch (const std::exception& e) {
      throw std::runtime_error("cannot listen for public HTTPS on " + c.bind_address + ":" +
                               std::to_string(c.https_port) + ": " + e.what());
    }
    impl_->https_port = impl_->public_https->local_endpoint().port();
  }

  if (c.api_port != 0) {
    try {
      asio::ip::tcp::endpoint ep(asio::ip::make_address(c.api_address), c.api_port);
      impl_->admin = make_admin_listener(impl_->state, ep);
    } catch (const std::exception& e) {
      throw std::runtime_error("cannot listen for the admin endpoint on " + c.api_address + ":" +
                               std::to_string(c.api_port) + ": " + e.what());
    }
    impl_->api_port = impl_->admin->local_endpoint().port();
  }

  if (c.cluster) {
    auto& state = impl_->state;
    cluster_node::hooks hooks;
    hooks.fence = [&state](const std::string& why) {
      for (auto& t : state.names.tunnels()) t->shutdown(why + "; reconnect");
    };
    hooks.held_locally = [&state](const std::string& name) { return !state.names.members(name).empty(); };
    state.cluster = std::make_shared<cluster_node>(impl_->cfg, std::move(hooks));
    state.cluster->start();
    state.relays = std::make_shared<relay_hub>(state);
  }
  impl_->grpc_port = impl_->service.start(c);
  impl_->work.emplace(impl_->ioc.get_executor());
  impl_->public_http->start();
  if (impl_->public_https) impl_->public_https->start();
  if (impl_->admin) impl_->admin->start();
  resize_workers(impl_->initial_workers);
  spdlog::info("grok-server ready: http={}:{} grpc={}:{} api={} https={} grpc_tls={} domain={} workers={}",
               c.bind_address, impl_->http_port, c.grpc_address, impl_->grpc_port,
               impl_->admin ? c.api_address + ":" + std::to_string(impl_->api_port) : std::string("off"),
               impl_->public_https ? c.bind_address + ":" + std::to_string(impl_->https_port) : std::string("off"),
               !c.tls_cert_file.empty() && c.tls_grpc ? "on" : "off", c.domain, impl_->target_workers);
}

void server::resize_workers(unsigned n) {
  if (n == 0) n = auto_worker_count();
  impl_->reap_workers();
  unsigned current = impl_->target_workers;
  if (n > current) {
    for (unsigned i = current; i < n; ++i) impl_->spawn_worker();
  } else if (n < current) {
    for (unsigned i = n; i < current; ++i) asio::post(impl_->ioc, [] { retire_this_worker = true; });
  }
  if (n != current && current != 0) spdlog::info("worker pool: {} -> {} threads", current, n);
  unsigned hw = std::thread::hardware_concurrency();
  if (n != current && hw != 0 && n > hw)
    spdlog::warn("worker pool: {} threads on {} hardware threads; past the core count more workers only add "
                 "hand-offs and make grok-server slower (README: \"Does adding workers make grok faster?\")",
                 n, hw);
  impl_->target_workers = n;
  impl_->state.worker_threads = n;
}

std::string server::reload() {
  std::shared_ptr<server_config> next;
  unsigned workers = 0;
  try {
    next = std::make_shared<server_config>(load_server_config(impl_->config_path));
    workers = effective_worker_count(*next, std::getenv("GROK_WORKER_POOL_SIZE"));
    if (auto problems = unsafe_settings(*next); !problems.empty()) throw std::runtime_error(problems.front());
    set_log_level(next->log_level);
    // Certificates are re-read so a renewed one applies to new connections.
    if (!next->tls_cert_file.empty()) impl_->state.set_tls_context(make_tls_context(*next));
  } catch (const std::exception& e) {
    impl_->state.reloads_failed++;
    spdlog::error("reload refused, the running configuration stays: {}", e.what());
    return e.what();
  }
  const auto& old = *impl_->cfg;
  // Listeners are bound once; their settings need a restart.
  auto keep = [&](auto server_config::*field, const char* key) {
    if ((*next).*field != old.*field) {
      spdlog::warn("reload: {} changed; it takes effect at the next restart", key);
      (*next).*field = old.*field;
    }
  };
  keep(&server_config::domain, "server.domain");
  keep(&server_config::bind_address, "server.bind_address");
  keep(&server_config::http_port, "server.http_port");
  keep(&server_config::grpc_address, "server.grpc_address");
  keep(&server_config::grpc_port, "server.grpc_port");
  keep(&server_config::api_address, "server.api_address");
  keep(&server_config::api_port, "server.api_port");
  keep(&server_config::https_port, "server.https_port");
  keep(&server_config::tls_grpc, "tls.grpc");
  keep(&server_config::heartbeat_interval, "tunnels.heartbeat_interval");
  keep(&server_config::heartbeat_timeout, "tunnels.heartbeat_timeout");
  keep(&server_config::max_streams_per_connection, "tunnels.max_streams_per_connection");
  keep(&server_config::log_format, "logging.format");
  keep(&server_config::cluster, "the cluster section");
  keep(&server_config::etcd_endpoints, "cluster.etcd_endpoints");
  keep(&server_config::node_id, "cluster.node_id");
  keep(&server_config::advertise, "cluster.advertise");
  keep(&server_config::lease_ttl, "cluster.lease_ttl");
  keep(&server_config::cluster_prefix, "cluster.prefix");
  keep(&server_config::cluster_ca_file, "cluster.tls.ca_file");
  keep(&server_config::cluster_cert_file, "cluster.tls.cert_file");
  keep(&server_config::cluster_key_file, "cluster.tls.key_file");
  keep(&server_config::cluster_secret, "cluster.secret");
  impl_->cfg = next;
  impl_->state.set_config(next);
  for (auto& t : impl_->state.names.tunnels()) t->apply_config(next);
  resize_workers(workers);
  impl_->state.reloads_ok++;
  spdlog::info("reloaded {}: {} token(s), response_timeout={}ms, max_exchanges={}, workers={}", impl_->config_path,
               next->token_table.size(), next->response_timeout.count(), next->max_exchanges, impl_->target_workers);
  return {};
}

void server::drain() {
  if (impl_->stopped || !impl_->service.started()) return;
  auto deadline = std::chrono::steady_clock::now() + impl_->cfg->drain_timeout;
  impl_->state.draining = true;
  auto tunnels = impl_->state.names.tunnels();
  for (auto& t : tunnels) t->go_away("server shutting down");
  auto in_flight = impl_->state.exchanges_in_flight.load();
  spdlog::info("draining: {} request(s) in flight, {} tunnel(s); waiting up to {}ms", in_flight, tunnels.size(),
               impl_->cfg->drain_timeout.count());
  // Exchanges end on the worker threads; this thread only watches the count.
  while (impl_->state.exchanges_in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto left = impl_->state.exchanges_in_flight.load();
  if (left > 0)
    spdlog::warn("drain deadline reached with {} request(s) in flight; closing them", left);
  else
    spdlog::info("drained: no requests in flight");
  stop();
}

void server::stop() {
  if (impl_->stopped || !impl_->service.started()) return;
  impl_->stopped = true;
  spdlog::info("grok-server stopping");
  if (impl_->public_http) impl_->public_http->stop();
  if (impl_->public_https) impl_->public_https->stop();
  if (impl_->admin) impl_->admin->stop();
  for (auto& t : impl_->state.names.tunnels()) t->shutdown("server shutting down");
  if (impl_->state.relays) impl_->state.relays->stop();
  // This node's names are free at once for the clients that reconnect to another node.
  if (impl_->state.cluster) impl_->state.cluster->stop();
  // Streams end when their tunnels call Finish on the worker pool: it runs until they have.
  impl_->service.stop(std::chrono::seconds(5), std::chrono::seconds(5));
  if (impl_->state.relays) impl_->state.relays->join();
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& w : impl_->workers) w.thread.join();
  impl_->workers.clear();
}

bool server::responsive(std::chrono::milliseconds within) {
  auto now = std::chrono::steady_clock::now().time_since_epoch();
  asio::post(impl_->ioc, [this] {
    impl_->last_probe_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  });
  auto last = std::chrono::nanoseconds(impl_->last_probe_ns.load());
  return last.count() != 0 && now - last < within;
}

uint16_t server::http_port() const { return impl_->http_port; }
uint16_t server::grpc_port() const { return impl_->grpc_port; }
uint16_t server::api_port() const { return impl_->api_port; }
unsigned server::workers() const { return impl_->target_workers; }

}  // namespace grok
