// Several grok-server nodes sharing names through etcd: a real 3-member etcd
// cluster (Debian's etcd-server) and real grok-server, grok and
// grok-demo-upstream processes on 127.0.0.1, broken the way an operator
// would break them (kill -9, SIGSTOP, etcd members stopped and started).

#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "harness.hpp"

using namespace grok::test;

namespace {

constexpr int tokens = 20;
std::string token(int i) { return "cluster-token-" + std::to_string(i); }

/// One grok-server node of the cluster, with its admin endpoint.
struct node {
  /// Its tunnel port on `host`:`port` (0: a free one).
  node(const std::string& id, const etcd_cluster& etcd, const std::string& tunnels_yaml = "",
       const std::string& host = "127.0.0.1", uint16_t port = 0)
      : id(id), grpc_host(host) {
    char tmpl[] = "/tmp/grok-node-XXXXXX";
    dir = mkdtemp(tmpl);
    grpc_port = port ? port : free_port();
    api_port = free_port();
    std::string list;
    for (int i = 0; i < tokens; ++i) list += (i ? ", " : "") + token(i);
    std::ofstream(dir + "/grok-server.yaml")
        << "server:\n  bind_address: 127.0.0.1\n  http_port: 0\n  grpc_address: " << host << "\n  grpc_port: " << grpc_port
        << "\n  api_port: " << api_port << "\n  drain_timeout: 2s\ntunnels:\n  name_grace: 3s\n" << tunnels_yaml
        << "auth:\n  tokens: [" << list << "]\ncluster:\n  etcd_endpoints: [" << etcd.endpoints_yaml()
        << "]\n  node_id: " << id << "\n  advertise: " << host << ":" << grpc_port
        << "\n  lease_ttl: 2s\n  secret: cluster-test-secret-0123\n";
    start();
  }
  void start() {
    proc = std::make_unique<process>(std::vector<std::string>{binary("grok-server"), "--config", dir + "/grok-server.yaml"});
    auto m = proc->wait_for_line(std::regex(R"(ready: http=127\.0\.0\.1:(\d+))"), scaled(15s));
    REQUIRE(m);
    http_port = static_cast<uint16_t>(std::stoi((*m)[1]));
    REQUIRE(proc->wait_for_text("is in the cluster", scaled(15s)));
  }
  ~node() {
    if (proc && proc->running() && !proc->signalled()) {
      proc->signal(SIGTERM);
      auto status = proc->wait_exit(scaled(15s));
      CHECK_MESSAGE(status == std::optional<int>(0), "node " << id << " did not stop cleanly on SIGTERM");
    }
    proc.reset();
    std::filesystem::remove_all(dir);
  }
  std::string readyz() const {
    auto r = request(api_port, "GET", "127.0.0.1", "/readyz");
    return std::to_string(r.status) + " " + r.body;
  }
  std::string id;
  std::string grpc_host;
  std::string dir;
  uint16_t grpc_port = 0;
  uint16_t api_port = 0;
  uint16_t http_port = 0;
  std::unique_ptr<process> proc;
};

/// A grok-demo-upstream answering "Hello from NAME".
struct service {
  explicit service(const std::string& name) {
    p = std::make_unique<process>(
        std::vector<std::string>{binary("grok-demo-upstream"), "--port", "0", "--name", name});
    auto m = p->wait_for_line(std::regex(R"(listening 127\.0\.0\.1:(\d+))"), scaled(10s));
    REQUIRE(m);
    port = static_cast<uint16_t>(std::stoi((*m)[1]));
  }
  std::unique_ptr<process> p;
  uint16_t port = 0;
};

/// grok http for `name` (empty: the server picks one) through `servers` ("HOST:PORT[,HOST:PORT]").
std::unique_ptr<process> client_via(const service& s, const std::string& servers, const std::string& name, int tok) {
  std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.port),
                                "--server", servers, "--token", token(tok), "--no-inspect"};
  if (!name.empty()) argv.insert(argv.end(), {"--subdomain", name});
  return std::make_unique<process>(std::move(argv));
}
std::string address(const node& n) { return n.grpc_host + ":" + std::to_string(n.grpc_port); }
std::unique_ptr<process> client(const service& s, const node& n, const std::string& name, int tok) {
  return client_via(s, address(n), name, tok);
}

/// Online (a Forwarding line), or exited: which, within `timeout`.
enum class outcome { online, exited, neither };
outcome settle(process& c, std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + scaled(timeout);
  while (clock::now() < deadline) {
    if (c.wait_for_text("Forwarding", 50ms)) return outcome::online;
    if (!c.running()) return c.wait_for_text("Forwarding", 0ms) ? outcome::online : outcome::exited;
  }
  return outcome::neither;
}

std::string body_via(const node& n, const std::string& name) {
  auto r = request(n.http_port, "GET", name + ".localhost", "/", "", {}, scaled(5s));
  if (r.body.ends_with('\n')) r.body.pop_back();
  return std::to_string(r.status) + " " + r.body;
}

/// Starts `tok`'s client for `name` on `n` again and again until it comes
/// online (a refused one exits); false if that takes longer than `timeout`.
std::unique_ptr<process> claim_until_online(const service& s, const node& n, const std::string& name, int tok,
                                            std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + scaled(timeout);
  while (clock::now() < deadline) {
    auto c = client(s, n, name, tok);
    auto o = settle(*c, 10s);
    if (o == outcome::online) return c;
    if (o == outcome::neither) return nullptr;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("cluster: of 20 clients claiming one name on three nodes at once, exactly one wins") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd), c("node-c", etcd);
  node* nodes[] = {&a, &b, &c};
  service up("contended");
  std::vector<std::unique_ptr<process>> clients;
  for (int i = 0; i < tokens; ++i) clients.push_back(client(up, *nodes[i % 3], "contended", i));
  int online = 0, refused = 0, winner = -1;
  for (int i = 0; i < tokens; ++i) {
    auto o = settle(*clients[i], 20s);
    REQUIRE_MESSAGE(o != outcome::neither, "client " << i << " neither came online nor exited");
    if (o == outcome::online) {
      ++online;
      winner = i;
    } else {
      ++refused;
      CHECK(clients[i]->wait_for_text("already in use by another tunnel", 0ms));
    }
  }
  CHECK(online == 1);
  CHECK(refused == tokens - 1);
  REQUIRE(winner >= 0);
  CHECK(body_via(*nodes[winner % 3], "contended") == "200 Hello from contended");
  // Each node's map shows the one name (the watch brings it within moments).
  for (auto* n : nodes) {
    auto deadline = clock::now() + scaled(5s);
    std::string ready;
    while ((ready = n->readyz()).find("1 name(s)") == std::string::npos && clock::now() < deadline)
      std::this_thread::sleep_for(50ms);  // polling /readyz
    CHECK_MESSAGE(ready.find("1 name(s)") != std::string::npos, n->id << ": " << ready);
  }
  // The other nodes relay to it.
  for (auto* n : nodes) CHECK(body_via(*n, "contended") == "200 Hello from contended");
}

TEST_CASE("cluster: a killed node's names are free within the lease TTL") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd);
  service one("one"), two("two");
  auto c1 = client(one, a, "app", 1);
  REQUIRE(settle(*c1, 15s) == outcome::online);
  // Held on node a: node b refuses it to another token.
  auto early = client(two, b, "app", 2);
  REQUIRE(settle(*early, 15s) == outcome::exited);
  CHECK(early->wait_for_text("already in use", 0ms));

  a.proc->signal(SIGKILL);
  a.proc->wait_exit(scaled(5s));
  auto killed = clock::now();
  auto c2 = claim_until_online(two, b, "app", 2, 15s);
  REQUIRE(c2);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - killed);
  MESSAGE("name free on node b " << took.count() << " ms after node a was killed (lease_ttl 2s)");
  CHECK(took <= scaled(5s));
  CHECK(body_via(b, "app") == "200 Hello from two");
}

TEST_CASE("cluster: a node that lost its lease stops serving the names it no longer owns") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd);
  service one("one"), two("two");
  auto c1 = client(one, a, "app", 1);
  REQUIRE(settle(*c1, 15s) == outcome::online);
  REQUIRE(body_via(a, "app") == "200 Hello from one");

  // Node a stops (a partition, a long pause): its lease runs out and node b
  // gives the name to another token.
  freeze(*a.proc);
  auto c2 = claim_until_online(two, b, "app", 2, 20s);
  a.proc->signal(SIGCONT);
  REQUIRE(c2);
  // From the moment it runs again, node a never hands a request to the tunnel it lost.
  auto deadline = clock::now() + scaled(10s);
  bool fenced = false;
  while (clock::now() < deadline) {
    auto got = body_via(a, "app");
    CHECK_MESSAGE(got.find("Hello from one") == std::string::npos, "node a still served its lost name: " << got);
    if (a.proc->wait_for_text("no longer owns its names", 0ms)) {
      fenced = true;
      break;
    }
  }
  CHECK(fenced);
  // Its client was told, tried to claim the name again and was refused: the name is two's.
  CHECK(c1->wait_exit(scaled(20s)) == std::optional<int>(1));
  CHECK(c1->wait_for_text("already in use by another tunnel", 0ms));
  CHECK(body_via(b, "app") == "200 Hello from two");
  // Node a is back in the cluster and takes new names.
  auto fresh = claim_until_online(one, a, "fresh", 1, 15s);
  CHECK(fresh);
}

TEST_CASE("cluster: etcd losing one member changes nothing; losing quorum keeps tunnels serving and refuses new names") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd);
  service one("one");
  auto c1 = client(one, a, "app", 1);
  REQUIRE(settle(*c1, 15s) == outcome::online);

  etcd.stop(0);
  CHECK(body_via(a, "app") == "200 Hello from one");
  // (Should the stopped member have led, the others elect a leader within moments.)
  for (auto* n : {&a, &b}) {
    auto deadline = clock::now() + scaled(10s);
    while (!n->readyz().starts_with("200") && clock::now() < deadline) std::this_thread::sleep_for(50ms);  // polling /readyz
  }
  auto c2 = client(one, b, "second", 2);
  CHECK(settle(*c2, 15s) == outcome::online);
  CHECK(a.readyz().starts_with("200 ready"));

  etcd.stop(1);
  // Node a notices at its next lease renewal.
  auto deadline = clock::now() + scaled(10s);
  std::string ready;
  while (clock::now() < deadline && !(ready = a.readyz()).starts_with("503")) std::this_thread::sleep_for(50ms);  // polling /readyz
  CHECK_MESSAGE(ready.find("no-quorum") != std::string::npos, ready);
  CHECK_MESSAGE(ready.find("serving the tunnels it holds") != std::string::npos, ready);
  // For longer than the lease TTL, the tunnel it holds keeps serving.
  auto until = clock::now() + 3s;
  while (clock::now() < until) REQUIRE(body_via(a, "app") == "200 Hello from one");
  // New names are refused with the reason, and the client keeps trying.
  auto c3 = client(one, b, "third", 3);
  CHECK(c3->wait_for_text("the cluster cannot take new names now", scaled(10s)));
  CHECK(c3->running());

  etcd.start(0);
  etcd.start(1);
  deadline = clock::now() + scaled(20s);
  while (clock::now() < deadline && !(ready = a.readyz()).starts_with("200")) std::this_thread::sleep_for(50ms);  // polling /readyz
  CHECK_MESSAGE(ready.starts_with("200 ready"), ready);
  auto c4 = client(one, a, "fourth", 4);
  CHECK(settle(*c4, 15s) == outcome::online);
  CHECK(body_via(a, "app") == "200 Hello from one");
}

TEST_CASE("cluster: a name whose tunnel left is kept for its owner on every node until the grace passes") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd);
  service one("one"), two("two");
  auto c1 = client(one, a, "kept", 1);
  REQUIRE(settle(*c1, 15s) == outcome::online);
  c1->signal(SIGINT);
  REQUIRE(c1->wait_exit(scaled(10s)) == std::optional<int>(0));
  auto left = clock::now();
  // Another token, on another node: held for the grace (3 s), then given.
  auto c2 = client(two, b, "kept", 2);
  CHECK(c2->wait_for_text("was in use moments ago", scaled(10s)));
  REQUIRE(settle(*c2, 20s) == outcome::online);
  CHECK(clock::now() - left >= 3s);
  CHECK(body_via(b, "kept") == "200 Hello from two");
}

TEST_CASE("cluster: a client holding streams to two nodes: one node killed, every request through the other succeeds") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd);
  service one("one");
  auto both = client_via(one, address(a) + "," + address(b), "both", 1);
  REQUIRE(both->wait_for_count("Forwarding", 2, scaled(15s)));
  CHECK(both->count_lines_containing("via " + address(a)) == 1);
  CHECK(both->count_lines_containing("via " + address(b)) == 1);
  CHECK(body_via(a, "both") == "200 Hello from one");
  CHECK(body_via(b, "both") == "200 Hello from one");
  // A name the server picks is the same on both nodes.
  auto picked = client_via(one, address(a) + "," + address(b), "", 2);
  REQUIRE(picked->wait_for_count("Forwarding", 2, scaled(15s)));
  std::set<std::string> names;  // the nodes' URLs differ in the port only here, all on one host
  std::smatch m;
  for (const auto& line : picked->lines())
    if (std::regex_search(line, m, std::regex(R"(Forwarding\s+http://([a-z0-9-]+)\.localhost)"))) names.insert(m[1]);
  CHECK(names.size() == 1);

  a.proc->signal(SIGKILL);
  a.proc->wait_exit(scaled(5s));
  // Past the killed node's lease, nothing changes for the name on node b.
  int failed = 0, served = 0;
  auto until = clock::now() + 3s;
  while (clock::now() < until) {
    auto got = body_via(b, "both");
    (got == "200 Hello from one" ? served : failed)++;
  }
  MESSAGE(served << " requests through node b after node a was killed");
  CHECK(failed == 0);
  CHECK(served > 10);
  CHECK(both->running());
}

namespace {

/// A hosts file in a directory of its own, removed at the end.
struct hosts_file {
  explicit hosts_file(const std::string& lines) {
    char tmpl[] = "/tmp/grok-hosts-XXXXXX";
    dir = mkdtemp(tmpl);
    path = dir + "/hosts";
    std::ofstream(path) << "127.0.0.1 localhost\n" << lines;
  }
  ~hosts_file() { std::filesystem::remove_all(dir); }
  std::string dir, path;
};

/// `grok http` for `s` through `server`, started with `hosts` as its /etc/hosts
/// (in a private mount namespace), where one name may have several addresses.
std::unique_ptr<process> client_with_hosts(const hosts_file& hosts, const service& s, const std::string& server,
                                           const std::string& tok) {
  return std::make_unique<process>(std::vector<std::string>{
      "/usr/bin/unshare", "--mount", "/bin/sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\"", hosts.path,
      binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.port), "--server", server,
      "--token", tok, "--no-inspect"});
}

/// The name of the tunnel the client's Forwarding line through `via` shows.
std::optional<std::string> online_via(process& c, const std::string& via) {
  auto line = c.wait_for_line(std::regex(R"(Forwarding\s+http://([a-z0-9-]+)\.localhost.* via )" + via), scaled(20s));
  if (!line) return std::nullopt;
  return (*line)[1].str();
}

}  // namespace

TEST_CASE("cluster: a client given one name with several addresses holds a stream to each, and carries on when one node dies") {
  // Two nodes on one port at two addresses of one name, as behind round-robin DNS.
  etcd_cluster etcd;
  auto port = free_port();
  hosts_file hosts("127.0.0.2 nodes.grok.test\n127.0.0.3 nodes.grok.test\n");
  auto first = "127.0.0.2:" + std::to_string(port), second = "127.0.0.3:" + std::to_string(port);
  // The first address's node is down when the client starts: the stream to the other asks for the name.
  auto b = std::make_unique<node>("node-b", etcd, "", "127.0.0.3", port);
  service one("one");
  auto server = "nodes.grok.test:" + std::to_string(port);
  auto c = client_with_hosts(hosts, one, server, token(1));
  CHECK(c->wait_for_text(server + " has 2 addresses; holding a stream to each: " + first + ", " + second, scaled(10s)));
  auto name = online_via(*c, server + " at " + second);
  REQUIRE(name);
  CHECK(body_via(*b, *name) == "200 Hello from one");

  // The first node comes up: the client's other stream joins it, with the same name.
  auto a = std::make_unique<node>("node-a", etcd, "", "127.0.0.2", port);
  CHECK(online_via(*c, server + " at " + first) == name);
  CHECK(body_via(*a, *name) == "200 Hello from one");

  b->proc->signal(SIGKILL);
  b->proc->wait_exit(scaled(5s));
  int failed = 0, served = 0;
  std::string first_failure;
  auto until = clock::now() + 3s;
  while (clock::now() < until) {
    auto got = body_via(*a, *name);
    if (got == "200 Hello from one") ++served;
    else if (!failed++) first_failure = got;
  }
  MESSAGE(served << " requests through node a after node b was killed; " << failed << " failed"
                 << (failed ? ", the first: " + first_failure : std::string()));
  CHECK(failed == 0);
  CHECK(served > 10);
  CHECK(c->running());
}

TEST_CASE("one server at several addresses of its name: one stream serves, the other stands by, nothing is taken over") {
  // One grok-server (no cluster) behind two addresses, as behind a load balancer with an
  // address per zone: Debian's haproxy listens on both and forwards to the tunnel port.
  stack::options o;
  o.start_client = false;
  stack s(o);
  auto port = free_port();
  std::string cfg = "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
                    "frontend tunnels\n  bind 127.0.0.2:" + std::to_string(port) + "\n  bind 127.0.0.3:" +
                    std::to_string(port) + "\n  default_backend server\n"
                    "frontend probe\n  bind 127.0.0.1:" + std::to_string(port) + "\n  default_backend server\n"
                    "backend server\n  server grok 127.0.0.1:" + std::to_string(s.grpc_port) + "\n";
  haproxy lb(s.dir, cfg, port);  // listening on 127.0.0.1 once it listens on all three
  hosts_file hosts("127.0.0.2 server.grok.test\n127.0.0.3 server.grok.test\n");
  service one("one");
  auto server = "server.grok.test:" + std::to_string(port);
  auto c = client_with_hosts(hosts, one, server, s.opts.token);
  auto name = online_via(*c, server + " at ");
  REQUIRE(name);
  CHECK(c->wait_for_text("reaches a server another stream of this tunnel uses; trying it again in", scaled(10s)));
  // Neither stream took the name from the other: one take-over-free tunnel that keeps serving.
  int failed = 0, served = 0;
  for (auto until = clock::now() + 2s; clock::now() < until;)
    (request(s.http_port, "GET", *name + ".localhost", "/", "", {}, scaled(5s)).body == "Hello from one\n" ? served
                                                                                                         : failed)++;
  CHECK(failed == 0);
  CHECK(served > 10);
  CHECK(c->running());
  CHECK(c->count_lines_containing("Forwarding") == 1);
  CHECK(s.server->count_lines_containing("taking the name over") == 0);
  CHECK(s.server->wait_for_text("another stream of this grok already serves", scaled(5s)));
}

namespace {
/// Waits until node `n` answers `name` with "200 Hello from SERVICE" (its map learns of the tunnel by watch).
bool relays(const node& n, const std::string& name, const std::string& service) {
  auto deadline = clock::now() + scaled(10s);
  while (clock::now() < deadline) {
    if (body_via(n, name) == "200 Hello from " + service) return true;
    std::this_thread::sleep_for(50ms);  // polling the route
  }
  return false;
}
}  // namespace

TEST_CASE("cluster: kill -9 of the node a client reached through a load balancer: it reconnects to another node, and its name answers within 5 s") {
  // One address for the client: Debian's haproxy in TCP mode in front of both nodes' tunnel ports.
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd);
  auto lb_port = free_port();
  std::string cfg = "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n"
                    "  retries 2\n  option redispatch\n"
                    "frontend tunnels\n  bind 127.0.0.1:" + std::to_string(lb_port) + "\n  default_backend nodes\n"
                    "backend nodes\n  balance roundrobin\n  option httpchk GET /readyz\n"
                    // Health from each node's /readyz: a bare connect to a tunnel port that never
                    // says Hello counts against the address (tunnels.* abandoned connections).
                    "  server a " + address(a) + " check port " + std::to_string(a.api_port) + " inter 500ms fall 1 rise 1\n"
                    "  server b " + address(b) + " check port " + std::to_string(b.api_port) + " inter 500ms fall 1 rise 1\n";
  haproxy lb(a.dir, cfg, lb_port);
  service one("one");
  auto c = client_via(one, "127.0.0.1:" + std::to_string(lb_port), "moved", 1);
  REQUIRE(settle(*c, 15s) == outcome::online);
  // The node it reached, and the one left.
  const std::regex online(R"(tunnel=moved conn=\d+ peer=.*: online at)");
  node* reached = nullptr;
  for (auto deadline = clock::now() + scaled(5s); !reached && clock::now() < deadline;)
    for (auto* n : {&a, &b})
      if (!reached && n->proc->wait_for_line(online, 50ms)) reached = n;
  REQUIRE(reached);
  node& other = reached == &a ? b : a;
  REQUIRE(relays(other, "moved", "one"));

  reached->proc->signal(SIGKILL);
  reached->proc->wait_exit(scaled(5s));
  auto killed = clock::now();
  REQUIRE(c->wait_for_count("Forwarding", 2, scaled(10s)));
  std::string got;
  while ((got = body_via(other, "moved")) != "200 Hello from one" && clock::now() - killed < scaled(10s))
    std::this_thread::sleep_for(20ms);  // polling the name through the node that is left
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - killed);
  MESSAGE("the name answered through " << other.id << " again " << took.count() << " ms after " << reached->id
                                       << " was killed");
  CHECK(got == "200 Hello from one");
  CHECK(took <= scaled(5s));
  CHECK(other.proc->wait_for_line(online, scaled(5s)));
  CHECK(c->running());
}

TEST_CASE("cluster: a request to one node reaches a tunnel held on another, byte-exact, 1 GiB each way, with bounded memory on the relaying node") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd);
  service one("one");
  auto c = client(one, b, "bulk", 1);
  REQUIRE(settle(*c, 15s) == outcome::online);
  REQUIRE(relays(a, "bulk", "one"));

  const uint64_t size = bulk_bytes(1ull << 30);
  auto expected = request(one.port, "GET", "127.0.0.1", "/download-sha?size=" + std::to_string(size), "", {}, 120s);
  REQUIRE(expected.status == 200);
  check_bulk_both_ways(a.http_port, "bulk.localhost", size, expected.body, scaled(180s));
  auto peak = a.proc->peak_rss_kib();
  MESSAGE("peak RSS of the relaying node: " << peak << " KiB");
  if (rss_caps()) CHECK(peak <= 64 * 1024);

  auto text = metrics_text(a.api_port);
  CHECK(sample(text, "grok_relay_exchanges_total{peer=\"node-b\"}") >= 3);
  CHECK(sample(text, "grok_relay_bytes_total{peer=\"node-b\",direction=\"out\"}") >= static_cast<double>(size));
  CHECK(sample(text, "grok_relay_bytes_total{peer=\"node-b\",direction=\"in\"}") >= static_cast<double>(size));
  CHECK(sample(text, "grok_relay_errors_total{peer=\"node-b\"}") == 0);
}

TEST_CASE("cluster: nodes with different tunnels.initial_window relay whole bodies both ways, in both directions") {
  // The tunnel's client keeps to the window its own node gave it; the public node keeps to the same.
  etcd_cluster etcd;
  node small("node-small", etcd, "  initial_window: 64KiB\n  max_frame_size: 16KiB\n"),
      big("node-big", etcd, "  initial_window: 2MiB\n");
  service one("one");
  const uint64_t size = bulk_bytes(32ull << 20);
  auto expected = request(one.port, "GET", "127.0.0.1", "/download-sha?size=" + std::to_string(size), "", {}, 60s);
  REQUIRE(expected.status == 200);
  auto on_small = client(one, small, "on-small", 1), on_big = client(one, big, "on-big", 2);
  REQUIRE(settle(*on_small, 15s) == outcome::online);
  REQUIRE(settle(*on_big, 15s) == outcome::online);
  struct path { const node& via; std::string name; };
  for (const auto& [via, name] : {path{big, "on-small"}, path{small, "on-big"}}) {
    CAPTURE(name);
    REQUIRE(relays(via, name, "one"));
    check_bulk_both_ways(via.http_port, name + ".localhost", size, expected.body, scaled(60s));
  }
}

TEST_CASE("cluster: a relayed request meets the tunnel's visitor rules once, and the local service never sees the credentials") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd);
  service one("one");
  auto c = std::make_unique<process>(std::vector<std::string>{
      binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(one.port), "--subdomain", "guarded",
      "--server", address(b), "--token", token(1), "--no-inspect", "--basic-auth", "alice:s3cret"});
  REQUIRE(settle(*c, 15s) == outcome::online);
  auto deadline = clock::now() + scaled(10s);
  response r;
  while (clock::now() < deadline &&
         (r = request(a.http_port, "GET", "guarded.localhost", "/headers", "", {}, scaled(5s))).status != 401)
    std::this_thread::sleep_for(50ms);  // polling the route
  CHECK(r.status == 401);
  CHECK(r.get("WWW-Authenticate") == "Basic realm=\"guarded.localhost\", charset=\"UTF-8\"");
  auto ok = request(a.http_port, "GET", "guarded.localhost", "/headers", "",
                    {{"Authorization", "Basic YWxpY2U6czNjcmV0"}, {"X-Visitor", "yes"}}, scaled(5s));
  CHECK(ok.status == 200);
  CHECK(ok.body.find("X-Visitor: yes") != std::string::npos);
  CHECK(ok.body.find("uthorization") == std::string::npos);
  // The public node's X-Forwarded-For names the visitor, as it would at the tunnel's node.
  CHECK(ok.body.find("X-Forwarded-For: 127.0.0.1") != std::string::npos);
}

TEST_CASE("cluster: a relayed request to a tunnel that went away gets 502 from the public node, and the next one is routed afresh") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd);
  service one("one"), two("two");
  auto c1 = client(one, b, "moving", 1);
  REQUIRE(settle(*c1, 15s) == outcome::online);
  REQUIRE(relays(a, "moving", "one"));
  // The tunnel moves from node b to node a.
  c1->signal(SIGINT);
  REQUIRE(c1->wait_exit(scaled(10s)) == std::optional<int>(0));
  auto c2 = claim_until_online(two, a, "moving", 1, 15s);  // the same token: within the grace
  REQUIRE(c2);
  CHECK(body_via(a, "moving") == "200 Hello from two");
  CHECK(relays(b, "moving", "two"));
}

TEST_CASE("cluster: a pool's members on two nodes share its name; a third node relays to both and lists where each is") {
  etcd_cluster etcd;
  node a("node-a", etcd), b("node-b", etcd), c("node-c", etcd);
  service one("one"), two("two");
  auto member = [&](const service& s, const node& n) {
    return std::make_unique<process>(std::vector<std::string>{
        binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.port), "--subdomain", "team",
        "--pool", "--server", address(n), "--token", token(1), "--no-inspect"});
  };
  auto m1 = member(one, a);
  REQUIRE(settle(*m1, 15s) == outcome::online);
  auto m2 = member(two, b);
  REQUIRE(settle(*m2, 15s) == outcome::online);
  // A lone tunnel may not take a pool's name on any node.
  auto lone = client(one, c, "team", 2);
  CHECK(settle(*lone, 15s) == outcome::exited);
  CHECK(lone->wait_for_text("served by a pool of tunnels", 0ms));

  std::set<std::string> seen;
  auto deadline = clock::now() + scaled(10s);
  while (seen.size() < 2 && clock::now() < deadline) {
    auto got = body_via(c, "team");
    if (got.starts_with("200 ")) seen.insert(got);
    else std::this_thread::sleep_for(50ms);  // polling the route
  }
  CHECK(seen == std::set<std::string>{"200 Hello from one", "200 Hello from two"});
  auto api = request(c.api_port, "GET", "127.0.0.1", "/api/tunnels").body;
  CHECK_MESSAGE(api.find(R"({"name":"team","node":"node-a","token":"auth.tokens[1]","pool":true,"tcp":false,"remote":true})") !=
                    std::string::npos,
                api);
  CHECK_MESSAGE(api.find(R"({"name":"team","node":"node-b","token":"auth.tokens[1]","pool":true,"tcp":false,"remote":true})") !=
                    std::string::npos,
                api);
  // Node a lists its own member as its own.
  CHECK(request(a.api_port, "GET", "127.0.0.1", "/api/tunnels").body.find(R"("healthy":true,"node":"node-a"})") !=
        std::string::npos);
}
