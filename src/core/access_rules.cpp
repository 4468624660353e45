#include "grok/access_rules.hpp"

#include <stdexcept>

#include "grok/basic_auth.hpp"

namespace grok {

namespace {

/// 'TEXT' for an error message, at most 64 bytes of it, unprintable bytes as '?'.
std::string quoted(std::string_view text) {
  std::string out = "'";
  for (size_t i = 0; i < std::min<size_t>(text.size(), 64); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  }
  out += text.size() > 64 ? "'..." : "'";
  return out;
}

bool has_control(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  return false;
}

/// Why a credential cannot be used, or empty.
std::string credential_problem(const basic_credential& c) {
  if (c.user.empty()) return "the user is empty";
  if (c.password.empty()) return "the password is empty";
  if (c.user.find(':') != std::string::npos) return "the user contains ':'";
  if (c.user.size() > max_credential_bytes || c.password.size() > max_credential_bytes)
    return "a user or password longer than " + std::to_string(max_credential_bytes) + " bytes";
  if (has_control(c.user) || has_control(c.password)) return "a control character in the user or password";
  return {};
}

}  // namespace

basic_credential parse_basic_credential(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos) throw std::invalid_argument("expected USER:PASS, got no ':'");
  basic_credential c{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
  if (auto why = credential_problem(c); !why.empty()) throw std::invalid_argument("expected USER:PASS: " + why);
  return c;
}

ip_network parse_cidr_rule(std::string_view text) {
  auto n = parse_ip_network(text);
  if (!n) throw std::invalid_argument(quoted(text) + " is not an IPv4 or IPv6 address or network (e.g. 10.0.0.0/8, 2001:db8::/32)");
  return *n;
}

std::variant<access_rules, std::string> rules_from_hello(const pb::AccessRules& in) {
  access_rules out;
  if (static_cast<size_t>(in.basic_auth_size()) > max_basic_credentials)
    return "basic_auth: " + std::to_string(in.basic_auth_size()) + " credentials, more than the " +
           std::to_string(max_basic_credentials) + " a tunnel may have";
  for (int i = 0; i < in.basic_auth_size(); ++i) {
    basic_credential c{in.basic_auth(i).user(), in.basic_auth(i).password()};
    if (auto why = credential_problem(c); !why.empty())
      return "basic_auth[" + std::to_string(i) + "] for user " + quoted(c.user) + ": " + why;
    out.basic_auth.push_back(std::move(c));
  }
  auto networks = [](const auto& list, const char* key, std::vector<ip_network>& into) -> std::string {
    if (static_cast<size_t>(list.size()) > max_cidr_rules)
      return std::string(key) + ": " + std::to_string(list.size()) + " rules, more than the " +
             std::to_string(max_cidr_rules) + " a tunnel may have";
    for (int i = 0; i < list.size(); ++i) {
      auto n = parse_ip_network(list.Get(i));
      if (!n)
        return std::string(key) + "[" + std::to_string(i) + "] " + quoted(list.Get(i)) +
               ": not an IPv4 or IPv6 address or network";
      into.push_back(*n);
    }
    return {};
  };
  if (auto why = networks(in.allow_cidr(), "allow_cidr", out.allow); !why.empty()) return why;
  if (auto why = networks(in.deny_cidr(), "deny_cidr", out.deny); !why.empty()) return why;
  return out;
}

void rules_to_hello(const access_rules& rules, pb::AccessRules* out) {
  for (const auto& c : rules.basic_auth) {
    auto* b = out->add_basic_auth();
    b->set_user(c.user);
    b->set_password(c.password);
  }
  for (const auto& n : rules.allow) out->add_allow_cidr(n.to_string());
  for (const auto& n : rules.deny) out->add_deny_cidr(n.to_string());
}

bool address_allowed(const access_rules& rules, std::string_view visitor_ip) {
  if (ip_in_any(visitor_ip, rules.deny)) return false;
  return rules.allow.empty() || ip_in_any(visitor_ip, rules.allow);
}

access_verdict check_access(const std::vector<access_rules>& sets, std::string_view visitor_ip,
                            std::string_view authorization) {
  for (const auto& r : sets)
    if (!address_allowed(r, visitor_ip)) return access_verdict::forbidden;
  for (const auto& r : sets) {
    if (r.basic_auth.empty()) continue;
    bool any = false;
    for (const auto& c : r.basic_auth) any |= basic_auth_ok(authorization, c.user, c.password);
    if (!any) return access_verdict::unauthorized;
  }
  return access_verdict::pass;
}

std::string describe(const access_rules& rules) {
  std::string out;
  auto add = [&](const std::string& part) { out += (out.empty() ? "" : ", ") + part; };
  if (!rules.basic_auth.empty())
    add("basic auth (" + std::to_string(rules.basic_auth.size()) + (rules.basic_auth.size() == 1 ? " user)" : " users)"));
  auto list = [&](const char* word, const std::vector<ip_network>& nets) {
    if (nets.empty()) return;
    std::string s = word;
    for (size_t i = 0; i < nets.size(); ++i) s += (i ? " " : " ") + nets[i].to_string();
    add(s);
  };
  list("allow", rules.allow);
  list("deny", rules.deny);
  return out;
}

}  // namespace grok
