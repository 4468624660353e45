// The name registry's rules with a clock the test moves: who may take a
// name, the grace after its tunnel went offline, reserved names, per-token
// limits, and one winner among concurrent claims.

#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "grok/tunnel_registry.hpp"

using namespace grok;
using namespace std::chrono_literals;

namespace {

struct fake_tunnel {
  int id;
  bool healthy = true;
  unsigned in_flight = 0;
  bool accepting() const { return healthy; }
  unsigned load() const { return in_flight; }
};

/// A registry whose clock is `now`, with the grace `grace`.
struct fixture {
  tunnel_registry<fake_tunnel>::clock::time_point now{};
  tunnel_registry<fake_tunnel> reg{[this] { return now; }};
  token_digest alice = sha256_digest("alice"), bob = sha256_digest("bob");
  explicit fixture(std::chrono::milliseconds grace = 60s) { reg.configure({}, grace); }
  std::shared_ptr<fake_tunnel> tunnel(int id) { return std::make_shared<fake_tunnel>(fake_tunnel{id}); }
};

}  // namespace

TEST_CASE("a free name is taken once; a live name is refused to everyone else, its owner included") {
  fixture f;
  auto a = f.tunnel(1);
  CHECK(f.reg.claim("app", a, f.alice) == claim_result::ok);
  CHECK(f.reg.find("app").t == a);
  CHECK(f.reg.claim("app", f.tunnel(2), f.bob) == claim_result::taken);
  CHECK(f.reg.claim("app", f.tunnel(3), f.alice) == claim_result::taken);
  CHECK(f.reg.size() == 1);
}

TEST_CASE("after release, only the owner may take the name until the grace has passed") {
  fixture f(10s);
  auto a = f.tunnel(1);
  REQUIRE(f.reg.claim("app", a, f.alice) == claim_result::ok);
  f.reg.release("app", a.get());
  auto found = f.reg.find("app");
  CHECK(found.t == nullptr);
  CHECK(found.recently_offline);  // answers 502, not 404

  f.now += 9999ms;
  CHECK(f.reg.claim("app", f.tunnel(2), f.bob) == claim_result::held);
  CHECK(f.reg.find("app").recently_offline);
  f.now += 1ms;  // the grace is over exactly now
  CHECK_FALSE(f.reg.find("app").recently_offline);
  CHECK(f.reg.claim("app", f.tunnel(2), f.bob) == claim_result::ok);
}

TEST_CASE("the owner reclaims its name within the grace") {
  fixture f(10s);
  auto a = f.tunnel(1);
  REQUIRE(f.reg.claim("app", a, f.alice) == claim_result::ok);
  f.reg.release("app", a.get());
  f.now += 5s;
  auto again = f.tunnel(2);
  CHECK(f.reg.claim("app", again, f.alice) == claim_result::ok);
  CHECK(f.reg.find("app").t == again);
  // The reclaim ended the grace: once released again, a new grace starts from then.
  f.reg.release("app", again.get());
  f.now += 9s;
  CHECK(f.reg.claim("app", f.tunnel(3), f.bob) == claim_result::held);
}

TEST_CASE("a live name passes to a new tunnel of the same token only when the claim allows a takeover") {
  fixture f;
  auto old = f.tunnel(1);
  REQUIRE(f.reg.claim("app", old, f.alice) == claim_result::ok);
  std::shared_ptr<fake_tunnel> displaced;
  CHECK(f.reg.claim("app", f.tunnel(2), f.bob, &displaced) == claim_result::taken);  // another token: never
  CHECK(displaced == nullptr);
  CHECK(f.reg.claim("app", f.tunnel(3), f.alice) == claim_result::taken);  // no takeover asked
  auto fresh = f.tunnel(4);
  CHECK(f.reg.claim("app", fresh, f.alice, &displaced) == claim_result::taken_over);
  CHECK(displaced == old);
  CHECK(f.reg.find("app").t == fresh);
  // The displaced tunnel's release, when it closes, leaves the name with the new one.
  f.reg.release("app", old.get());
  CHECK(f.reg.find("app").t == fresh);
  CHECK(f.reg.size() == 1);
}

TEST_CASE("two streams of one client never take a name from each other; a stream reconnecting still does") {
  fixture f;
  auto stream = [&](const std::string& client, uint32_t n) {
    claimant c(f.alice);
    c.client = client;
    c.stream = n;
    return c;
  };
  auto first = f.tunnel(1);
  REQUIRE(f.reg.claim("app", first, stream("client-1", 0)) == claim_result::ok);
  std::shared_ptr<fake_tunnel> displaced;
  // The same client's other stream, reaching this server at another address: refused, nothing displaced.
  CHECK(f.reg.claim("app", f.tunnel(2), stream("client-1", 1), &displaced) == claim_result::same_client);
  CHECK(displaced == nullptr);
  CHECK(f.reg.find("app").t == first);
  // Stream 0 again (it reconnected; the server still holds its old session): takes it over.
  auto again = f.tunnel(3);
  CHECK(f.reg.claim("app", again, stream("client-1", 0), &displaced) == claim_result::taken_over);
  CHECK(displaced == first);
  // Another process of the same token (a restarted grok): takes it over, as before.
  CHECK(f.reg.claim("app", f.tunnel(4), stream("client-2", 1), &displaced) == claim_result::taken_over);
  CHECK(displaced == again);
  // After that take-over, stream 0 of the new process is its own: refused as the same client.
  CHECK(f.reg.claim("app", f.tunnel(5), stream("client-2", 0), &displaced) == claim_result::same_client);
  // A client that sends no id (an older grok) takes over as before.
  CHECK(f.reg.claim("app", f.tunnel(6), stream("", 0), &displaced) == claim_result::taken_over);
}

TEST_CASE("a release by a tunnel that no longer holds the name changes nothing") {
  fixture f;
  auto a = f.tunnel(1), b = f.tunnel(2);
  REQUIRE(f.reg.claim("app", a, f.alice) == claim_result::ok);
  f.reg.release("app", b.get());  // b never held it
  CHECK(f.reg.find("app").t == a);
  f.reg.release("app", a.get());
  f.reg.release("app", a.get());  // twice: still one grace for alice
  CHECK(f.reg.claim("app", f.tunnel(3), f.bob) == claim_result::held);
}

TEST_CASE("reserved names go only to their token, and never to a random pick") {
  fixture f;
  f.reg.configure({{"shop", f.alice}}, 60s);
  CHECK(f.reg.claim("shop", f.tunnel(1), f.bob) == claim_result::reserved);
  CHECK(f.reg.reserved_by("shop") == f.alice);
  CHECK_FALSE(f.reg.reserved_by("other").has_value());
  CHECK(f.reg.claim("shop", f.tunnel(2), f.alice) == claim_result::ok);

  std::vector<std::string> candidates = {"shop", "held", "live", "free"};
  auto live = f.tunnel(3), gone = f.tunnel(4);
  REQUIRE(f.reg.claim("live", live, f.bob) == claim_result::ok);
  REQUIRE(f.reg.claim("held", gone, f.bob) == claim_result::ok);
  f.reg.release("held", gone.get());
  size_t next = 0;
  CHECK(f.reg.free_name([&] { return candidates[next++]; }) == "free");
  CHECK(next == 4);
}

TEST_CASE("per-token limits count tunnels, and a removed one frees a place") {
  fixture f;
  CHECK(f.reg.add_token_tunnel(f.alice, 2));
  CHECK(f.reg.add_token_tunnel(f.alice, 2));
  CHECK_FALSE(f.reg.add_token_tunnel(f.alice, 2));
  CHECK(f.reg.add_token_tunnel(f.bob, 2));  // another token counts apart
  f.reg.remove_token_tunnel(f.alice);
  CHECK(f.reg.add_token_tunnel(f.alice, 2));
  for (int i = 0; i < 100; ++i) CHECK(f.reg.add_token_tunnel(f.bob, 0));  // 0 = no limit
}

TEST_CASE("of many concurrent claims of one name, exactly one wins") {
  for (int round = 0; round < 20; ++round) {
    fixture f;
    std::atomic<int> wins{0}, taken{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i)
      threads.emplace_back([&, i] {
        while (!go.load()) {
        }
        auto r = f.reg.claim("race", f.tunnel(i), i % 2 ? f.alice : f.bob);
        (r == claim_result::ok ? wins : taken).fetch_add(1);
      });
    go = true;
    for (auto& t : threads) t.join();
    CHECK(wins == 1);
    CHECK(taken == 7);
  }
}

TEST_CASE("pools: members of one token or one pool key share a name; nobody else joins") {
  fixture f;
  auto team = sha256_digest("pool:team");
  claimant alice_pool(f.alice, team, true), bob_pool(f.bob, team, true), bob_alone(f.bob, f.bob, true);
  size_t members = 0;
  CHECK(f.reg.claim("api", f.tunnel(1), alice_pool, nullptr, &members) == claim_result::ok);
  CHECK(members == 1);
  CHECK(f.reg.claim("api", f.tunnel(2), alice_pool, nullptr, &members) == claim_result::joined);
  CHECK(members == 2);
  CHECK(f.reg.claim("api", f.tunnel(3), bob_pool, nullptr, &members) == claim_result::joined);  // same pool key
  CHECK(members == 3);
  CHECK(f.reg.claim("api", f.tunnel(4), bob_alone) == claim_result::other_pool);
  std::shared_ptr<fake_tunnel> displaced;
  CHECK(f.reg.claim("api", f.tunnel(5), claimant(f.alice), &displaced) == claim_result::pooled);  // not a pool member
  CHECK(displaced == nullptr);
  CHECK(f.reg.members("api").size() == 3);
  CHECK(f.reg.tunnels().size() == 3);
  CHECK(f.reg.size() == 1);

  // A name a lone tunnel holds is not joinable, by its own token either.
  REQUIRE(f.reg.claim("solo", f.tunnel(6), f.alice) == claim_result::ok);
  CHECK(f.reg.claim("solo", f.tunnel(7), claimant(f.alice, f.alice, true)) == claim_result::not_a_pool);

  // A pool has at most its limit of members.
  f.reg.configure({}, 60s, 3);
  CHECK(f.reg.claim("api", f.tunnel(8), alice_pool) == claim_result::pool_full);
}

TEST_CASE("pools: the name stays while one member is left; then only the pool may reclaim it within the grace") {
  fixture f;
  auto team = sha256_digest("pool:team");
  claimant alice_pool(f.alice, team, true), bob_pool(f.bob, team, true);
  auto a = f.tunnel(1), b = f.tunnel(2);
  REQUIRE(f.reg.claim("api", a, alice_pool) == claim_result::ok);
  REQUIRE(f.reg.claim("api", b, bob_pool) == claim_result::joined);
  f.reg.release("api", a.get());
  CHECK(f.reg.find("api").t == b);
  f.reg.release("api", b.get());
  CHECK(f.reg.find("api").recently_offline);
  CHECK(f.reg.claim("api", f.tunnel(3), claimant(sha256_digest("carol"))) == claim_result::held);
  CHECK(f.reg.claim("api", f.tunnel(4), claimant(f.bob)) == claim_result::held);  // bob alone is not the pool
  CHECK(f.reg.claim("api", f.tunnel(5), bob_pool) == claim_result::ok);           // a member of the pool is
}

TEST_CASE("pools: a reserved name admits the reserving token's pool") {
  fixture f;
  auto team = sha256_digest("pool:team");
  f.reg.configure({{"shop", name_reservation(f.alice, team)}}, 60s);
  CHECK(f.reg.claim("shop", f.tunnel(1), claimant(f.bob, team, false)) == claim_result::reserved);  // not asking to pool
  CHECK(f.reg.claim("shop", f.tunnel(2), claimant(f.bob, sha256_digest("x"), true)) == claim_result::reserved);
  CHECK(f.reg.claim("shop", f.tunnel(3), claimant(f.bob, team, true)) == claim_result::ok);
}

TEST_CASE("pools: each exchange goes to the accepting member with the least in flight, in turns among equals") {
  fixture f;
  auto key = f.alice;
  claimant c(f.alice, key, true);
  std::vector<std::shared_ptr<fake_tunnel>> m;
  for (int i = 0; i < 3; ++i) {
    m.push_back(f.tunnel(i));
    REQUIRE(f.reg.claim("api", m.back(), c) != claim_result::other_pool);
  }
  // All idle: in turns.
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) order.push_back(f.reg.find("api").t->id);
  CHECK(order == std::vector<int>{0, 1, 2, 0, 1, 2});
  // The least loaded wins whatever the turn.
  m[0]->in_flight = 5;
  m[1]->in_flight = 1;
  m[2]->in_flight = 3;
  for (int i = 0; i < 4; ++i) CHECK(f.reg.find("api").t->id == 1);
  // Equal loads take turns again.
  m[2]->in_flight = 1;
  std::set<int> seen;
  for (int i = 0; i < 4; ++i) seen.insert(f.reg.find("api").t->id);
  CHECK(seen == std::set<int>{1, 2});
  // An unhealthy member gets nothing; `except` (a retry) skips one more.
  m[1]->healthy = false;
  for (int i = 0; i < 4; ++i) CHECK(f.reg.find("api").t->id == 2);
  CHECK(f.reg.find("api", m[2].get()).t->id == 0);
  // None accepting: no tunnel, and the lookup says why.
  m[0]->healthy = m[2]->healthy = false;
  auto none = f.reg.find("api");
  CHECK(none.t == nullptr);
  CHECK(none.unhealthy);
  CHECK_FALSE(none.recently_offline);
  // A member that left is never picked, and the turns go on among the rest.
  m[0]->healthy = m[1]->healthy = m[2]->healthy = true;
  m[0]->in_flight = m[1]->in_flight = m[2]->in_flight = 0;
  f.reg.release("api", m[1].get());
  std::set<int> rest;
  for (int i = 0; i < 6; ++i) rest.insert(f.reg.find("api").t->id);
  CHECK(rest == std::set<int>{0, 2});
}

TEST_CASE("pools: what the members share is made once and dropped with the name") {
  fixture f;
  claimant c(f.alice, f.alice, true);
  auto a = f.tunnel(1), b = f.tunnel(2);
  int made = 0;
  auto make = [&] {
    ++made;
    return std::make_shared<int>(made);
  };
  CHECK(f.reg.shared("api", make) == nullptr);  // nobody holds it
  REQUIRE(f.reg.claim("api", a, c) == claim_result::ok);
  REQUIRE(f.reg.claim("api", b, c) == claim_result::joined);
  auto first = f.reg.shared("api", make);
  auto second = f.reg.shared("api", make);
  CHECK(first == second);
  CHECK(made == 1);
  std::weak_ptr<void> weak = first;
  first.reset();
  second.reset();
  f.reg.release("api", a.get());
  CHECK_FALSE(weak.expired());  // b still holds the name
  f.reg.release("api", b.get());
  CHECK(weak.expired());
}
