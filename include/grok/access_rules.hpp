#pragma once
// Who may reach a tunnel (pure, no I/O). A tunnel's Hello carries its
// visitor rules (`grok http --basic-auth/--allow-cidr/--deny-cidr`); the
// tokens file may add address rules and require Basic authentication for a
// token. grok-server checks every visitor against them before anything
// crosses the tunnel: 403 for an address the rules refuse, 401 for missing
// or wrong credentials.

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "grok/frames.hpp"
#include "grok/ip_network.hpp"

namespace grok {

struct basic_credential {
  std::string user;
  std::string password;
  bool operator==(const basic_credential&) const = default;
};

/// One tunnel's rules (or a token's, from the tokens file).
struct access_rules {
  std::vector<basic_credential> basic_auth;  ///< any one admits; empty: no credentials asked for
  std::vector<ip_network> allow;             ///< non-empty: only visitors inside one of these
  std::vector<ip_network> deny;              ///< never these; wins over allow

  bool empty() const { return basic_auth.empty() && allow.empty() && deny.empty(); }
  bool operator==(const access_rules&) const = default;
};

/// Bounds on what a Hello may carry: a tunnel's rules are held for as long
/// as it is online and walked for every request.
inline constexpr size_t max_basic_credentials = 16;
inline constexpr size_t max_cidr_rules = 128;    ///< allow and deny each
inline constexpr size_t max_credential_bytes = 256;  ///< a user or a password

/// "USER:PASS" as given to --basic-auth: the user is everything before the
/// first ':' (RFC 7617 forbids one in it). Throws std::invalid_argument
/// naming what is wrong.
basic_credential parse_basic_credential(std::string_view text);

/// Parses a CIDR rule ("10.0.0.0/8", "2001:db8::/32", or one address);
/// throws std::invalid_argument naming it.
ip_network parse_cidr_rule(std::string_view text);

/// The rules a Hello carries, checked against the bounds above: the rules,
/// or a sentence naming the first bad one ("allow_cidr[2] '10.0.0.300/8': …").
std::variant<access_rules, std::string> rules_from_hello(const pb::AccessRules& in);
/// The other way: what a client puts in its Hello.
void rules_to_hello(const access_rules& rules, pb::AccessRules* out);

enum class access_verdict {
  pass,
  forbidden,     ///< the visitor's address is refused: 403
  unauthorized,  ///< credentials missing or wrong: 401 with WWW-Authenticate
};

/// Whether the address rules let `visitor_ip` (a textual IPv4 or IPv6
/// address) through. An address that does not parse matches no network: it
/// passes deny rules and fails allow rules.
bool address_allowed(const access_rules& rules, std::string_view visitor_ip);

/// Checks a visitor of an HTTP tunnel against each rule set in turn (the
/// tunnel's and its token's): the address first, then the credentials in
/// `authorization` (the Authorization header's value, empty when absent).
/// Every credential of a set is compared, in constant time, whichever matches.
access_verdict check_access(const std::vector<access_rules>& sets, std::string_view visitor_ip,
                            std::string_view authorization);

/// One line for logs and the console: "basic auth (2 users), allow 10.0.0.0/8, deny 10.1.0.0/16".
std::string describe(const access_rules& rules);

}  // namespace grok
