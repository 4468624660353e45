// Visitor rules (include/grok/access_rules.hpp): parsing and bounds, the
// verdict for an address and an Authorization header, several rule sets;
// and what admit_hello makes of the rules a Hello carries and the tokens
// file's rules for a token.

#include <doctest/doctest.h>

#include "grok/access_rules.hpp"
#include "grok/admission.hpp"
#include "grok/request_head.hpp"

using namespace grok;
using namespace std::chrono_literals;

namespace {

std::string auth(const std::string& user_pass) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < user_pass.size(); i += 3) {
    uint32_t n = uint8_t(user_pass[i]) << 16;
    if (i + 1 < user_pass.size()) n |= uint8_t(user_pass[i + 1]) << 8;
    if (i + 2 < user_pass.size()) n |= uint8_t(user_pass[i + 2]);
    out += t[(n >> 18) & 63];
    out += t[(n >> 12) & 63];
    out += i + 1 < user_pass.size() ? t[(n >> 6) & 63] : '=';
    out += i + 2 < user_pass.size() ? t[n & 63] : '=';
  }
  return "Basic " + out;
}

access_rules rules(std::vector<std::string> users, std::vector<std::string> allow, std::vector<std::string> deny) {
  access_rules r;
  for (auto& u : users) r.basic_auth.push_back(parse_basic_credential(u));
  for (auto& a : allow) r.allow.push_back(parse_cidr_rule(a));
  for (auto& d : deny) r.deny.push_back(parse_cidr_rule(d));
  return r;
}

std::string refusal_of(const pb::AccessRules& in) {
  auto r = rules_from_hello(in);
  REQUIRE(std::holds_alternative<std::string>(r));
  return std::get<std::string>(r);
}

}  // namespace

TEST_CASE("--basic-auth USER:PASS: the user ends at the first ':', both parts are required") {
  auto c = parse_basic_credential("alice:pa:ss");
  CHECK(c.user == "alice");
  CHECK(c.password == "pa:ss");
  CHECK_THROWS_WITH(parse_basic_credential("alice"), "expected USER:PASS, got no ':'");
  CHECK_THROWS_WITH(parse_basic_credential(":pw"), "expected USER:PASS: the user is empty");
  CHECK_THROWS_WITH(parse_basic_credential("alice:"), "expected USER:PASS: the password is empty");
  CHECK_THROWS_WITH(parse_basic_credential("al\tice:pw"), "expected USER:PASS: a control character in the user or password");
  CHECK_THROWS_WITH(parse_basic_credential("a:" + std::string(257, 'x')),
                    "expected USER:PASS: a user or password longer than 256 bytes");
  CHECK_NOTHROW(parse_basic_credential("a:" + std::string(256, 'x')));
}

TEST_CASE("CIDR rules: IPv4, IPv6, one address; a bad one is named") {
  CHECK(parse_cidr_rule("10.1.2.3/8").to_string() == "10.0.0.0/8");
  CHECK(parse_cidr_rule("2001:db8::1/32").to_string() == "2001:db8::/32");
  CHECK(parse_cidr_rule("127.0.0.2").to_string() == "127.0.0.2/32");
  CHECK_THROWS_WITH(parse_cidr_rule("10.0.0.300/8"),
                    "'10.0.0.300/8' is not an IPv4 or IPv6 address or network (e.g. 10.0.0.0/8, 2001:db8::/32)");
  CHECK_THROWS(parse_cidr_rule("10.0.0.0/33"));
  CHECK_THROWS(parse_cidr_rule(""));
}

TEST_CASE("the address rules: deny wins, allow limits, an unparsable address matches nothing") {
  auto r = rules({}, {"10.0.0.0/8", "2001:db8::/32"}, {"10.9.0.0/16"});
  CHECK(address_allowed(r, "10.1.2.3"));
  CHECK(address_allowed(r, "::ffff:10.1.2.3"));  // a v4 visitor on a dual-stack socket
  CHECK(address_allowed(r, "2001:db8::7"));
  CHECK_FALSE(address_allowed(r, "10.9.1.1"));
  CHECK_FALSE(address_allowed(r, "192.0.2.1"));
  CHECK_FALSE(address_allowed(r, "not-an-address"));
  auto deny_only = rules({}, {}, {"192.0.2.0/24"});
  CHECK(address_allowed(deny_only, "198.51.100.1"));
  CHECK(address_allowed(deny_only, "unknown"));  // passes a deny list, as it matches none
  CHECK_FALSE(address_allowed(deny_only, "192.0.2.200"));
  CHECK(address_allowed(access_rules{}, "192.0.2.200"));
}

TEST_CASE("check_access: 403 before 401; any listed user admits; every set must pass") {
  auto tunnel = rules({"alice:s3cret", "bob:hunter2"}, {}, {"192.0.2.0/24"});
  std::vector<access_rules> sets{tunnel};
  CHECK(check_access(sets, "198.51.100.1", "") == access_verdict::unauthorized);
  CHECK(check_access(sets, "198.51.100.1", auth("alice:s3cret")) == access_verdict::pass);
  CHECK(check_access(sets, "198.51.100.1", auth("bob:hunter2")) == access_verdict::pass);
  CHECK(check_access(sets, "198.51.100.1", auth("alice:hunter2")) == access_verdict::unauthorized);
  CHECK(check_access(sets, "198.51.100.1", auth("alice:s3cre")) == access_verdict::unauthorized);
  CHECK(check_access(sets, "198.51.100.1", "Bearer x") == access_verdict::unauthorized);
  // A refused address is refused before credentials are looked at.
  CHECK(check_access(sets, "192.0.2.1", auth("alice:s3cret")) == access_verdict::forbidden);
  // The token's rules come as a second set: both must pass.
  sets.push_back(rules({}, {"198.51.100.0/24"}, {}));
  CHECK(check_access(sets, "198.51.100.1", auth("alice:s3cret")) == access_verdict::pass);
  CHECK(check_access(sets, "203.0.113.1", auth("alice:s3cret")) == access_verdict::forbidden);
  CHECK(check_access({}, "203.0.113.1", "") == access_verdict::pass);
}

TEST_CASE("rules travel in the Hello and come back the same; bad ones are refused naming the rule") {
  auto r = rules({"alice:s3cret"}, {"10.0.0.0/8"}, {"2001:db8::/32"});
  pb::AccessRules wire;
  rules_to_hello(r, &wire);
  auto back = rules_from_hello(wire);
  REQUIRE(std::holds_alternative<access_rules>(back));
  CHECK(std::get<access_rules>(back) == r);
  CHECK(describe(r) == "basic auth (1 user), allow 10.0.0.0/8, deny 2001:db8::/32");

  pb::AccessRules bad;
  bad.add_allow_cidr("10.0.0.0/8");
  bad.add_allow_cidr("10.0.0.300/8");
  CHECK(refusal_of(bad) == "allow_cidr[1] '10.0.0.300/8': not an IPv4 or IPv6 address or network");
  pb::AccessRules empty_pw;
  auto* c = empty_pw.add_basic_auth();
  c->set_user("alice");
  CHECK(refusal_of(empty_pw) == "basic_auth[0] for user 'alice': the password is empty");
  pb::AccessRules colon;
  c = colon.add_basic_auth();
  c->set_user("al:ice");
  c->set_password("x");
  CHECK(refusal_of(colon) == "basic_auth[0] for user 'al:ice': the user contains ':'");
  pb::AccessRules many;
  for (int i = 0; i < 129; ++i) many.add_deny_cidr("10.0.0." + std::to_string(i % 256));
  CHECK(refusal_of(many) == "deny_cidr: 129 rules, more than the 128 a tunnel may have");
  pb::AccessRules users;
  for (int i = 0; i < 17; ++i) {
    auto* u = users.add_basic_auth();
    u->set_user("u" + std::to_string(i));
    u->set_password("p");
  }
  CHECK(refusal_of(users) == "basic_auth: 17 credentials, more than the 16 a tunnel may have");
  pb::AccessRules huge;
  huge.add_allow_cidr(std::string(7 << 20, '1'));  // echoed as at most 64 bytes
  CHECK(refusal_of(huge).size() < 140);
}

TEST_CASE("admit_hello: rules are checked, TCP takes no Basic auth, the tokens file adds its rules and may require Basic auth") {
  server_config cfg;
  cfg.tokens = {"t"};
  token_entry e;
  e.label = "contractor";
  e.digest = sha256_digest("t");
  e.require_basic_auth = true;
  e.deny_cidr = {parse_cidr_rule("192.0.2.0/24")};
  cfg.token_table.push_back(e);
  auto hello = [](bool tcp, bool with_auth) {
    pb::Hello h;
    h.set_protocol_version(protocol_version);
    h.set_token("t");
    h.set_protocol(tcp ? pb::Hello::TCP : pb::Hello::HTTP);
    if (with_auth) {
      auto* c = h.mutable_rules()->add_basic_auth();
      c->set_user("guest");
      c->set_password("pw");
    }
    return h;
  };
  auto refused = [&](const pb::Hello& h) {
    auto v = admit_hello(h, cfg, false, 0ms);
    REQUIRE(std::holds_alternative<refusal>(v));
    CHECK(std::get<refusal>(v).reason == pb::Refused::BAD_RULES);
    return std::get<refusal>(v).message;
  };
  CHECK(refused(hello(false, false)) ==
        "the tokens file requires basic auth for this token's tunnels: add --basic-auth USER:PASS");
  CHECK(refused(hello(true, true)) ==
        "basic auth applies to HTTP tunnels; a TCP tunnel takes --allow-cidr and --deny-cidr only");
  CHECK(refused(hello(true, false)) ==
        "the tokens file requires basic auth for this token's tunnels, which a TCP tunnel cannot ask for");
  auto ok = admit_hello(hello(false, true), cfg, false, 0ms);
  REQUIRE(std::holds_alternative<admission>(ok));
  const auto& a = std::get<admission>(ok);
  CHECK(a.rules.basic_auth.size() == 1);
  CHECK(a.token_rules.deny == e.deny_cidr);
  CHECK(a.token_rules.basic_auth.empty());

  pb::Hello bad = hello(false, true);
  bad.mutable_rules()->add_deny_cidr("nope");
  CHECK(refused(bad) == "invalid access rule: deny_cidr[0] 'nope': not an IPv4 or IPv6 address or network");
}

TEST_CASE("the visitor behind trusted proxies is the nearest X-Forwarded-For hop that is not one") {
  std::vector<ip_network> trusted{parse_cidr_rule("10.0.0.0/8")};
  CHECK(visitor_address("203.0.113.9", "10.0.0.1", trusted) == "203.0.113.9");
  CHECK(visitor_address("198.51.100.7, 203.0.113.9", "10.0.0.1", trusted) == "203.0.113.9");
  CHECK(visitor_address("198.51.100.7, 203.0.113.9, 10.2.3.4", "10.0.0.1", trusted) == "203.0.113.9");
  CHECK(visitor_address("10.2.3.4, 10.0.0.9", "10.0.0.1", trusted) == "10.2.3.4");  // all trusted: the farthest
  CHECK(visitor_address("", "10.0.0.1", trusted) == "10.0.0.1");
  CHECK(visitor_address(" , 203.0.113.9 ,", "10.0.0.1", trusted) == "203.0.113.9");
  CHECK(visitor_address("198.51.100.7, garbage", "10.0.0.1", trusted) == "garbage");  // matches no network
  // An untrusted peer is the visitor whatever it claims.
  CHECK(visitor_address("10.2.3.4", "203.0.113.1", trusted) == "203.0.113.1");
}
