// `grok serve` helpers: request path resolution (traversal, symlinks), Range,
// content types, Basic auth, ETag matching, listing HTML.

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "grok/file_server.hpp"
#include "grok/http_text.hpp"

namespace fs = std::filesystem;
using namespace grok;

namespace {

// A temp layout:  base/root/{a.txt, sub/b.txt, link_in -> sub/b.txt,
// link_out -> base/secret.txt, dirlink_out -> base/outside/, %2e%2e/}
// and base/secret.txt, base/outside/x.
struct temp_tree {
  fs::path base, root;
  temp_tree() {
    char tmpl[] = "/tmp/grok-unit-serve-XXXXXX";
    base = fs::canonical(mkdtemp(tmpl));
    root = base / "root";
    fs::create_directories(root / "sub");
    fs::create_directories(base / "outside");
    std::ofstream(root / "a.txt") << "a";
    std::ofstream(root / "sub" / "b.txt") << "b";
    std::ofstream(base / "secret.txt") << "secret";
    std::ofstream(base / "outside" / "x") << "x";
    fs::create_symlink(root / "sub" / "b.txt", root / "link_in");
    fs::create_symlink("sub", root / "dirlink_in");
    fs::create_symlink(base / "secret.txt", root / "link_out");
    fs::create_symlink("../secret.txt", root / "rel_link_out");
    fs::create_symlink(base / "outside", root / "dirlink_out");
    fs::create_directories(root / "%2e%2e");
  }
  ~temp_tree() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }
};

std::string show(const std::optional<fs::path>& p) { return p ? p->string() : "nullopt"; }

std::string show(const std::optional<std::pair<uint64_t, uint64_t>>& r) {
  return r ? std::to_string(r->first) + "-" + std::to_string(r->second) : "nullopt";
}

std::optional<std::pair<uint64_t, uint64_t>> rng(uint64_t a, uint64_t b) { return std::pair<uint64_t, uint64_t>{a, b}; }

std::string b64(const std::string& s) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    uint32_t n = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
    out += t[n >> 18 & 63];
    out += t[n >> 12 & 63];
    out += t[n >> 6 & 63];
    out += t[n & 63];
  }
  if (s.size() - i == 1) {
    uint32_t n = uint8_t(s[i]) << 16;
    out += t[n >> 18 & 63];
    out += t[n >> 12 & 63];
    out += "==";
  } else if (s.size() - i == 2) {
    uint32_t n = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8);
    out += t[n >> 18 & 63];
    out += t[n >> 12 & 63];
    out += t[n >> 6 & 63];
    out += '=';
  }
  return out;
}

}  // namespace

TEST_SUITE("serve") {

TEST_CASE("serve: resolve_request_path maps ordinary targets inside the root") {
  temp_tree t;
  CHECK(show(resolve_request_path(t.root, "/")) == t.root.string());
  CHECK(show(resolve_request_path(t.root, "/a.txt")) == (t.root / "a.txt").string());
  CHECK(show(resolve_request_path(t.root, "/a.txt?x=1&y=../../etc")) == (t.root / "a.txt").string());
  CHECK(show(resolve_request_path(t.root, "/sub/b.txt")) == (t.root / "sub" / "b.txt").string());
  CHECK(show(resolve_request_path(t.root, "/sub/")) == (t.root / "sub").string());
  CHECK(show(resolve_request_path(t.root, "/./sub/./b.txt")) == (t.root / "sub" / "b.txt").string());
  CHECK(show(resolve_request_path(t.root, "/%61.txt")) == (t.root / "a.txt").string());
  // Missing files still resolve (inside the root); the caller answers 404.
  CHECK(show(resolve_request_path(t.root, "/nope/x.txt")) == (t.root / "nope" / "x.txt").string());
  // "//etc/passwd" is root/etc/passwd, never /etc/passwd.
  CHECK(show(resolve_request_path(t.root, "//etc/passwd")) == (t.root / "etc" / "passwd").string());
  CHECK(show(resolve_request_path(t.root, "/a%20b.txt")) == (t.root / "a b.txt").string());
}

TEST_CASE("serve: resolve_request_path rejects traversal vectors") {
  temp_tree t;
  const char* vectors[] = {
      "/../etc/passwd",
      "/..",
      "/../",
      "/sub/../../secret.txt",
      "/a/../../x",
      "/%2e%2e/",
      "/%2e%2e/secret.txt",
      "/%2E%2E/secret.txt",
      "/%2e%2E%2f",
      "/%2e%2E%2fsecret.txt",
      "/..%2f",
      "/..%2fsecret.txt",
      "/..%2Fsecret.txt",
      "/sub%2f..%2f..%2fsecret.txt",
      "/.%2e/secret.txt",
      "/%2e./secret.txt",
      "\\..\\",
      "/\\..\\secret.txt",
      "/..\\secret.txt",
      "/%5c..%5csecret.txt",
      "/%5C..%5Csecret.txt",
      "/a.txt%00.png",
      "/%00",
      "/a%0a.txt",
      "/a.txt\n",
      "/%",
      "/%2",
      "/%zz",
      "",
      "a.txt",
      "*",
      "http://evil/",
      "/link_out",
      "/rel_link_out",
      "/dirlink_out/x",
      "/dirlink_out/",
  };
  for (const char* v : vectors) {
    CAPTURE(v);
    CHECK(show(resolve_request_path(t.root, v)) == "nullopt");
  }
}

TEST_CASE("serve: double-encoded dots stay a literal name inside the root") {
  temp_tree t;
  // %252e%252e decodes once to the literal name "%2e%2e" (a real directory
  // here), never to "..".
  auto p = resolve_request_path(t.root, "/%252e%252e/secret.txt");
  REQUIRE(p);
  CHECK(p->string() == (t.root / "%2e%2e" / "secret.txt").string());
  CHECK(path_within(t.root, *p));
  CHECK_FALSE(fs::exists(*p));
  auto q = resolve_request_path(t.root, "/%252e%252e%252fsecret.txt");
  REQUIRE(q);
  CHECK(path_within(t.root, *q));
  CHECK_FALSE(fs::exists(*q));
}

TEST_CASE("serve: symlinks inside the root pointing inside are followed") {
  temp_tree t;
  CHECK(show(resolve_request_path(t.root, "/link_in")) == (t.root / "sub" / "b.txt").string());
  CHECK(show(resolve_request_path(t.root, "/dirlink_in/b.txt")) == (t.root / "sub" / "b.txt").string());
}

TEST_CASE("serve: a root given through a symlink still confines") {
  temp_tree t;
  fs::create_symlink(t.root, t.base / "root_link");
  auto canonical_root = fs::canonical(t.base / "root_link");
  CHECK(canonical_root == t.root);
  CHECK(show(resolve_request_path(canonical_root, "/link_out")) == "nullopt");
  CHECK(show(resolve_request_path(canonical_root, "/a.txt")) == (t.root / "a.txt").string());
}

TEST_CASE("serve: path_within compares whole components") {
  CHECK(path_within("/srv/www", "/srv/www"));
  CHECK(path_within("/srv/www", "/srv/www/a"));
  CHECK_FALSE(path_within("/srv/www", "/srv/www2/a"));
  CHECK_FALSE(path_within("/srv/www", "/srv"));
  CHECK_FALSE(path_within("/srv/www", "/etc/passwd"));
  CHECK(path_within("/", "/etc/passwd"));
}

TEST_CASE("serve: percent_decode") {
  CHECK(percent_decode("/a%20b").value() == "/a b");
  CHECK(percent_decode("%41%6a").value() == "Aj");
  CHECK(percent_decode("%252e").value() == "%2e");
  CHECK_FALSE(percent_decode("%"));
  CHECK_FALSE(percent_decode("%4"));
  CHECK_FALSE(percent_decode("%g0"));
}

TEST_CASE("serve: parse_range table") {
  struct row {
    const char* header;
    uint64_t size;
    std::optional<std::pair<uint64_t, uint64_t>> want;
    bool unsatisfiable;
  };
  const row rows[] = {
      {"bytes=0-0", 100, rng(0, 0), false},
      {"bytes=0-99", 100, rng(0, 99), false},
      {"bytes=10-19", 100, rng(10, 19), false},
      {"bytes=10-1000", 100, rng(10, 99), false},
      {"bytes=99-", 100, rng(99, 99), false},
      {"bytes=0-", 100, rng(0, 99), false},
      {"bytes=-1", 100, rng(99, 99), false},
      {"bytes=-10", 100, rng(90, 99), false},
      {"bytes=-100", 100, rng(0, 99), false},
      {"bytes=-1000", 100, rng(0, 99), false},
      {"BYTES=1-2", 100, rng(1, 2), false},
      {" bytes=1-2 ", 100, rng(1, 2), false},
      {"bytes=0-99999999999999999999999", 100, rng(0, 99), false},
      // unsatisfiable: 416
      {"bytes=100-", 100, std::nullopt, true},
      {"bytes=100-200", 100, std::nullopt, true},
      {"bytes=99999999999999999999999-", 100, std::nullopt, true},
      {"bytes=-0", 100, std::nullopt, true},
      {"bytes=0-0", 0, std::nullopt, true},
      {"bytes=-5", 0, std::nullopt, true},
      // malformed or multi-range: ignored (200)
      {"bytes=5-4", 100, std::nullopt, false},
      {"bytes=0-1,3-4", 100, std::nullopt, false},
      {"bytes=-", 100, std::nullopt, false},
      {"bytes=", 100, std::nullopt, false},
      {"bytes=a-b", 100, std::nullopt, false},
      {"bytes=1-2x", 100, std::nullopt, false},
      {"bytes=+1-2", 100, std::nullopt, false},
      {"bytes=--1", 100, std::nullopt, false},
      {"bytes 0-1", 100, std::nullopt, false},
      {"items=0-1", 100, std::nullopt, false},
      {"0-1", 100, std::nullopt, false},
      {"", 100, std::nullopt, false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.header);
    CAPTURE(r.size);
    CHECK(show(parse_range(r.header, r.size)) == show(r.want));
    CHECK(range_unsatisfiable(r.header, r.size) == r.unsatisfiable);
  }
}

TEST_CASE("serve: content types") {
  CHECK(content_type_for("index.html") == "text/html; charset=utf-8");
  CHECK(content_type_for("INDEX.HTM") == "text/html; charset=utf-8");
  CHECK(content_type_for("a/b/style.css") == "text/css; charset=utf-8");
  CHECK(content_type_for("app.js") == "text/javascript; charset=utf-8");
  CHECK(content_type_for("mod.mjs") == "text/javascript; charset=utf-8");
  CHECK(content_type_for("data.json") == "application/json");
  CHECK(content_type_for("notes.txt") == "text/plain; charset=utf-8");
  CHECK(content_type_for("feed.xml") == "text/xml; charset=utf-8");
  CHECK(content_type_for("p.png") == "image/png");
  CHECK(content_type_for("p.JPG") == "image/jpeg");
  CHECK(content_type_for("p.jpeg") == "image/jpeg");
  CHECK(content_type_for("p.gif") == "image/gif");
  CHECK(content_type_for("p.svg") == "image/svg+xml");
  CHECK(content_type_for("favicon.ico") == "image/x-icon");
  CHECK(content_type_for("m.wasm") == "application/wasm");
  CHECK(content_type_for("doc.pdf") == "application/pdf");
  CHECK(content_type_for("v.mp4") == "video/mp4");
  CHECK(content_type_for("f.woff2") == "font/woff2");
  CHECK(content_type_for("Makefile") == "application/octet-stream");
  CHECK(content_type_for("archive.unknownext") == "application/octet-stream");
  CHECK(content_type_for(".html") == "application/octet-stream");  // a dotfile, not an extension
  CHECK(content_type_for("x.tar.gz") == "application/gzip");
}

TEST_CASE("serve: base64_decode is strict") {
  CHECK(base64_decode("").value().empty());
  CHECK(base64_decode("YQ==").value() == "a");
  CHECK(base64_decode("YWI=").value() == "ab");
  CHECK(base64_decode("YWJj").value() == "abc");
  CHECK(base64_decode(b64("user:pa:ss")).value() == "user:pa:ss");
  CHECK_FALSE(base64_decode("YQ"));
  CHECK_FALSE(base64_decode("Y==="));
  CHECK_FALSE(base64_decode("YQ=a"));
  CHECK_FALSE(base64_decode("YQ==YQ=="));
  CHECK_FALSE(base64_decode("YW!j"));
  CHECK_FALSE(base64_decode("YW j"));
}

TEST_CASE("serve: basic_auth_ok") {
  const std::string user = "alice", pass = "s3cr:et";
  CHECK(basic_auth_ok("Basic " + b64("alice:s3cr:et"), user, pass));
  CHECK(basic_auth_ok("basic " + b64("alice:s3cr:et"), user, pass));
  CHECK(basic_auth_ok("BASIC   " + b64("alice:s3cr:et") + " ", user, pass));
  CHECK_FALSE(basic_auth_ok("Basic " + b64("bob:s3cr:et"), user, pass));          // wrong user
  CHECK_FALSE(basic_auth_ok("Basic " + b64("alice:s3cr:eT"), user, pass));        // wrong password
  CHECK_FALSE(basic_auth_ok("Basic " + b64("alice:s3cr"), user, pass));           // password prefix
  CHECK_FALSE(basic_auth_ok("Basic " + b64("alice:s3cr:et "), user, pass));       // longer password
  CHECK_FALSE(basic_auth_ok("Basic " + b64("alic:es3cr:et"), user, pass));        // colon moved
  CHECK_FALSE(basic_auth_ok("Basic " + b64("alices3cr:et"), user, pass));
  CHECK_FALSE(basic_auth_ok("Basic " + b64("alice"), user, pass));                 // no colon
  CHECK_FALSE(basic_auth_ok("Basic !!!!", user, pass));                            // malformed base64
  CHECK_FALSE(basic_auth_ok("Basic " + b64("alice:s3cr:et").substr(1), user, pass));
  CHECK_FALSE(basic_auth_ok(b64("alice:s3cr:et"), user, pass));                    // missing "Basic "
  CHECK_FALSE(basic_auth_ok("Bearer " + b64("alice:s3cr:et"), user, pass));
  CHECK_FALSE(basic_auth_ok("Basic", user, pass));
  CHECK_FALSE(basic_auth_ok("", user, pass));
  CHECK_FALSE(basic_auth_ok("Basic " + b64(":"), user, pass));
}

TEST_CASE("serve: ETag format and If-None-Match") {
  auto etag = make_etag(0x1234, std::chrono::nanoseconds(0xabcdef));
  CHECK(etag == "\"1234-abcdef\"");
  CHECK(etag_matches_any(etag, etag));
  CHECK(etag_matches_any("*", etag));
  CHECK(etag_matches_any("\"x\", " + etag, etag));
  CHECK(etag_matches_any("W/" + etag, etag));
  CHECK(etag_matches_any(" \"a\" ,W/\"b\",  " + etag + " ", etag));
  CHECK_FALSE(etag_matches_any("\"1234-abcdee\"", etag));
  CHECK_FALSE(etag_matches_any("1234-abcdef", etag));
  CHECK_FALSE(etag_matches_any("", etag));
  CHECK_FALSE(etag_matches_any("\"1234-abcdef", etag));
}

TEST_CASE("serve: http_date is IMF-fixdate") {
  CHECK(http_date(std::chrono::system_clock::time_point(std::chrono::seconds(784111777))) ==
        "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(http_date(std::chrono::system_clock::time_point(std::chrono::seconds(0))) == "Thu, 01 Jan 1970 00:00:00 GMT");
}

TEST_CASE("serve: escaping helpers") {
  CHECK(html_escape("<a href=\"x\">'&'</a>") == "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  CHECK(url_encode_segment("a b/c?d#e%f") == "a%20b%2Fc%3Fd%23e%25f");
  CHECK(url_encode_segment("Az09-._~") == "Az09-._~");
  CHECK(url_encode_segment("javascript:alert(1)") == "javascript%3Aalert%281%29");
  CHECK(url_encode_segment("\xc3\xa9") == "%C3%A9");
}

TEST_CASE("serve: directory listing is sorted, escaped and encoded") {
  auto html = directory_listing_html("/d/<x>/", {{"zeta.txt", false},
                                                  {"<script>.txt", false},
                                                  {"alpha", true},
                                                  {"a b&c.txt", false},
                                                  {"q\"uote'", false}});
  CHECK(html.find("<title>Index of /d/&lt;x&gt;/</title>") != std::string::npos);
  CHECK(html.find("<a href=\"../\">../</a>") != std::string::npos);
  CHECK(html.find("<a href=\"alpha/\">alpha/</a>") != std::string::npos);
  CHECK(html.find("<a href=\"a%20b%26c.txt\">a b&amp;c.txt</a>") != std::string::npos);
  CHECK(html.find("<a href=\"%3Cscript%3E.txt\">&lt;script&gt;.txt</a>") != std::string::npos);
  CHECK(html.find("<a href=\"q%22uote%27\">q&quot;uote&#39;</a>") != std::string::npos);
  CHECK(html.find("<script>") == std::string::npos);
  // sorted by name (byte order)
  auto pos = [&](const char* s) { return html.find(s); };
  CHECK(pos(">%3Cscript") == std::string::npos);
  CHECK(pos("href=\"%3Cscript") < pos("href=\"a%20b"));
  CHECK(pos("href=\"a%20b") < pos("href=\"alpha/"));
  CHECK(pos("href=\"alpha/") < pos("href=\"q%22"));
  CHECK(pos("href=\"q%22") < pos("href=\"zeta.txt"));
  // The root has no parent link.
  CHECK(directory_listing_html("/", {}).find("../") == std::string::npos);
}

}  // TEST_SUITE
