#include <cctype>
#include <stdexcept>
#include <string>

#include "grok/client.hpp"

namespace grok {

host_port_text split_host_port(const std::string& text) {
  host_port_text out{"127.0.0.1", text, false};
  if (auto colon = text.rfind(':'); colon != std::string::npos) {
    out.host = text.substr(0, colon);
    out.port = text.substr(colon + 1);
    out.bracketed = out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']';
    if (out.bracketed) out.host = out.host.substr(1, out.host.size() - 2);
    if (out.host.empty()) throw std::invalid_argument("'" + text + "': missing host before ':'");
  }
  return out;
}

namespace {

/// The port written in `port` (1..65535); throws naming `text` otherwise.
uint16_t port_number(const std::string& port, const std::string& text) {
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument("'" + text + "': port must be a number in 1..65535");
  auto value = std::stoul(port);
  if (value == 0 || value > 65535) throw std::invalid_argument("'" + text + "': port must be a number in 1..65535");
  return static_cast<uint16_t>(value);
}

}  // namespace

std::pair<std::string, uint16_t> parse_local_address(const std::string& text) {
  auto [host, port, bracketed] = split_host_port(text);
  return {host, port_number(port, text)};
}

local_url parse_local_url(const std::string& text, bool url_allowed) {
  auto sep = text.find("://");
  if (sep == std::string::npos) {
    auto [host, port] = parse_local_address(text);
    return {host, port, false};
  }
  if (!url_allowed)
    throw std::invalid_argument("'" + text + "': grok tcp forwards raw TCP; give the local service as [HOST:]PORT");
  std::string scheme = text.substr(0, sep);
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "http" && scheme != "https")
    throw std::invalid_argument("'" + text + "': scheme '" + text.substr(0, sep) +
                                "' is not supported; give http://HOST[:PORT], https://HOST[:PORT] or [HOST:]PORT");
  local_url out;
  out.tls = scheme == "https";
  std::string rest = text.substr(sep + 3);
  auto end = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, end);
  // A lone trailing '/' names the whole host, as the bare form does.
  if (end != std::string::npos && rest.substr(end) != "/")
    throw std::invalid_argument("'" + text + "': grok forwards whole hosts; drop '" + rest.substr(end) + "'");
  if (authority.find('@') != std::string::npos)
    throw std::invalid_argument("'" + text + "': a user name in the local address is not supported");
  std::string port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string::npos) throw std::invalid_argument("'" + text + "': missing ']' after the IPv6 address");
    out.host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw std::invalid_argument("'" + text + "': expected ':PORT' after ']'");
      port = after.substr(1);
      if (port.empty()) throw std::invalid_argument("'" + text + "': port must be a number in 1..65535");
    }
  } else {
    auto colon = authority.find(':');
    if (colon != std::string::npos && authority.find(':', colon + 1) != std::string::npos)
      throw std::invalid_argument("'" + text + "': write an IPv6 address in brackets, e.g. " + scheme +
                                  "://[::1]:8443");
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) throw std::invalid_argument("'" + text + "': port must be a number in 1..65535");
    }
  }
  if (out.host.empty()) throw std::invalid_argument("'" + text + "': missing host");
  for (char c : out.host) {
    if (std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c)))
      throw std::invalid_argument("'" + text + "': the host may not contain spaces or control characters");
  }
  out.port = port.empty() ? (out.tls ? 443 : 80) : port_number(port, text);
  return out;
}

}  // namespace grok
