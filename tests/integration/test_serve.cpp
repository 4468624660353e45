// `grok serve DIR`: the client's own file server, reached through the real
// grok-server on 127.0.0.1. Every request below travels the whole tunnel.

#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace grok::test;
namespace fs = std::filesystem;

namespace {

const std::string k_secret = "TOP-SECRET-CONTENT-0451";
const std::string k_hello = "hello world\n";

stack::options no_client() {
  stack::options o;
  o.start_client = false;
  return o;
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

std::string b64(const std::string& s) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    uint32_t n = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += t[(n >> k) & 63];
  }
  if (s.size() - i == 1) {
    uint32_t n = uint8_t(s[i]) << 16;
    out += t[(n >> 18) & 63];
    out += t[(n >> 12) & 63];
    out += "==";
  } else if (s.size() - i == 2) {
    uint32_t n = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8);
    out += t[(n >> 18) & 63];
    out += t[(n >> 12) & 63];
    out += t[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

/// A running grok-server plus a folder:
///   www/hello.txt, www/data.json, www/a b&c.txt, www/sub/inner.txt,
///   www/site/index.html, www/link_in -> hello.txt,
///   www/link_out -> ../secret.txt, www/dir_out -> .. (the parent)
/// and secret.txt next to www (outside DIR).
struct served {
  stack s{no_client()};
  fs::path www;
  std::unique_ptr<process> grok;
  std::string name;

  served() {
    www = fs::path(s.dir) / "www";
    fs::create_directories(www / "sub");
    fs::create_directories(www / "site");
    write_file(www / "hello.txt", k_hello);
    write_file(www / "data.json", "{\"a\":1}\n");
    write_file(www / "a b&c.txt", "amp\n");
    write_file(www / "sub" / "inner.txt", "inner\n");
    write_file(www / "site" / "index.html", "<h1>site</h1>\n");
    write_file(fs::path(s.dir) / "secret.txt", k_secret);
    fs::create_symlink("hello.txt", www / "link_in");
    fs::create_symlink("../secret.txt", www / "link_out");
    fs::create_symlink("..", www / "dir_out");
  }

  /// Starts `grok serve www` as NAME; extra arguments are appended.
  void start(const std::string& tunnel_name, std::vector<std::string> extra = {}) {
    name = tunnel_name;
    std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", "serve", www.string(),
                                  "--subdomain", name, "--server", "127.0.0.1:" + std::to_string(s.grpc_port),
                                  "--token", s.opts.token};
    argv.insert(argv.end(), extra.begin(), extra.end());
    grok = std::make_unique<process>(argv);
    auto m = grok->wait_for_line(std::regex(R"(Forwarding\s+(http://\S+) -> http://127\.0\.0\.1:(\d+))"), 15s);
    if (!m) {
      for (auto& l : grok->lines()) MESSAGE(l);
      throw std::runtime_error("grok serve did not come online");
    }
  }

  std::string host() const { return name + ".localhost"; }

  response get(const std::string& target, const std::vector<header>& headers = {}) {
    return request(s.http_port, "GET", host(), target, "", headers);
  }

  ~served() {
    if (grok && grok->running()) {
      grok->signal(SIGINT);
      grok->wait_exit(10s);
    }
  }
};

}  // namespace

TEST_CASE("serve: listing, file bytes, content types, HEAD, redirects and 405") {
  served f;
  f.start("files");
  CHECK(f.grok->wait_for_text("Serving", 1s));

  auto root = f.get("/");
  REQUIRE(root.status == 200);
  CHECK(root.get("Content-Type") == "text/html; charset=utf-8");
  CHECK(root.body.find("<a href=\"hello.txt\">hello.txt</a>") != std::string::npos);
  CHECK(root.body.find("<a href=\"data.json\">data.json</a>") != std::string::npos);
  CHECK(root.body.find("<a href=\"sub/\">sub/</a>") != std::string::npos);
  CHECK(root.body.find("<a href=\"site/\">site/</a>") != std::string::npos);
  CHECK(root.body.find("<a href=\"a%20b%26c.txt\">a b&amp;c.txt</a>") != std::string::npos);
  CHECK(root.body.find("link_in") != std::string::npos);
  // Links leading out of DIR are not even named.
  CHECK(root.body.find("link_out") == std::string::npos);
  CHECK(root.body.find("dir_out") == std::string::npos);
  CHECK(root.body.find("href=\"../\"") == std::string::npos);
  CHECK(root.body.find("hello.txt") < root.body.find("sub/"));

  auto hello = f.get("/hello.txt");
  REQUIRE(hello.status == 200);
  CHECK(hello.body == k_hello);
  CHECK(hello.get("Content-Type") == "text/plain; charset=utf-8");
  CHECK(hello.get("Content-Length") == std::to_string(k_hello.size()));
  CHECK(hello.get("Accept-Ranges") == "bytes");
  CHECK(std::regex_match(hello.get("ETag"), std::regex(R"("c-[0-9a-f]+")")));
  CHECK(std::regex_match(hello.get("Last-Modified"),
                         std::regex(R"([A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT)")));

  CHECK(f.get("/data.json").get("Content-Type") == "application/json");
  CHECK(f.get("/a%20b%26c.txt").body == "amp\n");
  CHECK(f.get("/link_in").body == k_hello);
  CHECK(f.get("/hello.txt?download=1").body == k_hello);
  CHECK(f.get("/missing.txt").status == 404);
  CHECK(f.get("/hello.txt/").status == 404);

  auto sub = f.get("/sub");
  CHECK(sub.status == 301);
  CHECK(sub.get("Location") == "/sub/");
  auto sub_q = f.get("/sub?x=1");
  CHECK(sub_q.status == 301);
  CHECK(sub_q.get("Location") == "/sub/?x=1");
  // Never a protocol-relative Location.
  auto dbl = f.get("//sub");
  CHECK(dbl.status == 301);
  CHECK(dbl.get("Location") == "/sub/");
  auto sub_list = f.get("/sub/");
  CHECK(sub_list.status == 200);
  CHECK(sub_list.body.find("<a href=\"inner.txt\">inner.txt</a>") != std::string::npos);
  CHECK(sub_list.body.find("<a href=\"../\">../</a>") != std::string::npos);
  CHECK(sub_list.body.find("Index of /sub/") != std::string::npos);
  auto site = f.get("/site/");
  CHECK(site.status == 200);
  CHECK(site.body == "<h1>site</h1>\n");
  CHECK(site.get("Content-Type") == "text/html; charset=utf-8");

  for (std::string method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    CAPTURE(method);
    auto r = request(f.s.http_port, method, f.host(), "/hello.txt", method == "POST" ? "body" : "");
    CHECK(r.status == 405);
    CHECK(r.get("Allow") == "GET, HEAD");
  }

  // HEAD, then GET on the same (keep-alive) connection: no body leaks in between.
  connection c(f.s.http_port);
  c.send("HEAD /hello.txt HTTP/1.1\r\nHost: " + f.host() + "\r\n\r\n");
  auto head = c.read_response(10s, true);
  CHECK(head.status == 200);
  CHECK(head.get("Content-Length") == std::to_string(k_hello.size()));
  CHECK(head.get("Content-Type") == "text/plain; charset=utf-8");
  CHECK(head.body.empty());
  c.send("GET /data.json HTTP/1.1\r\nHost: " + f.host() + "\r\n\r\n");
  auto after = c.read_response(10s);
  CHECK(after.status == 200);
  CHECK(after.body == "{\"a\":1}\n");
  c.send("HEAD / HTTP/1.1\r\nHost: " + f.host() + "\r\n\r\n");
  auto head_dir = c.read_response(10s, true);
  CHECK(head_dir.status == 200);
  CHECK(head_dir.body.empty());
  c.send("GET /hello.txt HTTP/1.1\r\nHost: " + f.host() + "\r\n\r\n");
  CHECK(c.read_response(10s).body == k_hello);

  // The client prints its usual request lines.
  CHECK(f.grok->wait_for_text("GET /hello.txt", 5s));
}

TEST_CASE("serve: ranges, 416 and conditional requests") {
  served f;
  f.start("files");
  auto r = f.get("/hello.txt", {{"Range", "bytes=0-4"}});
  CHECK(r.status == 206);
  CHECK(r.body == "hello");
  CHECK(r.get("Content-Range") == "bytes 0-4/12");
  CHECK(r.get("Content-Length") == "5");

  r = f.get("/hello.txt", {{"Range", "bytes=-6"}});
  CHECK(r.status == 206);
  CHECK(r.body == "world\n");
  CHECK(r.get("Content-Range") == "bytes 6-11/12");

  r = f.get("/hello.txt", {{"Range", "bytes=6-"}});
  CHECK(r.status == 206);
  CHECK(r.body == "world\n");

  r = f.get("/hello.txt", {{"Range", "bytes=11-999"}});
  CHECK(r.status == 206);
  CHECK(r.body == "\n");
  CHECK(r.get("Content-Range") == "bytes 11-11/12");

  r = f.get("/hello.txt", {{"Range", "bytes=12-"}});
  CHECK(r.status == 416);
  CHECK(r.get("Content-Range") == "bytes */12");
  CHECK(r.body.find("hello") == std::string::npos);

  r = f.get("/hello.txt", {{"Range", "bytes=0-1,4-5"}});  // multi-range: ignored
  CHECK(r.status == 200);
  CHECK(r.body == k_hello);
  r = f.get("/hello.txt", {{"Range", "bytes=5-1"}});  // malformed: ignored
  CHECK(r.status == 200);
  CHECK(r.body == k_hello);

  auto first = f.get("/hello.txt");
  auto etag = first.get("ETag");
  REQUIRE(!etag.empty());
  r = f.get("/hello.txt", {{"If-None-Match", etag}});
  CHECK(r.status == 304);
  CHECK(r.body.empty());
  CHECK(r.get("ETag") == etag);
  r = f.get("/hello.txt", {{"If-None-Match", "\"other\", " + etag}});
  CHECK(r.status == 304);
  r = f.get("/hello.txt", {{"If-None-Match", "*"}});
  CHECK(r.status == 304);
  r = f.get("/hello.txt", {{"If-None-Match", "\"other\""}});
  CHECK(r.status == 200);
  CHECK(r.body == k_hello);
  r = f.get("/hello.txt", {{"If-Modified-Since", first.get("Last-Modified")}});
  CHECK(r.status == 304);

  // If-Range: the range only applies to the same representation.
  r = f.get("/hello.txt", {{"Range", "bytes=0-4"}, {"If-Range", etag}});
  CHECK(r.status == 206);
  CHECK(r.body == "hello");
  r = f.get("/hello.txt", {{"Range", "bytes=0-4"}, {"If-Range", "\"stale\""}});
  CHECK(r.status == 200);
  CHECK(r.body == k_hello);

  // Changing the file changes the ETag.
  write_file(f.www / "hello.txt", "changed!\n");
  r = f.get("/hello.txt", {{"If-None-Match", etag}});
  CHECK(r.status == 200);
  CHECK(r.body == "changed!\n");
  CHECK(r.get("ETag") != etag);
}

TEST_CASE("serve: traversal attempts through the tunnel never reach files outside DIR") {
  served f;
  f.start("files");
  REQUIRE(fs::exists(fs::path(f.s.dir) / "secret.txt"));
  const char* targets[] = {
      "/../secret.txt",
      "/../../../../../../etc/passwd",
      "/%2e%2e/secret.txt",
      "/%2e%2E%2fsecret.txt",
      "/%2e%2E%2f",
      "/..%2fsecret.txt",
      "/..%2Fsecret.txt",
      "/.%2e/secret.txt",
      "/sub/../../secret.txt",
      "/sub/..%2f..%2fsecret.txt",
      "/a/../../x",
      "/%252e%252e/secret.txt",
      "/%252e%252e%252fsecret.txt",
      "/..\\secret.txt",
      "/%5c..%5csecret.txt",
      "\\..\\secret.txt",
      "/hello.txt%00.png",
      "/%00",
      "/link_out",
      "/dir_out/secret.txt",
      "/dir_out/",
      "//secret.txt",
      "/%2fsecret.txt",
      "http://files.localhost/../secret.txt",
  };
  for (const char* t : targets) {
    CAPTURE(t);
    // Raw request line: nothing between us and the server normalizes it.
    connection c(f.s.http_port);
    c.send(std::string("GET ") + t + " HTTP/1.1\r\nHost: files.localhost\r\nConnection: close\r\n\r\n");
    auto r = c.read_response(10s);
    CHECK((r.status == 404 || r.status == 400));
    CHECK(r.body.find(k_secret) == std::string::npos);
    CHECK(r.body.find("root:") == std::string::npos);
  }
  // //etc/passwd is DIR/etc/passwd, which does not exist.
  auto passwd = f.get("//etc/passwd");
  CHECK(passwd.status == 404);
  CHECK(passwd.body.find("root:") == std::string::npos);
  // The server is still fine afterwards.
  CHECK(f.get("/hello.txt").body == k_hello);
}

TEST_CASE("serve: --auth answers 401 without or with wrong credentials, 200 with the right ones") {
  served f;
  f.start("locked", {"--auth", "alice:op:en"});
  auto r = f.get("/hello.txt");
  CHECK(r.status == 401);
  CHECK(r.get("WWW-Authenticate") == "Basic realm=\"grok\"");
  CHECK(r.body.find("hello") == std::string::npos);
  CHECK(f.get("/", {{"Authorization", "Basic " + b64("alice:wrong")}}).status == 401);
  CHECK(f.get("/", {{"Authorization", "Basic " + b64("bob:op:en")}}).status == 401);
  CHECK(f.get("/", {{"Authorization", "Basic not*base64"}}).status == 401);
  CHECK(f.get("/", {{"Authorization", b64("alice:op:en")}}).status == 401);
  // Unauthenticated traversal gets 401 too, telling nothing.
  CHECK(f.get("/../secret.txt").status == 401);
  r = f.get("/hello.txt", {{"Authorization", "Basic " + b64("alice:op:en")}});
  CHECK(r.status == 200);
  CHECK(r.body == k_hello);
  r = f.get("/", {{"Authorization", "basic " + b64("alice:op:en")}});
  CHECK(r.status == 200);
  CHECK(r.body.find("hello.txt") != std::string::npos);
}

TEST_CASE("serve: a 64 MiB file streams byte-exact with a flat footprint") {
  served f;
  const size_t total = bulk_bytes(64u << 20);
  sha256 want;
  {
    std::ofstream out(f.www / "big.bin", std::ios::binary);
    std::string block(1 << 20, '\0');
    for (size_t off = 0; off < total; off += block.size()) {
      fill_pattern(block.data(), block.size(), off);
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
      want.update(block.data(), block.size());
    }
  }
  auto want_hex = want.hex();
  f.start("files");
  connection c(f.s.http_port);
  c.send("GET /big.bin HTTP/1.1\r\nHost: files.localhost\r\n\r\n");
  sha256 got;
  uint64_t bytes = 0;
  auto r = c.read_response(120s, false, [&](const char* p, size_t n) {
    got.update(p, n);
    bytes += n;
  });
  CHECK(r.status == 200);
  CHECK(r.get("Content-Type") == "application/octet-stream");
  CHECK(r.get("Content-Length") == std::to_string(total));
  CHECK(bytes == total);
  CHECK(got.hex() == want_hex);

  // A range deep inside the file, on the same connection.
  const size_t at = std::min<size_t>(40000000, total - 100);
  c.send("GET /big.bin HTTP/1.1\r\nHost: files.localhost\r\nRange: bytes=" + std::to_string(at) + "-" +
         std::to_string(at + 99) + "\r\n\r\n");
  auto part = c.read_response(10s);
  CHECK(part.status == 206);
  std::string expect(100, '\0');
  fill_pattern(expect.data(), expect.size(), at);
  CHECK(part.body == expect);

  // The file was never held whole: grok's peak RSS stays far below its size.
  auto peak = f.grok->peak_rss_kib();
  MESSAGE("grok serve peak RSS " << peak << " KiB");
  CHECK(peak > 0);
  if (rss_caps()) CHECK(peak < 48 * 1024);
}

TEST_CASE("serve: usage errors exit non-zero (2 for a bad DIR or --auth)") {
  stack s(no_client());
  fs::path file = fs::path(s.dir) / "plain.txt";
  write_file(file, "x");
  auto run = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token});
    process p(argv);
    auto rc = p.wait_exit(10s);
    return std::make_pair(rc.value_or(-1), p.lines());
  };
  auto joined = [](const std::vector<std::string>& lines) {
    std::string all;
    for (auto& l : lines) all += l + "\n";
    return all;
  };
  auto [rc1, out1] = run({s.dir + "/does-not-exist"});
  CHECK(rc1 == 2);
  CHECK(joined(out1).find("no such directory") != std::string::npos);
  auto [rc2, out2] = run({file.string()});
  CHECK(rc2 == 2);
  CHECK(joined(out2).find("not a directory") != std::string::npos);
  for (std::string bad : {"nocolon", ":pass", "user:", ""}) {
    CAPTURE(bad);
    auto [rc, out] = run({s.dir, "--auth", bad});
    CHECK(rc == 2);
    CHECK(joined(out).find("USER:PASS") != std::string::npos);
  }
  auto [rc3, out3] = run({});
  CHECK(rc3 != 0);  // DIR is required (CLI11's own RequiredError exit code)
}
