// Tokens file, reserved names, owner-first reclaim and failed-auth limits,
// with the real grok-server, grok and `grok-server token` commands.

#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>

#include <grpcpp/grpcpp.h>

#include "grok/tunnel/v1/tunnel.grpc.pb.h"
#include "harness.hpp"

using namespace grok::test;

namespace {

/// Runs a command to completion; returns its exit status and output lines.
std::pair<int, std::vector<std::string>> run(std::vector<std::string> argv) {
  process p(std::move(argv));
  auto status = p.wait_exit(20s);
  REQUIRE(status.has_value());
  return {*status, p.lines()};
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines) out += l + "\n";
  return out;
}

/// `grok-server token add`; returns the printed token.
std::string add_token(const std::string& file, const std::string& label, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{binary("grok-server"), "token", "add", label, "--file", file};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto [status, lines] = run(argv);
  INFO(joined(lines));
  REQUIRE(status == 0);
  for (auto& l : lines) {
    auto pos = l.find("grok_");
    if (pos != std::string::npos && l.find("...") == std::string::npos) return l.substr(pos);
  }
  FAIL("no token printed");
  return {};
}

/// A grok client with its own token; `online` is whether it got a public URL.
struct client {
  std::unique_ptr<process> p;
  bool online = false;
  bool answered = false;  ///< came online or was refused in time
};

client start_grok(stack& s, const std::string& name, const std::string& token) {
  client c;
  c.p = std::make_unique<process>(std::vector<std::string>{
      binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.upstream_port),
      "--subdomain", name, "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", token});
  auto re = std::regex(R"(Forwarding\s+http://|refused the tunnel)");
  auto m = c.p->wait_for_line(re, 15s);  // the harness scales its waits
  // No REQUIRE here: racing clients are started from several threads.
  c.online = m && m->str().find("Forwarding") != std::string::npos;
  c.answered = m.has_value();
  return c;
}

/// Waits for the client to exit after a refusal; returns the refusal line.
std::string refusal(client& c) {
  auto status = c.p->wait_exit(10s);
  REQUIRE(status.has_value());
  CHECK(*status == 1);
  for (auto& l : c.p->lines())
    if (l.find("refused the tunnel") != std::string::npos) return l;
  return {};
}

/// The client's refusal line, without waiting for it to exit (a refusal that
/// may clear is retried).
std::string refusal_line(client& c) {
  for (auto& l : c.p->lines())
    if (l.find("refused the tunnel") != std::string::npos) return l;
  return {};
}

stack::options tokens_file_options(const std::string& extra_auth = "", const std::string& tunnels = "") {
  stack::options o;
  o.start_client = false;
  o.tokens_yaml = "[]";
  o.auth_extra_yaml = "  tokens_file: tokens.yaml\n" + extra_auth;
  o.extra_server_yaml = tunnels;
  o.files = {{"tokens.yaml", "# tokens\n"}};
  return o;
}

}  // namespace

TEST_CASE("tokens file: token add, reserved names, per-token limits, revocation on reload") {
  stack s(tokens_file_options());
  // The stack's server started with an empty tokens file; `token add` appends to it.
  auto file = s.dir + "/tokens.yaml";
  auto alice = add_token(file, "alice", {"--name", "shop", "--max-tunnels", "2"});
  auto bob = add_token(file, "bob");
  std::string text;
  {
    std::ifstream in(file);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  CHECK(text.find(alice) == std::string::npos);  // only digests are stored
  CHECK(text.find(bob) == std::string::npos);
  s.server->signal(SIGHUP);
  REQUIRE(s.server->wait_for_text("reloaded", 10s));

  SUBCASE("a reserved name is its owner's alone") {
    auto b = start_grok(s, "shop", bob);
    REQUIRE_FALSE(b.online);
    CHECK(refusal(b).find("name 'shop' is reserved for another token") != std::string::npos);
    auto a = start_grok(s, "shop", alice);
    REQUIRE(a.online);
    auto r = request(s.http_port, "GET", "shop.localhost", "/");
    CHECK(r.status == 200);
    // The access log and tunnel list show the label, never the token.
    auto api_lines = s.server->lines();
    CHECK(joined(api_lines).find("token=alice") != std::string::npos);
    CHECK(joined(api_lines).find(alice) == std::string::npos);
    CHECK(joined(api_lines).find(bob) == std::string::npos);
  }

  SUBCASE("max_tunnels from the tokens file caps one token") {
    auto a1 = start_grok(s, "a1", alice);
    auto a2 = start_grok(s, "a2", alice);
    REQUIRE(a1.online);
    REQUIRE(a2.online);
    auto a3 = start_grok(s, "a3", alice);
    REQUIRE_FALSE(a3.online);
    CHECK(refusal(a3).find("already holds 2 tunnel(s), its limit (max_tunnels in the tokens file)") !=
          std::string::npos);
    auto b1 = start_grok(s, "b1", bob);  // another token is not affected
    CHECK(b1.online);
  }

  SUBCASE("token remove + reload closes that token's tunnels only; token add + reload admits a new one") {
    auto a = start_grok(s, "a", alice);
    auto b = start_grok(s, "b", bob);
    REQUIRE(a.online);
    REQUIRE(b.online);
    auto [status, lines] = run({binary("grok-server"), "token", "remove", "alice", "--file", file});
    REQUIRE(status == 0);
    auto carol = add_token(file, "carol");
    s.server->signal(SIGHUP);
    auto exit = a.p->wait_exit(10s);
    REQUIRE(exit.has_value());
    CHECK(*exit == 1);
    CHECK(joined(a.p->lines()).find("token revoked") != std::string::npos);
    CHECK(request(s.http_port, "GET", "b.localhost", "/").status == 200);
    auto c = start_grok(s, "c", carol);
    CHECK(c.online);
    auto again = start_grok(s, "a", alice);
    REQUIRE_FALSE(again.online);
    CHECK(refusal(again).find("invalid token") != std::string::npos);
  }

  SUBCASE("a new tokens file is created 0640") {
    add_token(s.dir + "/new-tokens.yaml", "dave");
    auto perms = std::filesystem::status(s.dir + "/new-tokens.yaml").permissions();
    CHECK(perms == (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                    std::filesystem::perms::group_read));
  }

  SUBCASE("token list shows labels and names, never tokens") {
    auto [status, lines] = run({binary("grok-server"), "token", "list", "--file", file});
    REQUIRE(status == 0);
    auto out = joined(lines);
    CHECK(out.find("alice") != std::string::npos);
    CHECK(out.find("shop") != std::string::npos);
    CHECK(out.find(alice) == std::string::npos);
  }

  SUBCASE("token add refuses a name another token reserves and a duplicate label") {
    auto [s1, l1] = run({binary("grok-server"), "token", "add", "eve", "--name", "shop", "--file", file});
    CHECK(s1 == 1);
    CHECK(joined(l1).find("name 'shop' is already reserved by 'alice'") != std::string::npos);
    auto [s2, l2] = run({binary("grok-server"), "token", "add", "bob", "--file", file});
    CHECK(s2 == 1);
    CHECK(joined(l2).find("label 'bob' already exists") != std::string::npos);
  }
}

TEST_CASE("after a disconnect only the owner reclaims its name until name_grace ends") {
  stack s(tokens_file_options("", "  name_grace: 3s\n"));
  auto file = s.dir + "/tokens.yaml";
  auto alice = add_token(file, "alice");
  auto bob = add_token(file, "bob");
  s.server->signal(SIGHUP);
  REQUIRE(s.server->wait_for_text("reloaded", 10s));

  auto a = start_grok(s, "demo", alice);
  REQUIRE(a.online);
  auto hijack = start_grok(s, "demo", bob);  // live name: nobody else
  REQUIRE_FALSE(hijack.online);
  CHECK(refusal(hijack).find("already in use") != std::string::npos);
  auto twin = start_grok(s, "demo", alice);  // the same token takes a live name over
  REQUIRE(twin.online);
  CHECK(refusal(a).find("was taken over by a new session with the same token") != std::string::npos);

  twin.p->signal(SIGINT);
  REQUIRE(twin.p->wait_exit(10s).has_value());
  auto b = start_grok(s, "demo", bob);
  REQUIRE_FALSE(b.online);
  // In the grace: refused for now, said once, and tried again later rather than given up.
  CHECK(refusal_line(b).find("only its owner may take it") != std::string::npos);
  CHECK(refusal_line(b).find("trying again in") != std::string::npos);
  CHECK(b.p->running());
  b.p->signal(SIGINT);
  REQUIRE(b.p->wait_exit(10s) == 0);
  auto back = start_grok(s, "demo", alice);
  REQUIRE(back.online);
  CHECK(request(s.http_port, "GET", "demo.localhost", "/").status == 200);

  // Once the owner leaves again and the grace ends, anyone may take it: a
  // client refused in the grace keeps trying and gets it then, not before.
  back.p->signal(SIGINT);
  REQUIRE(back.p->wait_exit(10s).has_value());
  auto left = clock::now();
  auto later = start_grok(s, "demo", bob);
  REQUIRE_FALSE(later.online);
  CHECK(later.p->wait_for_line(std::regex(R"(Forwarding\s+http://demo\.)"), scaled(15s)).has_value());
  CHECK(clock::now() - left >= 2900ms);  // refused only within the 3s grace
  CHECK(request(s.http_port, "GET", "demo.localhost", "/").status == 200);
}

TEST_CASE("failed authentications are limited per source address") {
  stack::options o;
  o.start_client = false;
  o.auth_extra_yaml = "  max_failures: 3\n  failure_window: 3s\n";
  stack s(o);
  // The window opens at the first failure, which the server sees after this.
  auto first_failure = clock::now();
  for (int i = 0; i < 3; ++i) {
    auto bad = start_grok(s, "x" + std::to_string(i), "wrong-" + std::to_string(i));
    REQUIRE_FALSE(bad.online);
    CHECK(refusal(bad).find("invalid token") != std::string::npos);
  }
  // The address is now refused without its token being checked, even a good one.
  auto blocked = start_grok(s, "good", s.opts.token);
  REQUIRE_FALSE(blocked.online);
  CHECK(refusal_line(blocked).find("too many failed attempts from this address; try again in") != std::string::npos);
  CHECK(s.server->wait_for_text("too many failed attempts from this address", 5s));
  // A limit that clears by itself: the client says so once and tries again,
  // and is in once the window ends.
  CHECK(refusal_line(blocked).find("trying again in") != std::string::npos);
  CHECK(blocked.p->wait_for_line(std::regex(R"(Forwarding\s+http://good\.)"), scaled(15s)).has_value());
  CHECK(clock::now() - first_failure >= 3s);
}

TEST_CASE("twenty clients claiming one free name at once: exactly one wins") {
  stack::options o;
  o.start_client = false;
  // A token each: a session of the same token would take the name over.
  o.tokens_yaml = "[test-token";
  for (int i = 0; i < 20; ++i) o.tokens_yaml += ", contender-" + std::to_string(i);
  o.tokens_yaml += "]";
  stack s(o);
  std::vector<client> clients(20);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < clients.size(); ++i)
    threads.emplace_back([&, i] { clients[i] = start_grok(s, "contested", "contender-" + std::to_string(i)); });
  for (auto& t : threads) t.join();
  int winners = 0;
  for (auto& c : clients) {
    CHECK(c.answered);
    winners += c.online ? 1 : 0;
  }
  CHECK(winners == 1);
  for (auto& c : clients)
    if (!c.online) CHECK(refusal(c).find("already in use") != std::string::npos);
  // The winner serves (polled: on a loaded machine the first request may race its local connection).
  response r;
  auto until = clock::now() + scaled(10s);
  do {
    r = request(s.http_port, "GET", "contested.localhost", "/");
    if (r.status != 200) std::this_thread::sleep_for(100ms);
  } while (r.status != 200 && clock::now() < until);
  INFO(r.body);
  CHECK(r.status == 200);
}

TEST_CASE("one client connection holds at most tunnels.max_streams_per_connection streams") {
  stack::options o;
  o.start_client = false;
  o.extra_server_yaml = "  max_streams_per_connection: 2\n";
  stack s(o);
  namespace pb = grok::tunnel::v1;
  // One channel = one TCP connection; every stream below shares it.
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(s.grpc_port), grpc::InsecureChannelCredentials());
  auto stub = pb::Tunnel::NewStub(channel);
  struct call {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<pb::Batch, pb::Batch>> rw;
  };
  // Sends Hello for `name` and reports whether Accepted came back within `wait`.
  auto open = [&](call& c, const std::string& name, std::chrono::milliseconds wait) {
    c.ctx.set_deadline(std::chrono::system_clock::now() + wait);
    c.rw = stub->Connect(&c.ctx);
    pb::Batch b;
    auto* h = b.add_frames()->mutable_hello();
    h->set_protocol_version(1);
    h->set_token(s.opts.token);
    h->set_name(name);
    if (!c.rw->Write(b)) return false;
    pb::Batch in;
    while (c.rw->Read(&in))
      for (auto& f : in.frames())
        if (f.has_accepted()) return true;
    return false;
  };
  std::vector<std::unique_ptr<call>> calls;
  for (int i = 0; i < 2; ++i) {
    calls.push_back(std::make_unique<call>());
    REQUIRE(open(*calls.back(), "s" + std::to_string(i), 60s));
  }
  // A third stream on the same connection is held back by HTTP/2 until its deadline.
  call third;
  CHECK_FALSE(open(third, "s2", 2s));
  CHECK(request(s.http_port, "GET", "s2.localhost", "/").status == 404);
  // Closing one frees its slot.
  calls[0]->ctx.TryCancel();
  call fourth;
  CHECK(open(fourth, "s3", 20s));
  for (auto& c : calls) c->ctx.TryCancel();
  fourth.ctx.TryCancel();
}
