#pragma once
// HTTP Basic authentication (RFC 7617), checked in constant time (pure, no
// I/O): `grok serve --auth`, the inspector's --inspect-auth and a tunnel's
// --basic-auth, which grok-server checks.

#include <optional>
#include <string>
#include <string_view>

namespace grok {

/// Checks an Authorization header (`Basic base64(user:pass)`, scheme
/// case-insensitive) against the expected credentials. The comparison is
/// constant-time: SHA-256 digests of the presented and expected user and
/// password are compared with CRYPTO_memcmp.
bool basic_auth_ok(std::string_view authorization_header, const std::string& user, const std::string& pass);

/// Strict standard base64 (padding required); nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view in);

}  // namespace grok
