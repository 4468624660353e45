#pragma once
// Connections to the tunnel (gRPC) port per source IP and in total
// (tunnels.max_connections_per_ip, tunnels.max_connections), checked the
// moment gRPC accepts a socket, before any TLS or HTTP/2 byte is read.
//
// gRPC owns these sockets and closes them without telling anyone, so the
// guard keeps each one as (fd, socket cookie) and forgets it once that fd no
// longer names the same socket (closed, or reused for another): checked
// lazily, for an address when it reaches its limit and for all of them
// when the total does (at most every 100 ms) or when /metrics asks.
// A refused socket is shut down at once; gRPC then reads EOF and drops it.
//
// An address whose streams or connections keep ending before a Hello
// (a rapid-reset flood, a PING flood reconnecting after each GOAWAY,
// connections opened and dropped) is banned for a while: its connections
// that sent no Hello are shut down, and new ones refused. Its closed
// connections are noticed when it connects again.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace grok::server_detail {

class tunnel_port_guard {
 public:
  using clock = std::chrono::steady_clock;
  /// The cookie of the socket `fd` names now, or 0 when it names none.
  using cookie_fn = std::function<uint64_t(int fd)>;

  using shutdown_fn = std::function<void(int fd)>;

  enum class verdict { admitted, per_ip, total, banned };

  /// Streams or connections ended without a Hello that ban an address,
  /// per window; how long a ban lasts.
  static constexpr unsigned abandoned_limit = 16;
  static constexpr std::chrono::seconds abandoned_window{10};
  static constexpr std::chrono::seconds ban_time{60};

  explicit tunnel_port_guard(cookie_fn cookie = socket_cookie, std::function<clock::time_point()> now = clock::now,
                             shutdown_fn shut = shutdown_socket)
      : cookie_(std::move(cookie)), now_(std::move(now)), shutdown_(std::move(shut)) {}

  /// Limits in force (0 = none); reloadable.
  void configure(uint32_t per_ip, uint32_t total);

  /// A socket gRPC just accepted from `ip`:`port`.
  verdict admit(int fd, const std::string& ip, uint16_t port = 0);
  /// The connection from `ip`:`port` carried a Hello: it is no strike when it
  /// closes, and a ban of its address spares it.
  void said_hello(const std::string& ip, uint16_t port);
  /// A stream from `ip` ended before its Hello. True when that banned the address.
  bool abandoned(const std::string& ip);

  /// Sockets open now (prunes what closed).
  size_t active();
  uint64_t refused_per_ip() const { return refused_per_ip_.load(std::memory_order_relaxed); }
  uint64_t refused_total() const { return refused_total_.load(std::memory_order_relaxed); }
  uint64_t refused_banned() const { return refused_banned_.load(std::memory_order_relaxed); }
  uint64_t bans() const { return bans_.load(std::memory_order_relaxed); }

  /// SO_COOKIE of `fd`, 0 if it is not an open socket.
  static uint64_t socket_cookie(int fd);
  /// shutdown(fd, SHUT_RDWR).
  static void shutdown_socket(int fd);

 private:
  struct entry {
    int fd;
    uint64_t cookie;
    uint16_t port;
    bool said_hello;
  };
  struct strikes {
    clock::time_point start;
    unsigned count = 0;
  };
  /// mu_ held: drops the entries of `v` whose socket is gone; returns how
  /// many of those never carried a Hello.
  size_t prune(std::vector<entry>& v);
  /// mu_ held: `n` strikes against `ip`; bans it at the limit (true then).
  bool strike(const std::string& ip, size_t n);
  /// mu_ held.
  void prune_all();
  /// mu_ held: whether a refusal of `ip` is logged (once a minute per address).
  bool should_log(const std::string& ip);

  cookie_fn cookie_;
  std::function<clock::time_point()> now_;
  shutdown_fn shutdown_;
  std::mutex mu_;  // guards everything below
  uint32_t per_ip_ = 0;
  uint32_t total_limit_ = 0;
  size_t total_ = 0;
  clock::time_point last_prune_all_{};
  std::unordered_map<std::string, std::vector<entry>> by_ip_;
  std::unordered_map<std::string, clock::time_point> logged_;
  std::unordered_map<std::string, strikes> strikes_;
  std::unordered_map<std::string, clock::time_point> banned_;  ///< address -> ban end
  std::atomic<uint64_t> refused_per_ip_{0};
  std::atomic<uint64_t> refused_total_{0};
  std::atomic<uint64_t> refused_banned_{0};
  std::atomic<uint64_t> bans_{0};
};

}  // namespace grok::server_detail
