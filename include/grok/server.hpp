#pragma once
// grok-server: the public HTTP listener, the tunnel (gRPC) listener, the
// admin endpoint and the worker pool that runs them.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "grok/config.hpp"

namespace grok {

class server {
 public:
  /// `workers` threads run the one io_context that serves public HTTP;
  /// `config_path` is re-read by reload().
  server(std::shared_ptr<const server_config> cfg, unsigned workers, std::string config_path = {});
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds the listeners and starts the worker pool. Throws std::runtime_error
  /// naming the address that could not be bound.
  void start();
  /// Re-reads the configuration file and applies tokens, limits, timeouts,
  /// log level and worker count without dropping tunnels. Returns an empty
  /// string on success, else the error (the old configuration keeps serving).
  std::string reload();
  /// Graceful stop: new public requests get 503, tunnel clients are told to
  /// go away, in-flight exchanges finish up to server.drain_timeout; then stop().
  void drain();
  /// Closes everything now and joins the workers.
  void stop();
  /// Threads add or retire without dropping connections (0 = auto).
  void resize_workers(unsigned n);
  /// True if the worker pool ran a probe posted within `within` (watchdog).
  bool responsive(std::chrono::milliseconds within);

  uint16_t http_port() const;
  uint16_t grpc_port() const;
  uint16_t api_port() const;
  unsigned workers() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace grok
