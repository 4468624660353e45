#include "harness.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace grok::test {

namespace {

int remaining_ms(clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

bool iequal(const std::string& a, const std::string& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

double env_number(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  double d = std::strtod(v, &end);
  return end != v && *end == '\0' ? d : fallback;
}

// Lines that start a sanitizer report in a process's output.
bool starts_sanitizer_report(const std::string& l) {
  for (const char* m : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                        "ERROR: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer", ": runtime error: ",
                        "AddressSanitizer:DEADLYSIGNAL", "ThreadSanitizer:DEADLYSIGNAL"})
    if (l.find(m) != std::string::npos) return true;
  return false;
}

}  // namespace

const char* sanitizer() {
#if defined(__SANITIZE_ADDRESS__)
  return "address";
#elif defined(__SANITIZE_THREAD__)
  return "thread";
#else
  return "";
#endif
}

double time_factor() {
  static const double f = [] {
    double fallback = std::string(sanitizer()) == "thread" ? 8.0 : std::string(sanitizer()) == "address" ? 3.0 : 1.0;
    return std::max(1.0, env_number("GROK_TEST_TIME_FACTOR", fallback));
  }();
  return f;
}

uint64_t bulk_bytes(uint64_t normal) {
  static const double cap = env_number("GROK_TEST_BULK_BYTES", *sanitizer() ? double(64ull << 20) : 0.0);
  return cap > 0 && cap < double(normal) ? static_cast<uint64_t>(cap) : normal;
}

bool rss_caps() {
  static const bool on = env_number("GROK_TEST_RSS_CAPS", *sanitizer() ? 0.0 : 1.0) != 0.0;
  return on;
}

bool check_test_overrides() {
  std::vector<std::string> set;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string_view(*e).starts_with("GROK_TEST_")) set.emplace_back(*e);
  if (set.empty()) return true;
  bool allowed = *sanitizer() || (std::getenv("CI") != nullptr && *std::getenv("CI") != '\0');
  std::fprintf(stderr, "\n*** integration tests: GROK_TEST_* overrides in the environment weaken what is checked:\n");
  for (auto& e : set) std::fprintf(stderr, "***   %s\n", e.c_str());
  if (allowed) {
    std::fprintf(stderr, "*** honoured (%s)\n\n", *sanitizer() ? "sanitizer build" : "CI is set");
  } else {
    std::fprintf(stderr,
                 "*** refused: a plain build runs at full size and strictness; these are honoured only in\n"
                 "*** sanitizer builds (GROK_SANITIZE) or with CI set. Unset them to run the suite.\n\n");
  }
  return allowed;
}

std::string binary(const char* name) { return std::string(GROK_BIN_DIR) + "/" + name; }

// ---- process -----------------------------------------------------------------

process::process(std::vector<std::string> argv, std::vector<std::string> env)
    : name_(std::filesystem::path(argv.at(0)).filename().string()) {
  // Everything the child needs is built before fork(): tests start processes
  // from several threads at once, and a forked child that allocates can
  // block forever on a malloc lock another thread held at the fork.
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto name = entry.substr(0, entry.find('=') + 1);
    bool overridden = std::any_of(env.begin(), env.end(), [&](const std::string& o) { return o.starts_with(name); });
    if (!overridden) environment.emplace_back(entry);
  }
  environment.insert(environment.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // Only async-signal-safe calls from here to exec.
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    setpgid(0, 0);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(fds[1]);
  out_fd_ = fds[0];
  reader_ = std::thread([this] { reader(); });
}

process::~process() {
  if (running()) {
    signal(SIGKILL);
    wait_exit(5s);
  }
  if (reader_.joinable()) reader_.join();
  if (out_fd_ >= 0) close(out_fd_);
  check_sanitizer_report();
}

std::vector<std::string> process::sanitizer_report() {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (size_t i = 0; i < lines_.size(); ++i) {
    if (!starts_sanitizer_report(lines_[i])) continue;
    // The report and its stacks: up to the next blank line after a SUMMARY, at most 200 lines.
    size_t end = std::min(lines_.size(), i + 200);
    for (; i < end; ++i) {
      out.push_back(lines_[i]);
      if (lines_[i].rfind("SUMMARY: ", 0) == 0) break;
    }
  }
  return out;
}

// Runs once the output is complete (the reader saw EOF): a report fails the running test.
void process::check_sanitizer_report() {
  if (report_checked_) return;
  report_checked_ = true;
  auto report = sanitizer_report();
  if (report.empty()) return;
  std::string text;
  for (auto& l : report) text += l + "\n";
  if (doctest::is_running_in_test) {
    FAIL_CHECK(name_ << " (pid " << pid_ << ") printed a sanitizer report:\n" << text);
  } else {
    std::fprintf(stderr, "%s (pid %d) printed a sanitizer report outside a test:\n%s", name_.c_str(), pid_, text.c_str());
    std::_Exit(23);
  }
}

void process::reader() {
  std::string partial;
  char buf[4096];
  for (;;) {
    auto n = read(out_fd_, buf, sizeof buf);
    if (n <= 0) break;
    partial.append(buf, static_cast<size_t>(n));
    size_t pos;
    std::lock_guard lk(mu_);
    auto now = clock::now();
    while ((pos = partial.find('\n')) != std::string::npos) {
      lines_.push_back(partial.substr(0, pos));
      times_.push_back(now);
      partial.erase(0, pos + 1);
    }
    cv_.notify_all();
  }
  std::lock_guard lk(mu_);
  if (!partial.empty()) {
    lines_.push_back(partial);
    times_.push_back(clock::now());
  }
  eof_ = true;
  cv_.notify_all();
}

std::optional<std::smatch> process::wait_for_line(const std::regex& re, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  size_t checked = 0;
  auto deadline = clock::now() + scaled(timeout);
  static thread_local std::string keep;
  for (;;) {
    for (; checked < lines_.size(); ++checked) {
      keep = lines_[checked];
      std::smatch m;
      if (std::regex_search(keep, m, re)) return m;
    }
    if (eof_) return std::nullopt;
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && checked == lines_.size()) return std::nullopt;
  }
}

bool process::wait_for_text(const std::string& text, std::chrono::milliseconds timeout) {
  return wait_for_count(text, 1, timeout);
}

std::vector<std::string> process::lines() {
  std::lock_guard lk(mu_);
  return lines_;
}

std::vector<std::pair<clock::time_point, std::string>> process::timed_lines() {
  std::lock_guard lk(mu_);
  std::vector<std::pair<clock::time_point, std::string>> out;
  for (size_t i = 0; i < lines_.size(); ++i) out.emplace_back(times_[i], lines_[i]);
  return out;
}

size_t process::count_locked(const std::string& text) const {
  return static_cast<size_t>(
      std::count_if(lines_.begin(), lines_.end(), [&](const std::string& l) { return l.find(text) != std::string::npos; }));
}

size_t process::count_lines_containing(const std::string& text) {
  std::lock_guard lk(mu_);
  return count_locked(text);
}

bool process::wait_for_count(const std::string& text, size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, scaled(timeout), [&] { return eof_ || count_locked(text) >= n; });
  return count_locked(text) >= n;
}

void process::signal(int sig) {
  signalled_ = true;
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

std::optional<int> process::wait_exit(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  auto deadline = clock::now() + scaled(timeout);
  for (;;) {
    int st = 0;
    auto r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      // The exit can be reaped before the reader has drained the pipe: wait (bounded, a
      // grandchild may hold the pipe open) so lines() holds everything the process printed.
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, scaled(5s), [&] { return eof_; });
      return status_;
    }
    if (clock::now() >= deadline) return std::nullopt;
    // Polling a child's exit has no fd to wait on; 5 ms steps keep it cheap.
    std::this_thread::sleep_for(5ms);
  }
}

bool process::running() { return pid_ > 0 && !wait_exit(0ms); }

static uint64_t status_field(int pid, const char* key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(std::strlen(key)));
  }
  return 0;
}

uint64_t process::peak_rss_kib() { return status_field(pid_, "VmHWM:"); }
uint64_t process::rss_kib() { return status_field(pid_, "VmRSS:"); }

// ---- connection ----------------------------------------------------------------

connection::connection(uint16_t port, std::chrono::milliseconds timeout, const std::string& source) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (!source.empty()) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    if (inet_pton(AF_INET, source.c_str(), &from.sin_addr) != 1) throw std::runtime_error("bad source address " + source);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0)
      throw std::runtime_error("bind to " + source + " failed: " + std::string(strerror(errno)));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS)
    throw std::runtime_error("connect failed: " + std::string(strerror(errno)));
  pollfd p{fd_, POLLOUT, 0};
  if (poll(&p, 1, static_cast<int>(scaled(timeout).count())) != 1) throw std::runtime_error("connect timed out");
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) throw std::runtime_error("connect failed: " + std::string(strerror(err)));
}

connection::~connection() {
  if (fd_ >= 0) close(fd_);
}

void connection::send(const std::string& bytes) {
  size_t off = 0;
  auto deadline = clock::now() + scaled(30s);
  while (off < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      throw std::runtime_error("send failed: " + std::string(strerror(errno)));
    pollfd p{fd_, POLLOUT, 0};
    if (poll(&p, 1, remaining_ms(deadline)) != 1) throw std::runtime_error("send timed out");
  }
}

bool connection::fill(clock::time_point deadline) {
  char tmp[65536];
  for (;;) {
    auto n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, remaining_ms(deadline)) != 1) return false;
  }
}

std::string connection::read_some(std::chrono::milliseconds timeout) {
  if (buf_.empty()) fill(clock::now() + scaled(timeout));
  std::string out;
  out.swap(buf_);
  return out;
}

connection::piece connection::read_piece(std::chrono::milliseconds timeout) {
  piece p;
  if (buf_.empty()) {
    auto deadline = clock::now() + scaled(timeout);
    char tmp[65536];
    for (;;) {
      auto n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<size_t>(n));
        break;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        p.eof = true;
        break;
      }
      pollfd q{fd_, POLLIN, 0};
      if (poll(&q, 1, remaining_ms(deadline)) != 1) break;  // timed out
    }
  }
  p.bytes.swap(buf_);
  return p;
}

bool connection::wait_closed(std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + scaled(timeout);
  char tmp[65536];
  for (;;) {
    auto n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return true;
    if (n > 0) continue;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, remaining_ms(deadline)) != 1) return false;
  }
}

void connection::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

std::string connection::read_line(clock::time_point deadline) {
  for (;;) {
    auto pos = buf_.find("\r\n");
    if (pos != std::string::npos) {
      auto line = buf_.substr(0, pos);
      buf_.erase(0, pos + 2);
      return line;
    }
    if (!fill(deadline)) throw std::runtime_error("connection closed or timed out while reading a line");
  }
}

response connection::read_response(std::chrono::milliseconds timeout, bool head_request,
                                   const std::function<void(const char*, size_t)>& sink) {
  auto deadline = clock::now() + scaled(timeout);
  response r;
  for (;;) {
    auto status_line = read_line(deadline);
    std::istringstream ss(status_line);
    ss >> r.version >> r.status;
    std::getline(ss, r.reason);
    if (!r.reason.empty() && r.reason.front() == ' ') r.reason.erase(0, 1);
    r.headers.clear();
    for (;;) {
      auto line = read_line(deadline);
      if (line.empty()) break;
      auto colon = line.find(':');
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers.push_back({line.substr(0, colon), value});
    }
    if (r.status >= 200 || r.status == 101) break;  // skip interim responses
  }
  auto deliver = [&](const char* p, size_t n) {
    if (sink)
      sink(p, n);
    else
      r.body.append(p, n);
  };
  if (head_request || r.status == 204 || r.status == 304 || r.status == 101) return r;
  if (iequal(r.get("transfer-encoding"), "chunked")) {
    for (;;) {
      auto size_line = read_line(deadline);
      size_t size = std::stoul(size_line, nullptr, 16);
      if (size == 0) {
        while (!read_line(deadline).empty()) {
        }
        break;
      }
      while (buf_.size() < size + 2) {
        if (sink && buf_.size() > 0 && buf_.size() <= size) {
          deliver(buf_.data(), buf_.size());
          size -= buf_.size();
          buf_.clear();
        }
        if (buf_.size() >= size + 2) break;
        if (!fill(deadline)) throw std::runtime_error("closed inside a chunk");
      }
      deliver(buf_.data(), size);
      buf_.erase(0, size + 2);
    }
  } else if (!r.get("content-length").empty()) {
    uint64_t left = std::stoull(r.get("content-length"));
    while (left > 0) {
      if (buf_.empty() && !fill(deadline)) throw std::runtime_error("closed before the whole body");
      auto n = std::min<uint64_t>(left, buf_.size());
      deliver(buf_.data(), n);
      buf_.erase(0, n);
      left -= n;
    }
  } else {
    for (;;) {
      if (!buf_.empty()) {
        deliver(buf_.data(), buf_.size());
        buf_.clear();
      }
      if (!fill(deadline)) break;
    }
  }
  return r;
}

std::string response::get(const std::string& name) const {
  for (auto& h : headers)
    if (iequal(h.name, name)) return h.value;
  return {};
}

size_t response::count(const std::string& name) const {
  return std::count_if(headers.begin(), headers.end(), [&](const header& h) { return iequal(h.name, name); });
}

response request_from(const std::string& source, uint16_t port, const std::string& method, const std::string& host,
                      const std::string& target, const std::vector<header>& headers, std::chrono::milliseconds timeout) {
  connection c(port, 5s, source);
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n";
  for (auto& h : headers) req += h.name + ": " + h.value + "\r\n";
  c.send(req + "\r\n");
  return c.read_response(timeout, method == "HEAD");
}

response request(uint16_t port, const std::string& method, const std::string& host, const std::string& target,
                 const std::string& body, const std::vector<header>& headers, std::chrono::milliseconds timeout) {
  connection c(port);
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n";
  bool has_len = false;
  for (auto& h : headers) {
    req += h.name + ": " + h.value + "\r\n";
    has_len = has_len || iequal(h.name, "content-length") || iequal(h.name, "transfer-encoding");
  }
  if (!has_len && (!body.empty() || method == "POST" || method == "PUT"))
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  c.send(req);
  return c.read_response(timeout, method == "HEAD");
}

// ---- hashing -------------------------------------------------------------------

sha256::sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr); }
sha256::~sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }
void sha256::update(const char* p, size_t n) { EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), p, n); }
std::string sha256::hex() {
  unsigned char d[32];
  unsigned len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), d, &len);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += digits[d[i] >> 4];
    out += digits[d[i] & 15];
  }
  return out;
}

std::string sha256_hex(const std::string& data) {
  sha256 h;
  h.update(data.data(), data.size());
  return h.hex();
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

void fill_pattern(char* p, size_t n, uint64_t offset) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<char>(((offset + i) * 31 + 7) & 0xff);
}

void send_pattern(connection& c, uint64_t size, sha256* hash) {
  std::string chunk;
  for (uint64_t off = 0; off < size; off += chunk.size()) {
    chunk.resize(std::min<uint64_t>(1 << 20, size - off));
    fill_pattern(chunk.data(), chunk.size(), off);
    if (hash) hash->update(chunk.data(), chunk.size());
    c.send(chunk);
  }
}

void check_bulk_both_ways(uint16_t port, const std::string& host, uint64_t size, const std::string& sha_hex,
                          std::chrono::milliseconds timeout) {
  connection down(port);
  down.send("GET /download?size=" + std::to_string(size) + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n");
  sha256 h;
  uint64_t got = 0;
  auto r = down.read_response(timeout, false, [&](const char* p, size_t n) {
    h.update(p, n);
    got += n;
  });
  CHECK(r.status == 200);
  CHECK(got == size);
  CHECK(h.hex() == sha_hex);
  connection up(port);
  up.send("POST /upload HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n");
  send_pattern(up, size);
  auto u = up.read_response(timeout);
  CHECK(u.status == 200);
  CHECK(u.body == std::to_string(size) + " " + sha_hex);
}

// ---- stack ----------------------------------------------------------------------

stack::stack() : stack(options{}) {}

stack::stack(options o) : opts(std::move(o)) {
  char tmpl[] = "/tmp/grok-it-XXXXXX";
  dir = mkdtemp(tmpl);
  std::vector<std::string> upstream_argv{binary("grok-demo-upstream"), "--port", "0"};
  upstream_argv.insert(upstream_argv.end(), opts.upstream_args.begin(), opts.upstream_args.end());
  upstream = std::make_unique<process>(std::move(upstream_argv));
  auto m = upstream->wait_for_line(std::regex(R"(listening 127\.0\.0\.1:(\d+))"), 10s);
  if (!m) throw std::runtime_error("grok-demo-upstream did not start");
  upstream_port = static_cast<uint16_t>(std::stoi((*m)[1]));
  for (auto& [name, text] : opts.files) std::ofstream(dir + "/" + name) << text;
  start_server();
  if (opts.start_client) start_client(opts.name);
}

void stack::write_server_config() {
  std::ofstream cfg(config_path() + ".tmp");
  cfg << "server:\n  domain: " << opts.domain << "\n  bind_address: 127.0.0.1\n  http_port: " << http_port
      << "\n  grpc_address: 127.0.0.1\n  grpc_port: " << grpc_port << "\n  drain_timeout: " << opts.drain_timeout << "\n"
      << opts.server_section_yaml << "\ntunnels:\n"
      << (opts.extra_server_yaml.find("name_grace:") == std::string::npos ? "  name_grace: 60s\n" : "")
      << opts.extra_server_yaml << "\nauth:\n  tokens: "
      << (opts.tokens_yaml.empty() ? "[" + opts.token + "]" : opts.tokens_yaml) << "\n"
      << opts.auth_extra_yaml << "\nlogging:\n  level: info\n  format: " << opts.log_format << "\n"
      << opts.top_level_yaml;
  cfg.close();
  std::filesystem::rename(config_path() + ".tmp", config_path());
}

void stack::start_server() {
  write_server_config();
  server = std::make_unique<process>(std::vector<std::string>{binary("grok-server"), "--config", config_path()},
                                     opts.server_env);
  auto m = server->wait_for_line(std::regex(R"(ready: http=127\.0\.0\.1:(\d+) grpc=127\.0\.0\.1:(\d+))"), 15s);
  if (!m) throw std::runtime_error("grok-server did not start");
  http_port = static_cast<uint16_t>(std::stoi((*m)[1]));
  grpc_port = static_cast<uint16_t>(std::stoi((*m)[2]));
}

haproxy::haproxy(const std::string& dir, const std::string& config, uint16_t port) {
  auto path = dir + "/haproxy.cfg";
  std::ofstream(path) << config;
  p = std::make_unique<process>(std::vector<std::string>{"/usr/sbin/haproxy", "-db", "-f", path});
  if (!wait_listening(port, 10s)) throw std::runtime_error("haproxy did not start listening on port " + std::to_string(port));
}

haproxy::~haproxy() {
  p->signal(SIGTERM);
  p->wait_exit(5s);
}

bool wait_listening(uint16_t port, std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + scaled(timeout);
  for (;;) {
    try {
      connection probe(port, 1s);
      return true;
    } catch (const std::exception&) {
      if (clock::now() > deadline) return false;
      std::this_thread::sleep_for(20ms);  // polling a condition: the listener being up
    }
  }
}

uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

etcd_cluster::etcd_cluster(int n) {
  char tmpl[] = "/tmp/grok-etcd-XXXXXX";
  dir_ = mkdtemp(tmpl);
  for (int i = 0; i < n; ++i) {
    member m;
    m.name = "m" + std::to_string(i);
    m.client_port = free_port();
    m.peer_port = free_port();
    initial_cluster_ += (i ? "," : "") + m.name + "=http://127.0.0.1:" + std::to_string(m.peer_port);
    members_.push_back(std::move(m));
  }
  // Started together: each waits for the others to elect a leader.
  for (auto& m : members_) launch(m, true);
  for (auto& m : members_)
    if (!m.proc->wait_for_text("ready to serve client requests", 20s))
      throw std::runtime_error("etcd member " + m.name + " did not start (is etcd-server installed?)");
  for (auto& m : members_)
    if (!wait_listening(m.client_port, 10s)) throw std::runtime_error("etcd member " + m.name + " is not listening");
}

void etcd_cluster::launch(member& m, bool fresh) {
  auto client = "http://127.0.0.1:" + std::to_string(m.client_port);
  auto peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  std::vector<std::string> argv{"/usr/bin/etcd", "--name", m.name, "--data-dir", dir_ + "/" + m.name,
                                "--listen-client-urls", client, "--advertise-client-urls", client,
                                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                "--initial-cluster", initial_cluster_, "--initial-cluster-token", dir_,
                                "--initial-cluster-state", fresh ? "new" : "existing",
                                // Elections in a fraction of a second, as on a LAN.
                                "--heartbeat-interval", "50", "--election-timeout", "500"};
  m.proc = std::make_unique<process>(std::move(argv));
}

etcd_cluster::~etcd_cluster() {
  for (auto& m : members_)
    if (m.proc && m.proc->running()) {
      m.proc->signal(SIGTERM);
      m.proc->wait_exit(10s);
    }
  members_.clear();
  std::filesystem::remove_all(dir_);
}

std::string etcd_cluster::endpoints_yaml() const {
  std::string out;
  for (const auto& m : members_) out += (out.empty() ? "" : ", ") + ("127.0.0.1:" + std::to_string(m.client_port));
  return out;
}

void etcd_cluster::stop(int i) {
  auto& m = members_.at(static_cast<size_t>(i));
  if (!m.proc) return;
  m.proc->signal(SIGTERM);
  if (!m.proc->wait_exit(10s)) throw std::runtime_error("etcd member " + m.name + " did not stop");
  m.proc.reset();
}

void etcd_cluster::start(int i) {
  auto& m = members_.at(static_cast<size_t>(i));
  launch(m, false);
  if (!m.proc->wait_for_text("ready to serve client requests", 20s) || !wait_listening(m.client_port, 10s))
    throw std::runtime_error("etcd member " + m.name + " did not start again");
}

void stack::start_client(const std::string& name) {
  std::vector<std::string> argv{binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(upstream_port),
                                "--subdomain", name, "--server", "127.0.0.1:" + std::to_string(grpc_port), "--token",
                                opts.token, "--log-level", opts.client_log_level};
  argv.insert(argv.end(), opts.client_args.begin(), opts.client_args.end());
  client = std::make_unique<process>(argv, opts.client_env);
  auto m = client->wait_for_line(std::regex(R"(Forwarding\s+(http://\S+))"), 15s);
  if (!m) throw std::runtime_error("grok did not come online");
  public_url = (*m)[1];
}

void stack::stop_client() {
  if (!client) return;
  client->signal(SIGINT);
  client->wait_exit(10s);
  client.reset();
}

stack::~stack() {
  // Sanitizer builds end the client and the local service the way a user would, so
  // that LeakSanitizer runs in them at exit (a SIGKILL skips it).
  if (*sanitizer()) {
    stop_client();
    if (upstream && upstream->running()) {
      upstream->signal(SIGTERM);
      upstream->wait_exit(10s);
    }
  }
  client.reset();
  if (server) {
    // SIGTERM drains and exits 0 (README, "Drain"): any other end is a failure of the
    // test that ran this stack, and so is a server that ended without being told to.
    // One the test signalled itself (kill -9, its own SIGTERM) is the test's to check.
    std::string what;
    if (server->running()) {
      server->signal(SIGTERM);
      auto status = server->wait_exit(10s);
      if (!status)
        what = "did not exit within 10 s of SIGTERM";
      else if (*status != 0)
        what = "exited with status " + std::to_string(*status) + " on SIGTERM";
    } else if (!server->signalled()) {
      what = "ended on its own with status " + std::to_string(server->wait_exit(0ms).value_or(-1));
    }
    if (!what.empty() && doctest::is_running_in_test) {
      std::string tail;
      auto lines = server->lines();
      for (size_t i = lines.size() > 20 ? lines.size() - 20 : 0; i < lines.size(); ++i) tail += lines[i] + "\n";
      FAIL_CHECK("grok-server (pid " << server->pid() << ") " << what << "; its last lines:\n" << tail);
    }
  }
  server.reset();
  upstream.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

void freeze(process& p) {
  p.signal(SIGSTOP);
  auto until = clock::now() + scaled(5s);
  for (;;) {
    bool all_stopped = true;
    for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(p.pid()) + "/task")) {
      std::ifstream stat(e.path() / "stat");
      std::string text((std::istreambuf_iterator<char>(stat)), {});
      auto close = text.rfind(')');
      if (close == std::string::npos || close + 2 >= text.size() || text[close + 2] != 'T') all_stopped = false;
    }
    if (all_stopped) return;
    if (clock::now() >= until) throw std::runtime_error("pid " + std::to_string(p.pid()) + " did not stop");
    std::this_thread::sleep_for(1ms);
  }
}

std::string metrics_text(uint16_t api_port) {
  auto r = request(api_port, "GET", "127.0.0.1", "/metrics");
  if (r.status != 200) throw std::runtime_error("/metrics answered " + std::to_string(r.status));
  return r.body;
}

double sample(const std::string& text, const std::string& series) {
  auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::stod(text.substr(pos + series.size() + 2));
}

notify_socket::notify_socket() {
  char tmpl[] = "/tmp/grok-notify-XXXXXX";
  dir_ = mkdtemp(tmpl);
  path_ = dir_ + "/notify.sock";
  fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("cannot bind " + path_);
}

notify_socket::~notify_socket() {
  close(fd_);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

bool notify_socket::receive(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  char buf[4096];
  auto n = recv(fd_, buf, sizeof buf, 0);
  if (n > 0) messages.emplace_back(buf, static_cast<size_t>(n));
  return n > 0;
}

bool notify_socket::wait_for(const std::string& what, std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + scaled(timeout);
  for (;;) {
    for (auto& m : messages)
      if (m.find(what) != std::string::npos) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) return false;
    receive(left);
  }
}

int notify_socket::count_within(const std::string& what, std::chrono::milliseconds window) {
  int n = 0;
  auto deadline = clock::now() + window;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) return n;
    auto before = messages.size();
    if (receive(left) && messages.size() > before && messages.back().find(what) != std::string::npos) ++n;
  }
}

}  // namespace grok::test
