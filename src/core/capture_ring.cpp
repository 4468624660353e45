#include "grok/capture_ring.hpp"
#include "grok/file_server.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>

namespace grok {

namespace json = boost::json;

std::string capture_id(uint64_t seq) { return "req_" + std::to_string(seq); }

uint64_t capture_seq(const std::string& id) {
  if (!id.starts_with("req_") || id.size() == 4 || id.size() > 24) return 0;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(id.data() + 4, id.data() + id.size(), v);
  if (ec != std::errc() || p != id.data() + id.size()) return 0;
  return v;
}

namespace {

// The packed layout: a fixed block of numbers, then each string as a
// 64-bit length and its bytes, headers as a count and name/value strings.
struct packed_numbers {
  int64_t start_ns;
  int64_t duration_ns;
  uint64_t request_size;
  uint64_t response_size;
  uint64_t replay_of;
  uint32_t status;
  uint16_t http_version;
  uint8_t what;
  uint8_t where;
};

std::string_view get_string(std::string_view& in) {
  uint64_t n = 0;
  std::memcpy(&n, in.data(), sizeof n);
  auto s = in.substr(sizeof n, n);
  in.remove_prefix(sizeof n + n);
  return s;
}

header_list get_headers(std::string_view& in) {
  uint64_t n = 0;
  std::memcpy(&n, in.data(), sizeof n);
  in.remove_prefix(sizeof n);
  header_list hs;
  hs.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    auto k = get_string(in);
    auto v = get_string(in);
    hs.emplace_back(std::string(k), std::string(v));
  }
  return hs;
}

}  // namespace

namespace {

size_t packed_size(const captured_exchange& r) {
  size_t size = sizeof(packed_numbers) + 10 * sizeof(uint64_t) + r.tunnel.size() + r.remote_addr.size() +
                r.method.size() + r.target.size() + r.reason.size() + r.error.size() + r.request_body.bytes.size() +
                r.response_body.bytes.size();
  for (const auto* hs : {&r.request_headers, &r.response_headers})
    for (const auto& [k, v] : *hs) size += 2 * sizeof(uint64_t) + k.size() + v.size();
  return size;
}

/// Writes the packed record to `out` (packed_size(r) bytes).
void pack_into(const captured_exchange& r, char* out) {
  auto put = [&](const void* p, size_t n) {
    std::memcpy(out, p, n);
    out += n;
  };
  auto put_str = [&](std::string_view s) {
    uint64_t n = s.size();
    put(&n, sizeof n);
    put(s.data(), s.size());
  };
  packed_numbers n{};
  n.start_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(r.start.time_since_epoch()).count();
  n.duration_ns = r.duration.count();
  n.request_size = r.request_body.size;
  n.response_size = r.response_body.size;
  n.replay_of = r.replay_of;
  n.status = r.status;
  n.http_version = static_cast<uint16_t>(r.http_version);
  n.what = static_cast<uint8_t>(r.what);
  n.where = static_cast<uint8_t>(r.where);
  put(&n, sizeof n);
  for (const auto* s : {&r.tunnel, &r.remote_addr, &r.method, &r.target, &r.reason, &r.error, &r.request_body.bytes,
                        &r.response_body.bytes})
    put_str(*s);
  for (const auto* hs : {&r.request_headers, &r.response_headers}) {
    uint64_t count = hs->size();
    put(&count, sizeof count);
    for (const auto& [k, v] : *hs) {
      put_str(k);
      put_str(v);
    }
  }
}

}  // namespace

std::string pack_capture(const captured_exchange& r) {
  std::string out(packed_size(r), '\0');
  pack_into(r, out.data());
  return out;
}

captured_exchange unpack_capture(std::string_view in, uint64_t seq) {
  captured_exchange r;
  packed_numbers n{};
  std::memcpy(&n, in.data(), sizeof n);
  in.remove_prefix(sizeof n);
  r.seq = seq;
  r.start = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(n.start_ns)));
  r.duration = std::chrono::nanoseconds(n.duration_ns);
  r.request_body.size = n.request_size;
  r.response_body.size = n.response_size;
  r.replay_of = n.replay_of;
  r.status = n.status;
  r.http_version = n.http_version;
  r.what = static_cast<captured_exchange::kind>(n.what);
  r.where = static_cast<captured_exchange::state>(n.where);
  for (auto* s : {&r.tunnel, &r.remote_addr, &r.method, &r.target, &r.reason, &r.error, &r.request_body.bytes,
                  &r.response_body.bytes})
    *s = std::string(get_string(in));
  r.request_headers = get_headers(in);
  r.response_headers = get_headers(in);
  return r;
}

size_t capture_ring::place_locked(size_t need) {
  const size_t cap = limits_.max_bytes;
  if (need > cap) return npos;
  if (!buf_) buf_.reset(new char[cap]);  // not touched: pages are mapped as records reach them
  size_t p = head_;
  if (p + need > cap) {
    // Wrap: what lies past head_ is the previous lap's, the oldest of all.
    while (!order_.empty() && order_.front().offset >= head_) drop_front_locked();
    p = 0;
  }
  while (!order_.empty() && order_.front().offset < p + need && p < order_.front().offset + order_.front().size)
    drop_front_locked();
  head_ = p + need;
  return p;
}

void capture_ring::drop_front_locked() {
  auto r = order_.front();
  order_.pop_front();
  used_ -= r.size;
  if (r.seq >= base_seq_ && r.seq - base_seq_ < index_.size()) {
    auto& w = index_[r.seq - base_seq_];
    if (w.live && w.offset == r.offset && w.size == r.size) {  // its current version, not a replaced one
      w.live = false;
      --live_;
      ++evicted_;
    }
  }
  while (!index_.empty() && !index_.front().live) {
    index_.pop_front();
    ++base_seq_;
  }
}

bool capture_ring::store_locked(uint64_t seq, const std::string& packed) {
  auto p = place_locked(packed.size());
  // The index may have moved past `seq` if its older version was just overwritten.
  if (seq < base_seq_ || seq - base_seq_ >= index_.size()) {
    if (p != npos) head_ = p;  // nothing written there
    return false;
  }
  auto& w = index_[seq - base_seq_];
  if (p == npos) {
    if (w.live) --live_;
    w.live = false;
    return false;
  }
  std::memcpy(buf_.get() + p, packed.data(), packed.size());
  order_.push_back(region{seq, p, packed.size()});
  used_ += packed.size();
  if (!w.live) ++live_;
  w = where{p, packed.size(), true};
  return true;
}

uint64_t capture_ring::add(const captured_exchange& rec) {
  const auto size = packed_size(rec);
  uint64_t seq = 0;
  {
    std::lock_guard lk(mu_);
    seq = next_seq_++;
    auto p = place_locked(size);
    // The index covers base_seq_ .. seq - 1 (or nothing): this record goes at its end.
    if (index_.empty()) base_seq_ = seq;
    if (p == npos) {
      index_.push_back(where{});
      ++evicted_;
      if (index_.size() == 1) {
        index_.pop_front();
        ++base_seq_;
      }
    } else {
      pack_into(rec, buf_.get() + p);  // straight into the buffer: no allocation per record
      order_.push_back(region{seq, p, size});
      used_ += size;
      index_.push_back(where{p, size, true});
      ++live_;
    }
  }
  if (notify_) notify_(seq);
  return seq;
}

bool capture_ring::update(uint64_t seq, const captured_exchange& rec) {
  auto packed = pack_capture(rec);
  {
    std::lock_guard lk(mu_);
    if (seq < base_seq_ || seq - base_seq_ >= index_.size() || !index_[seq - base_seq_].live) return false;
    if (!store_locked(seq, packed)) return false;
  }
  if (notify_) notify_(seq);
  return true;
}

bool capture_ring::copy_locked(uint64_t seq, std::string& out) const {
  if (seq < base_seq_ || seq - base_seq_ >= index_.size()) return false;
  const auto& w = index_[seq - base_seq_];
  if (!w.live) return false;
  out.assign(buf_.get() + w.offset, w.size);
  return true;
}

std::shared_ptr<const captured_exchange> capture_ring::find(uint64_t seq) const {
  std::string packed;
  {
    std::lock_guard lk(mu_);
    if (!copy_locked(seq, packed)) return nullptr;
  }
  return std::make_shared<const captured_exchange>(unpack_capture(packed, seq));
}

void capture_ring::each_newest(size_t limit, const std::function<bool(const captured_exchange&)>& f) const {
  std::vector<uint64_t> seqs;
  {
    std::lock_guard lk(mu_);
    size_t n = limit == 0 ? live_ : std::min(limit, live_);
    seqs.reserve(n);
    for (size_t i = index_.size(); i-- > 0 && seqs.size() < n;)
      if (index_[i].live) seqs.push_back(base_seq_ + i);
  }
  std::string packed;
  for (auto seq : seqs) {
    {
      std::lock_guard lk(mu_);
      if (!copy_locked(seq, packed)) continue;  // overwritten meanwhile
    }
    if (!f(unpack_capture(packed, seq))) return;
  }
}

std::vector<std::shared_ptr<const captured_exchange>> capture_ring::newest(size_t limit) const {
  std::vector<std::shared_ptr<const captured_exchange>> out;
  each_newest(limit, [&](const captured_exchange& r) {
    out.push_back(std::make_shared<const captured_exchange>(r));
    return true;
  });
  return out;
}

void capture_ring::clear() {
  {
    std::lock_guard lk(mu_);
    order_.clear();
    index_.clear();
    base_seq_ = next_seq_;
    head_ = 0;
    used_ = 0;
    live_ = 0;
  }
  if (notify_) notify_(0);
}

uint64_t capture_ring::bytes() const {
  std::lock_guard lk(mu_);
  return used_;
}
size_t capture_ring::size() const {
  std::lock_guard lk(mu_);
  return live_;
}
uint64_t capture_ring::evicted() const {
  std::lock_guard lk(mu_);
  return evicted_;
}

// ---- JSON ----------------------------------------------------------------------

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  if (bytes.empty()) return out;
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(std::max(n, 0)));
  return out;
}

namespace {

const char* kind_name(captured_exchange::kind k) {
  switch (k) {
    case captured_exchange::kind::websocket: return "websocket";
    case captured_exchange::kind::sse: return "sse";
    case captured_exchange::kind::tcp: return "tcp";
    default: return "http";
  }
}

const char* state_name(captured_exchange::state s) {
  switch (s) {
    case captured_exchange::state::done: return "done";
    case captured_exchange::state::failed: return "failed";
    default: return "open";
  }
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t - secs).count();
  std::time_t tt = std::chrono::system_clock::to_time_t(secs);
  std::tm utc{};
  gmtime_r(&tt, &utc);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%06lldZ", buf, static_cast<long long>(micros));
  return out;
}

std::string proto_name(unsigned version) { return version == 10 ? "HTTP/1.0" : "HTTP/1.1"; }

// ngrok's shape: {"Name": ["value", ...]}, names in the order they first came.
json::object headers_object(const header_list& hs) {
  json::object o;
  for (const auto& [k, v] : hs) {
    auto& slot = o[k];
    if (!slot.is_array()) slot = json::array();
    slot.as_array().emplace_back(v);
  }
  return o;
}

std::string raw_request(const captured_exchange& r) {
  std::string out = r.method + " " + r.target + " " + proto_name(r.http_version) + "\r\n";
  for (const auto& [k, v] : r.request_headers) out += k + ": " + v + "\r\n";
  out += "\r\n";
  out += r.request_body.bytes;
  return out;
}

std::string raw_response(const captured_exchange& r) {
  std::string out = proto_name(r.http_version) + " " + std::to_string(r.status) + " " + r.reason + "\r\n";
  for (const auto& [k, v] : r.response_headers) out += k + ": " + v + "\r\n";
  out += "\r\n";
  out += r.response_body.bytes;
  return out;
}

json::object summary(const captured_exchange& r) {
  json::object o;
  auto id = capture_id(r.seq);
  o["uri"] = "/api/requests/http/" + id;
  o["id"] = id;
  o["seq"] = r.seq;
  o["tunnel_name"] = r.tunnel;
  o["remote_addr"] = r.remote_addr;
  o["start"] = rfc3339(r.start);
  o["duration"] = static_cast<int64_t>(r.duration.count());
  o["kind"] = kind_name(r.what);
  o["state"] = state_name(r.where);
  if (r.replay_of) o["replay_of"] = capture_id(r.replay_of);
  if (!r.error.empty()) o["error"] = r.error;
  json::object req;
  req["method"] = r.method;
  req["uri"] = r.target;
  req["proto"] = proto_name(r.http_version);
  req["body_size"] = r.request_body.size;
  o["request"] = std::move(req);
  json::object res;
  res["status_code"] = r.status;
  res["status"] = r.status ? std::to_string(r.status) + (r.reason.empty() ? "" : " " + r.reason) : "";
  res["body_size"] = r.response_body.size;
  o["response"] = std::move(res);
  return o;
}

/// With `bodies`, each body on its own ("body", base64) besides "raw".
json::object full(const captured_exchange& r, bool bodies) {
  json::object o = summary(r);
  auto& req = o["request"].as_object();
  req["headers"] = headers_object(r.request_headers);
  req["raw"] = base64_encode(raw_request(r));
  req["body_truncated"] = r.request_body.truncated();
  if (bodies) req["body"] = base64_encode(r.request_body.bytes);
  auto& res = o["response"].as_object();
  res["proto"] = proto_name(r.http_version);
  res["headers"] = headers_object(r.response_headers);
  res["raw"] = r.status ? base64_encode(raw_response(r)) : "";
  res["body_truncated"] = r.response_body.truncated();
  if (bodies) res["body"] = base64_encode(r.response_body.bytes);
  return o;
}

}  // namespace

std::string capture_json(const captured_exchange& rec) { return json::serialize(full(rec, true)); }

std::string capture_summary_json(const captured_exchange& rec) { return json::serialize(summary(rec)); }

std::string capture_list_json(const std::vector<std::shared_ptr<const captured_exchange>>& recs, bool summaries) {
  // One record's document at a time: a full ring is tens of MiB of JSON, and
  // one document for all of it would hold that several times over.
  std::string out = R"({"uri":"/api/requests/http","requests":[)";
  bool first = true;
  for (const auto& r : recs) {
    if (!first) out += ',';
    first = false;
    out += json::serialize(summaries ? summary(*r) : full(*r, false));
  }
  out += "]}";
  return out;
}

std::string capture_list_json(const capture_ring& ring, size_t limit, const std::string& tunnel, bool summaries) {
  std::string out = R"({"uri":"/api/requests/http","requests":[)";
  size_t n = 0;
  ring.each_newest(tunnel.empty() ? limit : 0, [&](const captured_exchange& r) {
    if (!tunnel.empty() && r.tunnel != tunnel) return true;
    if (n++ > 0) out += ',';
    out += json::serialize(summaries ? summary(r) : full(r, false));
    return limit == 0 || n < limit;
  });
  out += "]}";
  return out;
}

std::string tunnels_json(const std::vector<tunnel_info>& tunnels, bool inspect) {
  json::object o;
  json::array a;
  for (const auto& t : tunnels) {
    json::object e;
    e["name"] = t.name;
    e["uri"] = "/api/tunnels/" + t.name;
    e["public_url"] = t.public_url;
    e["proto"] = t.proto;
    json::object c;
    c["addr"] = t.addr;
    c["inspect"] = inspect;
    e["config"] = std::move(c);
    a.emplace_back(std::move(e));
  }
  o["tunnels"] = std::move(a);
  o["uri"] = "/api/tunnels";
  return json::serialize(o);
}

std::string parse_replay_id(std::string_view text, uint64_t& seq) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return "the body must be a JSON object";
  auto* id = v.as_object().if_contains("id");
  if (!id || !id->is_string()) return "\"id\" (a string) is required";
  seq = capture_seq(std::string(id->as_string()));
  if (seq == 0) return "\"id\" is not a request id";
  return {};
}

std::string parse_replay(std::string_view text, const captured_exchange& original, replay_request& out) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return "the body must be a JSON object";
  const auto& o = v.as_object();
  out.seq = original.seq;
  out.tunnel = original.tunnel;
  out.method = original.method;
  out.target = original.target;
  out.headers = original.request_headers;
  out.body = original.request_body.bytes;
  out.edited = false;
  if (original.request_body.truncated() && !o.contains("body") && !o.contains("body_base64"))
    return "the original body was truncated; give \"body\" to replay it";
  if (auto* m = o.if_contains("method")) {
    if (!m->is_string() || m->as_string().empty()) return "\"method\" must be a non-empty string";
    std::string method(m->as_string());
    for (char c : method)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return "\"method\" is not a token";
    out.method = std::move(method);
    out.edited = true;
  }
  for (const char* key : {"path", "uri"}) {
    if (auto* p = o.if_contains(key)) {
      if (!p->is_string() || p->as_string().empty() || p->as_string()[0] != '/')
        return std::string("\"") + key + "\" must be a string starting with /";
      std::string target(p->as_string());
      for (char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return std::string("\"") + key + "\" contains a space or control character";
      out.target = std::move(target);
      out.edited = true;
    }
  }
  auto check_header = [](const std::string& k, const std::string& val) -> std::string {
    if (k.empty()) return "a header name is empty";
    for (char c : k)
      if (static_cast<unsigned char>(c) <= 0x20 || c == ':' || c == 0x7f) return "header name '" + k + "' is not a token";
    for (char c : val)
      if (c == '\r' || c == '\n' || c == '\0') return "the value of header '" + k + "' contains a line break";
    return {};
  };
  if (auto* h = o.if_contains("headers")) {
    header_list hs;
    if (h->is_object()) {
      for (const auto& [k, vals] : h->as_object()) {
        std::string name(k);
        auto add = [&](const json::value& x) -> std::string {
          if (!x.is_string()) return "header values must be strings";
          std::string val(x.as_string());
          if (auto e = check_header(name, val); !e.empty()) return e;
          hs.emplace_back(name, std::move(val));
          return {};
        };
        if (vals.is_array()) {
          for (const auto& x : vals.as_array())
            if (auto e = add(x); !e.empty()) return e;
        } else if (auto e = add(vals); !e.empty()) {
          return e;
        }
      }
    } else if (h->is_array()) {
      for (const auto& pair : h->as_array()) {
        if (!pair.is_array() || pair.as_array().size() != 2 || !pair.as_array()[0].is_string() ||
            !pair.as_array()[1].is_string())
          return "\"headers\" must be an object of name: [values] or a list of [name, value]";
        std::string name(pair.as_array()[0].as_string()), val(pair.as_array()[1].as_string());
        if (auto e = check_header(name, val); !e.empty()) return e;
        hs.emplace_back(std::move(name), std::move(val));
      }
    } else {
      return "\"headers\" must be an object of name: [values] or a list of [name, value]";
    }
    out.headers = std::move(hs);
    out.edited = true;
  }
  if (auto* b = o.if_contains("body")) {
    if (!b->is_string()) return "\"body\" must be a string";
    out.body = std::string(b->as_string());
    out.edited = true;
  } else if (auto* b64 = o.if_contains("body_base64")) {
    std::optional<std::string> decoded;
    if (b64->is_string()) decoded = base64_decode(std::string_view(b64->as_string()));
    if (!decoded) return "\"body_base64\" must be base64";
    out.body = std::move(*decoded);
    out.edited = true;
  }
  return {};
}

}  // namespace grok
