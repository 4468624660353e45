#include <cstdint>

#include "grok/request_head.hpp"

#include <algorithm>
#include <iterator>
#include <vector>

#include "grok/host.hpp"
#include "grok/http_rules.hpp"

namespace grok {

namespace http = boost::beast::http;

bool holds_complete_head(std::string_view buffered) {
  while (buffered.starts_with("\r\n")) buffered.remove_prefix(2);
  return buffered.find("\r\n\r\n") != std::string_view::npos;
}

std::string origin_form(std::string_view target, std::string& authority) {
  auto scheme_end = target.find("://");
  if (target.empty() || target.front() == '/' || scheme_end == std::string_view::npos) return std::string(target);
  auto rest = target.substr(scheme_end + 3);
  auto slash = rest.find_first_of("/?");
  authority = std::string(rest.substr(0, slash));
  if (slash == std::string_view::npos) return "/";
  auto path = std::string(rest.substr(slash));
  if (path.front() == '?') path.insert(path.begin(), '/');
  return path;
}

namespace {

request_head_result fail(unsigned status, std::string detail) {
  request_head_result r;
  r.error = request_error{status, std::move(detail), true};
  return r;
}

/// Lower-cased tokens of every Connection field (a request may carry several).
std::vector<std::string> all_connection_tokens(const http::request_header<>& req) {
  std::vector<std::string> out;
  auto range = req.equal_range(http::field::connection);
  for (auto it = range.first; it != range.second; ++it) {
    auto t = connection_tokens(it->value());
    out.insert(out.end(), std::make_move_iterator(t.begin()), std::make_move_iterator(t.end()));
  }
  return out;
}

bool is_forwarding_header(std::string_view n) {
  return iequals(n, "x-forwarded-for") || iequals(n, "x-forwarded-proto") || iequals(n, "x-forwarded-host") ||
         iequals(n, "x-real-ip") || iequals(n, "forwarded");
}

}  // namespace

request_head_result build_request_head(const http::request_header<>& req, const request_framing& framing,
                                       const request_context& ctx) {
  auto header_count = static_cast<size_t>(std::distance(req.begin(), req.end()));
  if (header_count > ctx.max_header_count) return fail(431, "The request has too many header fields.");

  // Host: exactly one, valid, and equal to an absolute-form target's authority.
  if (req.count(http::field::host) != 1) return fail(400, "The request must carry exactly one Host header.");
  auto raw_host = std::string(req[http::field::host]);
  auto host = normalize_host(raw_host);
  if (!host) return fail(400, "Invalid Host header.");
  request_head_result r;
  auto& ok = r.ok;
  std::string authority;
  ok.target = origin_form(req.target(), authority);
  if (!authority.empty()) {
    auto a = normalize_host(authority);
    if (!a || *a != *host) return fail(400, "The request target's authority does not match Host.");
  }
  ok.host = *host;

  // Framing: only a final "chunked" transfer coding is safe to relay.
  if (req.count(http::field::transfer_encoding) > 0) {
    if (req.version() < 11) return fail(400, "Transfer-Encoding is not allowed in HTTP/1.0.");
    if (!framing.chunked) return fail(501, "Unsupported Transfer-Encoding.");
    if (req.count(http::field::content_length) > 0)
      return fail(400, "Both Transfer-Encoding and Content-Length are present.");
  }

  // The tunnel protocol carries a signed 64-bit length; nothing real is larger.
  if (framing.content_length && *framing.content_length > static_cast<uint64_t>(INT64_MAX))
    return fail(413, "The request body is too large.");

  bool trusted = ctx.trusted_proxies && ip_in_any(ctx.remote_ip, *ctx.trusted_proxies);

  auto* head = ok.frame.mutable_request_head();
  head->set_method(std::string(req.method_string()));
  head->set_target(ok.target);
  head->set_http_version(req.version());
  auto conn_tokens = all_connection_tokens(req);
  bool wants_upgrade = req.count(http::field::upgrade) > 0 &&
                       std::find(conn_tokens.begin(), conn_tokens.end(), "upgrade") != conn_tokens.end();
  if (wants_upgrade) ok.upgrade = std::string(req[http::field::upgrade]);
  ok.expect_continue = iequals(req[http::field::expect], "100-continue");

  std::string forwarded_for;  // a trusted proxy's chain, joined
  bool have_proto = false, have_fwd_host = false;
  for (const auto& field : req) {
    auto n = field.name_string();
    // Host is end-to-end and the routing key: "Connection: host" cannot remove it.
    if (field.name() != http::field::host && strip_on_forward(n, conn_tokens)) continue;
    switch (field.name()) {
      case http::field::content_length:
      case http::field::expect:
        continue;
      default:
        break;
    }
    if (is_forwarding_header(n)) {
      // Only a trusted proxy may say who the client was.
      if (!trusted) continue;
      if (iequals(n, "x-forwarded-for")) {
        if (!field.value().empty()) {
          if (!forwarded_for.empty()) forwarded_for += ", ";
          forwarded_for += field.value();
        }
        continue;
      }
      if (iequals(n, "x-forwarded-proto")) have_proto = true;
      if (iequals(n, "x-forwarded-host")) have_fwd_host = true;
    }
    auto* h = head->add_headers();
    h->set_name(std::string(n));
    h->set_value(std::string(field.value()));
  }
  auto add = [&](const char* n, std::string v) {
    auto* h = head->add_headers();
    h->set_name(n);
    h->set_value(std::move(v));
  };
  ok.visitor_ip = trusted ? visitor_address(forwarded_for, ctx.remote_ip, *ctx.trusted_proxies) : ctx.remote_ip;
  head->set_remote_addr(ok.visitor_ip);
  if (!forwarded_for.empty()) forwarded_for += ", ";
  forwarded_for += ctx.remote_ip;
  add("X-Forwarded-For", std::move(forwarded_for));
  if (!have_proto) add("X-Forwarded-Proto", ctx.tls ? "https" : "http");
  if (!have_fwd_host) add("X-Forwarded-Host", raw_host);
  head->set_upgrade(ok.upgrade);
  if (framing.chunked) {
    head->set_content_length(-1);
  } else {
    const auto& cl = framing.content_length;
    head->set_content_length(cl ? static_cast<int64_t>(*cl) : 0);
    ok.req_done = !cl || *cl == 0;
  }
  if (framing.done) ok.req_done = true;
  head->set_end_stream(ok.req_done);
  return r;
}

std::string visitor_address(std::string_view forwarded_for, std::string_view peer,
                            const std::vector<ip_network>& trusted) {
  if (!ip_in_any(peer, trusted)) return std::string(peer);
  std::string_view rest = forwarded_for;
  std::string_view hop = peer;
  while (!rest.empty()) {
    auto comma = rest.rfind(',');
    auto entry = comma == std::string_view::npos ? rest : rest.substr(comma + 1);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
    while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) entry.remove_prefix(1);
    while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
    if (entry.empty()) continue;
    hop = entry;
    if (!parse_ip_address(hop) || !ip_in_any(hop, trusted)) break;
  }
  return std::string(hop);
}

}  // namespace grok
