#include "local_stream.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <filesystem>
#include <stdexcept>

#include "io_errors.hpp"

namespace grok::client_detail {

using error_code = boost::system::error_code;
using tcp = asio::ip::tcp;

bool local_service::first_report(const std::string& line) const {
  std::lock_guard lk(mu_);
  if (line == last_report_) return false;
  last_report_ = line;
  return true;
}

void local_service::clear_report() const {
  std::lock_guard lk(mu_);
  last_report_.clear();
}

std::shared_ptr<asio::ssl::context> make_local_tls_context(bool insecure) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  if (insecure) {
    ctx->set_verify_mode(asio::ssl::verify_none);
    return ctx;
  }
  // Debian's CA bundle, as for grok-server's certificate: the roots curl and browsers on this host trust.
  const char* bundle = "/etc/ssl/certs/ca-certificates.crt";
  error_code ec;
  if (std::filesystem::exists(bundle))
    ctx->load_verify_file(bundle, ec);
  else
    ctx->set_default_verify_paths(ec);
  if (ec) throw std::runtime_error(std::string("cannot load the CA certificates (") + bundle + "): " + ec.message());
  ctx->set_verify_mode(asio::ssl::verify_peer);
  return ctx;
}

local_stream::local_stream(const strand_t& ex, asio::ssl::context* tls) {
  if (tls)
    tls_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ex, *tls);
  else
    plain_.emplace(ex);
}

void local_stream::async_open(std::shared_ptr<const local_service> svc, std::string preface, open_handler done) {
  preface_ = std::move(preface);
  auto endpoint = svc->endpoint;
  tcp().async_connect(endpoint, [this, svc = std::move(svc), done = std::move(done)](error_code ec) mutable {
    if (ec) return done(ec, ec.message());
    on_connected(std::move(svc), std::move(done));
  });
}

void local_stream::on_connected(std::shared_ptr<const local_service> svc, open_handler done) {
  error_code ignored;
  socket().set_option(tcp::no_delay(true), ignored);
  if (preface_.empty()) return do_handshake(std::move(svc), std::move(done));
  // The PROXY header goes first, in the clear, before any TLS record.
  asio::async_write(tcp(), asio::buffer(preface_),
                    [this, svc = std::move(svc), done = std::move(done)](error_code ec, size_t) mutable {
                      preface_.clear();
                      if (ec) return done(ec, "sending the PROXY header: " + ec.message());
                      do_handshake(std::move(svc), std::move(done));
                    });
}

void local_stream::do_handshake(std::shared_ptr<const local_service> svc, open_handler done) {
  if (!tls_) return done({}, {});
  SSL* ssl = tls_->native_handle();
  error_code not_ip;
  asio::ip::make_address(svc->host, not_ip);
  if (not_ip) {
    // SNI carries names only (RFC 6066 3); the certificate must name the host.
    SSL_set_tlsext_host_name(ssl, svc->host.c_str());
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_set1_host(ssl, svc->host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), svc->host.c_str());
  }
  SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>("\x08http/1.1"), 9);
  tls_->async_handshake(asio::ssl::stream_base::client,
                        [this, svc = std::move(svc), done = std::move(done)](error_code ec) mutable {
                          if (!ec) {
                            svc->clear_report();
                            return done({}, {});
                          }
                          auto why = tls_failure(ec, *svc);
                          done(ec, "TLS handshake: " + why);
                        });
}

std::string local_stream::tls_failure(const error_code& ec, const local_service& svc) {
  std::string why, hint;
  const bool ssl = ec.category() == asio::error::get_ssl_category();
  const auto reason = ssl ? ERR_GET_REASON(static_cast<unsigned long>(ec.value())) : 0;
  if (ssl && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    auto verify = SSL_get_verify_result(tls_->native_handle());
    why = std::string("certificate verify failed (") + X509_verify_cert_error_string(verify) + ")";
    hint = "; pass --upstream-insecure for a development certificate";
  } else if (ssl && (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG)) {
    why = ec.message();
    hint = "; does it speak TLS? for plain HTTP give http" + svc.url.substr(5);
  } else if (peer_closed(ec) || ec == asio::ssl::error::stream_truncated) {
    // What a plain HTTP service that does not answer a ClientHello does.
    why = "the connection was closed";
    hint = "; does it speak TLS? for plain HTTP give http" + svc.url.substr(5);
  } else {
    why = ec.message();
  }
  auto line = "local service " + svc.url + ": TLS handshake: " + why + hint;
  if (svc.first_report(line)) spdlog::error("{}", line);
  return why;
}

bool local_stream::still_open() {
  int fd = socket().native_handle();
  if (!tls_) {
    char probe_byte;
    auto n = ::recv(fd, &probe_byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);  // EOF, an error or unasked bytes: not reusable
  }
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) < 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) == 0;
}

}  // namespace grok::client_detail
