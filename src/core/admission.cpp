#include "grok/admission.hpp"

#include <algorithm>

#include "grok/host.hpp"
#include "grok/http_rules.hpp"

namespace grok {

namespace {

const token_entry* lookup_token(const server_config& cfg, const token_digest& d) {
  int i = find_token(cfg.token_table, d);
  return i < 0 ? nullptr : &cfg.token_table[static_cast<size_t>(i)];
}

/// 'TEXT' for a refusal and the log, at most 64 bytes of it: a client's
/// name is echoed back, not a 7 MiB one. Bytes that are not printable ASCII
/// show as '?'.
std::string quoted_excerpt(const std::string& text) {
  constexpr size_t shown = 64;
  std::string out = "'";
  for (size_t i = 0; i < std::min(text.size(), shown); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  }
  out += "'";
  if (text.size() > shown) out += " (" + std::to_string(text.size()) + " bytes)";
  return out;
}

refusal make_refusal(pb::Refused::Reason reason, std::string message) {
  return refusal{reason, std::move(message), false};
}

}  // namespace

std::variant<admission, refusal> admit_hello(const pb::Hello& h, const server_config& cfg, bool draining,
                                             std::chrono::milliseconds auth_wait) {
  if (h.protocol_version() != protocol_version)
    return make_refusal(pb::Refused::UNSUPPORTED_VERSION, "protocol version " + std::to_string(h.protocol_version()) +
                                                              " is not supported; this server speaks " +
                                                              std::to_string(protocol_version));
  if (draining) return make_refusal(pb::Refused::DRAINING, "the server is shutting down; try again shortly");
  if (auth_wait.count() > 0)
    return make_refusal(pb::Refused::LIMIT, "too many failed attempts from this address; try again in " +
                                                std::to_string((auth_wait.count() + 999) / 1000) + "s");
  admission a;
  a.token = sha256_digest(h.token());
  const token_entry* entry = lookup_token(cfg, a.token);
  if (!entry && cfg.auth_required()) return refusal{pb::Refused::BAD_TOKEN, "invalid token", true};
  if (entry) a.token_label = entry->label;
  a.pool = h.pool();
  a.pool_key = pool_key(a.token, entry);
  a.limit_from_entry = entry && entry->max_tunnels != 0;
  a.tunnel_limit = a.limit_from_entry ? entry->max_tunnels : cfg.max_per_token;
  a.name = ascii_lower(h.name());
  if (!a.name.empty() && !valid_tunnel_name(a.name))
    return make_refusal(pb::Refused::BAD_NAME, quoted_excerpt(h.name()) + " is not a valid name: use 1-63 of a-z, 0-9 and '-'");
  a.tcp = h.protocol() == pb::Hello::TCP;
  // With any token accepted (no entry), a non-empty auth.tcp_tokens still limits TCP.
  bool tcp_allowed = entry ? entry->tcp : cfg.tcp_token_table.empty() || find_token(cfg.tcp_token_table, a.token) >= 0;
  if (a.tcp && !tcp_allowed) return make_refusal(pb::Refused::BAD_TOKEN, "this token may not open TCP tunnels");
  auto rules = rules_from_hello(h.rules());
  if (auto* why = std::get_if<std::string>(&rules)) return make_refusal(pb::Refused::BAD_RULES, "invalid access rule: " + *why);
  a.rules = std::move(std::get<access_rules>(rules));
  if (a.tcp && !a.rules.basic_auth.empty())
    return make_refusal(pb::Refused::BAD_RULES,
                        "basic auth applies to HTTP tunnels; a TCP tunnel takes --allow-cidr and --deny-cidr only");
  if (entry) {
    if (entry->require_basic_auth && (a.tcp || a.rules.basic_auth.empty()))
      return make_refusal(pb::Refused::BAD_RULES,
                          a.tcp ? "the tokens file requires basic auth for this token's tunnels, which a TCP tunnel cannot ask for"
                                : "the tokens file requires basic auth for this token's tunnels: add --basic-auth USER:PASS");
    a.token_rules.allow = entry->allow_cidr;
    a.token_rules.deny = entry->deny_cidr;
  }
  a.client = h.client_id().substr(0, 64);
  a.stream = h.stream();
  a.client_window =
      h.initial_window() == 0 ? cfg.initial_window : std::clamp<uint32_t>(h.initial_window(), 1024, 16u << 20);
  return a;
}

refusal refuse_token_limit(const admission& a) {
  return make_refusal(pb::Refused::TOO_MANY_TUNNELS, "this token already holds " + std::to_string(a.tunnel_limit) +
                                              " tunnel(s), its limit" +
                                              (a.limit_from_entry ? " (max_tunnels in the tokens file)"
                                                                  : " (tunnels.max_per_token)"));
}

refusal refuse_claim(claim_result r, const std::string& name, const server_config& cfg) {
  switch (r) {
    case claim_result::taken:
      return make_refusal(pb::Refused::NAME_TAKEN, "name '" + name + "' is already in use by another tunnel");
    case claim_result::reserved:
      return make_refusal(pb::Refused::NAME_RESERVED, "name '" + name + "' is reserved for another token");
    case claim_result::not_a_pool:
      return make_refusal(pb::Refused::POOL_MISMATCH, "name '" + name +
                                                          "' is held by a tunnel that is not a pool; only --pool tunnels may share a name");
    case claim_result::pooled:
      return make_refusal(pb::Refused::NAME_TAKEN,
                          "name '" + name + "' is served by a pool of tunnels; start grok with --pool to join it");
    case claim_result::other_pool:
      return make_refusal(pb::Refused::POOL_MISMATCH,
                          "the pool for '" + name + "' belongs to another token (members share a token or a tokens-file pool)");
    case claim_result::pool_full:
      return make_refusal(pb::Refused::POOL_FULL, "the pool for '" + name + "' already has " +
                                                      std::to_string(cfg.max_pool_members) +
                                                      " members (tunnels.max_pool_members)");
    case claim_result::same_client:
      return make_refusal(pb::Refused::SAME_CLIENT, "another stream of this grok already serves '" + name +
                                                        "' on this server (it is reached at several addresses)");
    case claim_result::held:
    case claim_result::ok:
    case claim_result::joined:
    case claim_result::taken_over:
      break;
  }
  auto grace = std::chrono::duration_cast<std::chrono::seconds>(cfg.name_grace).count();
  return make_refusal(pb::Refused::NAME_HELD, "name '" + name +
                                                   "' was in use moments ago; only its owner may take it for up to " +
                                                   std::to_string(grace) + "s (tunnels.name_grace)");
}

refusal refuse_tcp_port(const server_config& cfg) {
  if (cfg.tcp_port_start == 0) return make_refusal(pb::Refused::UNAVAILABLE, "TCP tunnels are turned off on this server");
  return make_refusal(pb::Refused::LIMIT, "no free TCP port in " + std::to_string(cfg.tcp_port_start) + ".." +
                                              std::to_string(cfg.tcp_port_end));
}

std::optional<refusal> recheck_after_reload(const server_config& cfg, const claimant& who, const std::string& name,
                                            const std::optional<name_reservation>& reserved, bool tcp) {
  const token_entry* t = lookup_token(cfg, who.token);
  if (!t && cfg.auth_required()) return make_refusal(pb::Refused::BAD_TOKEN, "token revoked");
  if (reserved && !reserved->allows(who))
    return make_refusal(pb::Refused::NAME_RESERVED, "name '" + name + "' is now reserved for another token");
  if (tcp && t && !t->tcp) return make_refusal(pb::Refused::BAD_TOKEN, "this token may no longer open TCP tunnels");
  return std::nullopt;
}

void auth_failure_limiter::configure(unsigned max_failures, std::chrono::milliseconds window) {
  std::lock_guard lk(mu_);
  max_ = max_failures;
  window_ = window;
}

std::chrono::milliseconds auth_failure_limiter::blocked(const std::string& ip) {
  std::lock_guard lk(mu_);
  if (max_ == 0) return std::chrono::milliseconds(0);
  auto it = failures_.find(ip);
  if (it == failures_.end() || it->second.count < max_) return std::chrono::milliseconds(0);
  auto until = it->second.start + window_;
  auto now = now_();
  if (until <= now) {
    failures_.erase(it);
    return std::chrono::milliseconds(0);
  }
  return std::chrono::ceil<std::chrono::milliseconds>(until - now);
}

void auth_failure_limiter::failed(const std::string& ip) {
  std::lock_guard lk(mu_);
  if (max_ == 0) return;
  auto now = now_();
  // Bounded: past 65 536 addresses, forget the windows that have ended; if
  // every one is still live, start over rather than grow.
  if (failures_.size() >= 65536) {
    std::erase_if(failures_, [&](const auto& kv) { return kv.second.start + window_ <= now; });
    if (failures_.size() >= 65536) failures_.clear();
  }
  auto& f = failures_[ip];
  if (f.count == 0 || f.start + window_ <= now) f = window_count{now, 0};
  ++f.count;
}

}  // namespace grok
