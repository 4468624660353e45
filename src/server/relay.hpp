#pragma once
// Node to node relay in a cluster: a public request that reaches this node
// for a name whose tunnel is on another node goes to that node over one
// gRPC stream per pair (grok.cluster.v1.Relay on the tunnel port), with the
// tunnel protocol's frames and per-exchange credit, and that node's tunnel
// carries it. The public node keeps the visitor's connection and builds the
// request head; the tunnel's node applies the tunnel's visitor rules (it
// knows them) and strips credentials the tunnel asked for.
//
// No gRPC in this header: the public side includes it.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace grpc {
class ServerBuilder;
}

namespace grok::server_detail {

class server_state;
class exchange_target;

class relay_hub {
 public:
  explicit relay_hub(server_state& state);
  ~relay_hub();
  relay_hub(const relay_hub&) = delete;
  relay_hub& operator=(const relay_hub&) = delete;

  /// Before the tunnel port is built: registers the Relay service and its queue.
  void add_to(grpc::ServerBuilder& builder);
  /// Once the tunnel port runs: the threads that poll the relay streams.
  void start();
  /// Ends every relay stream, both ways; the worker pool must still run.
  void stop();
  /// After the tunnel port stopped: waits for the streams to end and the pollers.
  void join();

  /// The relay to a node that serves `name` (turns among several), or
  /// nullptr when no other node does.
  std::shared_ptr<exchange_target> route(const std::string& name);

  /// Per peer node, for /metrics.
  struct peer_stats {
    std::string node;
    uint64_t exchanges = 0;  ///< exchanges this node relayed to it
    uint64_t bytes_out = 0;  ///< request payload bytes sent to it
    uint64_t bytes_in = 0;   ///< response payload bytes received from it
    uint64_t errors = 0;     ///< exchanges it could not take, or lost with a broken stream
  };
  std::vector<peer_stats> stats() const;

  struct impl;  // relay.cpp's streams share it

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace grok::server_detail
