#pragma once
// The PROXY header grok puts in front of a connection to its local service
// (--proxy-protocol), worked out from the request that opens it: no sockets.

#include <string>

#include "grok/frames.hpp"

namespace grok {

/// The header (`version` 1 or 2; 0 gives "") a local connection opened for
/// `head` starts with: the visitor's address and port and the server address
/// the visitor reached. IPv4 when both ends are IPv4 (an IPv4 visitor a
/// dual-stack listener saw as ::ffff:a.b.c.d included), else IPv6 with an
/// IPv4 end mapped. Without `head` (the health check, a replay), or when the
/// server did not know an address, it names no one: "PROXY UNKNOWN" (v1) or
/// the LOCAL command (v2), and the service keeps the connection's own
/// addresses.
std::string proxy_header_for(int version, const pb::RequestHead* head);

/// Whether a kept-alive local connection opened for `head` may carry the
/// next request with the same header. Not when the header cannot tell
/// visitors apart: the visitor's port unknown (0), as for one known only
/// from a trusted proxy's X-Forwarded-For.
bool proxy_header_poolable(int version, const pb::RequestHead& head);

}  // namespace grok
