// Tokens file parsing, token generation and lookup.

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "grok/config.hpp"
#include "grok/tokens.hpp"

using namespace grok;

namespace {

std::string digest_of(const std::string& token) { return digest_hex(sha256_digest(token)); }

std::string parse_error(const std::string& text) {
  try {
    parse_tokens_file(text, "tokens.yaml");
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("sha256 digests are the standard ones, in hex") {
  CHECK(digest_hex(sha256_digest("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto d = parse_digest_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
  REQUIRE(d);
  CHECK(*d == sha256_digest("abc"));
  CHECK_FALSE(parse_digest_hex("ba78"));
  CHECK_FALSE(parse_digest_hex(std::string(63, 'a') + "g"));
}

TEST_CASE("a tokens file reads labels, digests, reserved names, limits and tcp") {
  auto text = "# comment\n- label: alice\n  sha256: " + digest_of("a") +
              "\n  names: [Alice, api]\n  max_tunnels: 3\n- label: bob@example.com\n  sha256: " + digest_of("b") +
              "\n  tcp: false\n";
  auto entries = parse_tokens_file(text, "tokens.yaml");
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].label == "alice");
  CHECK(entries[0].digest == sha256_digest("a"));
  CHECK(entries[0].names == std::vector<std::string>{"alice", "api"});
  CHECK(entries[0].max_tunnels == 3);
  CHECK(entries[0].tcp);
  CHECK(entries[0].line == 1);
  CHECK(entries[1].label == "bob@example.com");
  CHECK(entries[1].names.empty());
  CHECK(entries[1].max_tunnels == 0);
  CHECK_FALSE(entries[1].tcp);
  CHECK(parse_tokens_file("", "t").empty());
  CHECK(parse_tokens_file("# nothing yet\n", "t").empty());
}

TEST_CASE("a tokens file reads a token's visitor rules, and writes them back the same") {
  auto text = "- label: contractor\n  sha256: " + digest_of("c") +
              "\n  allow_cidr: [10.0.0.0/8, 2001:db8::/32]\n  deny_cidr: [10.9.0.0/16]\n  require_basic_auth: true\n";
  auto entries = parse_tokens_file(text, "tokens.yaml");
  REQUIRE(entries.size() == 1);
  const auto& e = entries[0];
  REQUIRE(e.allow_cidr.size() == 2);
  CHECK(e.allow_cidr[0].to_string() == "10.0.0.0/8");
  CHECK(e.allow_cidr[1].to_string() == "2001:db8::/32");
  REQUIRE(e.deny_cidr.size() == 1);
  CHECK(e.deny_cidr[0].to_string() == "10.9.0.0/16");
  CHECK(e.require_basic_auth);
  CHECK(render_token_entry(e) == text);
  auto back = parse_tokens_file(render_token_entry(e), "t");
  CHECK(back[0].allow_cidr == e.allow_cidr);
  CHECK_FALSE(parse_tokens_file("- label: x\n  sha256: " + digest_of("x") + "\n", "t")[0].require_basic_auth);
}

TEST_CASE("tokens file errors name the file, line and entry") {
  auto a = digest_of("a"), b = digest_of("b");
  CHECK(parse_error("label: x\n") == "tokens.yaml:1: expected a list of tokens (\"- label: ...\") at the top level");
  CHECK(parse_error("- sha256: " + a + "\n") == "tokens.yaml:1: [0]: missing label");
  CHECK(parse_error("- label: x\n") == "tokens.yaml:1: [0]: missing sha256");
  CHECK(parse_error("- label: x\n  sha256: nothex\n") ==
        "tokens.yaml:2: [0].sha256: expected the token's SHA-256 as 64 hex digits");
  CHECK(parse_error("- label: x\n  sha256: " + a + "\n  colour: red\n") ==
        "tokens.yaml:3: [0].colour: unknown key (expected label, sha256, names, max_tunnels, pool, tcp, "
        "allow_cidr, deny_cidr, require_basic_auth)");
  CHECK(parse_error("- label: x\n  sha256: " + a + "\n  allow_cidr: [10.0.0.0/8, 10.0.0.300]\n") ==
        "tokens.yaml:3: [0].allow_cidr[1]: '10.0.0.300' is not an IPv4 or IPv6 address or network");
  CHECK(parse_error("- label: x\n  sha256: " + a + "\n  deny_cidr: 10.0.0.0/8\n") ==
        "tokens.yaml:3: [0].deny_cidr: expected a list of networks such as [10.0.0.0/8]");
  CHECK(parse_error("- label: x\n  sha256: " + a + "\n  require_basic_auth: maybe\n") ==
        "tokens.yaml:3: [0].require_basic_auth: expected true or false, got 'maybe'");
  CHECK(parse_error("- label: x\n  sha256: " + a + "\n- label: x\n  sha256: " + b + "\n") ==
        "tokens.yaml:3: [1].label: duplicate of [0]");
  CHECK(parse_error("- label: x\n  sha256: " + a + "\n- label: y\n  sha256: " + a + "\n") ==
        "tokens.yaml:3: [1].sha256: the same token as [0]");
  CHECK(parse_error("- label: x\n  sha256: " + a + "\n  names: [web]\n- label: y\n  sha256: " + b +
                    "\n  names: [web]\n") == "tokens.yaml:6: [1].names[0]: 'web' is already reserved by [0]");
  CHECK(parse_error("- label: x\n  sha256: " + a + "\n  names: [-bad]\n") ==
        "tokens.yaml:3: [0].names[0]: '-bad' is not a valid tunnel name");
  CHECK(parse_error("- label: 'has space'\n  sha256: " + a + "\n") ==
        "tokens.yaml:1: [0].label: use 1-64 of A-Z, a-z, 0-9, '.', '_', '@', '-'");
  CHECK(parse_error("- label: x\n  sha256: " + a + "\n  max_tunnels: -1\n") ==
        "tokens.yaml:3: [0].max_tunnels: expected an integer in 0..4294967295, got '-1'");
}

TEST_CASE("generated tokens are 256-bit base64url, distinct, and valid client tokens") {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    auto t = generate_token();
    CHECK(t.size() == 5 + 43);
    CHECK(t.rfind("grok_", 0) == 0);
    for (char c : t.substr(5))
      CHECK(((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'));
    seen.insert(t);
  }
  CHECK(seen.size() == 200);
}

TEST_CASE("find_token finds the matching entry or none") {
  std::vector<token_entry> v(3);
  v[0].digest = sha256_digest("x");
  v[1].digest = sha256_digest("y");
  v[2].digest = sha256_digest("z");
  CHECK(find_token(v, sha256_digest("x")) == 0);
  CHECK(find_token(v, sha256_digest("z")) == 2);
  CHECK(find_token(v, sha256_digest("w")) == -1);
  CHECK(find_token({}, sha256_digest("w")) == -1);
}

TEST_CASE("token add appends an entry that reads back; remove deletes only that entry") {
  token_entry a;
  a.label = "alice";
  a.digest = sha256_digest("ta");
  a.names = {"alice", "shop"};
  a.max_tunnels = 2;
  auto text = tokens_file_add("", "t.yaml", a);
  CHECK(text.rfind("# grok-server tokens", 0) == 0);
  token_entry b;
  b.label = "bob";
  b.digest = sha256_digest("tb");
  b.tcp = false;
  text = tokens_file_add(text, "t.yaml", b);
  auto entries = parse_tokens_file(text, "t.yaml");
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].names == a.names);
  CHECK(entries[0].max_tunnels == 2);
  CHECK_FALSE(entries[1].tcp);

  token_entry dup = b;
  dup.digest = sha256_digest("other");
  CHECK_THROWS_WITH(tokens_file_add(text, "t.yaml", dup), "label 'bob' already exists in t.yaml");
  token_entry thief;
  thief.label = "carol";
  thief.digest = sha256_digest("tc");
  thief.names = {"shop"};
  CHECK_THROWS_WITH(tokens_file_add(text, "t.yaml", thief), "name 'shop' is already reserved by 'alice'");
  thief.names = {"Bad_Name"};
  CHECK_THROWS_WITH(tokens_file_add(text, "t.yaml", thief), "'Bad_Name' is not a valid name: use 1-63 of a-z, 0-9 and '-'");

  auto removed = tokens_file_remove(text, "t.yaml", "alice");
  auto rest = parse_tokens_file(removed, "t.yaml");
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].label == "bob");
  CHECK(removed.find("# grok-server tokens") == 0);  // the header comment stays
  CHECK_THROWS_WITH(tokens_file_remove(removed, "t.yaml", "alice"), "no token labelled 'alice' in t.yaml");
}

TEST_CASE("the server config merges auth.tokens and auth.tokens_file into one table") {
  auto dir = std::string(P_tmpdir) + "/grok-tokens-test-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/tokens.yaml");
    f << "- label: alice\n  sha256: " << digest_of("ta") << "\n  names: [shop]\n";
  }
  auto cfg = parse_server_config("auth:\n  tokens: [inline]\n  tokens_file: tokens.yaml\n", dir + "/grok-server.yaml");
  CHECK(cfg.auth_required());
  REQUIRE(cfg.token_table.size() == 2);
  CHECK(cfg.token_table[0].label == "auth.tokens[0]");
  CHECK(cfg.token_table[0].digest == sha256_digest("inline"));
  CHECK(cfg.token_table[1].label == "alice");
  CHECK(cfg.tokens_file == dir + "/tokens.yaml");

  CHECK_THROWS_WITH(parse_server_config("auth:\n  tokens_file: missing.yaml\n", dir + "/grok-server.yaml"),
                    doctest::Contains(("/grok-server.yaml:2: auth.tokens_file: cannot read '" + dir + "/missing.yaml'").c_str()));
  {
    std::ofstream f(dir + "/bad.yaml");
    f << "- label: x\n";
  }
  CHECK_THROWS_WITH(parse_server_config("auth:\n  tokens_file: bad.yaml\n", dir + "/grok-server.yaml"),
                    (dir + "/bad.yaml:1: [0]: missing sha256").c_str());
  {
    std::ofstream f(dir + "/same.yaml");
    f << "- label: x\n  sha256: " << digest_of("inline") << "\n";
  }
  CHECK_THROWS_WITH(parse_server_config("auth:\n  tokens: [inline]\n  tokens_file: same.yaml\n", dir + "/grok-server.yaml"),
                    doctest::Contains("'x' is the same token as one in auth.tokens"));
  auto open = parse_server_config("", "x.yaml");
  CHECK_FALSE(open.auth_required());
  auto limits = parse_server_config("auth:\n  max_failures: 3\n  failure_window: 30s\ntunnels:\n  max_streams_per_connection: 2\n", "x.yaml");
  CHECK(limits.max_auth_failures == 3);
  CHECK(limits.auth_failure_window == std::chrono::seconds(30));
  CHECK(limits.max_streams_per_connection == 2);
  std::filesystem::remove_all(dir);
}
