// Hostile input from either side: raw public requests that try to smuggle or
// inject, a tunnel client that answers with hostile frames or stops reading,
// slow clients, and races for tunnel names. Every part is real: grok-server,
// grok-demo-upstream (with --log-requests, so the test sees exactly which
// requests reached the local service) and either a real `grok` or a fake
// tunnel client that speaks tunnel.proto itself.

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <cstring>
#include <functional>
#include <future>
#include <sstream>

#include "fake_client.hpp"
#include "harness.hpp"

using namespace grok::test;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
  return s;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

size_t occurrences(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (auto pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + needle.size())) ++n;
  return n;
}

int remaining_ms(clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

/// Sends what it can; a server that closed early (e.g. after 413) is not an error here.
void send_all(connection& c, const std::string& bytes) {
  try {
    c.send(bytes);
  } catch (const std::exception&) {
  }
}

struct raw_read {
  std::string bytes;
  bool closed = false;  ///< EOF or reset seen within the time allowed
};

/// Reads until the peer closes or the deadline passes.
raw_read read_until_closed(connection& c, std::chrono::milliseconds timeout) {
  raw_read r;
  auto deadline = clock::now() + timeout;
  char buf[65536];
  for (;;) {
    auto n = ::recv(c.fd(), buf, sizeof buf, 0);
    if (n > 0) {
      r.bytes.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      r.closed = true;
      return r;
    }
    pollfd p{c.fd(), POLLIN, 0};
    if (remaining_ms(deadline) == 0 || poll(&p, 1, remaining_ms(deadline)) != 1) return r;
  }
}

/// One response as it appeared on the wire.
struct wire_response {
  int status = 0;
  std::string head;  ///< status line and header lines, CRLFs included
  std::vector<header> headers;
  std::string body;
  bool complete = false;
  std::string get(const std::string& name) const {
    for (auto& h : headers)
      if (lower(h.name) == lower(name)) return h.value;
    return {};
  }
  size_t count(const std::string& name) const {
    return std::count_if(headers.begin(), headers.end(), [&](const header& h) { return lower(h.name) == lower(name); });
  }
};

/// Splits raw bytes into responses (interim 1xx responses skipped). A
/// response without framing headers runs to the end of the bytes.
std::vector<wire_response> parse_responses(std::string raw) {
  std::vector<wire_response> out;
  while (!raw.empty()) {
    auto end = raw.find("\r\n\r\n");
    if (end == std::string::npos) break;
    wire_response r;
    r.head = raw.substr(0, end + 2);
    raw.erase(0, end + 4);
    std::istringstream lines(r.head);
    std::string line;
    std::getline(lines, line);
    if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) break;
    r.status = std::atoi(line.c_str() + 9);
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      auto colon = line.find(':');
      auto value = colon == std::string::npos ? std::string() : line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers.push_back({line.substr(0, colon), value});
    }
    if (r.status >= 100 && r.status < 200 && r.status != 101) continue;
    if (r.status == 204 || r.status == 304) {
      r.complete = true;
    } else if (lower(r.get("transfer-encoding")) == "chunked") {
      for (;;) {
        auto eol = raw.find("\r\n");
        if (eol == std::string::npos) break;
        size_t size = std::strtoul(raw.substr(0, eol).c_str(), nullptr, 16);
        if (size == 0) {
          auto fin = raw.find("\r\n\r\n");
          if (fin != std::string::npos) {
            raw.erase(0, fin + 4);
            r.complete = true;
          }
          break;
        }
        if (raw.size() < eol + 2 + size + 2) break;
        r.body += raw.substr(eol + 2, size);
        raw.erase(0, eol + 2 + size + 2);
      }
    } else if (!r.get("content-length").empty()) {
      auto len = std::stoull(r.get("content-length"));
      r.body = raw.substr(0, std::min<size_t>(len, raw.size()));
      r.complete = raw.size() >= len;
      raw.erase(0, r.body.size());
    } else {
      r.body = raw;
      raw.clear();
      r.complete = true;
    }
    out.push_back(std::move(r));
    if (!out.back().complete) break;
  }
  return out;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) s.replace(pos, from.size(), to);
}

// ---- the request vectors ------------------------------------------------------

enum class reach { no, yes, maybe };

/// One raw request vector. Placeholders: {H} the tunnel's host, {P} the public
/// port, {T} /inspect?row=N (the row's own request), {S} /smuggled?row=N (a
/// request that must never reach the local service), {L} the number of bytes
/// after the first blank line.
struct request_vector {
  std::string name;
  std::string raw;
  std::vector<int> status;  ///< allowed status of the first response (README's table)
  reach upstream = reach::no;
  /// Checks the /inspect answer (lower-cased) when the first response is a 200.
  std::function<void(const std::string&)> inspect = nullptr;
  size_t responses = 1;  ///< complete responses expected on the wire
};

std::string many_headers(size_t n, size_t value_size) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += "X-Filler-" + std::to_string(i) + ": " + std::string(value_size, 'v') + "\r\n";
  return out;
}

std::function<void(const std::string&)> body_is(std::string expected) {
  return [expected](const std::string& seen) {
    auto pos = seen.find("\n\n");
    REQUIRE(pos != std::string::npos);
    CHECK(seen.substr(pos + 2) == lower(expected));
  };
}

std::function<void(const std::string&)> lacks(std::vector<std::string> needles) {
  return [needles](const std::string& seen) {
    for (auto& n : needles) {
      CAPTURE(n);
      CHECK(!contains(seen, lower(n)));
    }
  };
}

std::function<void(const std::string&)> all_of(std::vector<std::function<void(const std::string&)>> checks) {
  return [checks](const std::string& seen) {
    for (auto& c : checks) c(seen);
  };
}

std::function<void(const std::string&)> has_line(std::string line) {
  return [line](const std::string& seen) {
    CAPTURE(seen);
    CHECK(contains("\n" + seen, "\n" + lower(line) + "\n"));
  };
}

std::vector<request_vector> request_vectors() {
  const std::string get = "GET {T} HTTP/1.1\r\nHost: {H}\r\n";
  const std::string post = "POST {T} HTTP/1.1\r\nHost: {H}\r\n";
  const std::string smuggled = "GET {S} HTTP/1.1\r\nHost: {H}\r\n\r\n";
  const std::string chunked_hello = "5\r\nhello\r\n0\r\n\r\n";
  std::vector<request_vector> v;

  // Framing: Content-Length and Transfer-Encoding.
  v.push_back({"CL and TE: chunked", post + "Content-Length: {L}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, {400}});
  v.push_back({"TE: chunked then CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled, {400}});
  v.push_back({"TE: chunked, identity", post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, {400, 501}});
  v.push_back({"TE: identity", post + "Transfer-Encoding: identity\r\nContent-Length: {L}\r\n\r\n" + smuggled, {400, 501}});
  v.push_back({"TE: xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n" + smuggled, {400, 501}});
  v.push_back({"TE: chunked twice in one field", post + "Transfer-Encoding: chunked, chunked\r\n\r\n" + chunked_hello + smuggled,
               {400, 501}});
  v.push_back({"two TE fields, identity last", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled,
               {400, 501}});
  v.push_back({"TE with extra OWS ' chunked' is plain chunked", post + "Transfer-Encoding:   chunked\r\n\r\n" + chunked_hello,
               {200}, reach::yes, body_is("hello")});
  v.push_back({"TE 'Chunked' is case-insensitive", post + "Transfer-Encoding: Chunked\r\n\r\n" + chunked_hello, {200}, reach::yes,
               body_is("hello")});
  v.push_back({"space before the colon of TE", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, {400}});
  v.push_back({"TE folded into Host (obs-fold)", post + " Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, {400}});
  v.push_back({"obs-fold in a custom field is joined, never a new line",
               post + "X-Folded: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", {200, 400}, reach::maybe,
               [](const std::string& seen) {
                 CHECK(!contains("\n" + seen, "\ntransfer-encoding"));
                 CHECK(!contains(seen, "\r"));
                 CHECK(contains(seen, "\n\nhello"));
               }});
  v.push_back({"duplicate CL with different values", post + "Content-Length: 5\r\nContent-Length: {L}\r\n\r\nhello" + smuggled, {400}});
  v.push_back({"duplicate CL with equal values", post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", {200, 400}, reach::maybe,
               body_is("hello")});
  v.push_back({"CL as a list '5, 5'", post + "Content-Length: 5, 5\r\n\r\nhello", {200, 400}, reach::maybe, body_is("hello")});
  v.push_back({"CL with a plus sign", post + "Content-Length: +{L}\r\n\r\n" + smuggled, {400}});
  v.push_back({"CL negative", post + "Content-Length: -1\r\n\r\n" + smuggled, {400}});
  v.push_back({"CL in hex", post + "Content-Length: 0x{L}\r\n\r\n" + smuggled, {400}});
  v.push_back({"CL with an inner space", post + "Content-Length: 1 {L}\r\n\r\n" + smuggled, {400}});
  v.push_back({"CL with surrounding OWS is fine", post + "Content-Length:  5 \r\n\r\nhello", {200}, reach::yes, body_is("hello")});
  v.push_back({"CL beyond 64 bits", post + "Content-Length: 99999999999999999999999\r\n\r\n" + smuggled, {400, 413}});
  v.push_back({"TE on HTTP/1.0", "POST {T} HTTP/1.0\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, {400}});
  // A malformed chunked body is answered 400 (README), never a bare close.
  v.push_back({"bad chunk size", post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + smuggled, {400}, reach::maybe});
  v.push_back({"chunk size overflows 64 bits", post + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nhello\r\n0\r\n\r\n" + smuggled,
               {400}, reach::maybe});
  v.push_back({"chunk size with a sign", post + "Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n" + smuggled, {400}, reach::maybe});
  v.push_back({"chunk data longer than its size", post + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n" + smuggled, {400},
               reach::maybe});
  v.push_back({"chunk extensions are dropped", post + "Transfer-Encoding: chunked\r\n\r\n5;name=value;q=\"x y\"\r\nhello\r\n0\r\n\r\n",
               {200}, reach::yes, body_is("hello")});
  v.push_back({"chunk extension with a NUL", post + "Transfer-Encoding: chunked\r\n\r\n5;a" + std::string(1, '\0') + "b\r\nhello\r\n0\r\n\r\n" + smuggled,
               {400}, reach::maybe});
  v.push_back({"trailers carrying Host and a new field are dropped",
               post + "Transfer-Encoding: chunked\r\nTrailer: X-Injected\r\n\r\n5\r\nhello\r\n0\r\nHost: evil.example\r\n"
                      "X-Injected: 1\r\n\r\n",
               {200}, reach::yes, all_of({body_is("hello"), lacks({"x-injected", "evil.example"})})});
  // Beast rejects a Content-Length trailer on a chunked body; the client must
  // then be told (400), not merely disconnected.
  v.push_back({"a trailer carrying Content-Length is dropped or answered 400",
               post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 99\r\nX-Injected: 1\r\n\r\n", {200, 400},
               reach::maybe, all_of({body_is("hello"), lacks({"x-injected", "content-length: 99"})})});
  v.push_back({"a request inside a Content-Length body stays body", get + "Content-Length: {L}\r\n\r\n" + smuggled, {200}, reach::yes,
               body_is("GET {S} HTTP/1.1\r\nHost: {H}\r\n\r\n")});
  v.push_back({"pipelined request after a body is routed on its own",
               post + "Content-Length: 5\r\n\r\nhello" + "GET {S} HTTP/1.1\r\nHost: other.localhost\r\n\r\n", {200}, reach::yes,
               body_is("hello"), 2});
  v.push_back({"bare LF line endings", "GET {T} HTTP/1.1\nHost: {H}\n\n", {400}});
  v.push_back({"bare LF inside a field", get + "X-A: a\nX-Injected: 1\r\n\r\n", {400}});
  v.push_back({"CR inside a field value", get + "X-A: a\rX-Injected: 1\r\n\r\n", {400}});
  v.push_back({"NUL inside a field value", get + "X-A: a" + std::string(1, '\0') + "X-Injected: 1\r\n\r\n", {400}});
  v.push_back({"space inside a field name", get + "X Injected: 1\r\n\r\n", {400}});
  v.push_back({"field line without a colon", get + "X-Injected\r\n\r\n", {400}});

  // Host.
  v.push_back({"no Host on HTTP/1.1", "GET {T} HTTP/1.1\r\n\r\n", {400}});
  v.push_back({"no Host on HTTP/1.0", "GET {T} HTTP/1.0\r\n\r\n", {400}});
  v.push_back({"Host twice, same value", get + "Host: {H}\r\n\r\n", {400}});
  v.push_back({"Host twice, other tunnel second", get + "Host: other.localhost\r\n\r\n", {400}});
  v.push_back({"empty Host", "GET {T} HTTP/1.1\r\nHost:\r\n\r\n", {400}});
  v.push_back({"Host with userinfo", "GET {T} HTTP/1.1\r\nHost: user:pw@{H}\r\n\r\n", {400}});
  v.push_back({"absolute-form authority differs from Host", "GET http://other.localhost{T} HTTP/1.1\r\nHost: {H}\r\n\r\n", {400}});
  v.push_back({"absolute-form with userinfo", "GET http://user@{H}{T} HTTP/1.1\r\nHost: {H}\r\n\r\n", {400}});
  v.push_back({"absolute-form matching Host is sent on in origin-form", "GET http://{H}:{P}{T} HTTP/1.1\r\nHost: {H}\r\n\r\n", {200},
               reach::yes, [](const std::string& seen) { CHECK(seen.rfind("get /inspect?row=", 0) == 0); }});
  v.push_back({"Host with the listener's port", "GET {T} HTTP/1.1\r\nHost: {H}:{P}\r\n\r\n", {200}, reach::yes});
  v.push_back({"Host with another port", "GET {T} HTTP/1.1\r\nHost: {H}:80\r\n\r\n", {200}, reach::yes});
  v.push_back({"Host port out of range", "GET {T} HTTP/1.1\r\nHost: {H}:99999\r\n\r\n", {400}});
  v.push_back({"Host port not a number", "GET {T} HTTP/1.1\r\nHost: {H}:http\r\n\r\n", {400}});
  v.push_back({"Host with an empty port", "GET {T} HTTP/1.1\r\nHost: {H}:\r\n\r\n", {400}});
  v.push_back({"Host with a trailing dot", "GET {T} HTTP/1.1\r\nHost: {H}.\r\n\r\n", {200}, reach::yes});
  v.push_back({"Host with a trailing dot and a port", "GET {T} HTTP/1.1\r\nHost: {H}.:{P}\r\n\r\n", {200}, reach::yes});
  v.push_back({"Host in upper case", "GET {T} HTTP/1.1\r\nHost: APP.LOCALHOST\r\n\r\n", {200}, reach::yes});
  v.push_back({"Host an IPv6 literal", "GET {T} HTTP/1.1\r\nHost: [::1]:{P}\r\n\r\n", {404}});
  v.push_back({"Host an unclosed IPv6 literal", "GET {T} HTTP/1.1\r\nHost: [::1\r\n\r\n", {400}});
  v.push_back({"Host an IPv4 literal", "GET {T} HTTP/1.1\r\nHost: 127.0.0.1:{P}\r\n\r\n", {404}});
  v.push_back({"unknown tunnel", "GET {T} HTTP/1.1\r\nHost: nope.localhost\r\n\r\n", {404}});
  v.push_back({"the bare domain", "GET {T} HTTP/1.1\r\nHost: localhost\r\n\r\n", {404}});
  v.push_back({"another domain ending in the tunnel's host", "GET {T} HTTP/1.1\r\nHost: evil-{H}\r\n\r\n", {404}});
  v.push_back({"a subdomain of the tunnel's host", "GET {T} HTTP/1.1\r\nHost: x.{H}\r\n\r\n", {404}});
  v.push_back({"Host with an empty label", "GET {T} HTTP/1.1\r\nHost: app..localhost\r\n\r\n", {400}});
  v.push_back({"Host with a path", "GET {T} HTTP/1.1\r\nHost: {H}/x\r\n\r\n", {400}});
  v.push_back({"Host with a space", "GET {T} HTTP/1.1\r\nHost: {H} x\r\n\r\n", {400}});

  // Hop-by-hop and forwarding fields.
  v.push_back({"fields named in Connection are removed", get + "Connection: keep-alive, X-Hop-A, x-hop-b\r\nX-Hop-A: 1\r\nX-Hop-B: 2\r\nX-Kept: 3\r\n\r\n",
               {200}, reach::yes, all_of({lacks({"x-hop-a", "x-hop-b", "connection:"}), has_line("X-Kept: 3")})});
  v.push_back({"standard hop-by-hop fields are removed",
               get + "Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\n"
                     "Proxy-Authorization: Basic Zm9vOmJhcg==\r\nUpgrade: h2c\r\n\r\n",
               {200}, reach::yes,
               lacks({"keep-alive:", "\nte:", "trailer:", "proxy-connection", "proxy-authorization", "upgrade:", "h2c"})});
  v.push_back({"client forwarding fields are replaced by what the server saw",
               get + "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n"
                     "X-Forwarded-Proto: https\r\n\r\n",
               {200}, reach::yes,
               all_of({lacks({"6.6.6.6", "evil.example", "x-forwarded-proto: https"}), has_line("X-Forwarded-For: 127.0.0.1")})});
  v.push_back({"Connection naming X-Forwarded-For cannot drop it", get + "Connection: X-Forwarded-For, X-Forwarded-Host\r\n\r\n", {200},
               reach::yes, all_of({has_line("X-Forwarded-For: 127.0.0.1"), has_line("X-Forwarded-Host: {H}")})});

  // Limits (this stack: max_header_bytes 16 KiB, max_body_size 64 KiB).
  v.push_back({"request head over 16 KiB", get + many_headers(20, 1000) + "\r\n", {431}});
  v.push_back({"one field value over 16 KiB", get + "X-Big: " + std::string(20000, 'b') + "\r\n\r\n", {431}});
  v.push_back({"request target over 16 KiB", "GET /inspect?" + std::string(20000, 'q') + " HTTP/1.1\r\nHost: {H}\r\n\r\n", {431}});
  v.push_back({"Content-Length over max_body_size", post + "Content-Length: 100000\r\n\r\n" + std::string(100000, 'x'), {413}});
  {
    std::string chunks;
    for (int i = 0; i < 25; ++i) chunks += "1000\r\n" + std::string(4096, 'x') + "\r\n";
    v.push_back({"chunked body over max_body_size", post + "Transfer-Encoding: chunked\r\n\r\n" + chunks + "0\r\n\r\n" + smuggled,
                 {413}, reach::maybe});
  }
  return v;
}

std::string expand(std::string raw, size_t row, const std::string& host, uint16_t port) {
  replace_all(raw, "{T}", "/inspect?row=" + std::to_string(row));
  replace_all(raw, "{S}", "/smuggled?row=" + std::to_string(row));
  replace_all(raw, "{H}", host);
  replace_all(raw, "{P}", std::to_string(port));
  auto blank = raw.find("\r\n\r\n");
  if (contains(raw, "{L}") && blank != std::string::npos) {
    auto tail = raw.size() - (blank + 4);
    replace_all(raw, "{L}", std::to_string(tail));
  }
  return raw;
}

/// A stack whose local service logs every request head it reads.
stack::options logged(stack::options o = {}) {
  o.upstream_args.push_back("--log-requests");
  return o;
}

/// Waits until the local service logged a request for `target` (with the
/// space that ends the target), which also flushes every earlier line.
bool upstream_saw(stack& s, const std::string& target, std::chrono::milliseconds timeout = 10s) {
  return s.upstream->wait_for_text("request GET " + target + " ", timeout);
}

size_t upstream_lines_with(stack& s, const std::string& text) { return s.upstream->count_lines_containing(text); }

}  // namespace

TEST_CASE("raw request vectors: no smuggled or injected bytes reach the local service") {
  stack::options o = logged();
  o.server_section_yaml = "  max_body_size: 64KiB\n  max_header_bytes: 16KiB\n";
  stack s(o);
  auto vectors = request_vectors();
  REQUIRE(vectors.size() >= 40);
  for (size_t i = 0; i < vectors.size(); ++i) {
    auto& vec = vectors[i];
    CAPTURE(i);
    CAPTURE(vec.name);
    auto bytes = expand(vec.raw, i, s.host(), s.http_port);
    connection c(s.http_port);
    send_all(c, bytes);
    c.shutdown_write();
    auto got = read_until_closed(c, 15s);
    CHECK(got.closed);  // every answer ends: the server never hangs on a hostile request
    auto responses = parse_responses(got.bytes);
    int first = responses.empty() ? 0 : responses.front().status;
    CAPTURE(got.bytes.substr(0, 300));
    CHECK(std::find(vec.status.begin(), vec.status.end(), first) != vec.status.end());
    size_t complete = std::count_if(responses.begin(), responses.end(), [](auto& r) { return r.complete; });
    CHECK(complete == vec.responses);
    // Nothing after an error answer is ever served as a request of its own.
    for (size_t k = 1; k < responses.size(); ++k)
      if (vec.responses == 1) CHECK(responses[k].status >= 400);
    CHECK(!contains(lower(got.bytes), "x-injected"));
    if (first == 200 && vec.inspect) {
      // Checks are written with {H} and {S}: put the placeholders back.
      auto seen = lower(responses.front().body);
      replace_all(seen, "/smuggled?row=" + std::to_string(i), "{s}");
      replace_all(seen, s.host(), "{h}");
      CAPTURE(seen);
      vec.inspect(seen);
    }
  }
  // Everything the local service logged is in once it logged a later request.
  REQUIRE(request(s.http_port, "GET", s.host(), "/inspect?sentinel").status == 200);
  REQUIRE(upstream_saw(s, "/inspect?sentinel"));
  for (size_t i = 0; i < vectors.size(); ++i) {
    auto& vec = vectors[i];
    CAPTURE(i);
    CAPTURE(vec.name);
    auto row_target = "/inspect?row=" + std::to_string(i) + " ";
    auto seen = upstream_lines_with(s, row_target);
    if (vec.upstream == reach::no) CHECK(seen == 0);
    if (vec.upstream == reach::yes) CHECK(seen == 1);
    CHECK(upstream_lines_with(s, "/smuggled?row=" + std::to_string(i)) == 0);
  }
  CHECK(upstream_lines_with(s, "x-injected") == 0);
  CHECK(upstream_lines_with(s, "/smuggled") == 0);
  // The server is still serving.
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
}

TEST_CASE("too many request headers answer 431 (server.max_header_count, default 100)") {
  // Needs server.max_header_count; fails until that limit is merged.
  stack s(logged());
  auto head = [&](size_t n, const std::string& target) {
    return "GET " + target + " HTTP/1.1\r\nHost: " + s.host() + "\r\n" + many_headers(n, 8) + "\r\n";
  };
  {
    connection c(s.http_port);
    c.send(head(150, "/inspect?count=150"));
    auto r = c.read_response(10s);
    CHECK(r.status == 431);
    CHECK(c.wait_closed(5s));
  }
  {
    connection c(s.http_port);
    c.send(head(50, "/inspect?count=50"));
    CHECK(c.read_response(10s).status == 200);
  }
  REQUIRE(upstream_saw(s, "/inspect?count=50"));
  CHECK(upstream_lines_with(s, "/inspect?count=150") == 0);
}

TEST_CASE("server.max_header_count sets the header count limit") {
  // Needs server.max_header_count; fails until that limit is merged.
  stack::options o = logged();
  o.server_section_yaml = "  max_header_count: 20\n";
  stack s(o);
  auto send = [&](size_t n) {
    connection c(s.http_port);
    c.send("GET /inspect?count=" + std::to_string(n) + " HTTP/1.1\r\nHost: " + s.host() + "\r\n" + many_headers(n, 8) + "\r\n");
    return c.read_response(10s).status;
  };
  CHECK(send(30) == 431);
  CHECK(send(10) == 200);
  REQUIRE(upstream_saw(s, "/inspect?count=10"));
  CHECK(upstream_lines_with(s, "/inspect?count=30") == 0);
}

TEST_CASE("server.trusted_proxies: a trusted peer's X-Forwarded-For is kept and the peer appended") {
  // Needs server.trusted_proxies; fails until that feature is merged.
  stack::options o = logged();
  o.server_section_yaml = "  trusted_proxies: [192.0.2.7, 127.0.0.0/8]\n";
  stack s(o);
  auto r = request(s.http_port, "GET", s.host(), "/inspect", "", {{"X-Forwarded-For", "203.0.113.9"}});
  REQUIRE(r.status == 200);
  auto seen = lower(r.body);
  CAPTURE(seen);
  CHECK(contains(seen, "\nx-forwarded-for: 203.0.113.9, 127.0.0.1\n"));
  CHECK(occurrences(seen, "x-forwarded-for:") == 1);
  // Without a client value the peer alone is sent.
  r = request(s.http_port, "GET", s.host(), "/inspect");
  REQUIRE(r.status == 200);
  CHECK(contains(lower(r.body), "\nx-forwarded-for: 127.0.0.1\n"));
}

TEST_CASE("server.trusted_proxies: an untrusted peer's forwarding fields are replaced") {
  // Needs server.trusted_proxies; fails until that feature is merged.
  stack::options o = logged();
  o.server_section_yaml = "  trusted_proxies: [10.0.0.0/8, 192.0.2.7]\n";
  stack s(o);
  auto r = request(s.http_port, "GET", s.host(), "/inspect", "",
                   {{"X-Forwarded-For", "203.0.113.9"}, {"Forwarded", "for=203.0.113.9;proto=https"}, {"X-Real-IP", "203.0.113.9"}});
  REQUIRE(r.status == 200);
  auto seen = lower(r.body);
  CAPTURE(seen);
  CHECK(!contains(seen, "203.0.113.9"));
  CHECK(contains(seen, "\nx-forwarded-for: 127.0.0.1\n"));
  CHECK(occurrences(seen, "x-forwarded-for:") == 1);
  // Whatever the server puts in Forwarded / X-Real-IP names what it saw.
  for (auto& line : {std::string("\nforwarded: "), std::string("\nx-real-ip: ")}) {
    auto pos = seen.find(line);
    if (pos != std::string::npos) CHECK(contains(seen.substr(pos, seen.find('\n', pos + 1) - pos), "127.0.0.1"));
  }
}

TEST_CASE("server.max_connections_per_ip refuses connections past the limit and frees slots on close") {
  // Needs server.max_connections_per_ip; fails until that limit is merged.
  stack::options o;
  o.server_section_yaml = "  max_connections_per_ip: 4\n  read_header_timeout: 30s\n";
  stack s(o);
  std::vector<std::unique_ptr<connection>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<connection>(s.http_port));
    // Each held connection is really open: it is served.
    held.back()->send("GET / HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    REQUIRE(held.back()->read_response(10s).status == 200);
  }
  // A fifth connection from the same address is not served: refused with
  // 429/503 or closed outright.
  {
    connection extra(s.http_port);
    send_all(extra, "GET / HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
    auto got = read_until_closed(extra, 10s);
    CHECK(got.closed);
    auto responses = parse_responses(got.bytes);
    if (!responses.empty()) {
      CAPTURE(responses.front().status);
      CHECK((responses.front().status == 429 || responses.front().status == 503));
    }
  }
  // Closing one frees its slot (the server notices the close asynchronously).
  held.pop_back();
  bool served = false;
  for (auto deadline = clock::now() + 10s; !served && clock::now() < deadline;) {
    connection c(s.http_port);
    send_all(c, "GET / HTTP/1.1\r\nHost: " + s.host() + "\r\nConnection: close\r\n\r\n");
    auto responses = parse_responses(read_until_closed(c, 10s).bytes);
    served = !responses.empty() && responses.front().status == 200;
    if (!served) std::this_thread::sleep_for(100ms);  // retry until the server has seen the close
  }
  CHECK(served);
}

// ---- a hostile tunnel client ----------------------------------------------------

namespace {

enum class outcome {
  bad_gateway,   ///< a complete 502 and nothing else
  cut,           ///< the response had started: the connection ends before it completes
  clean,         ///< a complete, well-framed response
  clean_or_cut,
};

struct splitting_case {
  std::string name;
  std::function<void(fake_client&, uint64_t id)> answer;
  outcome expect;
  std::function<void(const wire_response&)> check = nullptr;
};

using header_list = std::vector<std::pair<std::string, std::string>>;

std::function<void(fake_client&, uint64_t)> head_only(uint32_t status, header_list headers, const std::string& reason = "") {
  return [=](fake_client& f, uint64_t id) { f.send(response_head(id, status, headers, 0, true, reason)); };
}

std::function<void(fake_client&, uint64_t)> hello_body(header_list headers, int64_t content_length,
                                                       const std::string& reason = "") {
  return [=](fake_client& f, uint64_t id) {
    f.send({response_head(id, 200, headers, content_length, false, reason), data_frame(id, "hello", true)});
  };
}

std::vector<splitting_case> splitting_cases() {
  const std::string nul(1, '\0');
  std::vector<splitting_case> v;
  for (uint32_t status : {0u, 99u, 100u, 102u, 101u, 600u, 999u, 100000u})
    v.push_back({"status " + std::to_string(status), head_only(status, {}), outcome::bad_gateway});
  v.push_back({"header name with a space", head_only(200, {{"X Injected", "1"}}), outcome::bad_gateway});
  v.push_back({"header name with a colon", head_only(200, {{"X-A: 1\r\nX-Injected", "1"}}), outcome::bad_gateway});
  v.push_back({"header name with a colon only", head_only(200, {{"X-A:X-Injected", "1"}}), outcome::bad_gateway});
  v.push_back({"header name with CRLF", head_only(200, {{"X-A\r\nX-Injected", "1"}}), outcome::bad_gateway});
  v.push_back({"header name with NUL", head_only(200, {{"X-A" + nul + "X-Injected", "1"}}), outcome::bad_gateway});
  v.push_back({"header name with non-token characters", head_only(200, {{"X-Injected(1)", "1"}}), outcome::bad_gateway});
  v.push_back({"header name with a non-ASCII byte", head_only(200, {{"X-Injected\xc3\xa4", "1"}}), outcome::bad_gateway});
  v.push_back({"empty header name", head_only(200, {{"", "X-Injected"}}), outcome::bad_gateway});
  v.push_back({"header value with CR", head_only(200, {{"X-A", "a\rX-Injected: 1"}}), outcome::bad_gateway});
  v.push_back({"header value with LF", head_only(200, {{"X-A", "a\nX-Injected: 1"}}), outcome::bad_gateway});
  v.push_back({"header value with a whole second response",
               head_only(200, {{"X-A", "a\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: 1\r\n"}}), outcome::bad_gateway});
  v.push_back({"header value with NUL", head_only(200, {{"X-A", "a" + nul + "X-Injected: 1"}}), outcome::bad_gateway});
  v.push_back({"reason phrase with CRLF is replaced", hello_body({}, 5, "OK\r\nX-Injected: 1"), outcome::clean,
               [](const wire_response& r) {
                 CHECK(r.status == 200);
                 CHECK(r.body == "hello");
               }});
  v.push_back({"duplicate Content-Length from the local side is re-framed",
               hello_body({{"Content-Length", "5"}, {"Content-Length", "50"}}, 5), outcome::clean, [](const wire_response& r) {
                 CHECK(r.count("content-length") == 1);
                 CHECK(r.get("content-length") == "5");
                 CHECK(r.count("transfer-encoding") == 0);
                 CHECK(r.body == "hello");
               }});
  v.push_back({"Transfer-Encoding and Content-Length from the local side are re-framed",
               hello_body({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "identity"}, {"Content-Length", "7"}}, 5),
               outcome::clean, [](const wire_response& r) {
                 CHECK(r.count("content-length") == 1);
                 CHECK(r.get("content-length") == "5");
                 CHECK(r.count("transfer-encoding") == 0);
                 CHECK(r.body == "hello");
               }});
  v.push_back({"Content-Length header on a streamed body is dropped", hello_body({{"Content-Length", "100"}}, -1), outcome::clean,
               [](const wire_response& r) {
                 CHECK(r.count("content-length") == 0);
                 CHECK(r.count("transfer-encoding") == 1);
                 CHECK(r.body == "hello");
               }});
  v.push_back({"hop-by-hop headers from the local side are dropped",
               hello_body({{"Connection", "close, X-Injected"}, {"Keep-Alive", "timeout=1"}, {"Upgrade", "h2c"},
                           {"Proxy-Connection", "close"}, {"X-Kept", "1"}},
                          5),
               outcome::clean, [](const wire_response& r) {
                 CHECK(r.count("keep-alive") == 0);
                 CHECK(r.count("upgrade") == 0);
                 CHECK(r.count("proxy-connection") == 0);
                 CHECK(r.get("x-kept") == "1");
                 CHECK(r.body == "hello");
               }});
  v.push_back({"Data beyond the credit window",
               [](fake_client& f, uint64_t id) {
                 // The server granted 64 KiB (tunnels.initial_window); send 1 MiB at once.
                 std::vector<pb::Frame> frames{response_head(id, 200, {}, 1 << 20, false)};
                 for (int i = 0; i < 16; ++i) frames.push_back(data_frame(id, std::string(64 * 1024, 'd'), i == 15));
                 f.send(frames);
               },
               outcome::cut});
  v.push_back({"Data before the response head", [](fake_client& f, uint64_t id) {
                 f.send({data_frame(id, "HTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n", false), response_head(id, 200, {}, 0, true)});
               },
               outcome::bad_gateway});
  v.push_back({"a second response head", [](fake_client& f, uint64_t id) {
                 f.send({response_head(id, 200, {}, 5, false), response_head(id, 200, {{"X-Injected", "1"}}, 0, true)});
               },
               outcome::cut});
  v.push_back({"more body than Content-Length", [](fake_client& f, uint64_t id) {
                 f.send({response_head(id, 200, {}, 5, false),
                         data_frame(id, "hello\r\nHTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n", true)});
               },
               outcome::cut});
  v.push_back({"less body than Content-Length", [](fake_client& f, uint64_t id) {
                 f.send({response_head(id, 200, {}, 10, false), data_frame(id, "hello", true)});
               },
               outcome::cut});
  v.push_back({"Data after the end of the body", [](fake_client& f, uint64_t id) {
                 f.send({response_head(id, 200, {}, 5, false), data_frame(id, "hello", true),
                         data_frame(id, "HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n", true)});
               },
               outcome::clean_or_cut, [](const wire_response& r) { CHECK(r.body == "hello"); }});
  v.push_back({"frames for unknown exchange ids are ignored", [](fake_client& f, uint64_t id) {
                 f.send({data_frame(id + 1000, "HTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n", false),
                         response_head(id + 1001, 200, {{"X-Injected", "1"}}, 0, true), data_frame(0, "X-Injected: 1\r\n", false)});
                 f.send({response_head(id, 200, {}, 5, false), data_frame(id, "hello", true)});
               },
               outcome::clean, [](const wire_response& r) { CHECK(r.body == "hello"); }});
  v.push_back({"a window update overflowing the credit", [](fake_client& f, uint64_t id) {
                 pb::Frame w;
                 w.set_exchange_id(id);
                 w.mutable_window_update()->set_increment(0xffffffffu);
                 f.send(w);
               },
               outcome::bad_gateway});
  return v;
}

}  // namespace

TEST_CASE("response splitting from a hostile tunnel client: 502 or a cut, never an injected line") {
  stack::options o;
  o.extra_server_yaml = "  initial_window: 64KiB\n";
  stack s(o);
  fake_client evil(s.grpc_port);
  auto accepted = evil.hello(s.opts.token, "evil");
  REQUIRE(accepted);
  REQUIRE(accepted->has_accepted());
  auto cases = splitting_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    auto& sc = cases[i];
    CAPTURE(sc.name);
    connection c(s.http_port);
    auto target = "/case?n=" + std::to_string(i);
    c.send("GET " + target + " HTTP/1.1\r\nHost: evil.localhost\r\n\r\n");
    auto head = evil.next_of(pb::Frame::kRequestHead, 10s);
    REQUIRE(head);
    CHECK(head->request_head().target() == target);
    sc.answer(evil, head->exchange_id());
    c.shutdown_write();
    auto got = read_until_closed(c, 15s);
    CHECK(got.closed);
    CAPTURE(got.bytes.substr(0, 400));
    CHECK(!contains(lower(got.bytes), "injected"));
    CHECK(occurrences(got.bytes, "HTTP/1.") == 1);  // one status line: no second response
    auto responses = parse_responses(got.bytes);
    REQUIRE(responses.size() == 1);
    auto& r = responses.front();
    switch (sc.expect) {
      case outcome::bad_gateway:
        CHECK(r.status == 502);
        CHECK(r.complete);
        break;
      case outcome::cut:
        CHECK(r.status == 200);
        CHECK(!r.complete);
        break;
      case outcome::clean:
        CHECK(r.complete);
        break;
      case outcome::clean_or_cut:
        break;
    }
    if (sc.check && r.complete) sc.check(r);
    // The server keeps serving others, and the hostile tunnel's next exchange too.
    CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
  }
  // The hostile tunnel was never cut for any of this: a good answer still works.
  connection c(s.http_port);
  c.send("GET /last HTTP/1.1\r\nHost: evil.localhost\r\n\r\n");
  auto head = evil.next_of(pb::Frame::kRequestHead, 10s);
  REQUIRE(head);
  evil.send({response_head(head->exchange_id(), 200, {{"X-Fine", "yes"}}, 5, false), data_frame(head->exchange_id(), "hello", true)});
  auto r = c.read_response(10s);
  CHECK(r.status == 200);
  CHECK(r.get("X-Fine") == "yes");
  CHECK(r.body == "hello");
  // Each hostile answer was refused for the reason it was built to trip.
  for (auto reason : {"invalid status", "invalid response header", "tunnel client overran its window", "data outside a response body",
                      "duplicate response head", "more body than Content-Length", "body shorter than Content-Length",
                      "window overflow"}) {
    CAPTURE(reason);
    CHECK(s.server->count_lines_containing(reason) > 0);
  }
}

TEST_CASE("tunnel streams that do not start with a valid Hello are refused and hold nothing") {
  stack s;
  fake_client silent(s.grpc_port);  // sends nothing: the Hello deadline closes it
  auto started = clock::now();
  {
    INFO("frames before Hello");
    for (auto kind : {0, 1, 2}) {
      CAPTURE(kind);
      fake_client f(s.grpc_port);
      pb::Frame first;
      first.set_exchange_id(1);
      if (kind == 0) first = response_head(1, 200, {{"X-Injected", "1"}}, 0, true);
      if (kind == 1) first = data_frame(1, "HTTP/1.1 200 OK\r\n\r\n", false);
      if (kind == 2) first.mutable_window_update()->set_increment(1000);
      f.send(first);
      auto answer = f.next(10s);
      REQUIRE(answer);
      REQUIRE(answer->has_refused());
      CHECK(answer->refused().reason() == pb::Refused::PROTOCOL_ERROR);
      CHECK(f.wait_closed(10s));
    }
  }
  {
    INFO("an unknown protocol version");
    fake_client f(s.grpc_port);
    pb::Frame h;
    h.mutable_hello()->set_protocol_version(99);
    h.mutable_hello()->set_token(s.opts.token);
    h.mutable_hello()->set_name("v99");
    f.send(h);
    auto answer = f.next(10s);
    REQUIRE(answer);
    REQUIRE(answer->has_refused());
    CHECK(answer->refused().reason() == pb::Refused::UNSUPPORTED_VERSION);
    CHECK(f.wait_closed(10s));
    CHECK(request(s.http_port, "GET", "v99.localhost", "/").status == 404);
  }
  {
    INFO("a second Hello closes the tunnel and frees its name");
    fake_client f(s.grpc_port);
    auto a = f.hello(s.opts.token, "twice");
    REQUIRE(a);
    REQUIRE(a->has_accepted());
    pb::Frame h;
    h.mutable_hello()->set_protocol_version(1);
    h.mutable_hello()->set_token(s.opts.token);
    h.mutable_hello()->set_name("app");
    f.send(h);
    CHECK(f.wait_closed(10s));
    // The name is offline (502 during the grace), never routed to the old stream.
    CHECK(request(s.http_port, "GET", "twice.localhost", "/").status == 502);
  }
  // A stream that never says Hello is closed by the server's Hello deadline (10 s).
  CHECK(silent.wait_closed(20s));
  CHECK(clock::now() - started < 20s);
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
}

// ---- slow clients ----------------------------------------------------------------

namespace {

/// Requests `target` on the tunnel every ~100 ms on fresh connections until
/// stopped; remembers every status and latency.
class prober {
 public:
  prober(uint16_t port, std::string host, std::string target = "/")
      : thread_([this, port, host = std::move(host), target = std::move(target)] {
          while (!stop_) {
            auto t0 = clock::now();
            int status = 0;
            try {
              status = request(port, "GET", host, target, "", {}, 10s).status;
            } catch (const std::exception&) {
            }
            auto ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
            {
              std::lock_guard lk(mu_);
              statuses_.push_back(status);
              latencies_.push_back(ms);
            }
            std::unique_lock lk(mu_);
            cv_.wait_for(lk, 100ms, [&] { return stop_.load(); });
          }
        }) {}
  ~prober() { stop(); }
  void stop() {
    stop_ = true;
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  std::vector<int> statuses() {
    std::lock_guard lk(mu_);
    return statuses_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> statuses_;
  std::vector<double> latencies_;
  std::thread thread_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

/// Median latency of `n` sequential GETs of `target` on fresh connections.
double median_latency_ms(uint16_t port, const std::string& host, const std::string& target, int n, int* failures) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock::now();
    auto r = request(port, "GET", host, target, "", {}, 10s);
    if (r.status != 200) ++*failures;
    ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
  }
  return median(ms);
}

}  // namespace

TEST_CASE("slowloris: header-by-the-byte clients get 408 at read_header_timeout, silent ones are closed; others are served") {
  stack::options o;
  const auto header_timeout = 2s;  // well under the 10 s default, so the default cannot pass for it
  o.server_section_yaml = "  read_header_timeout: 2s\n  idle_timeout: 3s\n";
  stack s(o);
  constexpr size_t slow = 50;
  constexpr size_t silent = 5;
  std::string head = "GET / HTTP/1.1\r\nHost: " + s.host() + "\r\nX-Slow: " + std::string(100, 's') + "\r\n\r\n";
  struct slow_conn {
    std::unique_ptr<connection> c;
    size_t sent = 0;
    std::string got;
    bool closed = false;
    clock::duration took{};
  };
  std::vector<slow_conn> conns(slow + silent);
  // Taken before the connections open: no server deadline can start earlier.
  auto start = clock::now();
  for (auto& sc : conns) sc.c = std::make_unique<connection>(s.http_port);
  prober probe(s.http_port, s.host());
  auto deadline = start + 20s;
  // One byte per second on each slow connection; the silent ones send nothing.
  while (clock::now() < deadline) {
    bool open = false;
    for (size_t i = 0; i < conns.size(); ++i) {
      auto& sc = conns[i];
      if (sc.closed) continue;
      char buf[4096];
      for (;;) {
        auto n = ::recv(sc.c->fd(), buf, sizeof buf, 0);
        if (n > 0) {
          sc.got.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          sc.closed = true;
          sc.took = clock::now() - start;
        }
        break;
      }
      if (sc.closed) continue;
      open = true;
      if (i < slow && sc.sent < head.size()) {
        if (::send(sc.c->fd(), head.data() + sc.sent, 1, MSG_NOSIGNAL) == 1) ++sc.sent;
      }
    }
    if (!open) break;
    // Wait a second or until some connection has something to report.
    std::vector<pollfd> fds;
    for (auto& sc : conns)
      if (!sc.closed) fds.push_back({sc.c->fd(), POLLIN, 0});
    auto next_tick = clock::now() + 1s;
    while (clock::now() < next_tick) {
      if (poll(fds.data(), fds.size(), remaining_ms(next_tick)) <= 0) break;
      bool any = false;
      for (auto& p : fds) any = any || (p.revents != 0);
      if (any) break;
    }
  }
  probe.stop();
  // The configured deadline, plus a margin for a loaded machine (and for sanitizer
  // builds) that stays well under the 10 s default.
  const auto bound = header_timeout + std::min<std::chrono::milliseconds>(scaled(1s), 5s);
  std::chrono::milliseconds longest{0};
  for (size_t i = 0; i < conns.size(); ++i) {
    auto& sc = conns[i];
    CAPTURE(i);
    CAPTURE(sc.got.substr(0, 100));
    CHECK(sc.closed);
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(sc.took);
    CAPTURE(took.count());
    longest = std::max(longest, took);
    CHECK(took >= header_timeout);
    CHECK(took < bound);
    if (i < slow) {
      CHECK(sc.sent < head.size());  // it never finished its head
      // A partial head is answered 408, then closed (README).
      CHECK(sc.got.rfind("HTTP/1.1 408 ", 0) == 0);
    } else {
      CHECK(sc.got.empty());
    }
  }
  MESSAGE("slow and silent connections ended by " << longest.count() << " ms (read_header_timeout 2000 ms, bound "
                                                    << bound.count() << " ms)");
  auto statuses = probe.statuses();
  CHECK(statuses.size() >= 5);
  CHECK(std::count(statuses.begin(), statuses.end(), 200) == static_cast<long>(statuses.size()));
}

TEST_CASE("slow readers: a client that never reads a large response is cut at the write deadline") {
  stack::options o;
  o.server_section_yaml = "  read_header_timeout: 2s\n  idle_timeout: 3s\n";
  stack s(o);
  constexpr int readers = 10;
  constexpr uint64_t size = 256ull << 20;
  const std::string target = "/download?size=" + std::to_string(size);
  std::vector<std::unique_ptr<connection>> conns;
  prober probe(s.http_port, s.host());
  auto start = clock::now();
  for (int i = 0; i < readers; ++i) {
    conns.push_back(std::make_unique<connection>(s.http_port));
    conns.back()->send("GET " + target + " HTTP/1.1\r\nHost: " + s.host() + "\r\n\r\n");
  }
  // The server logs one access line per exchange when it ends; a cut one says
  // so instead of its status, with far fewer bytes out than the body.
  CHECK(s.server->wait_for_count("\"GET " + target + "\" cut", readers, 60s));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
  std::regex access("\"GET " + std::regex_replace(target, std::regex(R"([?])"), R"(\?)") + R"(" cut in=0B out=(\d+)B)");
  size_t ended = 0;
  for (auto& line : s.server->lines()) {
    std::smatch m;
    if (std::regex_search(line, m, access)) {
      ++ended;
      CHECK(std::stoull(m[1]) < size);
    }
  }
  CHECK(ended == readers);
  // Each write may wait idle_timeout (3 s): the readers are cut once their buffers are
  // full and 3 s have passed, not before, and not much later.
  const auto write_deadline = 3s;
  const auto bound = write_deadline + scaled(2s);
  MESSAGE("all " << readers << " readers cut after " << took.count() << " ms (write deadline 3000 ms, bound "
                 << bound.count() << " ms)");
  CHECK(took >= write_deadline);
  CHECK(took < bound);
  // From the reader's side: the bytes buffered so far, then the end, never the whole body.
  for (auto& c : conns) {
    auto got = read_until_closed(*c, 20s);
    CHECK(got.closed);
    CHECK(got.bytes.size() < size);
  }
  probe.stop();
  auto statuses = probe.statuses();
  CHECK(statuses.size() >= 5);
  CHECK(std::count(statuses.begin(), statuses.end(), 200) == static_cast<long>(statuses.size()));
  // Memory stayed at the credit windows, not the bodies (a sanitizer's
  // allocator quarantines freed memory: reported there, not checked).
  MESSAGE("grok-server peak RSS " << s.server->peak_rss_kib() << " KiB");
  if (rss_caps()) CHECK(s.server->peak_rss_kib() < 96 * 1024);
}

// ---- a tunnel client that stops reading ----------------------------------------

namespace {

double metric(uint16_t api_port, const std::string& series) {
  auto r = request(api_port, "GET", "127.0.0.1", "/metrics");
  auto pos = r.body.find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::stod(r.body.substr(pos + series.size() + 2));
}

}  // namespace

TEST_CASE("a stalled tunnel client: memory stays bounded, the tunnel is cut, other tunnels keep their latency") {
  auto api = free_port();
  stack::options o;
  o.server_section_yaml = "  api_port: " + std::to_string(api) + "\n";
  o.extra_server_yaml = "  max_queued_bytes: 16MiB\n";
  stack s(o);
  fake_client stalled(s.grpc_port, fake_client::options{.bdp_probe = false});
  auto a = stalled.hello(s.opts.token, "stalled", 16u << 20);  // credit for whole 1 MiB uploads
  REQUIRE(a);
  REQUIRE(a->has_accepted());

  int failures = 0;
  auto before = median_latency_ms(s.http_port, s.host(), "/", 30, &failures);
  CHECK(failures == 0);
  auto rss_before = s.server->rss_kib();
  stalled.stop_reading();

  constexpr size_t uploads = 200;
  constexpr size_t upload_size = 1 << 20;
  std::vector<std::unique_ptr<connection>> conns;
  for (size_t i = 0; i < uploads; ++i) {
    conns.push_back(std::make_unique<connection>(s.http_port));
    send_all(*conns.back(), "POST /upload HTTP/1.1\r\nHost: stalled.localhost\r\nContent-Length: " + std::to_string(upload_size) + "\r\n\r\n");
  }
  std::string piece(64 * 1024, 'u');
  // Phase 1: 12 MiB toward the stalled client, under the 16 MiB cap (socket
  // and HTTP/2 buffers take part of it; the rest waits in the server's queue).
  constexpr size_t phase1 = 48;
  for (size_t i = 0; i < phase1; ++i)
    for (int k = 0; k < 4; ++k) send_all(*conns[i], piece);
  const std::string queued_series = "grok_tunnel_queued_bytes{tunnel=\"stalled\"}";
  double queued = 0;
  for (auto deadline = clock::now() + 30s; clock::now() < deadline && queued < 1024 * 1024;) {
    queued = metric(api, queued_series);
    if (queued < 1024 * 1024) std::this_thread::sleep_for(100ms);  // poll the gauge
  }
  MESSAGE("queued toward the stalled client: " << queued << " bytes");
  CHECK(queued >= 1024 * 1024);
  // The other tunnel while the stalled one holds megabytes queued.
  auto during = median_latency_ms(s.http_port, s.host(), "/", 30, &failures);
  CHECK(failures == 0);
  MESSAGE("median latency of the other tunnel: before " << before << " ms, during the stall " << during << " ms");
  CHECK(during <= std::max(5 * before, before + 20.0));

  // Phase 2: the rest of all 200 uploads; the queue passes its cap and the tunnel is cut.
  std::vector<std::thread> senders;
  for (size_t t = 0; t < 8; ++t)
    senders.emplace_back([&, t] {
      for (size_t i = t; i < uploads; i += 8) {
        size_t already = i < phase1 ? 4 : 0;
        for (size_t k = already; k < upload_size / piece.size(); ++k) send_all(*conns[i], piece);
      }
    });
  for (auto& t : senders) t.join();
  // The cut comes as the queue passes max_queued_bytes: by at most the frame that passed it.
  auto cut = s.server->wait_for_line(std::regex(R"((\d+) bytes queued, client is not reading; closing)"), 30s);
  REQUIRE(cut);
  const uint64_t queue_cap = 16ull << 20, max_frame = 64 << 10;
  MESSAGE("the tunnel was cut with " << (*cut)[1] << " bytes queued (max_queued_bytes " << queue_cap << ")");
  CHECK(std::stoull((*cut)[1]) > queue_cap);
  CHECK(std::stoull((*cut)[1]) <= queue_cap + max_frame);
  size_t answered_502 = 0, closed = 0;
  for (auto& c : conns) {
    auto got = read_until_closed(*c, 15s);
    if (got.closed) ++closed;
    auto responses = parse_responses(got.bytes);
    if (!responses.empty()) {
      CHECK(responses.front().status == 502);
      if (responses.front().status == 502) ++answered_502;
    }
  }
  MESSAGE(answered_502 << " of " << uploads << " uploads answered 502, the rest closed");
  CHECK(closed == uploads);
  auto peak = s.server->peak_rss_kib();
  MESSAGE("grok-server RSS before " << rss_before << " KiB, peak " << peak << " KiB");
  // 200 MiB were offered. What may be held: the queue up to its cap; two 64 KiB
  // buffers on each of the 200 public connections; and 32 MiB for frames read but not
  // yet on the tunnel's queue, gRPC's write in flight and the allocator (measured
  // 51-68 MiB of growth in all; with the cap at 32 MiB it grows by ~82 MiB).
  const uint64_t allowed_kib = queue_cap / 1024 + uploads * 128 + 32 * 1024;
  MESSAGE("grok-server RSS grew by " << (peak - rss_before) << " KiB (allowed " << allowed_kib << " KiB)");
  if (rss_caps()) {
    CHECK(peak - rss_before < allowed_kib);
    CHECK(peak < 128 * 1024);
  }
  auto after = median_latency_ms(s.http_port, s.host(), "/", 10, &failures);
  CHECK(failures == 0);
  CHECK(after <= std::max(5 * before, before + 20.0));
  CHECK(request(s.http_port, "GET", "stalled.localhost", "/").status == 502);  // offline, within the name grace
}

// ---- races for names and tokens ----------------------------------------------------

TEST_CASE("name races: one winner among parallel claims, no hijack of a live name, wrong tokens all refused") {
  constexpr size_t n = 20;
  stack::options o;
  // Each racer has a token of its own: a session of the same token takes a
  // live name over (test_first_hour.cpp), so racers with one token would
  // each win in turn.
  o.tokens_yaml = "[test-token, other-token";
  for (size_t i = 0; i < n; ++i) o.tokens_yaml += ", racer-" + std::to_string(i);
  o.tokens_yaml += "]";
  stack s(o);
  auto claim_all = [&](const std::vector<std::string>& tokens, const std::string& name) {
    std::vector<std::unique_ptr<fake_client>> clients;
    for (size_t i = 0; i < tokens.size(); ++i) clients.push_back(std::make_unique<fake_client>(s.grpc_port));
    std::barrier sync(static_cast<std::ptrdiff_t>(tokens.size()));
    std::vector<std::optional<pb::Frame>> answers(tokens.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < tokens.size(); ++i)
      threads.emplace_back([&, i] {
        sync.arrive_and_wait();
        answers[i] = clients[i]->hello(tokens[i], name);
      });
    for (auto& t : threads) t.join();
    return std::make_pair(std::move(clients), std::move(answers));
  };

  {
    INFO("N clients claiming one free name at once");
    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      std::vector<std::string> tokens;
      for (size_t i = 0; i < n; ++i) tokens.push_back("racer-" + std::to_string(i));
      auto name = "race" + std::to_string(round);
      auto [clients, answers] = claim_all(tokens, name);
      size_t won = 0, taken = 0, winner = 0;
      for (size_t i = 0; i < n; ++i) {
        REQUIRE(answers[i]);
        if (answers[i]->has_accepted()) {
          ++won;
          winner = i;
          CHECK(answers[i]->accepted().name() == name);
        } else if (answers[i]->refused().reason() == pb::Refused::NAME_TAKEN) {
          ++taken;
          CHECK(contains(answers[i]->refused().message(), "already in use"));
        }
      }
      CHECK(won == 1);
      CHECK(taken == n - 1);
      // Public requests reach the winner and only the winner.
      connection c(s.http_port);
      c.send("GET /who HTTP/1.1\r\nHost: " + name + ".localhost\r\n\r\n");
      auto head = clients[winner]->next_of(pb::Frame::kRequestHead, 10s);
      REQUIRE(head);
      clients[winner]->send({response_head(head->exchange_id(), 200, {}, 6, false), data_frame(head->exchange_id(), "winner", true)});
      auto r = c.read_response(10s);
      CHECK(r.status == 200);
      CHECK(r.body == "winner");
      for (size_t i = 0; i < n; ++i)
        if (i != winner) CHECK(clients[i]->wait_closed(10s));
    }
  }
  {
    INFO("a live name cannot be taken by another token, whatever its case");
    for (auto [token, name] : std::vector<std::pair<std::string, std::string>>{
             {"other-token", "app"}, {"racer-0", "app"}, {"other-token", "APP"}, {"racer-1", "App"}}) {
      CAPTURE(token);
      CAPTURE(name);
      fake_client f(s.grpc_port);
      auto answer = f.hello(token, name);
      REQUIRE(answer);
      REQUIRE(answer->has_refused());
      CHECK(answer->refused().reason() == pb::Refused::NAME_TAKEN);
      CHECK(f.wait_closed(10s));
    }
    // Still the real tunnel answering.
    auto r = request(s.http_port, "GET", s.host(), "/");
    CHECK(r.status == 200);
    CHECK(r.body == "Hello from grok-demo-upstream\n");
  }
  {
    INFO("wrong tokens in parallel are all refused and hold nothing");
    std::vector<std::string> tokens;
    for (size_t i = 0; i < n; ++i) {
      switch (i % 5) {
        case 0: tokens.push_back("wrong-token-" + std::to_string(i) + "-zq9x"); break;
        case 1: tokens.push_back("test-toke"); break;
        case 2: tokens.push_back("test-token-"); break;
        case 3: tokens.push_back("TEST-TOKEN"); break;
        default: tokens.push_back(""); break;
      }
    }
    auto [clients, answers] = claim_all(tokens, "wrong");
    for (size_t i = 0; i < n; ++i) {
      CAPTURE(i);
      REQUIRE(answers[i]);
      REQUIRE(answers[i]->has_refused());
      // BAD_TOKEN, or LIMIT once failed attempts per address are rate limited.
      auto reason = answers[i]->refused().reason();
      CHECK((reason == pb::Refused::BAD_TOKEN || reason == pb::Refused::LIMIT));
      CHECK(clients[i]->wait_closed(10s));
    }
    CHECK(request(s.http_port, "GET", "wrong.localhost", "/").status == 404);  // never registered
    CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
    // Tokens never appear in the server's log.
    CHECK(s.server->count_lines_containing("zq9x") == 0);
    CHECK(s.server->count_lines_containing("test-token") == 0);
    CHECK(s.server->count_lines_containing("other-token") == 0);
  }
}

TEST_CASE("tunnel port: an address past tunnels.max_connections_per_ip is closed at accept; silent ones go at hello_timeout") {
  auto api = free_port();
  stack::options o;
  o.start_client = false;
  o.server_section_yaml = "  api_port: " + std::to_string(api) + "\n";
  o.extra_server_yaml = "  max_connections_per_ip: 4\n  hello_timeout: 1s\n";
  stack s(o);
  std::vector<std::unique_ptr<connection>> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(std::make_unique<connection>(s.grpc_port));
  // Each admitted one gets the server's HTTP/2 preface; the fifth only an EOF, at once.
  for (auto& c : idle) CHECK_FALSE(c->read_piece(scaled(2s)).bytes.empty());
  connection over(s.grpc_port);
  auto t0 = clock::now();
  CHECK(over.wait_closed(scaled(1s)));
  CHECK(clock::now() - t0 < scaled(500ms));
  CHECK(sample(metrics_text(api), "grok_tunnel_connections_refused_total{reason=\"per_ip\"}") == 1);
  CHECK(sample(metrics_text(api), "grok_tunnel_connections_active") == 4);
  // The silent ones are closed once hello_timeout passes (1 s here), ...
  for (auto& c : idle) CHECK(c->wait_closed(scaled(3s)));
  // ... which frees the address: a real client gets its tunnel.
  s.start_client("app");
  CHECK(request(s.http_port, "GET", s.host(), "/").status == 200);
  CHECK(s.server->count_lines_containing("refusing connections from 127.0.0.1") == 1);
}
