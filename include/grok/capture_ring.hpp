#pragma once
// What the request inspector keeps: one record per exchange (its head, the
// first bytes of each body, the answer, timings), in a ring with a total
// memory cap that drops the oldest records first. Pure: no sockets; any
// thread may call it (one mutex guards the ring while pointers are copied).

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace grok {

using header_list = std::vector<std::pair<std::string, std::string>>;

/// The first bytes of a body, its full size and whether bytes were left out.
struct captured_body {
  std::string bytes;  ///< at most the per-body cap
  uint64_t size = 0;  ///< every byte seen, kept or not
  bool truncated() const { return size > bytes.size(); }
  /// Counts `n` bytes at `p`, keeping what fits under `cap`.
  void append(const char* p, size_t n, uint64_t cap) {
    size += n;
    if (bytes.size() < cap) bytes.append(p, static_cast<size_t>(std::min<uint64_t>(n, cap - bytes.size())));
  }
};

/// One exchange as the inspector shows it.
struct captured_exchange {
  enum class kind { http, websocket, sse, tcp };
  enum class state { open, done, failed };
  uint64_t seq = 0;  ///< set by the ring: 1, 2, 3... in arrival order
  std::string tunnel;  ///< the tunnel's name
  kind what = kind::http;
  state where = state::open;
  std::chrono::system_clock::time_point start;
  std::chrono::nanoseconds duration{0};  ///< so far, while open
  std::string remote_addr;               ///< the visitor, as grok-server saw it ("replay" for a replay)
  std::string method;
  std::string target;
  unsigned http_version = 11;
  header_list request_headers;
  captured_body request_body;
  unsigned status = 0;  ///< 0 until the response head
  std::string reason;
  header_list response_headers;
  captured_body response_body;
  std::string error;          ///< why it failed, when it did
  uint64_t replay_of = 0;     ///< seq of the original, for a replay
};

/// "req_" and the sequence number: the id the API and the page use.
std::string capture_id(uint64_t seq);
/// The sequence number of a capture_id, 0 if `id` is not one.
uint64_t capture_seq(const std::string& id);

/// Records newest last in one circular buffer of `max_bytes`, the oldest
/// overwritten first. A record is published once it ends (or earlier, for one
/// shown live) and again as it changes; its latest version replaces the one
/// before. Records are packed into the buffer rather than allocated one by
/// one: tens of thousands of long-lived small allocations left malloc a
/// fragmented heap to search on every request (a third of the client's CPU).
/// The buffer's pages become resident only as records reach them.
class capture_ring {
 public:
  struct limits {
    uint64_t max_bytes = 64ull << 20;  ///< all records together
    uint64_t max_body = 1ull << 20;    ///< each body
  };
  explicit capture_ring(limits l) : limits_(l) {}

  const limits& bounds() const { return limits_; }

  /// Adds a new record; returns its sequence number. May drop old records
  /// (and drops this one at once if it is larger than the whole buffer).
  uint64_t add(const captured_exchange& rec);
  /// Replaces record `seq` with `rec` (seq kept); false when it was dropped meanwhile.
  bool update(uint64_t seq, const captured_exchange& rec);
  /// Record `seq`, or null.
  std::shared_ptr<const captured_exchange> find(uint64_t seq) const;
  /// Newest first, at most `limit` (0 = all).
  std::vector<std::shared_ptr<const captured_exchange>> newest(size_t limit = 0) const;
  /// Calls `f` with each record, newest first, at most `limit` (0 = all), one
  /// unpacked at a time; stops when `f` returns false. The lock is not held
  /// while `f` runs.
  void each_newest(size_t limit, const std::function<bool(const captured_exchange&)>& f) const;
  /// Drops every record (sequence numbers keep counting).
  void clear();
  /// Bytes of the buffer in use (current and replaced versions not yet
  /// overwritten), records held, records dropped to stay within the buffer.
  uint64_t bytes() const;
  size_t size() const;
  uint64_t evicted() const;

  /// Called after every change, outside the lock, with the sequence number
  /// of the record changed (0 after clear()). Set before the first add.
  void on_change(std::function<void(uint64_t)> f) { notify_ = std::move(f); }

 private:
  static constexpr size_t npos = static_cast<size_t>(-1);
  /// Where `need` bytes go, overwriting the oldest regions; npos if they never fit.
  size_t place_locked(size_t need);
  void drop_front_locked();
  /// Writes `packed` for `seq`; false if it was dropped.
  bool store_locked(uint64_t seq, const std::string& packed);
  /// Copies record `seq`'s bytes; false if it is not held.
  bool copy_locked(uint64_t seq, std::string& out) const;

  struct region {  // a written version, in write order
    uint64_t seq;
    size_t offset;
    size_t size;
  };
  struct where {  // a record's current version
    size_t offset = 0;
    size_t size = 0;
    bool live = false;
  };
  limits limits_;
  mutable std::mutex mu_;
  std::unique_ptr<char[]> buf_;  // max_bytes, allocated at the first record
  size_t head_ = 0;              // where the next region starts (before wrapping)
  std::deque<region> order_;     // oldest first
  std::deque<where> index_;      // index_[seq - base_seq_]
  uint64_t base_seq_ = 1;
  uint64_t next_seq_ = 1;
  uint64_t used_ = 0;
  size_t live_ = 0;
  uint64_t evicted_ = 0;
  std::function<void(uint64_t)> notify_;
};

/// One record in one buffer, and back (`seq` is not packed: the ring keeps it).
std::string pack_capture(const captured_exchange& rec);
captured_exchange unpack_capture(std::string_view packed, uint64_t seq);

// ---- the API's JSON (ngrok's agent API shapes where they overlap) ----------

/// What /api/tunnels says about the one tunnel.
struct tunnel_info {
  std::string name;        ///< tunnel name ("app")
  std::string public_url;  ///< empty until the server accepted
  std::string proto;       ///< "http" or "tcp"
  std::string addr;        ///< the local service, "http://127.0.0.1:3000"
};

/// One record as GET /api/requests/http/:id returns it: id, uri, tunnel_name,
/// remote_addr, start (RFC 3339), duration (ns), request {method, proto,
/// headers {name: [values]}, uri, raw (base64)}, response {status,
/// status_code, proto, headers, raw}; plus grok's own fields (seq, kind,
/// state, body sizes and truncation, replay_of, error).
std::string capture_json(const captured_exchange& rec);
/// The list shape: {"uri": "/api/requests/http", "requests": [...]}, in the
/// order given; each record as capture_json without the separate "body"
/// fields ("raw" has them), or, with `summaries`, as capture_summary_json.
std::string capture_list_json(const std::vector<std::shared_ptr<const captured_exchange>>& recs,
                              bool summaries = false);
/// The same for the ring's newest `limit` records (0 = all) of tunnel
/// `tunnel` (empty = any), built one record at a time.
std::string capture_list_json(const capture_ring& ring, size_t limit, const std::string& tunnel, bool summaries);
/// A row of the live list (no bodies): what the SSE stream sends per change.
std::string capture_summary_json(const captured_exchange& rec);
/// {"tunnels": [...], "uri": "/api/tunnels"}.
std::string tunnels_json(const std::vector<tunnel_info>& tunnels, bool inspect);
/// Standard base64 (with padding).
std::string base64_encode(std::string_view bytes);

/// A request to send to the local service again (POST /api/requests/http).
struct replay_request {
  uint64_t seq = 0;      ///< the original
  std::string tunnel;    ///< the original's tunnel: where the replay goes
  bool edited = false;   ///< any of the fields below was given
  std::string method;
  std::string target;
  header_list headers;
  std::string body;
};
/// The "id" of a replay body ({"id": "req_12", ...}) into `seq`; returns an
/// error message, empty when it parsed.
std::string parse_replay_id(std::string_view json, uint64_t& seq);
/// The whole replay body: {"id"} alone sends `original` again; "method",
/// "path" (or "uri"), "headers" ({name: [values]} or [[name, value]...]) and
/// "body" (text) or "body_base64" replace its parts (edit and replay).
/// Returns an error message, empty when it parsed.
std::string parse_replay(std::string_view json, const captured_exchange& original, replay_request& out);

}  // namespace grok
