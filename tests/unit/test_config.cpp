#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "grok/config.hpp"

using namespace std::chrono_literals;
using grok::config_error;
using grok::parse_client_config;
using grok::parse_duration;
using grok::parse_server_config;
using grok::parse_size;

namespace {

std::string server_error(const std::string& yaml) {
  try {
    parse_server_config(yaml, "x.yaml");
  } catch (const config_error& e) {
    return e.what();
  }
  return "<no error>";
}

std::string client_error(const std::string& yaml) {
  try {
    parse_client_config(yaml, "c.yaml");
  } catch (const config_error& e) {
    return e.what();
  }
  return "<no error>";
}

std::string invalid_argument_of(auto&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<no error>";
}

unsigned auto_workers() { return std::max(1u, std::thread::hardware_concurrency() / 2); }

}  // namespace

TEST_CASE("config: empty text, comments only and an empty document give defaults") {
  for (const char* text : {"", "# nothing here\n", "---\n", "\n\n"}) {
    CAPTURE(text);
    auto cfg = parse_server_config(text, "empty.yaml");
    grok::server_config defaults;
    CHECK(cfg.source == "empty.yaml");
    CHECK(cfg.domain == defaults.domain);
    CHECK(cfg.bind_address == "0.0.0.0");
    CHECK(cfg.http_port == 80);
    CHECK(cfg.grpc_port == 4443);
    CHECK(cfg.api_port == 0);
    CHECK(cfg.drain_timeout == 30s);
    CHECK(cfg.worker_pool_size == 0);
    CHECK(cfg.initial_window == 512 * 1024);
    CHECK(cfg.max_window == 4 * 1024 * 1024);
    CHECK(cfg.max_frame_size == 64 * 1024);
    CHECK(cfg.max_exchanges == 1000);
    CHECK(cfg.tokens.empty());
    CHECK(cfg.log_level == "info");
    CHECK(cfg.log_format == "text");
  }
  auto client = parse_client_config("", "c.yaml");
  CHECK(client.server.empty());  // no built-in server: grok says how to set one
  CHECK(client.token.empty());
  CHECK(client.log_level == "info");
}

TEST_CASE("config: server section") {
  auto cfg = parse_server_config(R"(
server:
  domain: Tunnel.Example.COM.
  bind_address: 127.0.0.2
  http_port: 8080
  grpc_address: "::"
  grpc_port: 0
  api_address: 127.0.0.1
  api_port: 9090
  drain_timeout: 5s
  max_body_size: 10MB
  max_header_bytes: 32KiB
  read_header_timeout: 250ms
  idle_timeout: 2m
)",
                                 "s.yaml");
  CHECK(cfg.domain == "tunnel.example.com");
  CHECK(cfg.bind_address == "127.0.0.2");
  CHECK(cfg.http_port == 8080);
  CHECK(cfg.grpc_address == "::");
  CHECK(cfg.grpc_port == 0);
  CHECK(cfg.api_address == "127.0.0.1");
  CHECK(cfg.api_port == 9090);
  CHECK(cfg.drain_timeout == 5s);
  CHECK(cfg.max_body_size == 10'000'000);
  CHECK(cfg.max_header_bytes == 32 * 1024);
  CHECK(cfg.read_header_timeout == 250ms);
  CHECK(cfg.idle_timeout == 2min);
}

TEST_CASE("config: tunnels section") {
  auto cfg = parse_server_config(R"(
tunnels:
  worker_pool_size: 8
  response_timeout: 1m30s
  heartbeat_interval: 15
  max_per_token: 3
  initial_window: 1MiB
  max_frame_size: 16KiB
  max_exchanges: 100000
  max_queued_bytes: 1GiB
  name_grace: 0
)",
                                 "t.yaml");
  CHECK(cfg.worker_pool_size == 8);
  CHECK(cfg.response_timeout == 90s);
  CHECK(cfg.heartbeat_interval == 15s);
  CHECK(cfg.max_per_token == 3);
  CHECK(cfg.initial_window == 1024 * 1024);
  CHECK(cfg.max_frame_size == 16 * 1024);
  CHECK(cfg.max_exchanges == 100000);
  CHECK(cfg.max_queued_bytes == (1ull << 30));
  CHECK(cfg.name_grace == 0ms);
}

TEST_CASE("config: auth and logging sections") {
  auto cfg = parse_server_config(R"(
auth:
  tokens:
    - alpha
    - "0123"
logging:
  level: debug
  format: json
)",
                                 "a.yaml");
  REQUIRE(cfg.tokens.size() == 2);
  CHECK(cfg.tokens[0] == "alpha");
  CHECK(cfg.tokens[1] == "0123");
  CHECK(cfg.log_level == "debug");
  CHECK(cfg.log_format == "json");

  // Sections and lists with everything commented out mean defaults.
  auto empty = parse_server_config("server:\nauth:\n  tokens:\nlogging: {}\n", "e.yaml");
  CHECK(empty.tokens.empty());
  CHECK(empty.http_port == 80);
  CHECK(parse_server_config("auth:\n  tokens: []\n", "e.yaml").tokens.empty());
}

TEST_CASE("parse_duration") {
  CHECK(parse_duration("30s") == 30s);
  CHECK(parse_duration("5m") == 5min);
  CHECK(parse_duration("250ms") == 250ms);
  CHECK(parse_duration("1h") == 1h);
  CHECK(parse_duration("2m30s") == 150s);
  CHECK(parse_duration("1h2m3s4ms") == 1h + 2min + 3s + 4ms);
  CHECK(parse_duration("45") == 45s);
  CHECK(parse_duration("0") == 0ms);
  CHECK(parse_duration("8760h") == 8760h);

  CHECK(invalid_argument_of([] { parse_duration(""); }) == "invalid duration '': must not be empty");
  CHECK(invalid_argument_of([] { parse_duration("-5s"); }) == "invalid duration '-5s': must not be negative");
  CHECK(invalid_argument_of([] { parse_duration("5x"); }) ==
        "invalid duration '5x': unknown unit 'x' (use ms, s, m or h)");
  CHECK(invalid_argument_of([] { parse_duration("30s2m"); }) ==
        "invalid duration '30s2m': units must go from largest to smallest, each once");
  CHECK(invalid_argument_of([] { parse_duration("1s1s"); }) ==
        "invalid duration '1s1s': units must go from largest to smallest, each once");
  CHECK(invalid_argument_of([] { parse_duration("8761h"); }) == "invalid duration '8761h': too large (at most 8760h)");
  CHECK(invalid_argument_of([] { parse_duration("99999999999999999999999"); }) ==
        "invalid duration '99999999999999999999999': expected whole numbers with units ms, s, m or h, "
        "e.g. 30s, 250ms, 2m30s (a bare number is seconds)");
  for (const char* bad : {"1.5s", "s", "10 s", "abc", "5m ", "ms5"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_duration(bad), std::invalid_argument);
  }
}

TEST_CASE("parse_size") {
  CHECK(parse_size("512") == 512);
  CHECK(parse_size("512B") == 512);
  CHECK(parse_size("0") == 0);
  CHECK(parse_size("64KiB") == 64 * 1024);
  CHECK(parse_size("16MiB") == 16ull << 20);
  CHECK(parse_size("1GiB") == 1ull << 30);
  CHECK(parse_size("2TiB") == 2ull << 40);
  CHECK(parse_size("10KB") == 10'000);
  CHECK(parse_size("10MB") == 10'000'000);
  CHECK(parse_size("3GB") == 3'000'000'000ull);
  CHECK(parse_size("64 KiB") == 64 * 1024);

  CHECK(invalid_argument_of([] { parse_size("10mb"); }) ==
        "invalid size '10mb': unknown unit 'mb' (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)");
  CHECK(invalid_argument_of([] { parse_size("lots"); }) ==
        "invalid size 'lots': expected a whole number with an optional unit B, KB, MB, GB, TB, KiB, MiB, GiB or "
        "TiB, e.g. 64KiB");
  CHECK(invalid_argument_of([] { parse_size("20000000TiB"); }) == "invalid size '20000000TiB': too large");
  for (const char* bad : {"", "-1", "1.5MiB", "KiB", "10 ", "1e6"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_size(bad), std::invalid_argument);
  }
}

TEST_CASE("config: duration and size errors name file, line and key") {
  CHECK(server_error("server:\n  drain_timeout: soon\n") ==
        "x.yaml:2: server.drain_timeout: invalid duration 'soon': expected whole numbers with units ms, s, m or h, "
        "e.g. 30s, 250ms, 2m30s (a bare number is seconds)");
  CHECK(server_error("tunnels:\n  response_timeout: 0s\n") ==
        "x.yaml:2: tunnels.response_timeout: must be greater than 0, got '0s'");
  CHECK(server_error("server:\n  max_header_bytes: 10mb\n") ==
        "x.yaml:2: server.max_header_bytes: invalid size '10mb': unknown unit 'mb' "
        "(use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)");
  CHECK(server_error("tunnels:\n  initial_window: 32MiB\n") ==
        "x.yaml:2: tunnels.initial_window: expected a size in 1KiB..16MiB, got '32MiB'");
  CHECK(server_error("tunnels:\n  max_frame_size: 512\n") ==
        "x.yaml:2: tunnels.max_frame_size: expected a size in 1KiB..1MiB, got '512'");
  CHECK(server_error("tunnels:\n  max_queued_bytes: 100\n") ==
        "x.yaml:2: tunnels.max_queued_bytes: expected a size of at least 1KiB, got '100'");
}

TEST_CASE("config: max_window bounds the window's growth") {
  CHECK(parse_server_config("tunnels:\n  max_window: 16MiB\n", "t.yaml").max_window == 16u << 20);
  CHECK(parse_server_config("tunnels:\n  max_window: 512KiB\n", "t.yaml").max_window == 512u * 1024);
  // Unset, it is never below initial_window.
  auto big = parse_server_config("tunnels:\n  initial_window: 8MiB\n", "t.yaml");
  CHECK(big.max_window == 8u << 20);
  CHECK(server_error("tunnels:\n  initial_window: 1MiB\n  max_window: 768KiB\n") ==
        "x.yaml:3: tunnels.max_window: must be at least tunnels.initial_window (1MiB)");
  CHECK(server_error("tunnels:\n  max_window: 128MiB\n") ==
        "x.yaml:2: tunnels.max_window: expected a size in 1KiB..64MiB, got '128MiB'");
}

TEST_CASE("config: max_frame_size must fit in initial_window") {
  CHECK(server_error("tunnels:\n  initial_window: 16KiB\n  max_frame_size: 32KiB\n") ==
        "x.yaml:3: tunnels.max_frame_size: must not exceed tunnels.initial_window (16KiB)");
  // Only the window is in the file, so the error points there.
  CHECK(server_error("\ntunnels:\n  initial_window: 16KiB\n") ==
        "x.yaml:3: tunnels.initial_window: must be at least tunnels.max_frame_size (64KiB)");
  CHECK_NOTHROW(parse_server_config("tunnels:\n  initial_window: 64KiB\n  max_frame_size: 64KiB\n", "x.yaml"));
}

TEST_CASE("config: unknown keys report line and suggestion") {
  CHECK(server_error("server:\n  domain: example.com\n  htp_port: 80\n") ==
        "x.yaml:3: server.htp_port: unknown key, did you mean 'http_port'?");
  CHECK(server_error("# comment\nsevrer:\n  http_port: 80\n") ==
        "x.yaml:2: sevrer: unknown key, did you mean 'server'?");
  CHECK(server_error("tunnels:\n  worker-pool-size: 4\n") ==
        "x.yaml:2: tunnels.worker-pool-size: unknown key, did you mean 'worker_pool_size'?");
  CHECK(server_error("logging:\n  level: info\n  colour: true\n") == "x.yaml:3: logging.colour: unknown key");
  CHECK(server_error("metrics: {}\n") == "x.yaml:1: metrics: unknown key");
  // A key spanning lines must not break the one-line message.
  CHECK(server_error("? |\n  multi\n: 1\n") == "x.yaml:1: multi\\n: unknown key");
  CHECK(client_error("server: a:1\ntokn: x\n") == "c.yaml:2: tokn: unknown key, did you mean 'token'?");
}

TEST_CASE("config: duplicate keys") {
  CHECK(server_error("server:\n  http_port: 80\n  http_port: 81\n") ==
        "x.yaml:3: server.http_port: duplicate key (first set on line 2)");
}

TEST_CASE("config: wrong types") {
  CHECK(server_error("server:\n  http_port:\n    a: 1\n") ==
        "x.yaml:2: server.http_port: expected an integer in 0..65535, got a map");
  CHECK(server_error("server:\n  domain: [a, b]\n") ==
        "x.yaml:2: server.domain: expected a hostname, got a list");
  CHECK(server_error("server: 8080\n") == "x.yaml:1: server: expected a map, got '8080'");
  CHECK(server_error("server:\n  bind_address:\n") ==
        "x.yaml:2: server.bind_address: missing value (expected an address)");
  CHECK(server_error("- a\n- b\n") == "x.yaml:1: expected a map at the top level, got a list");
  CHECK(server_error("just text\n") == "x.yaml:1: expected a map at the top level, got 'just text'");
  CHECK(server_error("auth:\n  tokens: {a: b}\n") == "x.yaml:2: auth.tokens: expected a list of strings, got a map");
  CHECK(server_error("[a]: 1\n") == "x.yaml:1: keys must be strings, got a list");
  CHECK(server_error("server: {}\n---\nserver: {}\n") == "x.yaml:3: expected a single YAML document, found more");
}

TEST_CASE("config: out-of-range and invalid values") {
  CHECK(server_error("server:\n  domain: example.com\n  http_port: 70000\n") ==
        "x.yaml:3: server.http_port: expected an integer in 0..65535, got '70000'");
  CHECK(server_error("server:\n  grpc_port: -1\n") ==
        "x.yaml:2: server.grpc_port: expected an integer in 0..65535, got '-1'");
  CHECK(server_error("\n\n\n\n\ntunnels:\n  worker_pool_size: lots\n") ==
        "x.yaml:7: tunnels.worker_pool_size: expected an integer in 0..1024, got 'lots'");
  CHECK(server_error("tunnels:\n  worker_pool_size: 1025\n") ==
        "x.yaml:2: tunnels.worker_pool_size: expected an integer in 0..1024, got '1025'");
  CHECK(server_error("tunnels:\n  max_exchanges: 0\n") ==
        "x.yaml:2: tunnels.max_exchanges: expected an integer in 1..100000, got '0'");
  CHECK(server_error("server:\n  domain: \"\"\n") == "x.yaml:2: server.domain: must not be empty");
  CHECK(server_error("server:\n  domain: bad_host.example\n") ==
        "x.yaml:2: server.domain: expected a hostname such as tunnel.example.com, got 'bad_host.example'");
  CHECK(server_error("server:\n  domain: \"*.example.com\"\n") ==
        "x.yaml:2: server.domain: expected a hostname such as tunnel.example.com, got '*.example.com'");
  CHECK(server_error("logging:\n  format: xml\n") == "x.yaml:2: logging.format: expected text or json, got 'xml'");
  CHECK(parse_server_config("server:\n  http_port: 0\n  grpc_port: 65535\n", "x.yaml").grpc_port == 65535);
}

TEST_CASE("config: bad log level") {
  CHECK(server_error("logging:\n  level: verbose\n") ==
        "x.yaml:2: logging.level: expected one of trace, debug, info, warn, error, critical, off, got 'verbose'");
  CHECK(client_error("log_level: loud\n") ==
        "c.yaml:1: log_level: expected one of trace, debug, info, warn, error, critical, off, got 'loud'");
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    CAPTURE(level);
    CHECK(parse_server_config(std::string("logging: {level: ") + level + "}\n", "x.yaml").log_level == level);
  }
}

TEST_CASE("config: syntax errors report the line") {
  CHECK(server_error("server:\n  http_port: [80\n  grpc_port: 1\n") ==
        "x.yaml:3: syntax error: end of sequence flow not found");
  CHECK(server_error("server:\n  http_port: 80\n   grpc_port: 1\n") == "x.yaml:3: syntax error: illegal map value");
  CHECK(client_error("server: \"unterminated\n").rfind("c.yaml:", 0) == 0);
}

TEST_CASE("config: errors about tokens never contain the token") {
  const std::string secret = "s3cr3t-value";
  auto msg = server_error("auth:\n  tokens:\n    - good-one\n    - ok2\n    - \"" + secret + " with space\"\n");
  CHECK(msg == "x.yaml:5: auth.tokens[2]: token must not contain whitespace");
  CHECK(msg.find(secret) == std::string::npos);

  msg = server_error("auth:\n  tokens:\n    - " + secret + "\n    - " + secret + "\n");
  CHECK(msg == "x.yaml:4: auth.tokens[1]: duplicate of auth.tokens[0]");
  CHECK(msg.find(secret) == std::string::npos);

  msg = server_error("auth:\n  tokens: " + secret + "\n");
  CHECK(msg == "x.yaml:2: auth.tokens: expected a list of strings, got a string");
  CHECK(msg.find(secret) == std::string::npos);

  msg = server_error("auth:\n  tokens:\n    - \"\"\n");
  CHECK(msg == "x.yaml:3: auth.tokens[0]: token must not be empty");

  msg = server_error("auth:\n  tokens:\n    - {" + secret + ": 1}\n");
  CHECK(msg == "x.yaml:3: auth.tokens[0]: expected a string, got a map");

  msg = server_error("auth:\n  tokens:\n    - \"" + secret + "\\u00e9\"\n");
  CHECK(msg == "x.yaml:3: auth.tokens[0]: token must contain only printable ASCII characters");
  CHECK(msg.find(secret) == std::string::npos);

  msg = client_error("token: \"" + secret + "\\tx\"\n");
  CHECK(msg == "c.yaml:1: token: token must not contain whitespace");
  CHECK(msg.find(secret) == std::string::npos);
}

TEST_CASE("effective_worker_count") {
  grok::server_config cfg;
  cfg.worker_pool_size = 6;
  CHECK(grok::effective_worker_count(cfg, nullptr) == 6);
  CHECK(grok::effective_worker_count(cfg, "") == 6);
  CHECK(grok::effective_worker_count(cfg, "3") == 3);
  CHECK(grok::effective_worker_count(cfg, "1024") == 1024);
  CHECK(grok::effective_worker_count(cfg, "0") == auto_workers());
  cfg.worker_pool_size = 0;
  CHECK(grok::effective_worker_count(cfg, nullptr) == auto_workers());
  CHECK(grok::effective_worker_count(cfg, "2") == 2);

  for (const char* bad : {"many", "1025", "-1", " 4", "4x", "99999999999999999999999"}) {
    CAPTURE(bad);
    try {
      grok::effective_worker_count(cfg, bad);
      FAIL("expected config_error");
    } catch (const config_error& e) {
      CHECK(std::string(e.what()) ==
            std::string("GROK_WORKER_POOL_SIZE: expected an integer in 0..1024, got '") + bad + "'");
    }
  }
}

TEST_CASE("config: client config") {
  auto cfg = parse_client_config("server: tunnel.example.com:443\ntoken: abc123\nlog_level: warn\n", "c.yaml");
  CHECK(cfg.source == "c.yaml");
  CHECK(cfg.server == "tunnel.example.com:443");
  CHECK(cfg.token == "abc123");
  CHECK(cfg.log_level == "warn");
  CHECK(parse_client_config("server: \"[::1]:4443\"\n", "c.yaml").server == "[::1]:4443");
  CHECK(parse_client_config("token:\n", "c.yaml").token.empty());

  CHECK(client_error("server: example.com\n") ==
        "c.yaml:1: server: expected host:port such as tunnel.example.com:4443, got 'example.com'");
  CHECK(client_error("server: example.com:0\n") ==
        "c.yaml:1: server: expected a port in 1..65535 after the last ':', got 'example.com:0'");
  CHECK(client_error("server: ::1:4443\n") ==
        "c.yaml:1: server: IPv6 addresses must be in brackets, e.g. [::1]:4443, got '::1:4443'");
  CHECK(client_error("server: {host: a}\n") == "c.yaml:1: server: expected host:port, got a map");
  CHECK(client_error("tunnel: {}\n").find("c.yaml:1: tunnel: unknown key") == 0);
  CHECK(client_error("tunnels: [web]\n") == "c.yaml:1: tunnels: expected a map of tunnel names to their settings, got a list");
}

TEST_CASE("config: loading files") {
  auto dir = std::filesystem::temp_directory_path() / "grok-test-config";
  std::filesystem::create_directories(dir);
  auto path = (dir / "server.yaml").string();
  {
    std::ofstream(path) << "server:\n  http_port: 8081\n  bogus: 1\n";
  }
  try {
    grok::load_server_config(path);
    FAIL("expected config_error");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()) == path + ":3: server.bogus: unknown key");
  }
  {
    std::ofstream(path) << "server:\n  http_port: 8081\n";
  }
  auto cfg = grok::load_server_config(path);
  CHECK(cfg.http_port == 8081);
  CHECK(cfg.source == path);

  auto missing = (dir / "missing.yaml").string();
  try {
    grok::load_client_config(missing);
    FAIL("expected config_error");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()) == missing + ": cannot read: No such file or directory");
  }
  try {
    grok::load_server_config(dir.string());
    FAIL("expected config_error");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()) == dir.string() + ": cannot read: Is a directory");
  }
  std::filesystem::remove_all(dir);
}

#ifdef GROK_SOURCE_DIR
TEST_CASE("config: shipped conf/grok-server.yaml parses and documents every key") {
  const std::string path = GROK_SOURCE_DIR "/conf/grok-server.yaml";
  auto cfg = grok::load_server_config(path);
  CHECK(cfg.domain == "localhost");
  CHECK(cfg.http_port == 8080);
  CHECK(cfg.grpc_port == 4443);
  CHECK(cfg.api_port == 0);
  REQUIRE(cfg.tokens.size() == 1);
  CHECK(cfg.tokens[0] == "change-me");

  // Every key the parser accepts is documented in its own section: set to its
  // default ("  key: value"), or, for a file path with no default, shown as a
  // commented example ("  # key: /path").
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto section_text = [&](const std::string& section) {
    auto begin = text.find("\n" + section + ":\n");
    if (begin == std::string::npos) return std::string();
    begin += 1;
    // The section runs to the next line that starts in column 0 with a letter.
    auto end = begin + section.size();
    for (;;) {
      end = text.find('\n', end);
      if (end == std::string::npos || (end + 1 < text.size() && std::isalpha(static_cast<unsigned char>(text[end + 1]))))
        break;
      ++end;
    }
    return text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
  };
  const std::vector<std::pair<std::string, std::vector<std::string>>> keys = {
      {"server",
       {"domain", "bind_address", "http_port", "https_port", "grpc_address", "grpc_port", "api_address", "api_port",
        "drain_timeout", "max_body_size", "max_header_bytes", "read_header_timeout", "idle_timeout", "max_header_count",
        "trusted_proxies", "max_connections_per_ip", "api_token"}},
      {"tunnels",
       {"worker_pool_size", "response_timeout", "heartbeat_interval", "heartbeat_timeout", "max_per_token", "initial_window", "max_frame_size",
        "max_exchanges", "max_queued_bytes", "name_grace", "tcp_port_start", "tcp_port_end", "max_streams_per_connection",
        "max_pool_members", "max_connections_per_ip", "max_connections", "hello_timeout", "grpc_memory_quota", "grpc_poll_threads"}},
      {"tls", {"cert_file", "key_file", "grpc", "redirect_http"}},
      {"auth", {"tokens", "allow_anonymous", "tcp_tokens", "tokens_file", "max_failures", "failure_window"}},
      {"logging", {"level", "format"}},
  };
  const std::vector<std::string> examples_only = {"cert_file", "key_file", "tokens_file", "api_token"};
  for (auto& [section, names] : keys) {
    auto body = section_text(section);
    CAPTURE(section);
    REQUIRE(!body.empty());
    for (auto& key : names) {
      CAPTURE(key);
      bool example = std::find(examples_only.begin(), examples_only.end(), key) != examples_only.end();
      CHECK(body.find("\n  " + std::string(example ? "# " : "") + key + ":") != std::string::npos);
    }
  }

  // The documented defaults are the real ones, except where the example
  // deliberately differs (http_port, tokens).
  grok::server_config d;
  CHECK(cfg.bind_address == d.bind_address);
  CHECK(cfg.drain_timeout == d.drain_timeout);
  CHECK(cfg.max_body_size == d.max_body_size);
  CHECK(cfg.max_header_bytes == d.max_header_bytes);
  CHECK(cfg.read_header_timeout == d.read_header_timeout);
  CHECK(cfg.idle_timeout == d.idle_timeout);
  CHECK(cfg.max_header_count == d.max_header_count);
  CHECK(cfg.trusted_proxies.size() == d.trusted_proxies.size());
  CHECK(cfg.max_connections_per_ip == d.max_connections_per_ip);
  CHECK(cfg.worker_pool_size == d.worker_pool_size);
  CHECK(cfg.response_timeout == d.response_timeout);
  CHECK(cfg.heartbeat_interval == d.heartbeat_interval);
  CHECK(cfg.heartbeat_timeout == d.heartbeat_timeout);
  CHECK(cfg.max_per_token == d.max_per_token);
  CHECK(cfg.initial_window == d.initial_window);
  CHECK(cfg.max_frame_size == d.max_frame_size);
  CHECK(cfg.max_exchanges == d.max_exchanges);
  CHECK(cfg.max_queued_bytes == d.max_queued_bytes);
  CHECK(cfg.name_grace == d.name_grace);
  CHECK(cfg.log_level == d.log_level);
  CHECK(cfg.log_format == d.log_format);
  CHECK(cfg.https_port == d.https_port);
  CHECK(cfg.tcp_port_start == d.tcp_port_start);
  CHECK(cfg.tcp_port_end == d.tcp_port_end);
  CHECK(cfg.max_streams_per_connection == d.max_streams_per_connection);
  CHECK(cfg.max_pool_members == d.max_pool_members);
  CHECK(cfg.tunnel_max_connections_per_ip == d.tunnel_max_connections_per_ip);
  CHECK(cfg.tunnel_max_connections == d.tunnel_max_connections);
  CHECK(cfg.hello_timeout == d.hello_timeout);
  CHECK(cfg.grpc_memory_quota == d.grpc_memory_quota);
  CHECK(cfg.grpc_poll_threads == d.grpc_poll_threads);
  CHECK(cfg.tls_cert_file == d.tls_cert_file);
  CHECK(cfg.tls_key_file == d.tls_key_file);
  CHECK(cfg.tls_grpc == d.tls_grpc);
  CHECK(cfg.tls_redirect_http == d.tls_redirect_http);
  CHECK(cfg.tcp_tokens == d.tcp_tokens);
  CHECK(cfg.tokens_file == d.tokens_file);
  CHECK(cfg.max_auth_failures == d.max_auth_failures);
  CHECK(cfg.auth_failure_window == d.auth_failure_window);
}

TEST_CASE("config: shipped conf/grok.yaml parses") {
  auto cfg = grok::load_client_config(GROK_SOURCE_DIR "/conf/grok.yaml");
  CHECK(cfg.server == "127.0.0.1:4443");
  CHECK(cfg.token == "change-me");
  CHECK(cfg.log_level == "info");
  // Every key the client accepts is documented there, at the top level.
  std::ifstream in(GROK_SOURCE_DIR "/conf/grok.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* key : {"server", "token", "log_level", "insecure", "heartbeat_interval", "heartbeat_timeout",
                          "inspect", "inspect_max_memory", "inspect_max_body"}) {
    CAPTURE(key);
    CHECK(text.find(std::string("\n") + key + ":") != std::string::npos);
  }
  CHECK(text.find("\n# ca:") != std::string::npos);  // a file path: shown as a commented example
  CHECK_FALSE(cfg.insecure);
  grok::client_config d;
  CHECK(cfg.heartbeat_interval == d.heartbeat_interval);
  CHECK(cfg.heartbeat_timeout == d.heartbeat_timeout);
  CHECK(cfg.inspect == d.inspect);
  CHECK(cfg.inspect_max_memory == d.inspect_max_memory);
  CHECK(cfg.inspect_max_body == d.inspect_max_body);
}
#endif

TEST_CASE("auth.tcp_tokens must be a subset of auth.tokens") {
  auto cfg = grok::parse_server_config("auth:\n  tokens: [a, b]\n  tcp_tokens: [b]\n", "t.yaml");
  CHECK(cfg.tcp_tokens == std::vector<std::string>{"b"});
  try {
    grok::parse_server_config("auth:\n  tokens: [a]\n  tcp_tokens: [c]\n", "t.yaml");
    FAIL("expected an error");
  } catch (const grok::config_error& e) {
    CHECK(std::string(e.what()) == "t.yaml:3: auth.tcp_tokens[0]: is not one of auth.tokens");
  }
  try {
    grok::parse_server_config("tunnels:\n  tcp_port_start: 3000\n  tcp_port_end: 2000\n", "t.yaml");
    FAIL("expected an error");
  } catch (const grok::config_error& e) {
    CHECK(std::string(e.what()) == "t.yaml:3: tunnels.tcp_port_end: must not be below tunnels.tcp_port_start (3000)");
  }
}

TEST_CASE("config: public request limits and trusted proxies") {
  grok::server_config d;
  CHECK(d.max_header_count == 100);
  CHECK(d.trusted_proxies.empty());
  CHECK(d.max_connections_per_ip == 256);

  auto cfg = parse_server_config(
      "server:\n"
      "  max_header_count: 20\n"
      "  max_connections_per_ip: 0\n"
      "  trusted_proxies:\n"
      "    - 10.0.0.0/8\n"
      "    - 192.168.1.7\n"
      "    - \"fd00::/8\"\n"
      "    - \"::1\"\n",
      "x.yaml");
  CHECK(cfg.max_header_count == 20);
  CHECK(cfg.max_connections_per_ip == 0);
  REQUIRE(cfg.trusted_proxies.size() == 4);
  CHECK(cfg.trusted_proxies[0].to_string() == "10.0.0.0/8");
  CHECK(cfg.trusted_proxies[1].to_string() == "192.168.1.7/32");
  CHECK(cfg.trusted_proxies[2].to_string() == "fd00::/8");
  CHECK(cfg.trusted_proxies[3].to_string() == "::1/128");
  CHECK(grok::ip_in_any("10.200.3.4", cfg.trusted_proxies));
  CHECK(grok::ip_in_any("192.168.1.7", cfg.trusted_proxies));
  CHECK_FALSE(grok::ip_in_any("192.168.1.8", cfg.trusted_proxies));
  CHECK(grok::ip_in_any("fd12::1", cfg.trusted_proxies));
  CHECK(grok::ip_in_any("::1", cfg.trusted_proxies));
  CHECK_FALSE(grok::ip_in_any("127.0.0.1", cfg.trusted_proxies));

  CHECK(parse_server_config("server:\n  trusted_proxies: []\n", "x.yaml").trusted_proxies.empty());
  CHECK(parse_server_config("server:\n  trusted_proxies:\n", "x.yaml").trusted_proxies.empty());

  CHECK(server_error("server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n") ==
        "x.yaml:4: server.trusted_proxies[1]: expected an IP address or CIDR such as 10.0.0.0/8 or fd00::/8, "
        "got '10.0.0.0/33'");
  CHECK(server_error("server:\n  trusted_proxies:\n    - proxy.example.com\n") ==
        "x.yaml:3: server.trusted_proxies[0]: expected an IP address or CIDR such as 10.0.0.0/8 or fd00::/8, "
        "got 'proxy.example.com'");
  CHECK(server_error("server:\n  trusted_proxies: 10.0.0.1\n") ==
        "x.yaml:2: server.trusted_proxies: expected a list of IP addresses or CIDRs, got a string");
  CHECK(server_error("server:\n  max_header_count: 0\n") ==
        "x.yaml:2: server.max_header_count: expected an integer in 1..10000, got '0'");
  CHECK(server_error("server:\n  max_connections_per_ip: -1\n") ==
        "x.yaml:2: server.max_connections_per_ip: expected an integer in 0..1000000, got '-1'");
}

TEST_CASE("ip networks: parsing and matching") {
  using grok::parse_ip_network;
  for (const char* bad : {"", "1.2.3", "1.2.3.4/", "1.2.3.4/x", "1.2.3.4/-1", "1.2.3.4/0033", "::1/129",
                          "1.2.3.4 ", "[::1]", "fe80::1%eth0", "1.2.3.4:80", "256.1.1.1"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_ip_network(bad));
  }
  // Text after a NUL is not ignored.
  CHECK_FALSE(parse_ip_network(std::string_view("10.0.0.1\0/8", 11)));
  CHECK_FALSE(grok::parse_ip_address(std::string_view("::1\0junk", 8)));
  CHECK_FALSE(grok::parse_ip_address(std::string_view("10.0.0.1\0", 9)));
  auto all4 = parse_ip_network("0.0.0.0/0");
  REQUIRE(all4);
  CHECK(all4->contains("8.8.8.8"));
  CHECK_FALSE(all4->contains("2001:db8::1"));
  auto host_bits = parse_ip_network("172.16.5.9/12");
  REQUIRE(host_bits);
  CHECK(host_bits->to_string() == "172.16.0.0/12");
  CHECK(host_bits->contains("172.31.255.255"));
  CHECK_FALSE(host_bits->contains("172.32.0.0"));
  // A v4 peer seen on a dual-stack socket matches its IPv4 network.
  CHECK(host_bits->contains("::ffff:172.20.0.1"));
  auto v6 = parse_ip_network("2001:db8::/33");
  REQUIRE(v6);
  CHECK(v6->contains("2001:db8:7fff::1"));
  CHECK_FALSE(v6->contains("2001:db8:8000::1"));
  CHECK_FALSE(v6->contains("not-an-ip"));
}

TEST_CASE("config: cluster section") {
  const std::string ok = "cluster:\n  etcd_endpoints: [127.0.0.1:2379, http://etcd-2:2379]\n  node_id: node-a\n"
                         "  advertise: 10.0.0.1:4443\n  lease_ttl: 7s\n  secret: 0123456789abcdef\n";
  auto cfg = parse_server_config(ok, "x.yaml");
  CHECK(cfg.cluster);
  CHECK(cfg.etcd_endpoints == std::vector<std::string>{"127.0.0.1:2379", "http://etcd-2:2379"});
  CHECK(cfg.node_id == "node-a");
  CHECK(cfg.advertise == "10.0.0.1:4443");
  CHECK(cfg.lease_ttl == 7s);
  CHECK(cfg.cluster_prefix == "/grok/");
  // Without the section a server runs alone.
  CHECK_FALSE(parse_server_config("server:\n  http_port: 80\n", "x.yaml").cluster);
  // node_id defaults to the host name.
  CHECK_FALSE(parse_server_config("cluster:\n  etcd_endpoints: 127.0.0.1:2379\n  advertise: h:1\n  secret: 0123456789abcdef\n", "x.yaml").node_id.empty());

  CHECK(server_error("cluster:\n  node_id: a\n  advertise: h:1\n  secret: 0123456789abcdef\n") ==
        "x.yaml:1: cluster.etcd_endpoints: a cluster needs at least one etcd endpoint (HOST:PORT); remove the cluster "
        "section to run alone");
  CHECK(server_error("cluster:\n  etcd_endpoints: [127.0.0.1:2379, 'etcd:http']\n") ==
        "x.yaml:2: cluster.etcd_endpoints[1]: expected HOST:PORT (port 1-65535), got 'etcd:http'");
  CHECK(server_error("cluster:\n  etcd_endpoints: [grpc://e:1]\n") ==
        "x.yaml:2: cluster.etcd_endpoints[0]: expected HOST:PORT, http://HOST:PORT or https://HOST:PORT, got 'grpc://e:1'");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n  node_id: Node A\n") ==
        "x.yaml:3: cluster.node_id: expected 1-63 of a-z, 0-9, '-', '_' and '.', got 'Node A'");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n") ==
        "x.yaml:1: cluster.advertise: must be set: the HOST:PORT of this node's tunnel port that the other nodes "
        "connect to");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n  advertise: http://h:1\n") ==
        "x.yaml:3: cluster.advertise: expected HOST:PORT, got 'http://h:1'");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n  lease_ttl: 1s\n") ==
        "x.yaml:3: cluster.lease_ttl: expected a duration in 2s..5m, got '1s'");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n  lease_ttl: 2500ms\n") ==
        "x.yaml:3: cluster.lease_ttl: etcd leases count whole seconds, got '2500ms'");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n  prefix: grok\n") ==
        "x.yaml:3: cluster.prefix: expected printable ASCII ending in '/', such as /grok/, got 'grok'");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n  advertise: h:1\n  secret: 0123456789abcdef\n  tls:\n"
                     "    cert_file: /etc/hostname\n") ==
        "x.yaml:5: cluster.tls.key_file: cluster.tls.cert_file and cluster.tls.key_file must be set together");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n  secret: short\n") ==
        "x.yaml:3: cluster.secret: must be at least 16 characters");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n  advertise: h:1\n") ==
        "x.yaml:1: cluster.secret: must be set: the same 16+ characters on every node, which nodes show each other "
        "when they relay requests");
  CHECK(server_error("cluster:\n  etcd_endpoints: [e:1]\n  tls:\n    ca_file: /nonexistent/ca.pem\n") ==
        "x.yaml:4: cluster.tls.ca_file: cannot read '/nonexistent/ca.pem': No such file or directory");
  CHECK(server_error("cluster:\n  etcd_endpoint: [e:1]\n") ==
        "x.yaml:2: cluster.etcd_endpoint: unknown key, did you mean 'etcd_endpoints'?");
}

TEST_CASE("config: the shipped conf/grok-server.yaml documents the cluster section, which parses uncommented") {
  std::ifstream in(GROK_SOURCE_DIR "/conf/grok-server.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto begin = text.find("\n# cluster:\n");
  REQUIRE(begin != std::string::npos);
  std::istringstream lines(text.substr(begin + 1));
  std::string line, yaml;
  bool in_tls = false;
  while (std::getline(lines, line)) {
    REQUIRE_MESSAGE(line.starts_with("#"), line);
    line = line.size() > 2 ? line.substr(2) : "";
    if (line.starts_with("  tls:")) in_tls = true;  // its example files do not exist here
    if (!in_tls) yaml += line + "\n";
  }
  auto cfg = parse_server_config(yaml, "cluster example");
  CHECK(cfg.cluster);
  CHECK(cfg.etcd_endpoints == std::vector<std::string>{"127.0.0.1:2379"});
  CHECK(cfg.node_id == "node-a");
  CHECK(cfg.advertise == "10.0.0.1:4443");
  CHECK(cfg.lease_ttl == 5s);
  CHECK(cfg.cluster_prefix == "/grok/");
  CHECK(cfg.cluster_secret == "change-me-to-16-or-more-characters");
  for (const char* key : {"etcd_endpoints:", "node_id:", "advertise:", "lease_ttl:", "prefix:", "secret:", "tls:", "ca_file:",
                          "cert_file:", "key_file:"})
  {
    bool documented = text.find(std::string("#   ") + key) != std::string::npos ||
                      text.find(std::string("#     ") + key) != std::string::npos;
    CHECK_MESSAGE(documented, key);
  }
}
