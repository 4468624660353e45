#pragma once
// The client's response path (pure, no I/O): a local service's response
// head, as Beast parsed it, becomes the ResponseHead frame sent to the
// server. Hop-by-hop headers, those named in Connection and Content-Length
// are dropped: the server re-frames the body itself.

#include <boost/beast/http/message.hpp>
#include <boost/optional/optional.hpp>
#include <cstdint>
#include <optional>

#include "grok/frames.hpp"

namespace grok {

/// How the parser framed the response body.
struct response_framing {
  bool chunked = false;
  boost::optional<uint64_t> content_length;  // as Beast's parser reports it
  bool done = false;  ///< the parser already holds the whole message (no Data frames follow but the end)
  bool keep_alive = true;  ///< what the local service's head says (Beast's keep_alive())
};

struct response_head_result {
  pb::Frame frame;          ///< response_head and exchange_id set
  bool upgraded = false;    ///< 101 to an upgrade request: raw bytes from here on
  bool keep_alive = true;   ///< the local connection may be reused afterwards
};

/// Builds the ResponseHead frame for a final (non-1xx, or 101) response.
response_head_result build_response_head(const boost::beast::http::response_header<>& res,
                                         const response_framing& framing, uint64_t exchange_id,
                                         bool upgrade_requested);

}  // namespace grok
