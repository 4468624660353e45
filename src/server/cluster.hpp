#pragma once
// This node's part in a cluster of grok-server nodes that share names
// through etcd (the `cluster:` section; without it nothing here runs).
//
// The node holds an etcd lease and renews it every lease_ttl/3; its
// records live under that lease, so they vanish when the node dies or is
// cut off from etcd for longer than the TTL. A tunnel's name is claimed in
// etcd after the local registry gave it (claim()), and the record goes when
// the node's last tunnel of that name left and the grace passed (release()).
// Every node lists and watches the names prefix into a local map, so a
// public request costs no etcd round trip.
//
// Fencing: once the node cannot show its lease is alive (no renewal for the
// TTL), it stops serving local tunnels (serving() is false) and drops them
// (hooks::fence); they reconnect and claim again under a new lease. While
// etcd members answer but have no quorum, nobody can claim a name, so the
// node keeps serving what it holds and refuses new claims.
//
// No gRPC in this header: the public side includes it.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "grok/admission.hpp"
#include "grok/cluster_rules.hpp"
#include "grok/config.hpp"

namespace grok::server_detail {

class cluster_node {
 public:
  struct hooks {
    /// The node lost its lease: close every local tunnel (any thread).
    std::function<void(const std::string& why)> fence;
    /// Whether a local tunnel still serves `name` (any thread).
    std::function<bool(const std::string& name)> held_locally;
  };

  cluster_node(std::shared_ptr<const server_config> cfg, hooks h);
  ~cluster_node();
  cluster_node(const cluster_node&) = delete;
  cluster_node& operator=(const cluster_node&) = delete;

  /// Starts the lease, watch and claim threads; returns at once (the node is
  /// ready once it holds a lease and has listed the names).
  void start();
  /// Revokes the lease (this node's names are free at once) and joins the threads.
  void stop();

  /// Claims `name` in etcd for a tunnel the local registry just gave it.
  /// `done` runs on a cluster thread with nullopt, or the refusal to send.
  using claim_done = std::function<void(std::optional<refusal>)>;
  void claim(const std::string& name, const claimant& who, bool tcp, const std::string& token_label, claim_done done);
  /// The node's last tunnel of `name` left: its record keeps the name for
  /// its owner for `grace`, then goes.
  void release(const std::string& name, std::chrono::milliseconds grace);

  /// Whether local tunnels may serve: the lease is known to be alive, or the
  /// etcd members that answer have no quorum (so nobody can take a name).
  bool serving() const;

  struct status {
    bool ready = false;   ///< new names can be claimed
    std::string state;    ///< ok | starting | no-quorum | unreachable
    std::string detail;
    size_t names = 0;     ///< names in the local map (every node's)
    size_t nodes = 0;     ///< live nodes, this one included
  };
  status state() const;
  const std::string& node_id() const;
  /// The nodes other than this one that serve `name` now (not in their grace).
  std::vector<name_record> remote_holders(const std::string& name) const;
  /// The tunnel-port address a live node advertises, nullopt for none.
  std::optional<std::string> advertise_of(const std::string& node) const;
  /// Every name other nodes serve now, with their records (for /api/tunnels).
  std::vector<std::pair<std::string, name_record>> remote_records() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace grok::server_detail
