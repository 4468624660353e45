#pragma once
// Integration-test harness: real processes, real sockets on 127.0.0.1,
// every wait bounded by a deadline.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace grok::test {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

// ---- scaling for sanitizer builds ------------------------------------------------
// A normal build runs every test at full size and strictness. Sanitizer builds
// (GROK_SANITIZE) run the same behaviour checks on less data, with longer waits and
// without RSS caps (shadow memory and ASan's quarantine are not grok's footprint).

/// Size of a bulk transfer: `normal`, or GROK_TEST_BULK_BYTES when that is smaller
/// (default 64 MiB in sanitizer builds).
uint64_t bulk_bytes(uint64_t normal);
/// GROK_TEST_TIME_FACTOR (>= 1; default 1, 3 under ASan, 8 under TSan): every wait in
/// this harness is multiplied by it, and so are the tests' upper bounds on elapsed time.
double time_factor();
template <class Rep, class Period>
std::chrono::milliseconds scaled(std::chrono::duration<Rep, Period> d) {
  return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(
      std::chrono::duration<double, std::milli>(d).count() * time_factor()));
}
/// False in sanitizer builds (or with GROK_TEST_RSS_CAPS=0): RSS caps are then reported, not checked.
bool rss_caps();
/// The sanitizer this harness was built with ("address", "thread"), empty if none.
const char* sanitizer();
/// Prints every GROK_TEST_* override loudly to stderr. They weaken what a test checks,
/// so they are honoured only in sanitizer builds or with CI set; returns false (the
/// suite refuses to run) when one is set in a plain build outside CI.
bool check_test_overrides();

/// A child process whose stdout and stderr are collected line by line.
class process {
 public:
  process(std::vector<std::string> argv, std::vector<std::string> env = {});
  ~process();
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  int pid() const { return pid_; }
  /// Waits until a line matches; returns the match (groups included).
  std::optional<std::smatch> wait_for_line(const std::regex& re, std::chrono::milliseconds timeout);
  /// Waits until some line contains `text`; true if it did in time.
  bool wait_for_text(const std::string& text, std::chrono::milliseconds timeout);
  std::vector<std::string> lines();
  /// Every line with the time the harness read it.
  std::vector<std::pair<clock::time_point, std::string>> timed_lines();
  size_t count_lines_containing(const std::string& text);
  /// Waits until at least `n` lines contain `text`; true if they did in time.
  bool wait_for_count(const std::string& text, size_t n, std::chrono::milliseconds timeout);
  void signal(int sig);
  /// True once signal() was called: the test ended or stopped the process itself.
  bool signalled() const { return signalled_; }
  /// Waits for exit; returns the exit status (or 128+signal), nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  bool running();
  /// VmHWM (peak RSS) and VmRSS of the process in KiB, 0 if gone.
  uint64_t peak_rss_kib();
  uint64_t rss_kib();
  /// Lines of sanitizer reports (ASan, LSan, UBSan, TSan) this process printed.
  std::vector<std::string> sanitizer_report();

 private:
  void reader();
  void check_sanitizer_report();
  /// Lines containing `text`; mu_ held.
  size_t count_locked(const std::string& text) const;
  std::string name_;
  bool report_checked_ = false;
  bool signalled_ = false;
  int pid_ = -1;
  int out_fd_ = -1;
  std::optional<int> status_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  std::vector<clock::time_point> times_;  ///< when each of lines_ was read
  bool eof_ = false;
};

struct header {
  std::string name;
  std::string value;
};

struct response {
  int status = 0;
  std::string reason;
  std::string version;
  std::vector<header> headers;
  std::string body;
  /// First value of a header (case-insensitive), empty if absent.
  std::string get(const std::string& name) const;
  size_t count(const std::string& name) const;
};

/// A blocking TCP connection with a deadline on every operation.
class connection {
 public:
  /// `source`: the local address to connect from (e.g. 127.0.0.2), empty for any.
  explicit connection(uint16_t port, std::chrono::milliseconds timeout = 5s, const std::string& source = "");
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void send(const std::string& bytes);
  /// Reads whatever arrives within the timeout (empty on EOF/timeout).
  std::string read_some(std::chrono::milliseconds timeout);
  struct piece {
    std::string bytes;  ///< what arrived; empty on EOF or timeout
    bool eof = false;   ///< the peer closed (FIN or reset) before anything arrived
  };
  /// Like read_some, but tells EOF (`eof`) from a timeout (no bytes, no eof).
  piece read_piece(std::chrono::milliseconds timeout);
  /// Reads one HTTP response. For bodies, `sink` receives each piece instead
  /// of storing it in response::body when given. `head_request` means no body.
  response read_response(std::chrono::milliseconds timeout, bool head_request = false,
                         const std::function<void(const char*, size_t)>& sink = nullptr);
  /// True if the peer closed (EOF or reset) within the timeout.
  bool wait_closed(std::chrono::milliseconds timeout);
  void shutdown_write();
  int fd() const { return fd_; }

 private:
  bool fill(clock::time_point deadline);
  std::string read_line(clock::time_point deadline);
  int fd_ = -1;
  std::string buf_;
};

/// One HTTP/1.1 request on a fresh connection to 127.0.0.1:port.
response request(uint16_t port, const std::string& method, const std::string& host, const std::string& target,
                 const std::string& body = "", const std::vector<header>& headers = {},
                 std::chrono::milliseconds timeout = 10s);

/// The same from the local address `source` (another loopback address, e.g. 127.0.0.2).
response request_from(const std::string& source, uint16_t port, const std::string& method, const std::string& host,
                      const std::string& target, const std::vector<header>& headers = {},
                      std::chrono::milliseconds timeout = 10s);

std::string sha256_hex(const std::string& data);

/// Incremental SHA-256.
class sha256 {
 public:
  sha256();
  ~sha256();
  void update(const char* p, size_t n);
  std::string hex();

 private:
  void* ctx_;
};

/// The pattern grok-demo-upstream's /download serves: byte i = (i*31+7)&0xff.
void fill_pattern(char* p, size_t n, uint64_t offset);

/// `n` pseudo-random bytes, the same for the same seed.
std::string random_bytes(size_t n, unsigned seed);

/// Sends `size` pattern bytes in 1 MiB pieces, hashing them into `hash` if given.
void send_pattern(connection& c, uint64_t size, sha256* hash = nullptr);

/// Through public port `port` for `host`: `size` bytes of grok-demo-upstream's
/// /download, then the same size POSTed to its /upload, each checked (CHECK)
/// byte-exact against `sha_hex` (the local service's /download-sha for `size`).
void check_bulk_both_ways(uint16_t port, const std::string& host, uint64_t size, const std::string& sha_hex,
                          std::chrono::milliseconds timeout);

/// grok-server + grok-demo-upstream + grok http, wired on OS-chosen ports.
struct stack {
  struct options {
    std::string name = "app";
    std::string token = "test-token";
    std::string extra_server_yaml;   ///< appended under `tunnels:`
    std::string server_section_yaml; ///< appended under `server:`
    std::string drain_timeout = "5s";
    std::string tokens_yaml;         ///< replaces the token list, e.g. "[a, b]"
    std::string auth_extra_yaml;     ///< appended under `auth:`
    std::string top_level_yaml;      ///< extra top-level sections (e.g. `tls:`)
    std::string domain = "localhost";
    std::string log_format = "text";  ///< grok-server's logging.format
    std::vector<std::string> server_env;
    bool start_client = true;
    std::vector<std::string> client_env;
    std::string client_log_level = "info";
    std::vector<std::string> client_args;  ///< extra `grok http` flags, e.g. --inspect-max-memory 1MiB
    /// Files written into the stack's directory before the server starts (name, content).
    std::vector<std::pair<std::string, std::string>> files;
    std::vector<std::string> upstream_args;  ///< extra grok-demo-upstream flags, e.g. --log-requests
  };
  stack();
  explicit stack(options o);
  ~stack();

  void start_server();
  /// Writes grok-server.yaml from opts (the running server re-reads it on SIGHUP).
  void write_server_config();
  std::string config_path() const { return dir + "/grok-server.yaml"; }
  void start_client(const std::string& name);
  void stop_client();
  std::string host() const { return opts.name + "." + opts.domain; }

  options opts;
  std::string dir;
  std::unique_ptr<process> upstream;
  std::unique_ptr<process> server;
  std::unique_ptr<process> client;
  uint16_t upstream_port = 0;
  uint16_t http_port = 0;
  uint16_t grpc_port = 0;
  std::string public_url;
};

std::string binary(const char* name);

/// Waits until 127.0.0.1:port accepts a connection (a third-party server
/// such as haproxy or tinyproxy has started listening); false after `timeout` (scaled).
bool wait_listening(uint16_t port, std::chrono::milliseconds timeout);

/// Debian's haproxy in the foreground with `config` (written to DIR/haproxy.cfg);
/// ready once 127.0.0.1:port accepts. Stopped with SIGTERM when destroyed.
struct haproxy {
  haproxy(const std::string& dir, const std::string& config, uint16_t port);
  ~haproxy();
  std::unique_ptr<process> p;
};

/// A port that was free a moment ago (for settings where 0 means "off").
uint16_t free_port();

/// Sends SIGSTOP and waits until every thread of `p` is stopped (a stop is
/// delivered asynchronously, and a thread still running could act first);
/// throws if that takes longer than 5 s (scaled).
void freeze(process& p);

/// The admin endpoint's /metrics text; throws unless it answers 200.
std::string metrics_text(uint16_t api_port);
/// The value of one sample line of `text` (exact name and labels), or -1.
double sample(const std::string& text, const std::string& series);

/// Debian's etcd (etcd-server) as a cluster of `members` on 127.0.0.1, each
/// with its own data directory; members stop and start again by index.
class etcd_cluster {
 public:
  explicit etcd_cluster(int members = 3);
  ~etcd_cluster();
  etcd_cluster(const etcd_cluster&) = delete;
  etcd_cluster& operator=(const etcd_cluster&) = delete;
  /// "127.0.0.1:P1, 127.0.0.1:P2, ..." for a YAML list.
  std::string endpoints_yaml() const;
  /// SIGTERM, and waits for the member to exit.
  void stop(int i);
  /// Starts a stopped member again on its data; waits until it serves clients.
  void start(int i);
  int size() const { return static_cast<int>(members_.size()); }

 private:
  struct member {
    std::string name;
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    std::unique_ptr<process> proc;
  };
  void launch(member& m, bool fresh);
  std::string dir_;
  std::string initial_cluster_;
  std::vector<member> members_;
};

/// A NOTIFY_SOCKET for a child (sd_notify datagrams), in a temporary directory.
class notify_socket {
 public:
  notify_socket();
  ~notify_socket();
  notify_socket(const notify_socket&) = delete;
  notify_socket& operator=(const notify_socket&) = delete;
  const std::string& path() const { return path_; }
  /// Waits until a message received so far (or within `timeout`) contains `what`.
  bool wait_for(const std::string& what, std::chrono::milliseconds timeout);
  /// Messages containing `what` that arrive within `window` from now.
  int count_within(const std::string& what, std::chrono::milliseconds window);
  std::vector<std::string> messages;

 private:
  /// One datagram within `timeout` into messages; false if none came.
  bool receive(std::chrono::milliseconds timeout);
  std::string dir_;
  std::string path_;
  int fd_ = -1;
};

}  // namespace grok::test
