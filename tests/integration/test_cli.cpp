// The `grok` command line as README documents it: `grok config set-token |
// set-server | show` and the file they write, flags beating that file, and
// `grok http HOST:PORT` forwarding to another local host.

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <signal.h>

#include "harness.hpp"

using namespace grok::test;

namespace {

/// Runs `grok ARGS...` with HOME=home to completion; returns its exit status and output.
std::pair<int, std::string> grok_cmd(const std::string& home, std::vector<std::string> args) {
  std::vector<std::string> argv{binary("grok")};
  argv.insert(argv.end(), args.begin(), args.end());
  process p(std::move(argv), {"HOME=" + home, "XDG_CONFIG_HOME="});
  auto status = p.wait_exit(20s);
  REQUIRE(status.has_value());
  std::string out;
  for (auto& l : p.lines()) out += l + "\n";
  return {*status, out};
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Starts `grok http ARGS...` with HOME=home; true if it came online.
bool comes_online(const std::string& home, std::vector<std::string> args, std::unique_ptr<process>& p) {
  std::vector<std::string> argv{binary("grok"), "--insecure", "http"};
  argv.insert(argv.end(), args.begin(), args.end());
  p = std::make_unique<process>(std::move(argv), std::vector<std::string>{"HOME=" + home, "XDG_CONFIG_HOME="});
  auto m = p->wait_for_line(std::regex(R"(Forwarding\s+http://|refused the tunnel|tunnel lost)"), 15s);
  return m && m->str().find("Forwarding") != std::string::npos;
}

}  // namespace

TEST_CASE("grok config: set-token and set-server write ~/.config/grok/grok.yaml (0600 in 0700), show masks the token") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  const std::string home = s.dir + "/home";
  std::filesystem::create_directory(home);
  const std::string dir = home + "/.config/grok", file = dir + "/grok.yaml";
  const std::string token = "test-token";  // the stack's token; "****oken" when shown

  auto [status, out] = grok_cmd(home, {"config", "set-token", token});
  CAPTURE(out);
  CHECK(status == 0);
  CHECK(out.find("****oken") != std::string::npos);
  CHECK(out.find(token) == std::string::npos);
  REQUIRE(std::filesystem::exists(file));
  CHECK(mode_of(file) == 0600);
  CHECK(mode_of(dir) == 0700);
  CHECK(mode_of(home + "/.config") == 0700);

  const std::string server = "127.0.0.1:" + std::to_string(s.grpc_port);
  std::tie(status, out) = grok_cmd(home, {"config", "set-server", server});
  CHECK(status == 0);
  CHECK(mode_of(file) == 0600);  // rewritten, still private
  auto text = read_file(file);
  CHECK(text.find(server) != std::string::npos);
  CHECK(text.find(token) != std::string::npos);  // the token set before is kept

  std::tie(status, out) = grok_cmd(home, {"config", "show"});
  CHECK(status == 0);
  CHECK(out.find("config:    " + file) != std::string::npos);
  CHECK(out.find("server:    " + server) != std::string::npos);
  CHECK(out.find("token:     ****oken") != std::string::npos);
  CHECK(out.find(token) == std::string::npos);

  // A bad value is refused (usage error) and the file is left as it was.
  std::tie(status, out) = grok_cmd(home, {"config", "set-token", "has space"});
  CHECK(status == 2);
  CHECK(read_file(file) == text);

  std::unique_ptr<process> p;
  {
    INFO("with neither --server nor --token, grok http takes both from the file");
    CHECK(comes_online(home, {std::to_string(s.upstream_port), "--subdomain", "fromfile"}, p));
    CHECK(request(s.http_port, "GET", "fromfile.localhost", "/").status == 200);
    for (auto& l : p->lines()) CHECK(l.find(token) == std::string::npos);
    p->signal(SIGINT);
    CHECK(p->wait_exit(10s) == 0);
  }
  {
    INFO("--server and --token on the command line win over the file");
    REQUIRE(grok_cmd(home, {"config", "set-token", "wrong-token"}).first == 0);
    REQUIRE(grok_cmd(home, {"config", "set-server", "127.0.0.1:" + std::to_string(free_port())}).first == 0);
    CHECK(comes_online(home, {std::to_string(s.upstream_port), "--subdomain", "fromflags", "--server", server, "--token", token}, p));
    CHECK(request(s.http_port, "GET", "fromflags.localhost", "/").status == 200);
    p->signal(SIGINT);
    CHECK(p->wait_exit(10s) == 0);
  }
}

TEST_CASE("grok http HOST:PORT forwards to that host, not to 127.0.0.1") {
  stack::options o;
  o.start_client = false;
  stack s(o);
  // A second local service on another loopback address; nothing listens on its port at 127.0.0.1.
  process other({binary("grok-demo-upstream"), "--host", "127.0.0.2", "--port", "0"});
  auto m = other.wait_for_line(std::regex(R"(listening 127\.0\.0\.2:(\d+))"), 10s);
  REQUIRE(m);
  const std::string port = (*m)[1];
  process p({binary("grok"), "--insecure", "--config", "/dev/null", "http", "127.0.0.2:" + port, "--subdomain",
             "elsewhere", "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token});
  auto fwd = p.wait_for_line(std::regex(R"(Forwarding\s+(\S+) -> (\S+))"), 15s);
  REQUIRE(fwd);
  CHECK((*fwd)[2] == "http://127.0.0.2:" + port);
  auto r = request(s.http_port, "GET", "elsewhere.localhost", "/");
  CHECK(r.status == 200);
  CHECK(r.body == "Hello from grok-demo-upstream\n");
  p.signal(SIGINT);
  CHECK(p.wait_exit(10s) == 0);
}
