#include "tunnel_port_guard.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>

namespace grok::server_detail {

uint64_t tunnel_port_guard::socket_cookie(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) return 0;
  return cookie;
}

void tunnel_port_guard::shutdown_socket(int fd) { ::shutdown(fd, SHUT_RDWR); }

void tunnel_port_guard::configure(uint32_t per_ip, uint32_t total) {
  std::lock_guard lk(mu_);
  per_ip_ = per_ip;
  total_limit_ = total;
}

tunnel_port_guard::verdict tunnel_port_guard::admit(int fd, const std::string& ip, uint16_t port) {
  std::lock_guard lk(mu_);
  auto cookie = cookie_(fd);
  auto refuse = [&](verdict v) {
    auto& counter = v == verdict::per_ip ? refused_per_ip_ : v == verdict::total ? refused_total_ : refused_banned_;
    counter.fetch_add(1, std::memory_order_relaxed);
    if (should_log(ip))
      spdlog::warn("tunnel port: refusing connections from {}: {} (further refusals of it this minute are counted "
                   "in /metrics, not logged)",
                   ip,
                   v == verdict::per_ip ? "it holds tunnels.max_connections_per_ip (" + std::to_string(per_ip_) + ")"
                   : v == verdict::total
                       ? "the server holds tunnels.max_connections (" + std::to_string(total_limit_) + ")"
                       : "it is banned for streams that ended without a Hello");
    return v;
  };
  if (auto b = banned_.find(ip); b != banned_.end()) {
    if (b->second > now_()) return refuse(verdict::banned);
    banned_.erase(b);
  }
  if (total_limit_ != 0 && total_ >= total_limit_) {
    if (now_() - last_prune_all_ >= std::chrono::milliseconds(100)) prune_all();
    if (total_ >= total_limit_) return refuse(verdict::total);
  }
  auto& v = by_ip_[ip];
  // What closed since this address last connected counts against it when it carried no Hello.
  if (auto gone = prune(v); gone > 0 && strike(ip, gone)) return refuse(verdict::banned);
  if (per_ip_ != 0 && v.size() >= per_ip_) return refuse(verdict::per_ip);
  v.push_back({fd, cookie, port, false});
  ++total_;
  return verdict::admitted;
}

void tunnel_port_guard::said_hello(const std::string& ip, uint16_t port) {
  std::lock_guard lk(mu_);
  auto it = by_ip_.find(ip);
  if (it == by_ip_.end()) return;
  for (auto& e : it->second)
    if (e.port == port && e.cookie != 0 && cookie_(e.fd) == e.cookie) e.said_hello = true;
}

bool tunnel_port_guard::abandoned(const std::string& ip) {
  std::lock_guard lk(mu_);
  return strike(ip, 1);
}

bool tunnel_port_guard::strike(const std::string& ip, size_t n) {
  auto now = now_();
  // Bounded like the failed-token limiter: forget ended windows, else start over.
  if (strikes_.size() >= 65536) {
    std::erase_if(strikes_, [&](const auto& kv) { return now - kv.second.start >= abandoned_window; });
    if (strikes_.size() >= 65536) strikes_.clear();
  }
  auto& s = strikes_[ip];
  if (s.count == 0 || now - s.start >= abandoned_window) s = strikes{now, 0};
  s.count += static_cast<unsigned>(std::min<size_t>(n, abandoned_limit));
  if (s.count < abandoned_limit) return false;
  strikes_.erase(ip);
  if (banned_.size() >= 65536) std::erase_if(banned_, [&](const auto& kv) { return kv.second <= now; });
  if (banned_.size() >= 65536) return false;
  banned_[ip] = now + ban_time;
  bans_.fetch_add(1, std::memory_order_relaxed);
  size_t shut = 0;
  if (auto it = by_ip_.find(ip); it != by_ip_.end()) {
    prune(it->second);
    for (auto& e : it->second)
      if (!e.said_hello) {
        shutdown_(e.fd);
        ++shut;
      }
  }
  spdlog::warn("tunnel port: banning {} for {}s: {} streams or connections ended without a Hello within "
               "{}s; {} of its connections closed (ones that sent a Hello are kept)",
               ip, ban_time.count(), abandoned_limit, abandoned_window.count(), shut);
  return true;
}

size_t tunnel_port_guard::active() {
  std::lock_guard lk(mu_);
  prune_all();
  return total_;
}

size_t tunnel_port_guard::prune(std::vector<entry>& v) {
  auto before = v.size();
  size_t without_tunnel = 0;
  std::erase_if(v, [&](const entry& e) {
    bool gone = e.cookie == 0 || cookie_(e.fd) != e.cookie;
    if (gone && !e.said_hello) ++without_tunnel;
    return gone;
  });
  total_ -= before - v.size();
  return without_tunnel;
}

void tunnel_port_guard::prune_all() {
  last_prune_all_ = now_();
  for (auto it = by_ip_.begin(); it != by_ip_.end();) {
    prune(it->second);
    it = it->second.empty() ? by_ip_.erase(it) : std::next(it);
  }
}

bool tunnel_port_guard::should_log(const std::string& ip) {
  auto now = now_();
  if (logged_.size() >= 4096) std::erase_if(logged_, [&](const auto& kv) { return now - kv.second >= std::chrono::minutes(1); });
  if (logged_.size() >= 4096) return false;
  auto [it, fresh] = logged_.try_emplace(ip, now);
  if (fresh) return true;
  if (now - it->second < std::chrono::minutes(1)) return false;
  it->second = now;
  return true;
}

}  // namespace grok::server_detail
