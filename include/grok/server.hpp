#pragma once
// grok-server: the public HTTP listener, the tunnel (gRPC) listener and the
// worker pool that runs them.

#include <cstdint>
#include <memory>
#include <string>

#include "grok/config.hpp"

namespace grok {

class server {
 public:
  /// `workers` threads run the one io_context that serves public HTTP.
  server(std::shared_ptr<const server_config> cfg, unsigned workers);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds both listeners and starts the worker pool. Throws std::runtime_error
  /// naming the address that could not be bound.
  void start();
  /// Tells tunnel clients to go away, closes listeners, waits up to the
  /// drain timeout for gRPC to finish, and joins the workers.
  void stop();

  uint16_t http_port() const;
  uint16_t grpc_port() const;
  unsigned workers() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace grok
