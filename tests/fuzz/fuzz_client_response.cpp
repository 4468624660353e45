// Fuzz target: the client's response path. Raw bytes from a local service,
// split at fuzzer-chosen points, go through Beast's response parser as the
// client sets it up, then build_response_head and the body loop that cuts
// Data frames by credit and max frame size. The frames must be well formed,
// and the server's response_relay must accept them whenever the local
// service's response itself was valid.
//
// Input: [flags][n splits][n x u16 split offsets][max frame u16][raw response bytes]
//   flags bit0: HEAD request; bit1: the request asked for an upgrade

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <deque>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "grok/credit.hpp"
#include "grok/http_rules.hpp"
#include "grok/response_head.hpp"
#include "grok/response_relay.hpp"

namespace http = boost::beast::http;
namespace pb = grok::pb;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  grok::fuzz::input in(data, size);
  uint8_t flags = in.byte();
  bool head_request = flags & 1;
  bool upgrade_requested = flags & 2;
  unsigned n_splits = in.byte() % 8;
  std::vector<uint16_t> splits;
  for (unsigned i = 0; i < n_splits; ++i) splits.push_back(in.u16());
  uint32_t max_frame = 1 + in.u16() % 4096;
  std::string raw = in.rest();

  std::vector<size_t> cuts;
  for (auto s : splits) cuts.push_back(raw.empty() ? 0 : s % (raw.size() + 1));
  std::sort(cuts.begin(), cuts.end());
  cuts.push_back(raw.size());

  // What the client sends the server, in order.
  std::vector<pb::Frame> frames;
  const uint32_t window = 64 * 1024;
  grok::send_credit credit(window);
  grok::recv_window server_window(window);  // the server's side of that credit

  std::optional<http::response_parser<http::buffer_body>> parser;
  auto fresh_parser = [&] {
    parser.emplace();
    parser->header_limit(64 * 1024);
    parser->body_limit(boost::none);
    if (head_request) parser->skip(true);
  };
  fresh_parser();
  bool head_sent = false, upgraded = false, ended = false, broken = false;
  std::string body_buf;
  std::string pending;
  size_t at = 0;
  boost::system::error_code ec;

  std::vector<std::string> head_conn;  // Connection tokens of the head that was built
  auto pump = [&](bool eof) {
    while (!broken && !ended && !upgraded) {
      if (!parser->is_header_done()) {
        if (pending.empty()) {
          if (eof) broken = true;  // closed before a head: the client resets the exchange
          return;
        }
        auto used = parser->put(boost::asio::buffer(pending), ec);
        pending.erase(0, used);
        if (ec == http::error::need_more) {
          ec = {};
          if (eof) broken = true;
          return;
        }
        if (ec) {
          broken = true;  // Beast rejected the head: the client resets the exchange
          return;
        }
        if (!parser->is_header_done()) return;
        auto& res = parser->get();
        unsigned status = res.result_int();
        if (status >= 100 && status < 200 && status != 101) {
          fresh_parser();  // interim responses stay local
          continue;
        }
        grok::response_framing framing;
        framing.chunked = parser->chunked();
        framing.content_length = parser->content_length();
        framing.done = parser->is_done();
        framing.keep_alive = res.keep_alive();
        auto built = grok::build_response_head(res, framing, 7, upgrade_requested);
        // What the head's own Connection fields name: trailers parsed later
        // land in the same field container but never reach the head.
        for (auto [it, end] = res.equal_range(http::field::connection); it != end; ++it)
          for (auto& t : grok::connection_tokens(it->value())) head_conn.push_back(t);
        head_sent = true;
        upgraded = built.upgraded;
        ended = framing.done && !upgraded;
        frames.push_back(std::move(built.frame));
        continue;
      }
      // Body: read no more than credit and the max frame allow.
      auto want = credit.allowance(max_frame);
      FUZZ_CHECK(want > 0);  // the server returns credit as it writes, so it never runs dry
      if (auto left = parser->content_length_remaining()) want = std::min<uint64_t>(want, std::max<uint64_t>(*left, 1));
      body_buf.resize(want);
      parser->get().body().data = body_buf.data();
      parser->get().body().size = want;
      size_t used = 0;
      if (!pending.empty()) {
        used = parser->put(boost::asio::buffer(pending), ec);
        pending.erase(0, used);
      } else if (eof) {
        parser->put_eof(ec);
      } else {
        return;
      }
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::need_more) {
        ec = {};
        if (!eof) return;
        if (pending.empty()) {
          parser->put_eof(ec);
          if (ec) {
            broken = true;
            return;
          }
        }
      }
      if (ec) {
        broken = true;
        return;
      }
      size_t got = want - parser->get().body().size;
      bool done = parser->is_done();
      if (got > 0 || done) {
        FUZZ_CHECK(credit.spend(got));
        FUZZ_CHECK(server_window.on_data(got));  // never more than the window
        // The server writes it on at once and returns credit in quarter windows.
        if (auto inc = server_window.on_consumed(got)) FUZZ_CHECK(credit.grant(inc));
        pb::Frame f;
        f.set_exchange_id(7);
        f.mutable_data()->set_payload(std::string(body_buf.data(), got));
        f.mutable_data()->set_end_stream(done);
        frames.push_back(std::move(f));
      }
      if (done) ended = true;
      if (!done && got == 0 && used == 0 && (pending.empty() || eof)) {
        if (eof) broken = true;
        return;
      }
    }
  };
  for (size_t cut : cuts) {
    pending.append(raw, at, cut - at);
    at = cut;
    pump(false);
  }
  pump(true);

  if (!head_sent) return 0;

  // The frames themselves.
  const auto& head = frames.front().response_head();
  FUZZ_CHECK(frames.front().has_response_head());
  bool valid_status = grok::valid_status(head.status());
  for (const auto& h : head.headers()) {
    FUZZ_CHECK(grok::valid_header_name(h.name()));
    FUZZ_CHECK(!grok::fuzz::has_crlf_nul(h.value()));
    FUZZ_CHECK(!grok::iequals(h.name(), "content-length"));
    FUZZ_CHECK(!grok::is_hop_by_hop(h.name()));
  }
  // Nothing any Connection field of the local response's head named is forwarded.
  for (const auto& h : head.headers()) FUZZ_CHECK(!grok::strip_on_forward(h.name(), head_conn));
  FUZZ_CHECK(!grok::fuzz::has_crlf_nul(head.reason()));
  uint64_t total = 0;
  bool end_seen = head.end_stream();
  for (size_t i = 1; i < frames.size(); ++i) {
    const auto& f = frames[i];
    FUZZ_CHECK(f.has_data());
    FUZZ_CHECK(!end_seen);  // nothing after end_stream
    FUZZ_CHECK(f.data().payload().size() <= max_frame);
    total += f.data().payload().size();
    end_seen = f.data().end_stream();
  }
  bool bodiless_status = head.status() == 204 || head.status() == 304 || (head.status() >= 100 && head.status() < 200);
  if (head.content_length() >= 0 && end_seen && !head_request && !bodiless_status)
    FUZZ_CHECK(total == static_cast<uint64_t>(head.content_length()));
  if (head_request && !upgraded) FUZZ_CHECK(total == 0);

  // The server relays what a valid local response produced.
  if (!valid_status) return 0;
  grok::response_relay::params p;
  p.id = 7;
  p.is_head = head_request;
  p.upgrade = upgrade_requested ? "websocket" : "";
  p.initial_window = window;
  grok::response_relay relay(p);
  relay.opened(window);
  std::deque<grok::out_piece> out;
  for (auto& f : frames) {
    bool is_head = f.has_response_head();
    auto st = relay.on_frame(7, f, out);
    if (is_head && head.status() == 101 && !upgrade_requested) {
      FUZZ_CHECK(st.what == grok::response_relay::step::kind::protocol_error);  // 101 nobody asked for
      return 0;
    }
    if (st.what != grok::response_relay::step::kind::progress) {
      std::fprintf(stderr, "relay rejected the client's frame: %s\n", st.reason.c_str());
      FUZZ_CHECK(st.what == grok::response_relay::step::kind::progress);
    }
    // The server writes everything at once and returns the credit.
    uint64_t consumed = 0;
    for (auto& piece : out) consumed += piece.credit;
    out.clear();
    relay.on_written(consumed);
  }
  return 0;
}
