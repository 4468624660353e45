#pragma once
// Which tunnel serves which name (pure: no I/O; the clock is injected).
//
// The rules: a name is held by at most one live tunnel; the tokens file may
// reserve a name for one token; a name whose tunnel went offline answers 502
// and only its last owner may take it again until tunnels.name_grace has
// passed; each token holds at most its limit of tunnels. Every method takes
// the one lock, so claims from any thread are decided one at a time: of N
// claims of one name at once, exactly one wins.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "grok/tokens.hpp"

namespace grok {

enum class claim_result {
  ok,
  taken,     ///< a live tunnel holds it
  reserved,  ///< the tokens file reserves it for another token
  held,      ///< its last holder went offline less than the grace ago and may reclaim it
  taken_over,  ///< a live tunnel of the same token held it; it is the claimant's now
};

template <class Tunnel>
class tunnel_registry {
 public:
  using clock = std::chrono::steady_clock;
  using now_fn = std::function<clock::time_point()>;

  explicit tunnel_registry(now_fn now = [] { return clock::now(); }) : now_(std::move(now)) {}

  /// The reserved names (name -> token) and the grace a released name is held for.
  void configure(std::unordered_map<std::string, token_digest> reserved, clock::duration grace) {
    std::lock_guard lk(mu_);
    reserved_ = std::move(reserved);
    grace_ = grace;
  }

  /// Takes `name` for `t`, whose token is `owner`. With `displaced`, a name
  /// a live tunnel of the same token holds is taken over: that tunnel is
  /// returned through it (its later release() changes nothing).
  claim_result claim(const std::string& name, std::shared_ptr<Tunnel> t, const token_digest& owner,
                     std::shared_ptr<Tunnel>* displaced = nullptr) {
    std::lock_guard lk(mu_);
    if (auto live = names_.find(name); live != names_.end()) {
      auto holder = owners_.find(name);
      if (!displaced || holder == owners_.end() || holder->second != owner) return claim_result::taken;
      *displaced = std::exchange(live->second, std::move(t));
      return claim_result::taken_over;
    }
    if (auto r = reserved_.find(name); r != reserved_.end() && r->second != owner) return claim_result::reserved;
    if (auto off = offline_.find(name); off != offline_.end()) {
      if (off->second.until > now_() && off->second.owner != owner) return claim_result::held;
      offline_.erase(off);
    }
    names_.emplace(name, std::move(t));
    owners_[name] = owner;
    return claim_result::ok;
  }

  /// Drops `name` if `t` still holds it; then only `owner` may take it
  /// until the grace has passed.
  void release(const std::string& name, const Tunnel* t, const token_digest& owner) {
    std::lock_guard lk(mu_);
    auto it = names_.find(name);
    if (it == names_.end() || it->second.get() != t) return;
    names_.erase(it);
    owners_.erase(name);
    auto now = now_();
    std::erase_if(offline_, [&](const auto& kv) { return kv.second.until <= now; });
    offline_[name] = offline_name{now + grace_, owner};
  }

  /// The token that reserves `name`, if any.
  std::optional<token_digest> reserved_by(const std::string& name) const {
    std::lock_guard lk(mu_);
    auto r = reserved_.find(name);
    if (r == reserved_.end()) return std::nullopt;
    return r->second;
  }

  struct lookup {
    std::shared_ptr<Tunnel> t;
    bool recently_offline = false;  ///< no tunnel, but one held the name within the grace
  };
  lookup find(const std::string& name) const {
    std::lock_guard lk(mu_);
    if (auto it = names_.find(name); it != names_.end()) return {it->second, false};
    auto off = offline_.find(name);
    return {nullptr, off != offline_.end() && off->second.until > now_()};
  }

  /// The first of `candidate`'s names that nobody holds, reserves or may reclaim.
  std::string free_name(const std::function<std::string()>& candidate) const {
    for (;;) {
      auto name = candidate();
      std::lock_guard lk(mu_);
      if (!names_.contains(name) && !offline_.contains(name) && !reserved_.contains(name)) return name;
    }
  }

  /// Counts a tunnel against its token's limit (0 = none); false when the
  /// token already holds that many.
  bool add_token_tunnel(const token_digest& token, unsigned limit) {
    std::lock_guard lk(mu_);
    auto& n = per_token_[token];
    if (limit != 0 && n >= limit) return false;
    ++n;
    return true;
  }
  void remove_token_tunnel(const token_digest& token) {
    std::lock_guard lk(mu_);
    auto it = per_token_.find(token);
    if (it == per_token_.end()) return;
    if (--it->second == 0) per_token_.erase(it);
  }

  std::vector<std::shared_ptr<Tunnel>> tunnels() const {
    std::lock_guard lk(mu_);
    std::vector<std::shared_ptr<Tunnel>> out;
    out.reserve(names_.size());
    for (auto& [_, t] : names_) out.push_back(t);
    return out;
  }
  /// Names with a live tunnel or within their grace: what metrics may still name.
  std::vector<std::string> known_names() const {
    std::lock_guard lk(mu_);
    std::vector<std::string> out;
    out.reserve(names_.size() + offline_.size());
    for (auto& [name, _] : names_) out.push_back(name);
    auto now = now_();
    for (auto& [name, off] : offline_)
      if (off.until > now) out.push_back(name);
    return out;
  }

  size_t size() const {
    std::lock_guard lk(mu_);
    return names_.size();
  }

 private:
  struct offline_name {
    clock::time_point until;
    token_digest owner;
  };
  now_fn now_;
  mutable std::mutex mu_;  // guards everything below
  clock::duration grace_{};
  std::unordered_map<std::string, std::shared_ptr<Tunnel>> names_;
  std::unordered_map<std::string, token_digest> owners_;  ///< the token of each live name's tunnel
  std::unordered_map<std::string, offline_name> offline_;
  std::unordered_map<std::string, token_digest> reserved_;
  std::map<token_digest, unsigned> per_token_;
};

}  // namespace grok
