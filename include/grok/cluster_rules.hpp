#pragma once
// The rules several grok-server nodes apply to the names they share through
// etcd (pure: no I/O). Each node that serves a name keeps one record under
// PREFIX/names/NAME/NODE; a claim reads the name's records, judges them here,
// and writes its own only if none of them changed since it read them (an
// etcd transaction), so of N claims of one name at once exactly one wins.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grok/tokens.hpp"
#include "grok/tunnel_registry.hpp"

namespace grok {

/// One node's hold on a name, as kept in etcd.
struct name_record {
  std::string node;
  token_digest owner{};
  token_digest pool_key{};
  bool pool = false;
  bool tcp = false;
  std::string token_label;
  bool grace = false;  ///< the node's last tunnel left; its owner may come back
};

/// Whether `who` may serve `name` (`tcp`: a TCP tunnel) beside what other
/// nodes hold: `records` are the name's records on other nodes. ok, or why not
/// (the same answers the local registry gives). Nodes of one cluster share
/// names as one server would: a pool's members may sit on any node; a lone
/// tunnel's name may be served by its token on several nodes at once (a
/// client connected to two nodes); a record in its grace keeps the name for
/// its owner. `tokens_identify`: the server takes only its tokens (without
/// them every client has the same token, so a lone tunnel's name stays with
/// the one node that holds it).
claim_result judge_cluster_claim(const std::vector<name_record>& records, const claimant& who, bool tcp,
                                 bool tokens_identify = true);

/// Serialized form of a record (grok.cluster.v1.NameRecord); nullopt for
/// bytes that are not one.
std::string encode_name_record(const name_record& r);
std::optional<name_record> decode_name_record(std::string_view bytes);

/// etcd's range end for every key that starts with `prefix`: the prefix with
/// its last byte below 0xff raised by one ("\0" when every byte is 0xff).
std::string prefix_range_end(std::string_view prefix);

/// Keys: PREFIX/names/NAME/NODE and PREFIX/nodes/NODE. split_name_key gives
/// NAME and NODE back from a names key, nullopt for other keys.
std::string name_key(std::string_view prefix, std::string_view name, std::string_view node);
std::string name_key_prefix(std::string_view prefix, std::string_view name);
std::string node_key(std::string_view prefix, std::string_view node);
struct name_key_parts {
  std::string name;
  std::string node;
};
std::optional<name_key_parts> split_name_key(std::string_view prefix, std::string_view key);

}  // namespace grok
