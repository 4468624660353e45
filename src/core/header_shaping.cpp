#include "grok/header_shaping.hpp"

#include <algorithm>
#include <stdexcept>

#include "grok/host.hpp"
#include "grok/http_rules.hpp"

namespace grok {

namespace {

/// Headers grok frames or routes by itself: adding or removing them would
/// break the relay rather than shape it.
void check_name(std::string_view name, const char* what) {
  if (!valid_header_name(name)) throw std::invalid_argument(std::string(what) + ": '" + std::string(name) + "' is not a valid header name");
  if (is_hop_by_hop(name) || iequals(name, "content-length"))
    throw std::invalid_argument(std::string(what) + ": grok frames " + std::string(name) + " itself; it cannot be changed");
  if (iequals(name, "host")) throw std::invalid_argument(std::string(what) + ": use --host-header to choose the Host");
}

void add_all(google::protobuf::RepeatedPtrField<pb::Header>& headers, const std::vector<pb::Header>& add) {
  for (const auto& h : add) *headers.Add() = h;
}

void remove_all(google::protobuf::RepeatedPtrField<pb::Header>& headers, const std::vector<std::string>& names) {
  for (const auto& n : names) remove_headers(headers, n);
}

}  // namespace

void remove_headers(google::protobuf::RepeatedPtrField<pb::Header>& headers, std::string_view name) {
  auto keep = std::remove_if(headers.begin(), headers.end(), [&](const pb::Header& h) { return iequals(h.name(), name); });
  headers.erase(keep, headers.end());
}

std::string parse_host_header_option(std::string_view text) {
  if (text == "rewrite") return std::string(text);
  if (text.empty() || !valid_header_value(text) || !normalize_host(std::string(text)))
    throw std::invalid_argument("expected 'rewrite' or a host such as app.test or localhost:3000, got '" +
                                std::string(text) + "'");
  return std::string(text);
}

pb::Header parse_header_add(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos)
    throw std::invalid_argument("expected \"Name: value\", got '" + std::string(text) + "'");
  auto name = trim_ows(text.substr(0, colon));
  auto value = trim_ows(text.substr(colon + 1));
  check_name(name, "header");
  if (!valid_header_value(value))
    throw std::invalid_argument("header " + std::string(name) + ": the value holds a control character");
  pb::Header h;
  h.set_name(std::string(name));
  h.set_value(std::string(value));
  return h;
}

std::string parse_header_remove(std::string_view text) {
  auto name = trim_ows(text);
  check_name(name, "header");
  return ascii_lower(name);
}

void shape_request(pb::RequestHead& head, const header_shaping& s, std::string_view local_authority) {
  remove_all(*head.mutable_headers(), s.request_remove);
  add_all(*head.mutable_headers(), s.request_add);
  if (s.host_header.empty()) return;
  for (auto& h : *head.mutable_headers())
    if (iequals(h.name(), "host")) h.set_value(s.host_header == "rewrite" ? std::string(local_authority) : s.host_header);
}

void shape_response(pb::ResponseHead& head, const header_shaping& s) {
  remove_all(*head.mutable_headers(), s.response_remove);
  add_all(*head.mutable_headers(), s.response_add);
}

}  // namespace grok
