// Fuzz target: the public request head path. Raw bytes, split at
// fuzzer-chosen points, go through Beast's request parser with the limits
// the server sets, then build_request_head; whatever it would forward must
// be safe to relay.
//
// Input: [flags][max_header_count][n splits][n x u16 split offsets][raw request bytes]
//   flags bit0: TLS listener; bit1: 127.0.0.0/8 and 10.0.0.0/8 are trusted proxies;
//   bits2-3: peer 127.0.0.1 | 10.1.2.3 | ::1 | 203.0.113.5

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "grok/host.hpp"
#include "grok/http_rules.hpp"
#include "grok/request_head.hpp"

namespace http = boost::beast::http;
using grok::fuzz::has_crlf_nul;

namespace {

bool is_forwarding(std::string_view n) {
  return grok::iequals(n, "x-forwarded-for") || grok::iequals(n, "x-forwarded-proto") ||
         grok::iequals(n, "x-forwarded-host") || grok::iequals(n, "x-real-ip") || grok::iequals(n, "forwarded");
}

void check(const http::request_header<>& req, const grok::request_framing& framing, const grok::request_context& ctx,
           bool trusted, const grok::request_head_result& r) {
  if (r.error) {
    FUZZ_CHECK(r.error->status >= 400 && r.error->status <= 599);
    FUZZ_CHECK(!has_crlf_nul(r.error->detail));
    return;
  }
  const auto& ok = r.ok;
  FUZZ_CHECK(ok.frame.has_request_head());
  FUZZ_CHECK(ok.frame.exchange_id() == 0);
  const auto& h = ok.frame.request_head();
  FUZZ_CHECK(static_cast<size_t>(std::distance(req.begin(), req.end())) <= ctx.max_header_count);

  // Framing: one of "length" or "chunked", never both, and TE only ever as chunked.
  if (req.count(http::field::transfer_encoding) > 0) {
    FUZZ_CHECK(framing.chunked);
    FUZZ_CHECK(req.version() == 11);
    FUZZ_CHECK(req.count(http::field::content_length) == 0);
  }
  if (framing.chunked) {
    FUZZ_CHECK(h.content_length() == -1);
  } else {
    FUZZ_CHECK(h.content_length() >= 0);
    FUZZ_CHECK(!framing.content_length || h.content_length() == static_cast<int64_t>(*framing.content_length));
  }
  FUZZ_CHECK(h.end_stream() == ok.req_done);
  if (h.end_stream()) FUZZ_CHECK(h.content_length() == 0 || framing.done);

  // The request line the client will write must stay one line.
  FUZZ_CHECK(grok::valid_header_name(h.method()));
  FUZZ_CHECK(!h.target().empty());
  for (char c : h.target()) FUZZ_CHECK(static_cast<unsigned char>(c) > 0x20 && c != 0x7f);
  FUZZ_CHECK(h.http_version() == 10 || h.http_version() == 11);
  FUZZ_CHECK(grok::valid_header_value(h.upgrade()));

  std::vector<std::string> conn;  // every Connection field's tokens
  for (auto [it, end] = req.equal_range(http::field::connection); it != end; ++it)
    for (auto& t : grok::connection_tokens(it->value())) conn.push_back(t);
  size_t hosts = 0, xff = 0, proto = 0, fwd_host = 0;
  for (const auto& f : h.headers()) {
    FUZZ_CHECK(grok::valid_header_name(f.name()));
    FUZZ_CHECK(!has_crlf_nul(f.value()));
    // No hop-by-hop header, nothing a Connection field named (except Host, which routing needs).
    FUZZ_CHECK(grok::iequals(f.name(), "host") || !grok::strip_on_forward(f.name(), conn));
    FUZZ_CHECK(!grok::iequals(f.name(), "content-length"));
    FUZZ_CHECK(!grok::iequals(f.name(), "transfer-encoding"));
    FUZZ_CHECK(!grok::iequals(f.name(), "expect"));
    if (grok::iequals(f.name(), "host")) {
      ++hosts;
      auto n = grok::normalize_host(f.value());
      FUZZ_CHECK(n && *n == ok.host);  // the Host forwarded is the one routed on
    }
    if (grok::iequals(f.name(), "x-forwarded-for")) {
      ++xff;
      // The peer the server saw is always the last hop.
      auto& v = f.value();
      FUZZ_CHECK(v.size() >= ctx.remote_ip.size() &&
                 v.compare(v.size() - ctx.remote_ip.size(), std::string::npos, ctx.remote_ip) == 0);
      if (!trusted) FUZZ_CHECK(v == ctx.remote_ip);
    }
    if (grok::iequals(f.name(), "x-forwarded-proto")) ++proto;
    if (grok::iequals(f.name(), "x-forwarded-host")) ++fwd_host;
    if (!trusted && is_forwarding(f.name()) && !grok::iequals(f.name(), "x-forwarded-for")) {
      // Untrusted: only ours, each once.
      FUZZ_CHECK(!grok::iequals(f.name(), "forwarded") && !grok::iequals(f.name(), "x-real-ip"));
    }
  }
  FUZZ_CHECK(hosts == 1);
  FUZZ_CHECK(xff == 1);
  if (!trusted) FUZZ_CHECK(proto == 1 && fwd_host == 1);
  FUZZ_CHECK(proto >= 1 && fwd_host >= 1);
  auto again = grok::normalize_host(ok.host);
  FUZZ_CHECK(again && *again == ok.host);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  grok::fuzz::input in(data, size);
  uint8_t flags = in.byte();
  uint8_t max_fields = in.byte();
  unsigned n_splits = in.byte() % 8;
  std::vector<uint16_t> splits;
  for (unsigned i = 0; i < n_splits; ++i) splits.push_back(in.u16());
  std::string raw = in.rest();

  static const std::vector<grok::ip_network> trusted_list = {*grok::parse_ip_network("127.0.0.0/8"),
                                                             *grok::parse_ip_network("10.0.0.0/8")};
  static const char* peers[] = {"127.0.0.1", "10.1.2.3", "::1", "203.0.113.5"};
  grok::request_context ctx;
  ctx.tls = flags & 1;
  ctx.trusted_proxies = (flags & 2) ? &trusted_list : nullptr;
  ctx.remote_ip = peers[(flags >> 2) & 3];
  ctx.max_header_count = max_fields == 0 ? 100 : max_fields;
  bool trusted = ctx.trusted_proxies && grok::ip_in_any(ctx.remote_ip, *ctx.trusted_proxies);

  // The pieces arrive as separate reads; Beast sees the unconsumed rest again.
  std::vector<size_t> cuts;
  for (auto s : splits) cuts.push_back(raw.empty() ? 0 : s % (raw.size() + 1));
  std::sort(cuts.begin(), cuts.end());
  cuts.push_back(raw.size());

  http::request_parser<http::buffer_body> parser;
  parser.header_limit(16 * 1024);  // server.max_header_bytes default
  parser.body_limit(boost::none);
  std::string pending;
  size_t at = 0;
  boost::system::error_code ec;
  for (size_t cut : cuts) {
    pending.append(raw, at, cut - at);
    at = cut;
    while (!pending.empty() && !parser.is_header_done()) {
      auto used = parser.put(boost::asio::buffer(pending), ec);
      pending.erase(0, used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) return 0;  // the server answers 400/431 itself
    }
    if (parser.is_header_done()) break;
  }
  if (!parser.is_header_done()) return 0;

  grok::request_framing framing;
  framing.chunked = parser.chunked();
  framing.content_length = parser.content_length();
  framing.done = parser.is_done();
  auto r = grok::build_request_head(parser.get(), framing, ctx);
  check(parser.get(), framing, ctx, trusted, r);
  return 0;
}
