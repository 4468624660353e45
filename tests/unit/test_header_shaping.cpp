// What the client changes in relayed heads (include/grok/header_shaping.hpp).

#include <doctest/doctest.h>

#include "grok/header_shaping.hpp"

using namespace grok;

namespace {

pb::RequestHead head(std::vector<std::pair<std::string, std::string>> headers) {
  pb::RequestHead h;
  for (auto& [n, v] : headers) {
    auto* x = h.add_headers();
    x->set_name(n);
    x->set_value(v);
  }
  return h;
}

std::string listing(const google::protobuf::RepeatedPtrField<pb::Header>& hs) {
  std::string out;
  for (const auto& h : hs) out += h.name() + ": " + h.value() + "\n";
  return out;
}

}  // namespace

TEST_CASE("header flags: \"Name: value\" and names are checked; framing headers and Host cannot be changed") {
  auto h = parse_header_add("  X-Env :  staging  ");
  CHECK(h.name() == "X-Env");
  CHECK(h.value() == "staging");
  CHECK(parse_header_add("X-Empty:").value().empty());
  CHECK(parse_header_remove(" X-Drop ") == "x-drop");
  CHECK_THROWS_WITH(parse_header_add("X-Env staging"), "expected \"Name: value\", got 'X-Env staging'");
  CHECK_THROWS_WITH(parse_header_add("Bad Name: x"), "header: 'Bad Name' is not a valid header name");
  CHECK_THROWS_WITH(parse_header_add("Content-Length: 1"), "header: grok frames Content-Length itself; it cannot be changed");
  CHECK_THROWS_WITH(parse_header_remove("transfer-encoding"),
                    "header: grok frames transfer-encoding itself; it cannot be changed");
  CHECK_THROWS_WITH(parse_header_remove("Connection"), "header: grok frames Connection itself; it cannot be changed");
  CHECK_THROWS_WITH(parse_header_add("Host: x"), "header: use --host-header to choose the Host");
  CHECK_THROWS_WITH(parse_header_add("X-A: a\x01"), "header X-A: the value holds a control character");
  CHECK(parse_host_header_option("rewrite") == "rewrite");
  CHECK(parse_host_header_option("app.test:8080") == "app.test:8080");
  CHECK_THROWS_WITH(parse_host_header_option("a b"),
                    "expected 'rewrite' or a host such as app.test or localhost:3000, got 'a b'");
  CHECK_THROWS(parse_host_header_option(""));
}

TEST_CASE("shape_request: removals, then additions, then the Host; every copy of a removed header goes") {
  header_shaping s;
  s.request_remove = {"x-drop"};
  s.request_add = {parse_header_add("X-Env: staging"), parse_header_add("X-Drop: mine")};
  s.host_header = "rewrite";
  auto h = head({{"Host", "app.example.com"}, {"x-drop", "1"}, {"Accept", "*/*"}, {"X-DROP", "2"}});
  shape_request(h, s, "127.0.0.1:3000");
  CHECK(listing(h.headers()) == "Host: 127.0.0.1:3000\nAccept: */*\nX-Env: staging\nX-Drop: mine\n");
  s = {};
  s.host_header = "app.test";
  auto h2 = head({{"host", "app.example.com"}});
  shape_request(h2, s, "127.0.0.1:3000");
  CHECK(listing(h2.headers()) == "host: app.test\n");
  auto untouched = head({{"Host", "a"}, {"B", "c"}});
  shape_request(untouched, header_shaping{}, "127.0.0.1:3000");
  CHECK(listing(untouched.headers()) == "Host: a\nB: c\n");
}

TEST_CASE("shape_response: removals, then additions") {
  header_shaping s;
  s.response_remove = {"server"};
  s.response_add = {parse_header_add("X-Served-By: grok")};
  pb::ResponseHead r;
  for (auto [n, v] : std::vector<std::pair<const char*, const char*>>{{"Server", "nginx"}, {"Content-Type", "text/plain"}}) {
    auto* x = r.add_headers();
    x->set_name(n);
    x->set_value(v);
  }
  shape_response(r, s);
  CHECK(listing(r.headers()) == "Content-Type: text/plain\nX-Served-By: grok\n");
}
