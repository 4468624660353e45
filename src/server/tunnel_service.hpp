#pragma once
// The tunnel port: a gRPC server whose one RPC is a tunnel stream. The only
// part of grok-server that includes gRPC (tunnel_service.cpp).

#include <chrono>
#include <cstdint>
#include <memory>

#include "grok/config.hpp"

namespace grok::server_detail {

class server_state;

class tunnel_service {
 public:
  explicit tunnel_service(server_state& state);
  ~tunnel_service();
  tunnel_service(const tunnel_service&) = delete;
  tunnel_service& operator=(const tunnel_service&) = delete;

  /// Binds server.grpc_address:grpc_port (with TLS when tls.grpc is on),
  /// then accepts tunnel streams. Returns the port bound; throws
  /// std::runtime_error naming the address.
  uint16_t start(const server_config& c);
  bool started() const;
  /// Cancels every stream (gRPC's Shutdown, `grace` for calls to end),
  /// then waits until each has ended, logging an error every
  /// `report_after` meanwhile. The worker pool must still run: a stream
  /// ends when its tunnel's strand calls Finish.
  void stop(std::chrono::milliseconds grace, std::chrono::milliseconds report_after);

 private:
  friend class tunnel_call;
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace grok::server_detail
