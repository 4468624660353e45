// The name registry's rules with a clock the test moves: who may take a
// name, the grace after its tunnel went offline, reserved names, per-token
// limits, and one winner among concurrent claims.

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "grok/tunnel_registry.hpp"

using namespace grok;
using namespace std::chrono_literals;

namespace {

struct fake_tunnel {
  int id;
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
  f.reg.release("app", a.get(), f.alice);
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
  f.reg.release("app", a.get(), f.alice);
  f.now += 5s;
  auto again = f.tunnel(2);
  CHECK(f.reg.claim("app", again, f.alice) == claim_result::ok);
  CHECK(f.reg.find("app").t == again);
  // The reclaim ended the grace: once released again, a new grace starts from then.
  f.reg.release("app", again.get(), f.alice);
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
  f.reg.release("app", old.get(), f.alice);
  CHECK(f.reg.find("app").t == fresh);
  CHECK(f.reg.size() == 1);
}

TEST_CASE("a release by a tunnel that no longer holds the name changes nothing") {
  fixture f;
  auto a = f.tunnel(1), b = f.tunnel(2);
  REQUIRE(f.reg.claim("app", a, f.alice) == claim_result::ok);
  f.reg.release("app", b.get(), f.bob);  // b never held it
  CHECK(f.reg.find("app").t == a);
  f.reg.release("app", a.get(), f.alice);
  f.reg.release("app", a.get(), f.alice);  // twice: still one grace for alice
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
  f.reg.release("held", gone.get(), f.bob);
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
