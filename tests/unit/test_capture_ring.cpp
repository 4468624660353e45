// The inspector's ring: what it keeps under its memory cap, what it drops
// first, how it truncates bodies, and the JSON the API answers with.

#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <map>
#include <random>
#include <string>

#include "grok/capture_ring.hpp"
#include "grok/config.hpp"
#include "grok/file_server.hpp"

using namespace grok;
namespace json = boost::json;

namespace {

captured_exchange record(const std::string& target, size_t body_bytes, uint64_t cap = 1 << 20) {
  captured_exchange r;
  r.tunnel = "app";
  r.method = "POST";
  r.target = target;
  r.remote_addr = "203.0.113.7";
  r.request_headers = {{"Host", "app.example.com"}, {"X-Trace", "1"}, {"X-Trace", "2"}};
  std::string body(body_bytes, 'b');
  r.request_body.append(body.data(), body.size(), cap);
  return r;
}

}  // namespace

TEST_CASE("a body is kept up to its cap; beyond it only its size is counted and it says truncated") {
  captured_body b;
  std::string piece(600, 'x');
  b.append(piece.data(), piece.size(), 1000);
  CHECK(b.bytes.size() == 600);
  CHECK_FALSE(b.truncated());
  b.append(piece.data(), 400, 1000);
  CHECK(b.bytes.size() == 1000);
  CHECK(b.size == 1000);
  CHECK_FALSE(b.truncated());  // exactly at the cap: nothing left out
  b.append(piece.data(), piece.size(), 1000);
  CHECK(b.bytes.size() == 1000);
  CHECK(b.size == 1600);
  CHECK(b.truncated());
  captured_body none;
  none.append(piece.data(), piece.size(), 0);
  CHECK(none.bytes.empty());
  CHECK(none.size == 600);
}

TEST_CASE("the ring stays under its memory cap by dropping the oldest records first") {
  capture_ring ring({.max_bytes = 100 * 1024, .max_body = 16 * 1024});
  for (int i = 0; i < 100; ++i) {
    auto seq = ring.add(record("/r" + std::to_string(i), 10 * 1024));
    CHECK(seq == static_cast<uint64_t>(i + 1));
    CHECK(ring.bytes() <= 100 * 1024);
  }
  // Each record is a little over 10 KiB: at most 9 fit.
  CHECK(ring.size() >= 8);
  CHECK(ring.size() <= 9);
  CHECK(ring.evicted() == 100 - ring.size());
  auto newest = ring.newest();
  REQUIRE(newest.size() == ring.size());
  CHECK(newest.front()->target == "/r99");
  for (size_t i = 1; i < newest.size(); ++i) CHECK(newest[i - 1]->seq == newest[i]->seq + 1);  // no gaps: oldest went first
  CHECK(ring.find(1) == nullptr);
  CHECK(ring.find(100) != nullptr);
  CHECK(ring.newest(3).size() == 3);
}

TEST_CASE("a record that grows is re-counted; one already dropped is not brought back") {
  capture_ring ring({.max_bytes = 64 * 1024, .max_body = 32 * 1024});
  auto first = ring.add(record("/first", 10 * 1024));
  auto second = ring.add(record("/second", 0));
  auto before = ring.bytes();
  auto grown = record("/second", 0);
  std::string body(30 * 1024, 'r');
  grown.response_body.append(body.data(), body.size(), 32 * 1024);
  grown.status = 200;
  CHECK(ring.update(second, grown));
  CHECK(ring.bytes() >= before + 30 * 1024);
  CHECK(ring.find(second)->status == 200);
  CHECK(ring.find(second)->seq == second);
  // Growing past the cap drops the oldest, which then cannot be updated.
  auto third = ring.add(record("/third", 30 * 1024));
  CHECK(ring.bytes() <= 64 * 1024);
  CHECK(ring.find(first) == nullptr);
  CHECK_FALSE(ring.update(first, record("/first", 0)));
  CHECK(ring.find(third) != nullptr);
  ring.clear();
  CHECK(ring.size() == 0);
  CHECK(ring.bytes() == 0);
  CHECK(ring.add(record("/after", 0)) == third + 1);  // ids are never reused
}

TEST_CASE("the circular buffer wraps: random adds and updates keep every held record's latest version") {
  capture_ring ring({.max_bytes = 256 * 1024, .max_body = 64 * 1024});
  std::mt19937 rng(42);
  std::map<uint64_t, std::string> latest;  // seq -> target of its latest version
  for (int i = 0; i < 5000; ++i) {
    auto size = static_cast<size_t>(rng() % (40 * 1024));
    if (latest.empty() || rng() % 3 != 0) {
      auto target = "/a" + std::to_string(i);
      latest[ring.add(record(target, size, 64 * 1024))] = target;
    } else {
      auto it = latest.lower_bound(static_cast<uint64_t>(rng() % (latest.rbegin()->first + 1)));
      if (it == latest.end()) continue;
      auto target = "/u" + std::to_string(i);
      if (ring.update(it->first, record(target, size, 64 * 1024))) it->second = target;
    }
    REQUIRE(ring.bytes() <= 256 * 1024);
  }
  auto held = ring.newest();
  CHECK(held.size() == ring.size());
  CHECK(held.size() >= 6);  // 256 KiB of records of 20 KiB on average
  for (size_t i = 0; i < held.size(); ++i) {
    if (i > 0) CHECK(held[i - 1]->seq > held[i]->seq);
    CHECK(held[i]->target == latest[held[i]->seq]);
    CHECK(ring.find(held[i]->seq)->target == held[i]->target);
  }
  for (const auto& [seq, target] : latest) {
    auto r = ring.find(seq);
    if (r) CHECK(r->target == target);  // held ones are their latest version; the rest are gone
  }
  INFO("a record larger than the whole buffer is dropped at once");
  auto huge = ring.add(record("/huge", 60 * 1024, 1 << 20));
  capture_ring tiny({.max_bytes = 16 * 1024, .max_body = 4 * 1024});
  auto big = tiny.add(record("/big", 20 * 1024, 1 << 20));
  CHECK(tiny.find(big) == nullptr);
  CHECK(tiny.size() == 0);
  CHECK(ring.find(huge) != nullptr);
}

TEST_CASE("every change is announced, and clear() announces a reset") {
  capture_ring ring({.max_bytes = 1 << 20, .max_body = 1024});
  std::vector<uint64_t> seen;
  ring.on_change([&](uint64_t seq) { seen.push_back(seq); });
  auto a = ring.add(record("/a", 0));
  ring.update(a, record("/a", 0));
  ring.clear();
  CHECK(seen == std::vector<uint64_t>{a, a, 0});
}

TEST_CASE("a record packs into one buffer and unpacks to the same record") {
  auto r = record("/p?q=1", 300);
  r.what = captured_exchange::kind::sse;
  r.where = captured_exchange::state::failed;
  r.start = std::chrono::system_clock::time_point(std::chrono::microseconds(1765000000123456));
  r.duration = std::chrono::nanoseconds(123456789);
  r.http_version = 10;
  r.status = 502;
  r.reason = "Bad Gateway";
  r.response_headers = {{"Content-Type", "text/event-stream"}, {"", ""}};
  r.error = "cut";
  r.replay_of = 9;
  std::string out(std::string("\0\xff", 2) + std::string(70, 'o'));
  r.response_body.append(out.data(), out.size(), 50);
  auto back = unpack_capture(pack_capture(r), 77);
  CHECK(back.seq == 77);
  CHECK(back.tunnel == r.tunnel);
  CHECK(back.what == r.what);
  CHECK(back.where == r.where);
  CHECK(back.start == r.start);
  CHECK(back.duration == r.duration);
  CHECK(back.remote_addr == r.remote_addr);
  CHECK(back.method == r.method);
  CHECK(back.target == r.target);
  CHECK(back.http_version == 10);
  CHECK(back.request_headers == r.request_headers);
  CHECK(back.request_body.bytes == r.request_body.bytes);
  CHECK(back.request_body.size == 300);
  CHECK(back.status == 502);
  CHECK(back.reason == r.reason);
  CHECK(back.response_headers == r.response_headers);
  CHECK(back.response_body.bytes == out.substr(0, 50));
  CHECK(back.response_body.size == out.size());
  CHECK(back.response_body.truncated());
  CHECK(back.error == "cut");
  CHECK(back.replay_of == 9);
}

TEST_CASE("ids are req_N and nothing else parses as one") {
  CHECK(capture_id(42) == "req_42");
  CHECK(capture_seq("req_42") == 42);
  CHECK(capture_seq("req_") == 0);
  CHECK(capture_seq("req_4x") == 0);
  CHECK(capture_seq("42") == 0);
  CHECK(capture_seq("req_-1") == 0);
}

TEST_CASE("a record's JSON has ngrok's shape: headers as lists, raw bytes in base64, duration in ns") {
  auto r = record("/hook?x=1", 5);
  r.seq = 7;
  r.duration = std::chrono::milliseconds(3);
  r.status = 201;
  r.reason = "Created";
  r.response_headers = {{"Content-Type", "application/json"}};
  std::string out = "{\"ok\":true}";
  r.response_body.append(out.data(), out.size(), 1024);
  r.where = captured_exchange::state::done;
  auto v = json::parse(capture_json(r)).as_object();
  CHECK(v.at("id").as_string() == "req_7");
  CHECK(v.at("uri").as_string() == "/api/requests/http/req_7");
  CHECK(v.at("tunnel_name").as_string() == "app");
  CHECK(v.at("remote_addr").as_string() == "203.0.113.7");
  CHECK(v.at("duration").as_int64() == 3000000);
  CHECK(v.at("start").as_string().size() >= 20);
  const auto& req = v.at("request").as_object();
  CHECK(req.at("method").as_string() == "POST");
  CHECK(req.at("uri").as_string() == "/hook?x=1");
  CHECK(req.at("proto").as_string() == "HTTP/1.1");
  const auto& trace = req.at("headers").as_object().at("X-Trace").as_array();
  REQUIRE(trace.size() == 2);
  CHECK(trace[0].as_string() == "1");
  CHECK(trace[1].as_string() == "2");
  auto raw = base64_decode(std::string_view(req.at("raw").as_string()));
  REQUIRE(raw);
  CHECK(*raw == "POST /hook?x=1 HTTP/1.1\r\nHost: app.example.com\r\nX-Trace: 1\r\nX-Trace: 2\r\n\r\nbbbbb");
  CHECK(req.at("body_size").to_number<uint64_t>() == 5);
  CHECK(req.at("body_truncated").as_bool() == false);
  const auto& res = v.at("response").as_object();
  CHECK(res.at("status").as_string() == "201 Created");
  CHECK(res.at("status_code").to_number<uint64_t>() == 201);
  CHECK(*base64_decode(std::string_view(res.at("body").as_string())) == out);
  CHECK(*base64_decode(std::string_view(res.at("raw").as_string())) ==
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n" + out);

  auto list = json::parse(capture_list_json({std::make_shared<const captured_exchange>(r)})).as_object();
  CHECK(list.at("uri").as_string() == "/api/requests/http");
  CHECK(list.at("requests").as_array().size() == 1);

  auto summary = json::parse(capture_summary_json(r)).as_object();
  CHECK_FALSE(summary.at("request").as_object().contains("raw"));  // the live list carries no bodies
  CHECK(summary.at("state").as_string() == "done");

  auto tunnels = json::parse(tunnels_json({{"app", "https://app.example.com", "http", "http://127.0.0.1:3000"}}, true))
                     .as_object();
  CHECK(tunnels.at("uri").as_string() == "/api/tunnels");
  const auto& t = tunnels.at("tunnels").as_array().at(0).as_object();
  CHECK(t.at("public_url").as_string() == "https://app.example.com");
  CHECK(t.at("proto").as_string() == "http");
  CHECK(t.at("config").as_object().at("addr").as_string() == "http://127.0.0.1:3000");
}

TEST_CASE("a truncated body says so in the JSON") {
  auto r = record("/big", 3000, 1000);
  r.seq = 1;
  auto req = json::parse(capture_json(r)).as_object().at("request").as_object();
  CHECK(req.at("body_size").to_number<uint64_t>() == 3000);
  CHECK(req.at("body_truncated").as_bool());
  CHECK(base64_decode(std::string_view(req.at("body").as_string()))->size() == 1000);
}

TEST_CASE("a replay body sends the original again, or the edited parts instead") {
  auto orig = record("/hook", 4);
  orig.seq = 3;
  uint64_t seq = 0;
  CHECK(parse_replay_id(R"({"id":"req_3"})", seq).empty());
  CHECK(seq == 3);
  CHECK(!parse_replay_id(R"({"id":3})", seq).empty());
  CHECK(!parse_replay_id("not json", seq).empty());

  replay_request same;
  REQUIRE(parse_replay(R"({"id":"req_3"})", orig, same).empty());
  CHECK_FALSE(same.edited);
  CHECK(same.method == "POST");
  CHECK(same.target == "/hook");
  CHECK(same.headers == orig.request_headers);
  CHECK(same.body == "bbbb");

  replay_request edited;
  REQUIRE(parse_replay(R"({"id":"req_3","method":"PUT","path":"/other?a=1","headers":{"X-A":["1","2"]},"body":"new"})",
                       orig, edited)
              .empty());
  CHECK(edited.edited);
  CHECK(edited.method == "PUT");
  CHECK(edited.target == "/other?a=1");
  CHECK(edited.headers == header_list{{"X-A", "1"}, {"X-A", "2"}});
  CHECK(edited.body == "new");

  replay_request b64;
  REQUIRE(parse_replay(R"({"id":"req_3","body_base64":"AAEC","headers":[["X-B","v"]]})", orig, b64).empty());
  CHECK(b64.body == std::string("\0\1\2", 3));
  CHECK(b64.headers == header_list{{"X-B", "v"}});

  replay_request bad;
  CHECK(!parse_replay(R"({"id":"req_3","headers":{"X-A":["a\r\nEvil: 1"]}})", orig, bad).empty());
  CHECK(!parse_replay(R"({"id":"req_3","path":"no-slash"})", orig, bad).empty());
  CHECK(!parse_replay(R"({"id":"req_3","path":"/a b"})", orig, bad).empty());
  CHECK(!parse_replay(R"({"id":"req_3","method":"GE T"})", orig, bad).empty());
  CHECK(!parse_replay(R"({"id":"req_3","body_base64":"!!"})", orig, bad).empty());

  auto truncated = record("/big", 3000, 1000);
  truncated.seq = 4;
  CHECK(!parse_replay(R"({"id":"req_4"})", truncated, bad).empty());
  CHECK(parse_replay(R"({"id":"req_4","body":"short"})", truncated, bad).empty());
}

TEST_CASE("the client config's inspect keys are validated and written back") {
  auto cfg = parse_client_config(
      "inspect: false\ninspect_addr: 127.0.0.1:5050\ninspect_auth: me:secret\ninspect_max_memory: 8MiB\n"
      "inspect_max_body: 64KiB\n",
      "c.yaml");
  CHECK_FALSE(cfg.inspect);
  CHECK(cfg.inspect_addr == "127.0.0.1:5050");
  CHECK(cfg.inspect_auth == "me:secret");
  CHECK(cfg.inspect_max_memory == 8u << 20);
  CHECK(cfg.inspect_max_body == 64u << 10);
  auto back = parse_client_config(render_client_config(cfg), "c.yaml");
  CHECK(back.inspect == cfg.inspect);
  CHECK(back.inspect_addr == cfg.inspect_addr);
  CHECK(back.inspect_auth == cfg.inspect_auth);
  CHECK(back.inspect_max_memory == cfg.inspect_max_memory);
  CHECK(back.inspect_max_body == cfg.inspect_max_body);
  auto error = [](const std::string& yaml) {
    try {
      parse_client_config(yaml, "c.yaml");
    } catch (const config_error& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  CHECK(error("inspect_addr: 127.0.0.1:99999\n").find("inspect_addr") != std::string::npos);
  CHECK(error("inspect_auth: nopassword\n").find("USER:PASS") != std::string::npos);
  CHECK(error("inspect_max_memory: 10KiB\n").find("inspect_max_memory") != std::string::npos);
  CHECK(error("inspect: maybe\n").find("inspect") != std::string::npos);
}
