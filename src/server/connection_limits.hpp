#pragma once
// Public connections open at once per source IP (server.max_connections_per_ip),
// shared by the HTTP and HTTPS listeners. Accept takes a slot; the session
// holds it and gives it back when it is destroyed, on whatever thread.

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace grok::server_detail {

class ip_connection_limiter {
 public:
  /// One open connection counted against its IP; movable, releases once.
  class slot {
   public:
    slot() = default;
    slot(ip_connection_limiter* owner, std::string ip) : owner_(owner), ip_(std::move(ip)) {}
    slot(slot&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), ip_(std::move(o.ip_)) {}
    slot& operator=(slot&& o) noexcept {
      if (this != &o) {
        release();
        owner_ = std::exchange(o.owner_, nullptr);
        ip_ = std::move(o.ip_);
      }
      return *this;
    }
    slot(const slot&) = delete;
    slot& operator=(const slot&) = delete;
    ~slot() { release(); }

   private:
    void release() {
      if (owner_) owner_->release(ip_);
      owner_ = nullptr;
    }
    ip_connection_limiter* owner_ = nullptr;
    std::string ip_;
  };

  /// A slot for `ip`, or nullopt when it already holds `limit` (0 = unlimited).
  std::optional<slot> try_acquire(const std::string& ip, uint32_t limit) {
    if (limit == 0) return slot{};
    {
      std::lock_guard lk(mu_);
      auto& n = open_[ip];
      if (n < limit) {
        ++n;
        return slot{this, ip};
      }
    }
    refused_.fetch_add(1, std::memory_order_relaxed);
    log_refused(ip, limit);
    return std::nullopt;
  }

  /// Connections closed at accept because their IP was at its limit.
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  /// Open connections counted for `ip` (tests, metrics).
  uint32_t open(const std::string& ip) const {
    std::lock_guard lk(mu_);
    auto it = open_.find(ip);
    return it == open_.end() ? 0 : it->second;
  }

 private:
  void release(const std::string& ip) {
    std::lock_guard lk(mu_);
    auto it = open_.find(ip);
    if (it == open_.end()) return;
    if (--it->second == 0) open_.erase(it);
  }

  /// At most one line a second: a flood must not become a flood of logs.
  void log_refused(const std::string& ip, uint32_t limit) {
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_log_.load(std::memory_order_relaxed);
    if (now - last < std::chrono::nanoseconds(std::chrono::seconds(1)).count()) return;
    if (!last_log_.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
    spdlog::debug("remote={}: over server.max_connections_per_ip ({}), connection closed ({} refused so far)", ip,
                  limit, refused());
  }

  mutable std::mutex mu_;  // guards open_
  std::unordered_map<std::string, uint32_t> open_;
  std::atomic<uint64_t> refused_{0};
  std::atomic<int64_t> last_log_{std::numeric_limits<int64_t>::min() / 2};
};

}  // namespace grok::server_detail
