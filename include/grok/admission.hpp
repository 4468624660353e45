#pragma once
// Whether grok-server takes a tunnel (pure: no I/O; the clock is injected).
// A client's Hello is checked against the configuration (protocol version,
// token, name, TCP permission) before anything is held for it; the
// registry's answers (name taken, token at its limit) and a reload that
// revokes a token become refusals worded here, so every refusal a client can
// read is written in one place.

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>

#include "grok/access_rules.hpp"
#include "grok/config.hpp"
#include "grok/frames.hpp"
#include "grok/tunnel_registry.hpp"

namespace grok {

/// A refusal as the client will read it.
struct refusal {
  pb::Refused::Reason reason = pb::Refused::PROTOCOL_ERROR;
  std::string message;
  bool bad_token = false;  ///< counts against the address's failed attempts
};

/// What a Hello that passed the checks asks for.
struct admission {
  token_digest token{};
  std::string token_label;     ///< the tokens-file label (empty when any token is taken)
  std::string name;            ///< lower-cased; empty: the server picks one
  bool tcp = false;
  unsigned tunnel_limit = 0;   ///< tunnels this token may hold at once (0 = no limit)
  bool limit_from_entry = false;  ///< the limit is the entry's max_tunnels, not tunnels.max_per_token
  uint32_t client_window = 0;  ///< response bytes the client grants per exchange
  bool pool = false;           ///< asks to join the name's pool
  token_digest pool_key{};     ///< who may share its pool (see grok::pool_key)
  access_rules rules;          ///< the visitor rules the Hello carries
  access_rules token_rules;    ///< the tokens file's address rules for the token

  std::string client;          ///< Hello.client_id
  uint32_t stream = 0;         ///< Hello.stream

  claimant who() const {
    claimant c(token, pool_key, pool);
    c.client = client;
    c.stream = stream;
    return c;
  }
};

/// Checks a Hello. `draining`: the server is shutting down. `auth_wait`: how
/// long the peer's address is still blocked for failed attempts (0 = not).
std::variant<admission, refusal> admit_hello(const pb::Hello& hello, const server_config& cfg, bool draining,
                                             std::chrono::milliseconds auth_wait);

/// The token already holds its limit of tunnels.
refusal refuse_token_limit(const admission& a);
/// The registry would not give the name.
refusal refuse_claim(claim_result r, const std::string& name, const server_config& cfg);
/// A TCP tunnel found no port.
refusal refuse_tcp_port(const server_config& cfg);

/// After a reload: why an open tunnel must close (its token revoked, its
/// name now reserved for another token, TCP no longer allowed), or nullopt.
std::optional<refusal> recheck_after_reload(const server_config& cfg, const claimant& who, const std::string& name,
                                            const std::optional<name_reservation>& reserved, bool tcp);

/// Failed Hellos per source address (auth.max_failures per
/// auth.failure_window): past the limit the address is refused without its
/// token being checked until the window ends. Thread-safe; bounded to
/// 65 536 addresses.
class auth_failure_limiter {
 public:
  using clock = std::chrono::steady_clock;
  explicit auth_failure_limiter(std::function<clock::time_point()> now = [] { return clock::now(); })
      : now_(std::move(now)) {}

  void configure(unsigned max_failures, std::chrono::milliseconds window);
  /// How long until `ip` may try again; 0 when it may now.
  std::chrono::milliseconds blocked(const std::string& ip);
  void failed(const std::string& ip);

 private:
  struct window_count {
    clock::time_point start;
    unsigned count = 0;
  };
  std::function<clock::time_point()> now_;
  std::mutex mu_;  // guards everything below
  unsigned max_ = 0;
  std::chrono::milliseconds window_{0};
  std::unordered_map<std::string, window_count> failures_;
};

}  // namespace grok
