#pragma once
// One accept loop for every listening socket of grok-server (public HTTP,
// HTTPS, admin, TCP tunnel ports): each accepted connection gets its own
// strand and is handed to `on_accept`.

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <functional>
#include <memory>

namespace grok::server_detail {

class listener : public std::enable_shared_from_this<listener> {
 public:
  using socket = boost::asio::ip::tcp::socket;
  using accept_fn = std::function<void(socket&&)>;

  /// Binds and listens; throws boost::system::system_error on failure.
  listener(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& ep, accept_fn on_accept)
      : ioc_(ioc), acceptor_(boost::asio::make_strand(ioc)), on_accept_(std::move(on_accept)) {
    acceptor_.open(ep.protocol());
    acceptor_.set_option(boost::asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(boost::asio::socket_base::max_listen_connections);
  }

  void start() { do_accept(); }

  /// Any thread: stops accepting; `after` runs once the socket is closed.
  void stop(std::function<void()> after = {}) {
    boost::asio::post(acceptor_.get_executor(), [self = shared_from_this(), after = std::move(after)] {
      boost::system::error_code ignored;
      self->acceptor_.close(ignored);
      if (after) after();
    });
  }

  boost::asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  void do_accept() {
    acceptor_.async_accept(boost::asio::make_strand(ioc_), [self = shared_from_this()](
                                                              boost::system::error_code ec, socket s) {
      if (ec == boost::asio::error::operation_aborted || !self->acceptor_.is_open()) return;
      if (!ec) {
        s.set_option(boost::asio::ip::tcp::no_delay(true), ec);
        self->on_accept_(std::move(s));
      } else {
        // EMFILE and friends: keep accepting once descriptors free up.
        spdlog::warn("accept on {} failed: {}", self->acceptor_.local_endpoint().port(), ec.message());
      }
      self->do_accept();
    });
  }

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  accept_fn on_accept_;
};

}  // namespace grok::server_detail
