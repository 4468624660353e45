#include "grok/cluster_rules.hpp"

#include <algorithm>

#include "grok/cluster/v1/cluster.pb.h"

namespace grok {

claim_result judge_cluster_claim(const std::vector<name_record>& records, const claimant& who, bool tcp,
                                 bool tokens_identify) {
  for (const auto& r : records) {
    bool owner = r.owner == who.token || (r.pool && who.pool && r.pool_key == who.pool_key);
    if (r.grace) {
      if (!owner) return claim_result::held;
      continue;
    }
    if (who.pool || r.pool) {
      if (!who.pool) return claim_result::pooled;
      if (!r.pool) return claim_result::not_a_pool;
      if (r.pool_key != who.pool_key || r.tcp != tcp) return claim_result::other_pool;
      continue;
    }
    if (r.owner != who.token || r.tcp != tcp || !tokens_identify) return claim_result::taken;
  }
  return claim_result::ok;
}

namespace {

std::string digest_bytes(const token_digest& d) { return std::string(d.begin(), d.end()); }

bool read_digest(const std::string& bytes, token_digest& out) {
  if (bytes.size() != out.size()) return false;
  std::copy(bytes.begin(), bytes.end(), out.begin());
  return true;
}

}  // namespace

std::string encode_name_record(const name_record& r) {
  grok::cluster::v1::NameRecord m;
  m.set_node_id(r.node);
  m.set_owner(digest_bytes(r.owner));
  m.set_pool_key(digest_bytes(r.pool_key));
  m.set_pool(r.pool);
  m.set_tcp(r.tcp);
  m.set_token_label(r.token_label);
  m.set_grace(r.grace);
  return m.SerializeAsString();
}

std::optional<name_record> decode_name_record(std::string_view bytes) {
  grok::cluster::v1::NameRecord m;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return std::nullopt;
  name_record r;
  r.node = m.node_id();
  if (!read_digest(m.owner(), r.owner) || !read_digest(m.pool_key(), r.pool_key)) return std::nullopt;
  r.pool = m.pool();
  r.tcp = m.tcp();
  r.token_label = m.token_label();
  r.grace = m.grace();
  return r;
}

std::string prefix_range_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string name_key_prefix(std::string_view prefix, std::string_view name) {
  std::string k(prefix);
  k += "names/";
  k += name;
  k += '/';
  return k;
}

std::string name_key(std::string_view prefix, std::string_view name, std::string_view node) {
  return name_key_prefix(prefix, name) + std::string(node);
}

std::string node_key(std::string_view prefix, std::string_view node) {
  std::string k(prefix);
  k += "nodes/";
  k += node;
  return k;
}

std::optional<name_key_parts> split_name_key(std::string_view prefix, std::string_view key) {
  if (!key.starts_with(prefix)) return std::nullopt;
  key.remove_prefix(prefix.size());
  if (!key.starts_with("names/")) return std::nullopt;
  key.remove_prefix(6);
  auto slash = key.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == key.size()) return std::nullopt;
  return name_key_parts{std::string(key.substr(0, slash)), std::string(key.substr(slash + 1))};
}

}  // namespace grok
