#include "tunnel_cli.hpp"

#include <stdexcept>
#include <tuple>

namespace grok {

void add_tunnel_options(CLI::App& sub, tunnel_flags& f, bool http) {
  // Each repeatable flag takes one value per use, so `--allow-cidr A 3000` leaves 3000 to the address.
  auto repeatable = [&](const char* name, std::vector<std::string>& into, const char* help) {
    sub.add_option(name, into, help)->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  };
  if (http)
    repeatable("--basic-auth", f.basic_auth,
               "visitors must sign in with USER:PASS (repeat for more users); checked by grok-server");
  repeatable("--allow-cidr", f.allow_cidr,
                 "only visitors from this network may reach the tunnel, e.g. 203.0.113.0/24 (repeatable)");
  repeatable("--deny-cidr", f.deny_cidr, "refuse visitors from this network (repeatable; wins over --allow-cidr)");
  if (!http) return;
  sub.add_option("--host-header", f.host_header,
                 "Host the local service sees: 'rewrite' for its own address, or a value (default: the public name)");
  repeatable("--request-header-add", f.request_header_add, "add \"Name: value\" to each request (repeatable)");
  repeatable("--request-header-remove", f.request_header_remove, "remove a header from each request (repeatable)");
  repeatable("--response-header-add", f.response_header_add, "add \"Name: value\" to each response (repeatable)");
  repeatable("--response-header-remove", f.response_header_remove,
                 "remove a header from each response (repeatable)");
}

void apply_tunnel_flags(const tunnel_flags& f, client_options& o, const std::string& prefix) {
  auto each = [&](const char* name, const std::vector<std::string>& texts, auto&& take) {
    for (const auto& t : texts) {
      try {
        take(t);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(prefix + name + ": " + e.what());
      }
    }
  };
  o.rules = {};
  o.shaping = {};
  each("basic-auth", f.basic_auth, [&](const std::string& t) { o.rules.basic_auth.push_back(parse_basic_credential(t)); });
  each("allow-cidr", f.allow_cidr, [&](const std::string& t) { o.rules.allow.push_back(parse_cidr_rule(t)); });
  each("deny-cidr", f.deny_cidr, [&](const std::string& t) { o.rules.deny.push_back(parse_cidr_rule(t)); });
  if (o.rules.basic_auth.size() > max_basic_credentials)
    throw std::invalid_argument(prefix + "basic-auth: at most " + std::to_string(max_basic_credentials) + " users");
  if (o.rules.allow.size() > max_cidr_rules || o.rules.deny.size() > max_cidr_rules)
    throw std::invalid_argument(prefix + "allow-cidr/" + prefix + "deny-cidr: at most " +
                                std::to_string(max_cidr_rules) + " of each");
  if (!f.host_header.empty()) {
    try {
      o.shaping.host_header = parse_host_header_option(f.host_header);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(prefix + "host-header: " + e.what());
    }
  }
  each("request-header-add", f.request_header_add, [&](const std::string& t) { o.shaping.request_add.push_back(parse_header_add(t)); });
  each("request-header-remove", f.request_header_remove, [&](const std::string& t) { o.shaping.request_remove.push_back(parse_header_remove(t)); });
  each("response-header-add", f.response_header_add, [&](const std::string& t) { o.shaping.response_add.push_back(parse_header_add(t)); });
  each("response-header-remove", f.response_header_remove, [&](const std::string& t) { o.shaping.response_remove.push_back(parse_header_remove(t)); });
}

client_options tunnel_options(const tunnel_definition& t) {
  client_options o;
  o.label = t.name;
  o.tcp = t.proto == "tcp";
  try {
    auto where = parse_local_url(t.addr, /*url_allowed=*/!o.tcp);
    o.local_host = where.host;
    o.local_port = where.port;
    o.local_tls = where.tls;
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("addr: ") + e.what());
  }
  o.subdomain = t.subdomain;
  o.pool = t.pool;
  o.health_path = t.health_check;
  if (t.health_interval.count() > 0) o.health_interval = t.health_interval;
  if (t.health_timeout.count() > 0) o.health_timeout = t.health_timeout;
  tunnel_flags f;
  f.basic_auth = t.basic_auth;
  f.allow_cidr = t.allow_cidr;
  f.deny_cidr = t.deny_cidr;
  f.host_header = t.host_header;
  f.request_header_add = t.request_header_add;
  f.request_header_remove = t.request_header_remove;
  f.response_header_add = t.response_header_add;
  f.response_header_remove = t.response_header_remove;
  apply_tunnel_flags(f, o, "");
  o.upstream_insecure = t.upstream_insecure;
  if (o.upstream_insecure && !o.local_tls) throw std::invalid_argument("upstream_insecure is for an https:// addr");
  o.proxy_protocol = t.proxy_protocol == "v1" ? 1 : t.proxy_protocol == "v2" ? 2 : 0;
  return o;
}

}  // namespace grok
