#pragma once
// `grok http PORT --health-check PATH`: asks the local service for PATH
// every interval and tells the server whenever the answer changes, so a pool
// sends no new request to a member whose service is failing. Healthy is a
// 2xx or 3xx status within the timeout; anything else (refused, reset, a
// timeout, another status, not HTTP) is not, and the reason says which.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "local_stream.hpp"

namespace grok::client_detail {

/// What one probe found.
struct probe_result {
  bool healthy = false;
  std::string detail;  ///< "GET /health: 200", "GET /health: connection refused"
};

/// The status of an HTTP response's first line ("HTTP/1.1 503 ..."), or 0
/// when `line` is not one.
unsigned parse_status_line(std::string_view line);

class health_check : public std::enable_shared_from_this<health_check> {
 public:
  struct settings {
    std::shared_ptr<const local_service> local;  ///< plain or TLS, as the exchanges reach it
    std::string host;  ///< the Host header (the local address as given)
    std::string path;
    std::chrono::milliseconds interval{10000};
    std::chrono::milliseconds timeout{2000};
  };
  /// `changed` runs on the check's strand with each result that differs from
  /// the one before (the first result counts as a change from "unhealthy").
  health_check(boost::asio::io_context& ioc, settings s, std::function<void(const probe_result&)> changed);

  /// Probes now, then every interval, until stop().
  void start();
  /// Any thread.
  void stop();

 private:
  void probe();
  void done(bool healthy, std::string detail);

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  settings s_;
  std::function<void(const probe_result&)> changed_;
  boost::asio::steady_timer next_;
  boost::asio::steady_timer deadline_;
  std::shared_ptr<local_stream> stream_;  // the probe's connection; a new one each time
  std::string request_;
  std::string reply_;
  bool healthy_ = false;
  bool reported_ = false;
  bool in_probe_ = false;
  bool stopped_ = false;
};

}  // namespace grok::client_detail
