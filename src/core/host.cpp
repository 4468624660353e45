#include "grok/host.hpp"

#include <algorithm>
#include <cctype>

namespace grok {
namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

bool valid_port(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  unsigned v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v <= 65535;
}

}  // namespace

std::optional<std::string> normalize_host(std::string_view host) {
  if (host.empty() || host.size() > 255 + 6) return std::nullopt;
  if (host.find('@') != std::string_view::npos) return std::nullopt;
  std::string_view name = host;
  if (host.front() == '[') {
    auto close = host.find(']');
    if (close == std::string_view::npos || close == 1) return std::nullopt;
    name = host.substr(0, close + 1);
    auto rest = host.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !valid_port(rest.substr(1)))) return std::nullopt;
    for (char c : name.substr(1, name.size() - 2))
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return std::nullopt;
  } else {
    auto colon = host.find(':');
    if (colon != std::string_view::npos) {
      if (!valid_port(host.substr(colon + 1))) return std::nullopt;
      name = host.substr(0, colon);
    }
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (name.empty() || name.back() == '.') return std::nullopt;
    if (!std::all_of(name.begin(), name.end(), host_char)) return std::nullopt;
    if (name.find("..") != std::string_view::npos || name.front() == '.') return std::nullopt;
  }
  std::string out(name);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

std::string normalize_domain(std::string_view domain) {
  std::string out(domain);
  if (!out.empty() && out.back() == '.') out.pop_back();
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

std::optional<std::string> tunnel_name_for_host(std::string_view host, std::string_view domain) {
  if (host.size() < domain.size() + 2) return std::nullopt;
  auto suffix = host.substr(host.size() - domain.size());
  if (suffix != domain || host[host.size() - domain.size() - 1] != '.') return std::nullopt;
  auto name = host.substr(0, host.size() - domain.size() - 1);
  if (!valid_tunnel_name(name)) return std::nullopt;
  return std::string(name);
}

bool valid_tunnel_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (name.front() == '-' || name.back() == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

}  // namespace grok
