#pragma once
// Validation and normalization of a public request head (pure, no I/O):
// Host rules, absolute-form targets, framing (TE/CL) rules, hop-by-hop
// stripping and X-Forwarded-* handling, ending in the RequestHead frame the
// server sends down the tunnel. The public HTTP session calls it once per
// request; the request-head fuzz target calls it on whatever Beast accepts.

#include <boost/beast/http/message.hpp>
#include <boost/optional/optional.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "grok/ip_network.hpp"
#include "grok/frames.hpp"

namespace grok {

/// What the server knows about the connection a request arrived on.
struct request_context {
  std::string remote_ip;                        ///< the peer as the socket saw it
  bool tls = false;                             ///< arrived on the HTTPS listener
  uint32_t max_header_count = 100;              ///< more header fields -> 431
  const std::vector<ip_network>* trusted_proxies = nullptr;  ///< may be null: trust no one
};

/// How the parser framed the body (the parser knows, the header alone does not).
struct request_framing {
  bool chunked = false;
  boost::optional<uint64_t> content_length;  // as Beast's parser reports it
  bool done = false;  ///< the parser already holds the whole message
};

/// Answer instead of forwarding.
struct request_error {
  unsigned status = 400;
  std::string detail;  ///< shown on the error page
  bool close = true;   ///< the connection cannot be reused
};

/// A request that may be forwarded.
struct request_head_ok {
  pb::Frame frame;          ///< request_head set; exchange_id left 0 for the caller
  std::string host;         ///< normalized Host: the routing key
  std::string target;       ///< origin-form target
  std::string upgrade;      ///< Upgrade value when the client asked for one
  /// Who sent the request: the peer, or when the peer is a trusted proxy the
  /// nearest address in X-Forwarded-For that is not itself a trusted proxy.
  /// Access rules match it; the RequestHead carries it as remote_addr.
  std::string visitor_ip;
  bool expect_continue = false;
  bool req_done = false;    ///< no body frames follow
};

struct request_head_result {
  std::optional<request_error> error;  ///< set: answer it; else `ok` is valid
  request_head_ok ok;
};

/// Checks `req` and builds the RequestHead frame for it.
request_head_result build_request_head(const boost::beast::http::request_header<>& req,
                                       const request_framing& framing, const request_context& ctx);

/// True when `buffered` holds a whole request head (after the empty lines a
/// client may send before one): a parser that still asks for more bytes has
/// then met a head it cannot parse (Beast waits for 8 bytes of version even
/// when the line ended: "GET / " CRLF CRLF), which deserves a 400 now, not a
/// 408 after the header timeout.
bool holds_complete_head(std::string_view buffered);

/// The visitor behind a chain of proxies: `forwarded_for` (X-Forwarded-For
/// values joined with ", ", oldest first) followed by `peer`, walked from the
/// nearest hop while the hop is a trusted proxy. An entry that is not an IP
/// address ends the walk and is returned as it is (it matches no network).
std::string visitor_address(std::string_view forwarded_for, std::string_view peer,
                            const std::vector<ip_network>& trusted);

/// Strips "scheme://authority" from an absolute-form target, returning the
/// authority through `authority` (RFC 9112 §3.2.2).
std::string origin_form(std::string_view target, std::string& authority);

}  // namespace grok
