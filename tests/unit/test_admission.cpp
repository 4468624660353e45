// What grok-server answers a Hello, checked without a stream: protocol
// version, draining, tokens, names, TCP permission and windows; the wording
// of each refusal; the per-address failed-attempt window on a test clock.

#include <doctest/doctest.h>

#include "grok/admission.hpp"

using namespace grok;
using namespace std::chrono_literals;

namespace {

server_config config_with_tokens() {
  server_config c;
  c.tokens = {"alice-token"};
  token_entry alice;
  alice.label = "alice";
  alice.digest = sha256_digest("alice-token");
  alice.names = {"shop"};
  alice.max_tunnels = 3;
  c.token_table.push_back(alice);
  token_entry notcp;
  notcp.label = "web-only";
  notcp.digest = sha256_digest("web-token");
  notcp.tcp = false;
  c.token_table.push_back(notcp);
  return c;
}

pb::Hello hello(const std::string& token, const std::string& name = "", bool tcp = false) {
  pb::Hello h;
  h.set_protocol_version(protocol_version);
  h.set_token(token);
  h.set_name(name);
  h.set_protocol(tcp ? pb::Hello::TCP : pb::Hello::HTTP);
  return h;
}

refusal refused(const std::variant<admission, refusal>& v) {
  REQUIRE(std::holds_alternative<refusal>(v));
  return std::get<refusal>(v);
}

admission admitted(const std::variant<admission, refusal>& v) {
  REQUIRE(std::holds_alternative<admission>(v));
  return std::get<admission>(v);
}

}  // namespace

TEST_CASE("a good Hello is admitted with its token's label, limit, lower-cased name and window") {
  auto cfg = config_with_tokens();
  auto a = admitted(admit_hello(hello("alice-token", "MyApp"), cfg, false, 0ms));
  CHECK(a.token == sha256_digest("alice-token"));
  CHECK(a.token_label == "alice");
  CHECK(a.name == "myapp");
  CHECK(a.tunnel_limit == 3);
  CHECK(a.limit_from_entry);
  CHECK(a.client_window == cfg.initial_window);
  CHECK_FALSE(a.tcp);

  auto h = hello("alice-token");
  h.set_initial_window(1);  // clamped to at least 1 KiB
  CHECK(admitted(admit_hello(h, cfg, false, 0ms)).client_window == 1024);
  h.set_initial_window(1u << 30);  // and at most 16 MiB
  CHECK(admitted(admit_hello(h, cfg, false, 0ms)).client_window == 16u << 20);
}

TEST_CASE("refusals name what is wrong, in the order a client can fix them") {
  auto cfg = config_with_tokens();
  auto old = hello("alice-token");
  old.set_protocol_version(0);
  auto r = refused(admit_hello(old, cfg, false, 0ms));
  CHECK(r.reason == pb::Refused::UNSUPPORTED_VERSION);
  CHECK(r.message == "protocol version 0 is not supported; this server speaks 1");

  r = refused(admit_hello(hello("alice-token"), cfg, true, 0ms));
  CHECK(r.reason == pb::Refused::DRAINING);
  CHECK(r.message == "the server is shutting down; try again shortly");

  r = refused(admit_hello(hello("alice-token"), cfg, false, 1500ms));
  CHECK(r.reason == pb::Refused::LIMIT);
  CHECK(r.message == "too many failed attempts from this address; try again in 2s");
  CHECK_FALSE(r.bad_token);

  r = refused(admit_hello(hello("wrong"), cfg, false, 0ms));
  CHECK(r.reason == pb::Refused::BAD_TOKEN);
  CHECK(r.message == "invalid token");
  CHECK(r.bad_token);  // counts against the address

  r = refused(admit_hello(hello("alice-token", "-bad-"), cfg, false, 0ms));
  CHECK(r.reason == pb::Refused::BAD_NAME);
  CHECK(r.message == "'-bad-' is not a valid name: use 1-63 of a-z, 0-9 and '-'");

  r = refused(admit_hello(hello("web-token", "", true), cfg, false, 0ms));
  CHECK(r.reason == pb::Refused::BAD_TOKEN);
  CHECK(r.message == "this token may not open TCP tunnels");
  CHECK_FALSE(r.bad_token);
  CHECK(admitted(admit_hello(hello("alice-token", "", true), cfg, false, 0ms)).tcp);
}

TEST_CASE("with no tokens configured any token is taken; auth.tcp_tokens still limits TCP") {
  server_config cfg;
  auto a = admitted(admit_hello(hello("anything"), cfg, false, 0ms));
  CHECK(a.token_label.empty());
  CHECK(a.tunnel_limit == cfg.max_per_token);
  CHECK_FALSE(a.limit_from_entry);
  CHECK(admitted(admit_hello(hello("anything", "", true), cfg, false, 0ms)).tcp);
  cfg.tcp_token_table.push_back(token_entry{.digest = sha256_digest("tcp-ok")});
  CHECK(refused(admit_hello(hello("anything", "", true), cfg, false, 0ms)).message ==
        "this token may not open TCP tunnels");
  CHECK(admitted(admit_hello(hello("tcp-ok", "", true), cfg, false, 0ms)).tcp);
}

TEST_CASE("registry answers and reloads become refusals worded for the client") {
  auto cfg = config_with_tokens();
  cfg.name_grace = 30s;
  CHECK(refuse_claim(claim_result::taken, "app", cfg).message == "name 'app' is already in use by another tunnel");
  CHECK(refuse_claim(claim_result::reserved, "shop", cfg).message == "name 'shop' is reserved for another token");
  auto held = refuse_claim(claim_result::held, "app", cfg);
  CHECK(held.reason == pb::Refused::NAME_HELD);
  CHECK(refuse_claim(claim_result::taken, "app", cfg).reason == pb::Refused::NAME_TAKEN);
  CHECK(refuse_claim(claim_result::reserved, "shop", cfg).reason == pb::Refused::NAME_RESERVED);
  CHECK(held.message == "name 'app' was in use moments ago; only its owner may take it for up to 30s (tunnels.name_grace)");

  auto a = admitted(admit_hello(hello("alice-token"), cfg, false, 0ms));
  CHECK(refuse_token_limit(a).reason == pb::Refused::TOO_MANY_TUNNELS);
  CHECK(refuse_token_limit(a).message == "this token already holds 3 tunnel(s), its limit (max_tunnels in the tokens file)");
  a.limit_from_entry = false;
  CHECK(refuse_token_limit(a).message == "this token already holds 3 tunnel(s), its limit (tunnels.max_per_token)");

  cfg.tcp_port_start = 0;
  CHECK(refuse_tcp_port(cfg).reason == pb::Refused::UNAVAILABLE);  // for good: the client exits
  CHECK(refuse_tcp_port(cfg).message == "TCP tunnels are turned off on this server");
  cfg.tcp_port_start = 20000;
  cfg.tcp_port_end = 20009;
  CHECK(refuse_tcp_port(cfg).reason == pb::Refused::LIMIT);  // for now: the client tries again
  CHECK(refuse_tcp_port(cfg).message == "no free TCP port in 20000..20009");

  auto alice = sha256_digest("alice-token"), web = sha256_digest("web-token");
  CHECK_FALSE(recheck_after_reload(cfg, alice, "app", std::nullopt, true).has_value());
  CHECK(recheck_after_reload(cfg, sha256_digest("gone"), "app", std::nullopt, false)->message == "token revoked");
  CHECK(recheck_after_reload(cfg, alice, "shop", web, false)->message ==
        "name 'shop' is now reserved for another token");
  CHECK(recheck_after_reload(cfg, web, "app", std::nullopt, true)->message ==
        "this token may no longer open TCP tunnels");
}

TEST_CASE("failed attempts block an address for the rest of their window, and only that address") {
  auth_failure_limiter::clock::time_point now{};
  auth_failure_limiter lim([&] { return now; });
  lim.configure(3, 60s);
  for (int i = 0; i < 2; ++i) lim.failed("10.0.0.1");
  CHECK(lim.blocked("10.0.0.1") == 0ms);
  now += 10s;
  lim.failed("10.0.0.1");  // the third, within the window that began at 0
  CHECK(lim.blocked("10.0.0.1") == 50s);
  CHECK(lim.blocked("10.0.0.2") == 0ms);
  now += 49999ms;
  CHECK(lim.blocked("10.0.0.1") == 1ms);
  now += 1ms;
  CHECK(lim.blocked("10.0.0.1") == 0ms);
  lim.failed("10.0.0.1");  // a new window: one failure so far
  CHECK(lim.blocked("10.0.0.1") == 0ms);

  lim.configure(0, 60s);  // 0 = no limit
  for (int i = 0; i < 10; ++i) lim.failed("10.0.0.3");
  CHECK(lim.blocked("10.0.0.3") == 0ms);
}

TEST_CASE("a refused name is echoed back at most 64 bytes long, printable") {
  auto cfg = config_with_tokens();
  auto r = refused(admit_hello(hello("alice-token", std::string(7 << 20, 'A')), cfg, false, 0ms));
  CHECK(r.message == "'" + std::string(64, 'A') + "' (7340032 bytes) is not a valid name: use 1-63 of a-z, 0-9 and '-'");
  r = refused(admit_hello(hello("alice-token", std::string("bad\r\nname\x01", 10)), cfg, false, 0ms));
  CHECK(r.message == "'bad??name?' is not a valid name: use 1-63 of a-z, 0-9 and '-'");
}
