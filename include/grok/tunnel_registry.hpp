#pragma once
// Which tunnels serve which name (pure: no I/O; the clock is injected).
//
// The rules: a name is held by one live tunnel, or by a pool of them that
// asked to share it (`grok --pool`); the tokens file may reserve a name for
// one token (and the tokens of its pool); a name whose last tunnel went
// offline answers 502 and only its last owner may take it again until
// tunnels.name_grace has passed; each token holds at most its limit of
// tunnels. Every method takes the one lock, so claims from any thread are
// decided one at a time: of N claims of one name at once, exactly one wins
// (or, for a pool, every claim that may join does).
//
// Tunnel needs `bool accepting() const` (healthy: may be given a new
// exchange) and `unsigned load() const` (exchanges in flight).

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
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
  joined,      ///< the claimant joined the name's pool
  taken,       ///< a live tunnel holds it
  reserved,    ///< the tokens file reserves it for another token
  held,        ///< its last holder went offline less than the grace ago and may reclaim it
  taken_over,  ///< a live tunnel of the same token held it; it is the claimant's now
  not_a_pool,  ///< a pool member asked for a name a tunnel holds alone
  pooled,      ///< a lone tunnel asked for a name a pool holds
  other_pool,  ///< the name's pool belongs to another token (or pool label)
  pool_full,   ///< the pool has its limit of members
  same_client, ///< another stream of the same client holds it here
};

/// Who claims a name.
struct claimant {
  token_digest token{};     ///< the token's digest
  token_digest pool_key{};  ///< who may share a pool: the pool label's key, else the token
  bool pool = false;        ///< asks to share the name with the other members of its pool
  std::string client;       ///< the client process's id (Hello.client_id); empty: unknown
  uint32_t stream = 0;      ///< which of that client's streams (Hello.stream)

  claimant() = default;
  claimant(const token_digest& t) : token(t), pool_key(t) {}  // NOLINT: a lone tunnel of a token
  claimant(const token_digest& t, const token_digest& key, bool in_pool) : token(t), pool_key(key), pool(in_pool) {}
};

/// A reserved name: its token, and the key of that token's pool.
struct name_reservation {
  token_digest token{};
  token_digest pool_key{};
  name_reservation() = default;
  name_reservation(const token_digest& t) : token(t), pool_key(t) {}  // NOLINT: a token without a pool
  name_reservation(const token_digest& t, const token_digest& key) : token(t), pool_key(key) {}
  /// Whether `c` may hold the name.
  bool allows(const claimant& c) const { return c.token == token || (c.pool && c.pool_key == pool_key); }
};

template <class Tunnel>
class tunnel_registry {
 public:
  using clock = std::chrono::steady_clock;
  using now_fn = std::function<clock::time_point()>;

  explicit tunnel_registry(now_fn now = [] { return clock::now(); }) : now_(std::move(now)) {}

  /// The reserved names, the grace a released name is held for, and the
  /// largest pool.
  void configure(std::unordered_map<std::string, name_reservation> reserved, clock::duration grace,
                 unsigned max_pool_members = 64) {
    std::lock_guard lk(mu_);
    reserved_ = std::move(reserved);
    grace_ = grace;
    max_pool_members_ = max_pool_members;
  }

  /// Takes `name` for `t`, or joins its pool when `who.pool`. With
  /// `displaced`, a name a live lone tunnel of the same token holds is taken
  /// over: that tunnel is returned through it (its later release() changes
  /// nothing). `members`, if given, receives the pool's size after a join.
  claim_result claim(const std::string& name, std::shared_ptr<Tunnel> t, const claimant& who,
                     std::shared_ptr<Tunnel>* displaced = nullptr, size_t* members = nullptr) {
    std::lock_guard lk(mu_);
    if (auto live = names_.find(name); live != names_.end()) {
      auto& e = live->second;
      if (who.pool || e.pool) {
        if (!who.pool) return claim_result::pooled;
        if (!e.pool) return claim_result::not_a_pool;
        if (e.pool_key != who.pool_key) return claim_result::other_pool;
        if (e.members.size() >= max_pool_members_) return claim_result::pool_full;
        e.members.push_back(std::move(t));
        if (members) *members = e.members.size();
        return claim_result::joined;
      }
      // Two streams of one client reaching one server: the first keeps it.
      if (!who.client.empty() && who.client == e.client && who.stream != e.stream) return claim_result::same_client;
      if (!displaced || e.owner != who.token) return claim_result::taken;
      *displaced = std::exchange(e.members.front(), std::move(t));
      e.client = who.client;
      e.stream = who.stream;
      return claim_result::taken_over;
    }
    if (auto r = reserved_.find(name); r != reserved_.end() && !r->second.allows(who)) return claim_result::reserved;
    if (auto off = offline_.find(name); off != offline_.end()) {
      const auto& o = off->second;
      bool owner = o.owner == who.token || (o.pool && who.pool && o.pool_key == who.pool_key);
      if (o.until > now_() && !owner) return claim_result::held;
      offline_.erase(off);
    }
    entry e;
    e.members.push_back(std::move(t));
    e.owner = who.token;
    e.pool_key = who.pool_key;
    e.pool = who.pool;
    e.client = who.client;
    e.stream = who.stream;
    names_.emplace(name, std::move(e));
    if (members) *members = 1;
    return claim_result::ok;
  }
  claim_result claim(const std::string& name, std::shared_ptr<Tunnel> t, const token_digest& owner,
                     std::shared_ptr<Tunnel>* displaced = nullptr) {
    return claim(name, std::move(t), claimant(owner), displaced);
  }

  /// Drops `t` from `name`. When it was the last tunnel there, only its
  /// owner (or its pool) may take the name until the grace has passed, and
  /// the answer is true. Without `grace` the name is free at once (a claim
  /// that did not go through).
  bool release(const std::string& name, const Tunnel* t, bool grace = true) {
    std::lock_guard lk(mu_);
    auto it = names_.find(name);
    if (it == names_.end()) return false;
    auto& m = it->second.members;
    auto pos = std::find_if(m.begin(), m.end(), [t](const auto& p) { return p.get() == t; });
    if (pos == m.end()) return false;
    m.erase(pos);
    if (!m.empty()) return false;
    auto now = now_();
    std::erase_if(offline_, [&](const auto& kv) { return kv.second.until <= now; });
    if (grace) offline_[name] = offline_name{now + grace_, it->second.owner, it->second.pool_key, it->second.pool};
    names_.erase(it);
    return true;
  }

  /// The reservation of `name`, if any.
  std::optional<name_reservation> reservation(const std::string& name) const {
    std::lock_guard lk(mu_);
    auto r = reserved_.find(name);
    if (r == reserved_.end()) return std::nullopt;
    return r->second;
  }
  /// The token that reserves `name`, if any.
  std::optional<token_digest> reserved_by(const std::string& name) const {
    auto r = reservation(name);
    if (!r) return std::nullopt;
    return r->token;
  }

  struct lookup {
    std::shared_ptr<Tunnel> t;
    bool recently_offline = false;  ///< no tunnel, but one held the name within the grace
    bool unhealthy = false;         ///< tunnels hold the name, but none is accepting (health checks fail)
    size_t members = 0;             ///< the tunnels serving the name
  };
  /// The tunnel for `name`'s next exchange: of its accepting members, the
  /// one with the fewest exchanges in flight, taking turns among equals.
  /// `except` is never chosen (a retry goes elsewhere).
  lookup find(const std::string& name, const Tunnel* except = nullptr) {
    std::lock_guard lk(mu_);
    if (auto it = names_.find(name); it != names_.end()) {
      auto t = pick(it->second, except);
      return {t, false, t == nullptr && except == nullptr, it->second.members.size()};
    }
    auto off = offline_.find(name);
    return {nullptr, off != offline_.end() && off->second.until > now_(), false, 0};
  }

  /// What the tunnels of `name` share (a TCP pool's public port), made by
  /// `make` for the first of them. nullptr when nothing holds the name.
  std::shared_ptr<void> shared(const std::string& name, const std::function<std::shared_ptr<void>()>& make) {
    std::lock_guard lk(mu_);
    auto it = names_.find(name);
    if (it == names_.end()) return nullptr;
    if (!it->second.shared) it->second.shared = make();
    return it->second.shared;
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

  /// Every live tunnel, pool members included.
  std::vector<std::shared_ptr<Tunnel>> tunnels() const {
    std::lock_guard lk(mu_);
    std::vector<std::shared_ptr<Tunnel>> out;
    out.reserve(names_.size());
    for (auto& [_, e] : names_) out.insert(out.end(), e.members.begin(), e.members.end());
    return out;
  }
  /// The tunnels serving `name` (one, or a pool's members in the order they joined).
  std::vector<std::shared_ptr<Tunnel>> members(const std::string& name) const {
    std::lock_guard lk(mu_);
    auto it = names_.find(name);
    if (it == names_.end()) return {};
    return it->second.members;
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
  struct entry {
    std::vector<std::shared_ptr<Tunnel>> members;  ///< one, or a pool's members
    token_digest owner{};     ///< the token of the tunnel that took the name
    token_digest pool_key{};  ///< who may join (pools only)
    bool pool = false;
    std::string client;            ///< a lone tunnel's client and stream (claimant::client, stream)
    uint32_t stream = 0;
    size_t next = 0;               ///< where the next turn starts
    std::shared_ptr<void> shared;  ///< see shared()
  };
  struct offline_name {
    clock::time_point until;
    token_digest owner;
    token_digest pool_key;
    bool pool = false;
  };

  static std::shared_ptr<Tunnel> pick(entry& e, const Tunnel* except) {
    const size_t n = e.members.size();
    if (n == 1) {
      auto& only = e.members.front();
      return only.get() != except && only->accepting() ? only : nullptr;
    }
    if (e.next >= n) e.next = 0;  // members left since
    size_t best = n;
    unsigned best_load = std::numeric_limits<unsigned>::max();
    for (size_t i = 0; i < n; ++i) {
      size_t k = e.next + i < n ? e.next + i : e.next + i - n;
      const auto& m = e.members[k];
      if (m.get() == except || !m->accepting()) continue;
      unsigned load = m->load();
      if (load < best_load) {
        best = k;
        best_load = load;
        if (load == 0) break;  // nobody has fewer: the first idle one in turn
      }
    }
    if (best == n) return nullptr;
    e.next = best + 1 < n ? best + 1 : 0;
    return e.members[best];
  }

  now_fn now_;
  mutable std::mutex mu_;  // guards everything below
  clock::duration grace_{};
  unsigned max_pool_members_ = 64;
  std::unordered_map<std::string, entry> names_;
  std::unordered_map<std::string, offline_name> offline_;
  std::unordered_map<std::string, name_reservation> reserved_;
  std::map<token_digest, unsigned> per_token_;
};

}  // namespace grok
