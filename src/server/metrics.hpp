#pragma once
// Counters behind the admin endpoint's /metrics (Prometheus text format).
// Exchanges are recorded once each, at their end, under one small mutex.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace grok::server_detail {

class metrics {
 public:
  static constexpr std::array<double, 12> buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,   0.25,   0.5,   1.0,  2.5,   10.0};

  /// An HTTP exchange ended. `status` is its status code, or "cut" when the
  /// response was cut short after its head went out.
  void record_exchange(const std::string& tunnel, std::string_view status, std::chrono::nanoseconds duration,
                       uint64_t bytes_in, uint64_t bytes_out) {
    double s = std::chrono::duration<double>(duration).count();
    std::lock_guard lk(mu_);
    ++exchanges_[{tunnel, std::string(status)}];
    for (size_t i = 0; i < buckets.size(); ++i)
      if (s <= buckets[i]) ++bucket_counts_[i];
    ++duration_count_;
    duration_sum_ += s;
    bytes_in_ += bytes_in;
    bytes_out_ += bytes_out;
  }

  /// A connection to a TCP tunnel ended (not an HTTP exchange: no status, no duration histogram).
  void record_tcp_connection(const std::string& tunnel, uint64_t bytes_in, uint64_t bytes_out) {
    std::lock_guard lk(mu_);
    ++tcp_connections_[tunnel];
    bytes_in_ += bytes_in;
    bytes_out_ += bytes_out;
  }

  /// Drops the per-tunnel series of names not in `known` (live, or offline
  /// within their grace): random names must not grow the scrape for ever.
  void keep_tunnels(const std::vector<std::string>& known) {
    auto gone = [&](const std::string& name) { return std::find(known.begin(), known.end(), name) == known.end(); };
    std::lock_guard lk(mu_);
    std::erase_if(exchanges_, [&](const auto& kv) { return gone(kv.first.first); });
    std::erase_if(tcp_connections_, [&](const auto& kv) { return gone(kv.first); });
  }

  /// Gauges sampled at scrape time.
  struct gauges {
    size_t tunnels = 0;
    int64_t public_connections = 0;
    int64_t exchanges_in_flight = 0;
    unsigned worker_threads = 0;
    uint64_t connections_refused_per_ip = 0;  ///< a counter, sampled like the gauges
    uint64_t resident_bytes = 0;              ///< process: resident memory
    double cpu_seconds = 0;                   ///< process: user + system CPU time
    uint64_t open_fds = 0;                    ///< process: open file descriptors
    double start_time_seconds = 0;            ///< process: start, seconds since the epoch
    std::vector<std::pair<std::string, uint64_t>> queued_bytes;  ///< per tunnel name (a pool's summed)
    /// One tunnel of a pool.
    struct member {
      std::string name;
      uint64_t conn_id = 0;
      std::string peer;
      bool healthy = true;
      uint32_t in_flight = 0;
      uint64_t exchanges = 0;
    };
    std::vector<member> pool_members;
    size_t tunnel_connections = 0;            ///< open on the tunnel port
    uint64_t tunnel_refused_per_ip = 0;       ///< counters, sampled like the gauges
    uint64_t tunnel_refused_total = 0;
    uint64_t tunnel_refused_banned = 0;
    uint64_t tunnel_bans = 0;
  };

  std::string render(const gauges& g, uint64_t reloads_ok, uint64_t reloads_failed) const {
    std::string out;
    out.reserve(4096);
    auto line = [&](const std::string& s) {
      out += s;
      out += '\n';
    };
    auto escape = [](const std::string& v) {
      std::string e;
      for (char c : v) {
        if (c == '\\' || c == '"') e += '\\';
        if (c == '\n') {
          e += "\\n";
          continue;
        }
        e += c;
      }
      return e;
    };
    std::lock_guard lk(mu_);
    line("# HELP grok_exchanges_total Public requests answered, by tunnel and status.");
    line("# TYPE grok_exchanges_total counter");
    for (auto& [k, v] : exchanges_)
      line("grok_exchanges_total{tunnel=\"" + escape(k.first) + "\",status=\"" + k.second + "\"} " + std::to_string(v));
    line("# HELP grok_tcp_connections_total Connections to TCP tunnels, by tunnel.");
    line("# TYPE grok_tcp_connections_total counter");
    for (auto& [k, v] : tcp_connections_)
      line("grok_tcp_connections_total{tunnel=\"" + escape(k) + "\"} " + std::to_string(v));
    line("# HELP grok_exchange_duration_seconds Time from request head to the end of the response.");
    line("# TYPE grok_exchange_duration_seconds histogram");
    for (size_t i = 0; i < buckets.size(); ++i) {
      char le[32];
      std::snprintf(le, sizeof le, "%g", buckets[i]);
      line(std::string("grok_exchange_duration_seconds_bucket{le=\"") + le + "\"} " + std::to_string(bucket_counts_[i]));
    }
    line("grok_exchange_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(duration_count_));
    char sum[64];
    std::snprintf(sum, sizeof sum, "%.6f", duration_sum_);
    line(std::string("grok_exchange_duration_seconds_sum ") + sum);
    line("grok_exchange_duration_seconds_count " + std::to_string(duration_count_));
    line("# HELP grok_bytes_in_total Request body bytes received from public clients.");
    line("# TYPE grok_bytes_in_total counter");
    line("grok_bytes_in_total " + std::to_string(bytes_in_));
    line("# HELP grok_bytes_out_total Response body bytes sent to public clients.");
    line("# TYPE grok_bytes_out_total counter");
    line("grok_bytes_out_total " + std::to_string(bytes_out_));
    line("# HELP grok_tunnels_active Connected tunnels.");
    line("# TYPE grok_tunnels_active gauge");
    line("grok_tunnels_active " + std::to_string(g.tunnels));
    line("# HELP grok_public_connections_active Open public HTTP connections.");
    line("# TYPE grok_public_connections_active gauge");
    line("grok_public_connections_active " + std::to_string(g.public_connections));
    line("# HELP grok_exchanges_in_flight Public requests not yet answered in full.");
    line("# TYPE grok_exchanges_in_flight gauge");
    line("grok_exchanges_in_flight " + std::to_string(g.exchanges_in_flight));
    line("# HELP grok_tunnel_queued_bytes Bytes waiting to be written to a tunnel's stream.");
    line("# TYPE grok_tunnel_queued_bytes gauge");
    for (auto& [name, bytes] : g.queued_bytes)
      line("grok_tunnel_queued_bytes{tunnel=\"" + escape(name) + "\"} " + std::to_string(bytes));
    line("# HELP grok_pool_member_healthy Whether a pool member's local service passes its health check (1) or not (0).");
    line("# TYPE grok_pool_member_healthy gauge");
    auto member_labels = [&](const gauges::member& m) {
      return "{tunnel=\"" + escape(m.name) + "\",member=\"" + std::to_string(m.conn_id) + "\",peer=\"" +
             escape(m.peer) + "\"} ";
    };
    for (auto& m : g.pool_members) line("grok_pool_member_healthy" + member_labels(m) + (m.healthy ? "1" : "0"));
    line("# HELP grok_pool_member_exchanges_in_flight Public requests in flight on a pool member.");
    line("# TYPE grok_pool_member_exchanges_in_flight gauge");
    for (auto& m : g.pool_members)
      line("grok_pool_member_exchanges_in_flight" + member_labels(m) + std::to_string(m.in_flight));
    line("# HELP grok_pool_member_exchanges_total Public requests given to a pool member since it joined.");
    line("# TYPE grok_pool_member_exchanges_total counter");
    for (auto& m : g.pool_members)
      line("grok_pool_member_exchanges_total" + member_labels(m) + std::to_string(m.exchanges));
    line("# HELP grok_tunnel_connections_active Open connections to the tunnel (gRPC) port.");
    line("# TYPE grok_tunnel_connections_active gauge");
    line("grok_tunnel_connections_active " + std::to_string(g.tunnel_connections));
    line("# HELP grok_tunnel_connections_refused_total Tunnel-port connections closed at accept, by the limit they hit.");
    line("# TYPE grok_tunnel_connections_refused_total counter");
    line("grok_tunnel_connections_refused_total{reason=\"per_ip\"} " + std::to_string(g.tunnel_refused_per_ip));
    line("grok_tunnel_connections_refused_total{reason=\"total\"} " + std::to_string(g.tunnel_refused_total));
    line("grok_tunnel_connections_refused_total{reason=\"banned\"} " + std::to_string(g.tunnel_refused_banned));
    line("# HELP grok_tunnel_port_bans_total Addresses banned from the tunnel port for streams that ended without a Hello.");
    line("# TYPE grok_tunnel_port_bans_total counter");
    line("grok_tunnel_port_bans_total " + std::to_string(g.tunnel_bans));
    line("# HELP grok_public_connections_refused_total Public connections closed at accept: their IP was at "
         "server.max_connections_per_ip.");
    line("# TYPE grok_public_connections_refused_total counter");
    line("grok_public_connections_refused_total " + std::to_string(g.connections_refused_per_ip));
    line("# HELP grok_worker_threads Threads running the public HTTP io_context.");
    line("# TYPE grok_worker_threads gauge");
    line("grok_worker_threads " + std::to_string(g.worker_threads));
    line("# HELP grok_reloads_total Configuration reloads (SIGHUP), by result.");
    line("# TYPE grok_reloads_total counter");
    line("grok_reloads_total{result=\"ok\"} " + std::to_string(reloads_ok));
    line("grok_reloads_total{result=\"failed\"} " + std::to_string(reloads_failed));
    line("# HELP grok_auth_failures_total Tunnel clients refused for an invalid token.");
    line("# TYPE grok_auth_failures_total counter");
    line("grok_auth_failures_total " + std::to_string(auth_failures.load(std::memory_order_relaxed)));
    line("# HELP grok_build_info The running grok-server's version.");
    line("# TYPE grok_build_info gauge");
    line("grok_build_info{version=\"" GROK_VERSION "\"} 1");
    char cpu[64], start[64];
    std::snprintf(cpu, sizeof cpu, "%.2f", g.cpu_seconds);
    std::snprintf(start, sizeof start, "%.2f", g.start_time_seconds);
    line("# HELP process_resident_memory_bytes Resident memory size in bytes.");
    line("# TYPE process_resident_memory_bytes gauge");
    line("process_resident_memory_bytes " + std::to_string(g.resident_bytes));
    line("# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.");
    line("# TYPE process_cpu_seconds_total counter");
    line(std::string("process_cpu_seconds_total ") + cpu);
    line("# HELP process_open_fds Number of open file descriptors.");
    line("# TYPE process_open_fds gauge");
    line("process_open_fds " + std::to_string(g.open_fds));
    line("# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.");
    line("# TYPE process_start_time_seconds gauge");
    line(std::string("process_start_time_seconds ") + start);
    return out;
  }

  std::atomic<uint64_t> auth_failures{0};

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> exchanges_;
  std::map<std::string, uint64_t> tcp_connections_;
  std::array<uint64_t, buckets.size()> bucket_counts_{};
  uint64_t duration_count_ = 0;
  double duration_sum_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
};

}  // namespace grok::server_detail
