// Fuzz target: the client's response path, grok::response_reader, the code
// local_exchange runs. Raw bytes from a local service, split at
// fuzzer-chosen points, become the ResponseHead frame and Data frames cut by
// credit (a small window makes it wait for credit mid-body) and max frame
// size; a 101 to an upgrade request hands over to raw bytes. The frames must
// be well formed, and the server's response_relay must accept them whenever
// the local service's response itself was valid.
//
// Input: [flags][n splits][n x u16 split offsets][max frame u16][window u16][raw response bytes]
//   flags bit0: HEAD request; bit1: the request asked for an upgrade

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "grok/credit.hpp"
#include "grok/http_rules.hpp"
#include "grok/response_head.hpp"
#include "grok/response_reader.hpp"
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
  // A small window makes the reader wait for credit mid-body.
  const uint32_t window = 1024 + in.u16() % (64 * 1024);
  std::string raw = in.rest();

  std::vector<size_t> cuts;
  for (auto s : splits) cuts.push_back(raw.empty() ? 0 : s % (raw.size() + 1));
  std::sort(cuts.begin(), cuts.end());
  cuts.push_back(raw.size());

  // The client's own response path (grok::response_reader, as local_exchange drives it),
  // fed the pieces as the connection would deliver them.
  std::vector<pb::Frame> frames;  // what the client sends the server, in order
  grok::send_credit credit(window);
  grok::recv_window server_window(window);  // the server's side of that credit
  uint64_t owed = 0;                         // credit it returned that has not reached the client yet
  grok::response_reader reader(7, head_request, upgrade_requested, max_frame);
  boost::beast::flat_buffer buffer;
  bool head_sent = false, upgraded = false, ended = false, broken = false;
  // Runs the reader until it needs bytes; `eof`: the local service has closed.
  auto pump = [&](bool eof) {
    while (!broken && !ended && !upgraded) {
      pb::Frame f;
      auto ev = eof ? reader.eof(buffer, credit, f) : reader.next(buffer, credit, f);
      using event = grok::response_reader::event;
      switch (ev) {
        case event::need_bytes:
          FUZZ_CHECK(!eof);  // a closed connection ends the response one way or another
          return;
        case event::need_credit: {
          // The server wrote each frame on as it came and returned credit in quarter
          // windows, as the relay below does; at zero credit some of it is owed.
          FUZZ_CHECK(owed > 0);
          FUZZ_CHECK(credit.grant(owed));
          owed = 0;
          continue;
        }
        case event::frame:
          if (f.has_response_head()) {
            FUZZ_CHECK(!head_sent);
            head_sent = true;
            FUZZ_CHECK(f.exchange_id() == 7);
            ended = f.response_head().end_stream();
          } else {
            FUZZ_CHECK(head_sent);
            FUZZ_CHECK(f.has_data());
            FUZZ_CHECK(server_window.on_data(f.data().payload().size()));  // never more than the credit
            owed += server_window.on_consumed(f.data().payload().size());
            ended = f.data().end_stream();
          }
          frames.push_back(std::move(f));
          continue;
        case event::done:
          FUZZ_CHECK(ended);
          return;
        case event::upgraded:
          FUZZ_CHECK(head_sent && upgrade_requested);
          FUZZ_CHECK(frames.front().response_head().status() == 101);
          upgraded = true;
          return;
        case event::failed:
          FUZZ_CHECK(!reader.error().empty());
          broken = true;  // the client resets the exchange
          return;
      }
    }
  };
  size_t at = 0;
  for (size_t cut : cuts) {
    auto piece = raw.substr(at, cut - at);
    at = cut;
    if (!piece.empty()) {  // an empty prepare() has no memory to copy into
      auto dst = buffer.prepare(piece.size());
      std::memcpy(dst.data(), piece.data(), piece.size());
      buffer.commit(piece.size());
    }
    pump(false);
  }
  pump(true);

  if (!head_sent) return 0;

  // What the final head's own Connection fields named, read by a parser of the
  // test's own (interim 1xx heads skipped as the client skips them).
  std::vector<std::string> head_conn;
  {
    std::string_view rest = raw;
    for (;;) {
      http::response_parser<http::empty_body> p;
      p.header_limit(64 * 1024);
      boost::system::error_code pec;
      auto used = p.put(boost::asio::buffer(rest.data(), rest.size()), pec);
      if (pec || !p.is_header_done()) break;
      rest.remove_prefix(used);
      unsigned st = p.get().result_int();
      if (st >= 100 && st < 200 && st != 101) continue;
      for (auto [it, end] = p.get().equal_range(http::field::connection); it != end; ++it)
        for (auto& t : grok::connection_tokens(it->value())) head_conn.push_back(t);
      break;
    }
  }
  // Nothing any Connection field of the local response's head named is forwarded.
  const auto& head_frame = frames.front().response_head();
  for (const auto& h : head_frame.headers()) FUZZ_CHECK(!grok::strip_on_forward(h.name(), head_conn));

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
  relay.opened(window, window);
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
