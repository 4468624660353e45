#include "admin_http.hpp"

#include "cluster.hpp"
#include "relay.hpp"

#include <openssl/crypto.h>
#include <unistd.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <cstring>
#include <map>
#include <ctime>
#include <filesystem>

#include "grok/http_text.hpp"
#include "tunnel.hpp"

namespace grok::server_detail {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

/// Resident memory, CPU time, open descriptors and start time of this process (Linux /proc).
void sample_process(metrics::gauges& g) {
  static const long page = ::sysconf(_SC_PAGESIZE);
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    unsigned long size = 0, resident = 0;
    if (std::fscanf(f, "%lu %lu", &size, &resident) == 2) g.resident_bytes = resident * static_cast<uint64_t>(page);
    std::fclose(f);
  }
  if (std::FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[1024];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    // Fields after the command name (which may hold spaces): utime is the 14th, stime 15th, starttime 22nd.
    if (const char* p = std::strrchr(buf, ')')) {
      unsigned long long v[20] = {};
      int got = std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu",
                            &v[0], &v[1], &v[2]);
      if (got == 3 && ticks > 0) {
        g.cpu_seconds = static_cast<double>(v[0] + v[1]) / static_cast<double>(ticks);
        double uptime = 0;
        if (std::FILE* u = std::fopen("/proc/uptime", "r")) {
          if (std::fscanf(u, "%lf", &uptime) != 1) uptime = 0;
          std::fclose(u);
        }
        double boot = static_cast<double>(std::time(nullptr)) - uptime;
        g.start_time_seconds = boot + static_cast<double>(v[2]) / static_cast<double>(ticks);
      }
    }
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec))
    ++g.open_fds;
}

class admin_session : public std::enable_shared_from_this<admin_session> {
 public:
  admin_session(tcp::socket&& s, server_state& state) : stream_(std::move(s)), state_(state) {}

  void start() { do_read(); }

 private:
  void do_read() {
    req_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, req_, [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return self->close();
      self->respond();
    });
  }

  /// No server.api_token, or the request carries it as a bearer token (compared in constant time).
  bool authorized() {
    auto cfg = state_.config();
    if (cfg->api_token.empty()) return true;
    auto it = req_.find(http::field::authorization);
    if (it == req_.end()) return false;
    std::string_view value = it->value();
    if (!value.starts_with("Bearer ")) return false;
    auto given = sha256_digest(value.substr(7)), want = sha256_digest(cfg->api_token);
    return CRYPTO_memcmp(given.data(), want.data(), given.size()) == 0;
  }

  void respond() {
    auto target = std::string(req_.target());
    auto path = target.substr(0, target.find('?'));
    unsigned status = 200;
    std::string type = "text/plain; charset=utf-8";
    std::string body;
    if (req_.method() != http::verb::get && req_.method() != http::verb::head) {
      status = 405;
      body = "method not allowed\n";
    } else if (path != "/healthz" && path != "/readyz" && !authorized()) {
      // Health checks stay open for load balancers; the rest tells about tunnels and traffic.
      status = 401;
      body = "unauthorized: send Authorization: Bearer TOKEN (server.api_token)\n";
    } else if (path == "/healthz") {
      body = "ok\n";
    } else if (path == "/readyz") {
      if (state_.draining.load()) {
        status = 503;
        body = "draining\n";
      } else if (state_.cluster) {
        // Ready when the node can take new names; otherwise it says what it still does.
        auto c = state_.cluster->state();
        status = c.ready ? 200 : 503;
        body = c.ready ? "ready: cluster node " + state_.cluster->node_id() + ", " + std::to_string(c.nodes) +
                             " node(s), " + std::to_string(c.names) + " name(s)\n"
                       : "not ready: cluster " + c.state + " (" + c.detail + "); " +
                             (state_.cluster->serving() ? "serving the tunnels it holds, refusing new names\n"
                                                        : "serving no tunnels\n");
      } else {
        body = "ready\n";
      }
    } else if (path == "/metrics") {
      type = "text/plain; version=0.0.4; charset=utf-8";
      metrics::gauges g;
      auto tunnels = state_.names.tunnels();
      g.tunnels = tunnels.size();
      g.public_connections = state_.public_connections.load();
      g.exchanges_in_flight = state_.exchanges_in_flight.load();
      g.worker_threads = state_.worker_threads.load();
      g.connections_refused_per_ip = state_.per_ip_connections.refused();
      g.tunnel_connections = state_.tunnel_connections.active();
      g.tunnel_refused_per_ip = state_.tunnel_connections.refused_per_ip();
      g.tunnel_refused_total = state_.tunnel_connections.refused_total();
      g.tunnel_refused_banned = state_.tunnel_connections.refused_banned();
      g.tunnel_bans = state_.tunnel_connections.bans();
      std::map<std::string, uint64_t> queued;
      for (auto& t : tunnels) {
        queued[t->name()] += t->queued_bytes();
        if (t->pooled())
          g.pool_members.push_back({t->name(), t->conn_id(), t->peer(), t->accepting(), t->exchanges_in_flight(),
                                    t->exchanges_total()});
      }
      g.queued_bytes.assign(queued.begin(), queued.end());
      sample_process(g);
      state_.stats.keep_tunnels(state_.names.known_names());
      body = state_.stats.render(g, state_.reloads_ok.load(), state_.reloads_failed.load());
      if (state_.relays) {
        // Per peer node: what this node relayed to it for public requests that reached this node.
        auto peers = state_.relays->stats();
        std::string ex, bytes, errors;
        for (const auto& p : peers) {
          auto label = "{peer=\"" + p.node + "\"";
          ex += "grok_relay_exchanges_total" + label + "} " + std::to_string(p.exchanges) + "\n";
          bytes += "grok_relay_bytes_total" + label + ",direction=\"out\"} " + std::to_string(p.bytes_out) + "\n";
          bytes += "grok_relay_bytes_total" + label + ",direction=\"in\"} " + std::to_string(p.bytes_in) + "\n";
          errors += "grok_relay_errors_total" + label + "} " + std::to_string(p.errors) + "\n";
        }
        body += "# HELP grok_relay_exchanges_total Public requests this node relayed to the node holding the tunnel.\n"
                "# TYPE grok_relay_exchanges_total counter\n" + ex +
                "# HELP grok_relay_bytes_total Body bytes relayed: out = request bytes to the peer, in = response bytes from it.\n"
                "# TYPE grok_relay_bytes_total counter\n" + bytes +
                "# HELP grok_relay_errors_total Relayed requests the peer could not take, or lost with a broken relay stream.\n"
                "# TYPE grok_relay_errors_total counter\n" + errors;
      }
    } else if (path == "/api/tunnels") {
      type = "application/json";
      body = "[";
      auto now = clock::now();
      bool first = true;
      for (auto& t : state_.names.tunnels()) {
        if (!first) body += ",";
        first = false;
        auto up = std::chrono::duration_cast<std::chrono::seconds>(now - t->connected_at()).count();
        body += "{\"name\":" + json_string(t->name()) + ",\"public_url\":" + json_string(t->public_url()) +
                ",\"peer\":" + json_string(t->peer()) + ",\"token\":" + json_string(t->token_label()) +
                ",\"connected_seconds\":" + std::to_string(up) +
                ",\"exchanges_in_flight\":" + std::to_string(t->exchanges_in_flight()) +
                ",\"exchanges_total\":" + std::to_string(t->exchanges_total()) +
                ",\"queued_bytes\":" + std::to_string(t->queued_bytes()) +
                ",\"pool\":" + (t->pooled() ? "true" : "false") + ",\"member\":" + std::to_string(t->conn_id()) +
                ",\"healthy\":" + (t->accepting() ? "true" : "false") +
                (state_.cluster ? ",\"node\":" + json_string(state_.cluster->node_id()) : std::string()) + "}";
      }
      // In a cluster: the names other nodes serve, with the node that owns each (requests for them are relayed there).
      if (state_.cluster)
        for (const auto& [name, rec] : state_.cluster->remote_records()) {
          if (!first) body += ",";
          first = false;
          body += "{\"name\":" + json_string(name) + ",\"node\":" + json_string(rec.node) +
                  ",\"token\":" + json_string(rec.token_label) + ",\"pool\":" + (rec.pool ? "true" : "false") +
                  ",\"tcp\":" + (rec.tcp ? "true" : "false") + ",\"remote\":true}";
        }
      body += "]\n";
    } else {
      status = 404;
      body = "not found\n";
    }
    res_ = {};
    res_.result(status);
    res_.version(req_.version());
    res_.set(http::field::content_type, type);
    res_.set(http::field::cache_control, "no-store");
    if (status == 401) res_.set(http::field::www_authenticate, "Bearer");
    res_.keep_alive(req_.keep_alive());
    res_.body() = req_.method() == http::verb::head ? std::string() : std::move(body);
    res_.prepare_payload();
    http::async_write(stream_, res_, [self = shared_from_this()](error_code ec, size_t) {
      if (ec || !self->res_.keep_alive()) return self->close();
      self->do_read();
    });
  }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  server_state& state_;
  beast::flat_buffer buffer_{8192};
  http::request<http::empty_body> req_;
  http::response<http::string_body> res_;
};

}  // namespace

std::shared_ptr<listener> make_admin_listener(server_state& state, const tcp::endpoint& ep) {
  return std::make_shared<listener>(state.ioc(), ep, [&state](tcp::socket&& s) {
    std::make_shared<admin_session>(std::move(s), state)->start();
  });
}

}  // namespace grok::server_detail
