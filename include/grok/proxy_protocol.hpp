#pragma once
// The PROXY protocol (versions 1 and 2, haproxy's proxy-protocol.txt) without
// sockets: grok-server reads the header a trusted proxy puts in front of a
// public connection, and grok writes one in front of the connection it opens
// to its local service. The listener calls parse_proxy_header() on all the
// bytes received so far after each read, so a header split across reads is
// fine; the bytes after the header (the HTTP request) are the caller's.
//
// The parser is strict where the spec is: exact v1 grammar (single spaces,
// CRLF only, no leading zeros in ports or IPv4 numbers, each address of the
// declared family), v2 version 2 and the LOCAL and PROXY commands only, the
// listed family/protocol bytes only, TLVs that tile the rest of the header.
// TLVs are skipped, not interpreted (a CRC32C TLV is not checked).

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace grok {

/// Longest v1 line the spec allows, CRLF included ("PROXY UNKNOWN" with two
/// full IPv6 addresses and ports).
inline constexpr size_t proxy_v1_max_length = 107;
/// Longest v2 header accepted: 16 fixed bytes and up to 1 KiB of addresses
/// and TLVs. IPv6 addresses take 36 bytes (AF_UNIX 216); the TLVs proxies
/// send (ALPN, SNI up to 255 bytes, a unique ID up to 128, the TLS summary)
/// fit in the rest, and the listener never buffers more than this before
/// the request.
inline constexpr size_t proxy_v2_max_length = 16 + 1024;
/// The most bytes parse_proxy_header() ever needs to decide.
inline constexpr size_t proxy_header_max_length = proxy_v2_max_length;

/// One end of a proxied TCP connection.
struct proxy_endpoint {
  /// The address in IPv6 form; IPv4 is mapped to ::ffff:a.b.c.d (as
  /// parse_ip_address() returns it) and `v4` is set.
  std::array<uint8_t, 16> ip{};
  bool v4 = false;
  uint16_t port = 0;

  /// "192.0.2.1", "2001:db8::1" (inet_ntop's form).
  std::string address() const;
  bool operator==(const proxy_endpoint&) const = default;
};

/// An endpoint from a textual IPv4 or IPv6 address (no brackets, no zone) and
/// a port; nullopt when the text is not an address. "::ffff:1.2.3.4" is IPv6.
std::optional<proxy_endpoint> make_proxy_endpoint(std::string_view address, uint16_t port);

struct proxy_header {
  int version = 0;    ///< 1 or 2
  size_t length = 0;  ///< bytes the header takes: the caller's data starts after them
  /// False for v1 UNKNOWN, v2 LOCAL, and v2 families without IP/TCP addresses
  /// (AF_UNSPEC, AF_UNIX, UDP): the connection's own addresses stay.
  bool has_addresses = false;
  proxy_endpoint source;       ///< the client, when has_addresses
  proxy_endpoint destination;  ///< the address the client connected to, when has_addresses
  bool operator==(const proxy_header&) const = default;
};

struct proxy_parse_result {
  enum class state {
    need_more,  ///< a valid header so far: read more, then parse all the bytes again
    error,      ///< not a valid PROXY header: `error` says why; drop the connection
    done,       ///< `header` holds it; header.length bytes were consumed
  };
  state status = state::need_more;
  std::string error;
  proxy_header header;
  bool operator==(const proxy_parse_result&) const = default;
};

/// The error for bytes that cannot start a PROXY header at all (a plain
/// HTTP request, a TLS handshake): a listener that accepts headers from some
/// peers only serves such a connection as it is.
inline constexpr std::string_view proxy_not_a_header = "not a PROXY header";

/// Parses a PROXY header (v1 or v2) at the start of `received`, everything
/// read from the connection so far. need_more is only returned while fewer
/// than proxy_header_max_length bytes are given, and an answer other than
/// need_more stays the same for any longer `received` that starts with these
/// bytes. A first byte that cannot start a header (plain HTTP, TLS) is an
/// error at once: "not a PROXY header".
proxy_parse_result parse_proxy_header(std::string_view received);

/// "PROXY TCP4 SRC DST SPORT DPORT\r\n", or TCP6 when either end is IPv6
/// (an IPv4 end is then written as ::ffff:a.b.c.d, so mixed families keep
/// both addresses rather than falling back to UNKNOWN).
std::string proxy_v1_header(const proxy_endpoint& source, const proxy_endpoint& destination);
/// "PROXY UNKNOWN\r\n": the receiver keeps the connection's own addresses.
std::string proxy_v1_unknown_header();

/// The v2 header with the PROXY command over TCP: AF_INET when both ends are
/// IPv4, else AF_INET6 with IPv4 ends mapped (as proxy_v1_header). No TLVs.
std::string proxy_v2_header(const proxy_endpoint& source, const proxy_endpoint& destination);
/// The v2 header with the LOCAL command (AF_UNSPEC, no addresses).
std::string proxy_v2_local_header();

}  // namespace grok
