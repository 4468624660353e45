#pragma once
// What grok changes in the heads it relays (pure, no I/O): the Host the
// local service sees (`--host-header`), headers added to or removed from
// requests and responses (`--request-header-add "K: V"` and friends), and
// the one header grok-server removes itself (Authorization, when the tunnel
// asks visitors for credentials).

#include <string>
#include <string_view>
#include <vector>

#include "grok/frames.hpp"

namespace grok {

/// Removes every header named `name` (case-insensitive).
void remove_headers(google::protobuf::RepeatedPtrField<pb::Header>& headers, std::string_view name);

/// The client's changes to each exchange's heads.
struct header_shaping {
  /// Host the local service sees: empty keeps the public one, "rewrite" puts
  /// the local service's own address, anything else is sent as it is.
  std::string host_header;
  std::vector<pb::Header> request_add;
  std::vector<std::string> request_remove;  ///< lower-case names
  std::vector<pb::Header> response_add;
  std::vector<std::string> response_remove;

  bool empty() const {
    return host_header.empty() && request_add.empty() && request_remove.empty() && response_add.empty() &&
           response_remove.empty();
  }
};

/// Checks a --host-header value ("rewrite" or a host[:port]); throws
/// std::invalid_argument naming what is wrong.
std::string parse_host_header_option(std::string_view text);
/// "Name: value" as given to --request-header-add / --response-header-add.
/// The name must be a valid token and not one grok frames itself
/// (Content-Length, Transfer-Encoding, Connection and the other hop-by-hop
/// headers; Host has --host-header); the value must be a valid field value.
/// Throws std::invalid_argument naming what is wrong.
pb::Header parse_header_add(std::string_view text);
/// A header name as given to --request-header-remove / --response-header-remove, lower-cased.
std::string parse_header_remove(std::string_view text);

/// Applies removals, then additions (an added header comes after the
/// request's own), then the Host choice. `local_authority` is the local
/// service's "host:port" as a Host header would carry it.
void shape_request(pb::RequestHead& head, const header_shaping& s, std::string_view local_authority);
void shape_response(pb::ResponseHead& head, const header_shaping& s);

}  // namespace grok
