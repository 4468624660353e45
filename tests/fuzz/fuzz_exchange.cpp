// Fuzz target: the server's per-exchange state machine (response_relay) fed
// arbitrary frame sequences from a tunnel client, interleaved with writes
// to the public client and request-body reads that spend credit.
//
// Input: [version/head/upgrade/keep-alive flags][window u16][send window u16] then ops:
//   0 ResponseHead  1 Data  2 WindowUpdate  3 Reset  4 write some pieces
//   5 spend request credit  6 a frame for another exchange  7 the session closes it
//   8 an empty frame

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <deque>
#include <string>

#include "fuzz_util.hpp"
#include "grok/http_rules.hpp"
#include "grok/response_relay.hpp"

namespace http = boost::beast::http;
namespace pb = grok::pb;
using kind = grok::response_relay::step::kind;

namespace {

constexpr uint64_t id = 7;

pb::Frame read_frame(grok::fuzz::input& in, unsigned op) {
  pb::Frame f;
  f.set_exchange_id(id);
  switch (op) {
    case 0: {
      auto* h = f.mutable_response_head();
      static const unsigned common[] = {200, 204, 304, 101, 404, 100, 103, 599, 600, 0, 302, 500};
      uint8_t s = in.byte();
      h->set_status(s < 200 ? common[s % 12] : in.u16());
      if (in.flag()) h->set_reason(in.str(16));
      unsigned n = in.byte() % 5;
      static const char* names[] = {"Content-Type", "Content-Length", "Transfer-Encoding", "Connection",
                                    "Set-Cookie",   "X-A",            "Bad Name",          "Upgrade"};
      for (unsigned i = 0; i < n; ++i) {
        auto* hd = h->add_headers();
        uint8_t c = in.byte();
        hd->set_name(c < 200 ? std::string(names[c % 8]) : in.str(12));
        hd->set_value(in.str(24));
      }
      uint8_t cl = in.byte();
      h->set_content_length(cl < 128 ? -1 : cl < 250 ? static_cast<int64_t>(in.u16() % 300) : static_cast<int64_t>(in.u32()));
      h->set_end_stream(in.flag());
      break;
    }
    case 1: {
      auto* d = f.mutable_data();
      uint16_t len = in.u16();
      d->set_payload(std::string(len % 2048 + (len >= 0xf000 ? 70000 : 0), 'x'));
      d->set_end_stream(in.flag());
      break;
    }
    case 2:
      f.mutable_window_update()->set_increment(in.byte() < 250 ? in.u16() : in.u32());
      break;
    case 3:
      f.mutable_reset()->set_code(static_cast<pb::Reset::Code>(in.byte() % 8));
      f.mutable_reset()->set_message(in.str(8));
      break;
    default:
      break;
  }
  return f;
}

uint64_t body_bytes(const std::deque<grok::out_piece>& q) {
  uint64_t n = 0;
  for (const auto& p : q) n += p.body.size();
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  grok::fuzz::input in(data, size);
  uint8_t flags = in.byte();
  grok::response_relay::params p;
  p.id = id;
  p.version = (flags & 1) ? 10 : 11;
  p.is_head = flags & 2;
  p.upgrade = (flags & 4) ? "websocket" : "";
  p.keep_alive = !(flags & 8);
  p.initial_window = 1 + in.u16() % 65536;
  uint32_t send_window = in.u16();
  grok::response_relay relay(p);
  // The tunnel may have given its client another response window (a reload, another node).
  relay.opened(send_window, (flags & 16) ? 1 + in.u16() % 65536 : 0);

  std::deque<grok::out_piece> out;
  std::string wire;      // every byte written to the public client, in order
  std::string payloads;  // every Data payload accepted
  bool ended = false, failed = false;
  uint64_t unreturned = 0;  // written but not yet returned to the tunnel client

  for (int steps = 0; steps < 256 && !in.empty(); ++steps) {
    unsigned op = in.byte() % 9;
    auto before = out.size();
    auto before_bytes = body_bytes(out);
    bool was_closed = relay.closed();
    bool was_ended = relay.response_end();
    auto credit_before = relay.credit().available();
    if (op <= 3 || op == 6 || op == 8) {
      auto f = read_frame(in, op == 6 ? in.byte() % 4 : op == 8 ? 99 : op);
      uint64_t to = op == 6 ? id + 1 + in.byte() : id;
      std::string payload = f.has_data() ? f.data().payload() : std::string();
      auto st = relay.on_frame(to, f, out);
      if (to != id || was_closed || op == 8) {
        // Unknown ids, closed exchanges and empty frames change nothing.
        FUZZ_CHECK(st.what == kind::ignored);
        FUZZ_CHECK(out.size() == before);
        FUZZ_CHECK(relay.credit().available() == credit_before);
        continue;
      }
      if (st.what == kind::protocol_error || st.what == kind::reset) {
        FUZZ_CHECK(relay.closed());
        FUZZ_CHECK(out.size() == before);  // nothing of a rejected frame goes out
        failed = true;
        continue;
      }
      FUZZ_CHECK(st.what == kind::progress);
      if (was_ended) FUZZ_CHECK(out.size() == before && !st.head);  // nothing after the end
      if (f.has_data() || op == 1) payloads += payload;
      if (st.response_end) ended = true;
    } else if (op == 4) {
      // The public socket takes some pieces; their payload credit goes back.
      size_t k = std::min<size_t>(out.size(), in.byte() % 4 + 1);
      uint64_t consumed = 0;
      for (size_t i = 0; i < k; ++i) {
        auto& piece = out.front();
        wire += piece.head;
        wire += piece.body;
        wire += piece.tail;
        consumed += piece.credit;
        out.pop_front();
      }
      unreturned += consumed;
      auto inc = relay.on_written(consumed);
      if (inc) {
        FUZZ_CHECK(inc <= unreturned);
        unreturned -= inc;
      }
    } else if (op == 5) {
      auto want = in.u16();
      auto allowed = relay.credit().allowance(want);
      FUZZ_CHECK(allowed <= want && allowed <= relay.credit().available());
      FUZZ_CHECK(!relay.credit().spend(relay.credit().available() + 1));
      FUZZ_CHECK(relay.credit().spend(allowed));
    } else if (op == 7) {
      relay.close();
    }
    // Bounded: what waits for the public socket never exceeds the window.
    FUZZ_CHECK(relay.buffered_bytes() <= relay.window());
    FUZZ_CHECK(body_bytes(out) <= relay.window());
    FUZZ_CHECK(relay.credit().available() <= (1ull << 31));
    (void)before_bytes;
  }

  // Drain what is queued; if the response ended cleanly, the bytes the public
  // client got must parse as exactly one response carrying exactly the payload.
  for (auto& piece : out) {
    wire += piece.head;
    wire += piece.body;
    wire += piece.tail;
  }
  if (!ended || failed || relay.upgraded()) return 0;
  http::response_parser<http::string_body> parser;
  parser.header_limit(1 << 20);
  parser.body_limit(boost::none);
  parser.skip(p.is_head);
  boost::system::error_code ec;
  size_t used = 0;
  while (used < wire.size() && !parser.is_done()) {
    auto n = parser.put(boost::asio::buffer(wire.data() + used, wire.size() - used), ec);
    used += n;
    if (ec == http::error::need_more && n == 0) break;
    FUZZ_CHECK(!ec || ec == http::error::need_more);
  }
  if (!parser.is_done()) {
    parser.put_eof(ec);  // HTTP/1.0 without a length ends at the close
    FUZZ_CHECK(!ec);
  }
  FUZZ_CHECK(parser.is_done());
  FUZZ_CHECK(used == wire.size());  // nothing smuggled behind the response
  const auto& res = parser.get();
  FUZZ_CHECK(res.result_int() == relay.status());
  FUZZ_CHECK(!(res.count(http::field::content_length) && res.count(http::field::transfer_encoding)));
  for (const auto& fld : res) {
    FUZZ_CHECK(grok::valid_header_name(fld.name_string()));
    FUZZ_CHECK(grok::valid_header_value(fld.value()));
  }
  if (!p.is_head && relay.status() != 204 && relay.status() != 304) FUZZ_CHECK(res.body() == payloads);
  return 0;
}
