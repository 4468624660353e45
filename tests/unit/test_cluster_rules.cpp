#include <doctest/doctest.h>

#include "grok/cluster_rules.hpp"

using namespace grok;

namespace {
name_record live(const std::string& node, const token_digest& owner, bool pool = false,
                 const token_digest& key = {}) {
  name_record r;
  r.node = node;
  r.owner = owner;
  r.pool_key = pool ? key : owner;
  r.pool = pool;
  return r;
}
}  // namespace

TEST_CASE("cluster rules: who may serve a name beside other nodes' records") {
  auto t1 = sha256_digest("one"), t2 = sha256_digest("two"), team = sha256_digest("team");
  CHECK(judge_cluster_claim({}, claimant(t1), false) == claim_result::ok);
  // A lone tunnel's name: another token is refused, the same token may serve it on another node too.
  CHECK(judge_cluster_claim({live("b", t1)}, claimant(t2), false) == claim_result::taken);
  CHECK(judge_cluster_claim({live("b", t1)}, claimant(t1), false) == claim_result::ok);
  CHECK(judge_cluster_claim({live("b", t1)}, claimant(t1), true) == claim_result::taken);  // HTTP vs TCP
  // Without tokens every client has the same one: the name stays with its node.
  CHECK(judge_cluster_claim({live("b", t1)}, claimant(t1), false, false) == claim_result::taken);
  // Pools span nodes; their rules are the registry's.
  claimant member1(t1, team, true), member2(t2, team, true), stranger(t2, t2, true);
  CHECK(judge_cluster_claim({live("b", t1, true, team)}, member2, false) == claim_result::ok);
  CHECK(judge_cluster_claim({live("b", t1, true, team)}, stranger, false) == claim_result::other_pool);
  CHECK(judge_cluster_claim({live("b", t1, true, team)}, claimant(t1), false) == claim_result::pooled);
  CHECK(judge_cluster_claim({live("b", t1)}, member1, false) == claim_result::not_a_pool);
  // A record in its grace keeps the name for its owner (or its pool) only.
  auto kept = live("b", t1);
  kept.grace = true;
  CHECK(judge_cluster_claim({kept}, claimant(t2), false) == claim_result::held);
  CHECK(judge_cluster_claim({kept}, claimant(t1), false) == claim_result::ok);
  auto kept_pool = live("b", t1, true, team);
  kept_pool.grace = true;
  CHECK(judge_cluster_claim({kept_pool}, member2, false) == claim_result::ok);
  CHECK(judge_cluster_claim({kept_pool}, claimant(t2), false) == claim_result::held);
  // Every record counts: one refusing record refuses.
  CHECK(judge_cluster_claim({live("b", t1), live("c", t2)}, claimant(t1), false) == claim_result::taken);
}

TEST_CASE("cluster rules: records, keys and ranges") {
  name_record r = live("node-a", sha256_digest("one"), true, sha256_digest("team"));
  r.tcp = true;
  r.token_label = "alice";
  r.grace = true;
  auto back = decode_name_record(encode_name_record(r));
  REQUIRE(back);
  CHECK(back->node == "node-a");
  CHECK(back->owner == r.owner);
  CHECK(back->pool_key == r.pool_key);
  CHECK(back->pool);
  CHECK(back->tcp);
  CHECK(back->grace);
  CHECK(back->token_label == "alice");
  CHECK_FALSE(decode_name_record("\x12\x03" "abc"));  // an owner that is no digest
  CHECK_FALSE(decode_name_record("\xff\xff\xff"));

  CHECK(prefix_range_end("/grok/") == "/grok0");
  CHECK(prefix_range_end("a\xff") == "b");
  CHECK(prefix_range_end("\xff\xff") == std::string(1, '\0'));
  CHECK(name_key("/grok/", "app", "node-a") == "/grok/names/app/node-a");
  CHECK(node_key("/grok/", "node-a") == "/grok/nodes/node-a");
  auto parts = split_name_key("/grok/", "/grok/names/app/node-a");
  REQUIRE(parts);
  CHECK(parts->name == "app");
  CHECK(parts->node == "node-a");
  CHECK_FALSE(split_name_key("/grok/", "/grok/nodes/node-a"));
  CHECK_FALSE(split_name_key("/grok/", "/grok/names/app/"));
  CHECK_FALSE(split_name_key("/grok/", "/other/names/app/node-a"));
}
