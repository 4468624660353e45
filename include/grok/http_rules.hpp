#pragma once
// Header rules shared by both ends of the tunnel (pure, no I/O): which
// headers are hop-by-hop, which names and values may be forwarded.

#include <string>
#include <string_view>
#include <vector>

namespace grok {

/// RFC 9110 §7.6.1 hop-by-hop headers plus the legacy ones proxies strip
/// (Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade…).
bool is_hop_by_hop(std::string_view name);

/// Lower-cased tokens of a Connection header value ("close, X-Foo" -> {"close","x-foo"}).
std::vector<std::string> connection_tokens(std::string_view value);

/// True if `name` (case-insensitive) is hop-by-hop or listed in `connection`.
bool strip_on_forward(std::string_view name, const std::vector<std::string>& connection);

/// RFC 9110 token: 1*tchar.
bool valid_header_name(std::string_view name);
/// No CR, LF or NUL (and no other control except HTAB).
bool valid_header_value(std::string_view value);
/// A status a proxy may relay: 100..599.
inline bool valid_status(unsigned status) { return status >= 100 && status <= 599; }

/// `s` with A-Z lower-cased (names, hosts, tokens: ASCII by their grammar).
std::string ascii_lower(std::string_view s);
/// `s` without leading and trailing spaces and tabs (RFC 9110 OWS).
std::string_view trim_ows(std::string_view s);
/// Case-insensitive ASCII equality.
bool iequals(std::string_view a, std::string_view b);

/// True if the comma-separated list `value` contains `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token);

}  // namespace grok
