#pragma once
// A connection to the local service, plain TCP or TLS (an https:// local
// address), and how one is opened: the TCP connect, the PROXY header (with
// --proxy-protocol), then the TLS handshake with SNI and verification.

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "grok/frames.hpp"
#include "grok/proxy_out.hpp"

namespace grok::client_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
using strand_t = asio::strand<asio::io_context::executor_type>;

/// Where and how grok reaches the local service. Built once per client;
/// shared read-only by every exchange and the health check.
struct local_service {
  asio::ip::tcp::endpoint endpoint;
  std::string host;  ///< as the user wrote it: the TLS server name (SNI) and the name the certificate must carry
  std::string url;   ///< "https://localhost:8443", for messages
  /// The client's one TLS context (the CA bundle read once); null for plain TCP.
  std::shared_ptr<asio::ssl::context> tls;
  int proxy_protocol = 0;  ///< 0 none, 1 or 2: the PROXY header version sent first on each connection

  /// True when `line` differs from the last failure reported: a certificate
  /// problem is logged once, not once per request. Any thread.
  bool first_report(const std::string& line) const;
  /// A connection succeeded: the next failure is reported again.
  void clear_report() const;

 private:
  mutable std::mutex mu_;
  mutable std::string last_report_;
};

/// The PROXY header a connection to `svc` opened for `head` (null: for no
/// visitor) starts with; empty without --proxy-protocol (grok/proxy_out.hpp).
inline std::string proxy_header_for(const local_service& svc, const pb::RequestHead* head) {
  return grok::proxy_header_for(svc.proxy_protocol, head);
}

/// Whether a kept-alive connection opened for `head` may serve the next
/// request with the same PROXY header (grok/proxy_out.hpp).
inline bool poolable(const local_service& svc, const pb::RequestHead& head) {
  return grok::proxy_header_poolable(svc.proxy_protocol, head);
}

/// The TLS context for an https:// local service: TLS 1.2 or later, the
/// system CAs (/etc/ssl/certs/ca-certificates.crt) unless `insecure`, which
/// accepts any certificate. Throws std::runtime_error when the CAs cannot be read.
std::shared_ptr<asio::ssl::context> make_local_tls_context(bool insecure);

/// Plain TCP or TLS over TCP, decided when it is made. Reads and writes
/// dispatch at run time, so Beast and Asio algorithms (asio::async_write,
/// the write_queue) work on it unchanged.
class local_stream {
 public:
  using executor_type = beast::tcp_stream::executor_type;
  using open_handler = std::function<void(boost::system::error_code, std::string)>;

  /// `tls`: the context of an https:// local service, or null for plain TCP.
  local_stream(const strand_t& ex, asio::ssl::context* tls);

  executor_type get_executor() { return tcp().get_executor(); }
  bool tls() const { return tls_ != nullptr; }
  /// The lowest layer: its socket, its deadlines.
  beast::tcp_stream& tcp() { return tls_ ? tls_->next_layer() : *plain_; }
  asio::ip::tcp::socket& socket() { return tcp().socket(); }
  void expires_after(std::chrono::steady_clock::duration d) { tcp().expires_after(d); }
  void expires_never() { tcp().expires_never(); }

  /// Connects to `svc`, writes `preface` first (a PROXY header; may be
  /// empty), then for TLS shakes hands. `done(ec, why)` runs on the stream's
  /// executor; when ec is set, `why` says which step failed and how
  /// ("Connection refused", "TLS handshake: certificate verify failed
  /// (self-signed certificate)"). A TLS failure is also logged once, with
  /// what to do about it. The caller's deadline (expires_after) covers all
  /// three steps.
  void async_open(std::shared_ptr<const local_service> svc, std::string preface, open_handler done);

  /// An idle kept-alive connection the local service has not closed: one
  /// non-blocking look at the socket. Plain: nothing may have arrived either.
  /// TLS: records may arrive unasked (a TLS 1.3 NewSessionTicket, a
  /// KeyUpdate) and are read with the next response, so only a close or an
  /// error rules the connection out.
  bool still_open();

  /// A TLS close without close_notify reads as eof, as a plain close does:
  /// many servers end that way, and a body cut short is still caught by its
  /// framing (Content-Length, chunked).
  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (!tls_) return plain_->async_read_some(b, std::move(handler));
          auto ex = asio::get_associated_executor(handler, get_executor());
          tls_->async_read_some(
              b, asio::bind_executor(ex, [h = std::move(handler)](boost::system::error_code ec, std::size_t n) mutable {
                if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;
                std::move(h)(ec, n);
              }));
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (tls_)
            tls_->async_write_some(b, std::move(handler));
          else
            plain_->async_write_some(b, std::move(handler));
        },
        token, buffers);
  }

 private:
  void on_connected(std::shared_ptr<const local_service> svc, open_handler done);
  void do_handshake(std::shared_ptr<const local_service> svc, open_handler done);
  /// The reason a handshake failed, in words a user can act on.
  std::string tls_failure(const boost::system::error_code& ec, const local_service& svc);

  std::optional<beast::tcp_stream> plain_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls_;
  std::string preface_;  // the PROXY header while it is being written
};

}  // namespace grok::client_detail
