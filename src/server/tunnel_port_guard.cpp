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

void tunnel_port_guard::configure(uint32_t per_ip, uint32_t total) {
  std::lock_guard lk(mu_);
  per_ip_ = per_ip;
  total_limit_ = total;
}

tunnel_port_guard::verdict tunnel_port_guard::admit(int fd, const std::string& ip) {
  std::lock_guard lk(mu_);
  auto cookie = cookie_(fd);
  auto refuse = [&](verdict v) {
    (v == verdict::per_ip ? refused_per_ip_ : refused_total_).fetch_add(1, std::memory_order_relaxed);
    if (should_log(ip))
      spdlog::warn("tunnel port: refusing connections from {}: {} (further refusals of it this minute are counted "
                   "in /metrics, not logged)",
                   ip,
                   v == verdict::per_ip ? "it holds tunnels.max_connections_per_ip (" + std::to_string(per_ip_) + ")"
                                        : "the server holds tunnels.max_connections (" +
                                              std::to_string(total_limit_) + ")");
    return v;
  };
  if (total_limit_ != 0 && total_ >= total_limit_) {
    if (now_() - last_prune_all_ >= std::chrono::milliseconds(100)) prune_all();
    if (total_ >= total_limit_) return refuse(verdict::total);
  }
  auto& v = by_ip_[ip];
  if (per_ip_ != 0 && v.size() >= per_ip_) {
    prune(v);
    if (v.size() >= per_ip_) return refuse(verdict::per_ip);
  }
  v.push_back({fd, cookie});
  ++total_;
  return verdict::admitted;
}

size_t tunnel_port_guard::active() {
  std::lock_guard lk(mu_);
  prune_all();
  return total_;
}

void tunnel_port_guard::prune(std::vector<entry>& v) {
  auto before = v.size();
  std::erase_if(v, [&](const entry& e) { return e.cookie == 0 || cookie_(e.fd) != e.cookie; });
  total_ -= before - v.size();
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
