#pragma once
// The one classification of socket errors both binaries use: which errors
// only say that the peer went away (logged at debug, Beast's `fail()`), and
// which say that the peer closed its end.

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

namespace grok {

/// The peer closed the connection (FIN or reset) rather than anything failing.
inline bool peer_closed(const boost::system::error_code& ec) {
  namespace error = boost::asio::error;
  return ec == error::eof || ec == boost::beast::http::error::end_of_stream || ec == error::connection_reset;
}

/// A routine end of a connection: the peer left (closed, reset, stopped
/// mid-message, never finished TLS), a deadline passed, or grok cancelled
/// the operation itself. Anything else is worth a line at a higher level.
inline bool expected_disconnect(const boost::system::error_code& ec) {
  namespace error = boost::asio::error;
  return peer_closed(ec) || ec == error::operation_aborted || ec == error::broken_pipe ||
         ec == error::not_connected || ec == boost::beast::http::error::partial_message ||
         ec == boost::beast::error::timeout || ec == boost::asio::ssl::error::stream_truncated;
}

}  // namespace grok
