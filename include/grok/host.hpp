#pragma once
// Host header normalization and tunnel-name routing (pure, no I/O).

#include <optional>
#include <string>
#include <string_view>

namespace grok {

/// Lower-cases a Host value and strips a port and one trailing dot.
/// Returns nullopt for values that are not a valid host (empty, userinfo,
/// bad characters, bad port, bracketed IPv6 without closing bracket).
std::optional<std::string> normalize_host(std::string_view host);

/// Given a normalized host and the server domain, returns the tunnel name
/// when host is exactly NAME.DOMAIN with a single-label NAME.
std::optional<std::string> tunnel_name_for_host(std::string_view normalized_host,
                                                std::string_view domain);

/// True when `name` is a valid tunnel name: 1..63 of [a-z0-9-], not starting
/// or ending with '-'.
bool valid_tunnel_name(std::string_view name);

/// Lower-cases the domain and strips a trailing dot.
std::string normalize_domain(std::string_view domain);

}  // namespace grok
