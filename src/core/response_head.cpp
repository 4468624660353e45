#include "grok/response_head.hpp"

#include <iterator>
#include <string>
#include <vector>

#include "grok/http_rules.hpp"

namespace grok {

namespace http = boost::beast::http;

response_head_result build_response_head(const http::response_header<>& res, const response_framing& framing,
                                         uint64_t exchange_id, bool upgrade_requested) {
  response_head_result r;
  r.frame.set_exchange_id(exchange_id);
  auto* h = r.frame.mutable_response_head();
  unsigned status = res.result_int();
  h->set_status(status);
  h->set_reason(std::string(res.reason()));
  // Every Connection field counts: a response may carry several.
  std::vector<std::string> conn_tokens;
  auto range = res.equal_range(http::field::connection);
  for (auto it = range.first; it != range.second; ++it) {
    auto t = connection_tokens(it->value());
    conn_tokens.insert(conn_tokens.end(), std::make_move_iterator(t.begin()), std::make_move_iterator(t.end()));
  }
  for (const auto& field : res) {
    auto n = field.name_string();
    if (strip_on_forward(n, conn_tokens) || iequals(n, "content-length")) continue;
    auto* hd = h->add_headers();
    hd->set_name(std::string(n));
    hd->set_value(std::string(field.value()));
  }
  if (status == 101 && upgrade_requested) {
    r.upgraded = true;
    h->set_content_length(-1);
    h->set_end_stream(false);
    return r;
  }
  const auto& cl = framing.content_length;
  h->set_content_length(cl && !framing.chunked ? static_cast<int64_t>(*cl) : -1);
  r.keep_alive = framing.keep_alive;
  h->set_end_stream(framing.done);
  return r;
}

}  // namespace grok
