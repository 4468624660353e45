#include "inspect_cli.hpp"

#include <stdexcept>

namespace grok {

void add_inspect_options(CLI::App& sub, inspect_flags& flags) {
  sub.add_option("--inspect", flags.addr,
                 "request inspector address HOST:PORT (default 127.0.0.1:4040, or the next free port)");
  sub.add_flag("--no-inspect", flags.off, "no request inspector");
  sub.add_option("--inspect-auth", flags.auth,
                 "require HTTP Basic authentication USER:PASS on the inspector (needed off loopback)");
  sub.add_option("--inspect-max-memory", flags.max_memory,
                 "memory for captured requests, oldest dropped first (default 64MiB)");
  sub.add_option("--inspect-max-body", flags.max_body, "bytes kept of each request and response body (default 1MiB)");
}

std::optional<inspector_options> inspect_settings(const inspect_flags& flags, const client_config& cfg) {
  if (flags.off || (!cfg.inspect && flags.addr.empty())) return std::nullopt;
  inspector_options o;
  const std::string& addr = !flags.addr.empty() ? flags.addr : cfg.inspect_addr;
  const char* addr_name = !flags.addr.empty() ? "--inspect" : "inspect_addr";
  if (!addr.empty()) {
    try {
      std::tie(o.host, o.port) = parse_inspect_address(addr);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string(addr_name) + ": " + e.what());
    }
    o.next_free = false;
  }
  const std::string& auth = !flags.auth.empty() ? flags.auth : cfg.inspect_auth;
  if (!auth.empty()) {
    auto colon = auth.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == auth.size())
      throw std::invalid_argument("--inspect-auth: expected USER:PASS with a non-empty user and password");
    o.basic_auth.emplace(auth.substr(0, colon), auth.substr(colon + 1));
  }
  if (!is_loopback_host(o.host) && !o.basic_auth)
    throw std::invalid_argument(std::string(addr_name) + ": " + o.host +
                                " is reachable from other hosts, and the inspector shows every request's headers "
                                "and bodies: add --inspect-auth USER:PASS (or inspect_auth in the config)");
  o.limits.max_bytes = cfg.inspect_max_memory;
  o.limits.max_body = cfg.inspect_max_body;
  auto size = [](const std::string& text, const char* flag) {
    try {
      return parse_size(text);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string(flag) + ": " + e.what());
    }
  };
  if (!flags.max_memory.empty()) o.limits.max_bytes = size(flags.max_memory, "--inspect-max-memory");
  if (!flags.max_body.empty()) o.limits.max_body = size(flags.max_body, "--inspect-max-body");
  if (o.limits.max_bytes < (1ull << 20))
    throw std::invalid_argument("--inspect-max-memory: must be at least 1MiB");
  // A record holds two bodies: a cap above a quarter of the memory would keep only one or two requests.
  if (o.limits.max_body > o.limits.max_bytes / 4)
    throw std::invalid_argument("--inspect-max-body: must be at most a quarter of the inspector's memory (" +
                                std::to_string(o.limits.max_bytes / 4) + " bytes)");
  return o;
}

}  // namespace grok
