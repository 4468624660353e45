#include "grok/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iterator>
#include <stdexcept>
#include <string_view>

#include "grok/http_text.hpp"

namespace grok {
namespace {

spdlog::level::level_enum parse_level(const std::string& level) {
  // Only the names the configuration files accept; spdlog's own from_str
  // would also take "warning"/"err" and map anything else to "off".
  static constexpr std::array<std::pair<std::string_view, spdlog::level::level_enum>, 7> levels = {{
      {"trace", spdlog::level::trace},
      {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},
      {"critical", spdlog::level::critical},
      {"off", spdlog::level::off},
  }};
  for (const auto& [n, l] : levels)
    if (n == level) return l;
  throw std::invalid_argument("unknown log level '" + level +
                              "' (expected trace, debug, info, warn, error, critical or off)");
}

std::string_view short_level_name(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

// sd-daemon(3) / syslog priorities.
char journal_priority(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug: return '7';     // LOG_DEBUG
    case spdlog::level::info: return '6';      // LOG_INFO
    case spdlog::level::warn: return '4';      // LOG_WARNING
    case spdlog::level::err: return '3';       // LOG_ERR
    case spdlog::level::critical: return '2';  // LOG_CRIT
    default: return '6';
  }
}

void append(spdlog::memory_buf_t& out, std::string_view s) { out.append(s.data(), s.data() + s.size()); }

// <P>message; a multi-line message repeats the prefix on every line, since
// journald splits the stream at newlines.
class journald_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    char prefix[3] = {'<', journal_priority(msg.level), '>'};
    std::string_view text(msg.payload.data(), msg.payload.size());
    while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    append(dest, std::string_view(prefix, 3));
    for (char c : text) {
      dest.push_back(c);
      if (c == '\n') append(dest, std::string_view(prefix, 3));
    }
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<journald_formatter>(); }
};

// The fields of the line being logged on this thread (log_fields), if any.
thread_local const std::initializer_list<log_field>* current_fields = nullptr;

class json_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    auto since_epoch = msg.time.time_since_epoch();
    auto secs = duration_cast<seconds>(since_epoch);
    auto ms = duration_cast<milliseconds>(since_epoch - secs).count();
    if (secs != cached_second_) {
      // Local time with its offset, e.g. 2024-05-01T12:34:56 / +02:00.
      std::time_t t = static_cast<std::time_t>(secs.count());
      std::tm tm{};
      localtime_r(&t, &tm);
      long off = tm.tm_gmtoff / 60;
      char sign = off < 0 ? '-' : '+';
      if (off < 0) off = -off;
      cached_date_ = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                                 tm.tm_hour, tm.tm_min, tm.tm_sec);
      cached_offset_ = fmt::format("{}{:02}:{:02}", sign, off / 60, off % 60);
      cached_second_ = secs;
    }
    append(dest, R"({"ts":")");
    append(dest, cached_date_);
    fmt::format_to(std::back_inserter(dest), ".{:03}", ms);
    append(dest, cached_offset_);
    append(dest, R"(","level":")");
    append(dest, short_level_name(msg.level));
    append(dest, R"(","logger":)");
    append_json_string(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    append(dest, R"(,"msg":)");
    append_json_string(dest, std::string_view(msg.payload.data(), msg.payload.size()));
    if (current_fields) {
      for (const auto& f : *current_fields) {
        dest.push_back(',');
        append_json_string(dest, f.key);
        dest.push_back(':');
        if (auto* text = std::get_if<std::string_view>(&f.value))
          append_json_string(dest, *text);
        else
          fmt::format_to(std::back_inserter(dest), "{}", std::get<int64_t>(f.value));
      }
    }
    append(dest, "}\n");
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<json_formatter>(); }

 private:
  std::chrono::seconds cached_second_{-1};
  std::string cached_date_;
  std::string cached_offset_;
};

}  // namespace

std::unique_ptr<spdlog::formatter> make_formatter(const std::string& format, bool journald) {
  if (format == "json") return std::make_unique<json_formatter>();
  if (format != "text") throw std::invalid_argument("unknown log format '" + format + "' (expected text or json)");
  if (journald) return std::make_unique<journald_formatter>();
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
}

bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (!env || !*env) return false;
  // "DEVICE:INODE" of the stream journald handed us (systemd.exec(5)).
  char* end = nullptr;
  errno = 0;
  unsigned long long dev = std::strtoull(env, &end, 10);
  if (errno || end == env || *end != ':') return false;
  const char* ino_text = end + 1;
  unsigned long long ino = std::strtoull(ino_text, &end, 10);
  if (errno || end == ino_text || *end != '\0') return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

namespace {

/// Set while log_fields logs an access line: it may wait for a burst.
thread_local bool line_may_wait = false;

/// stderr for a service (journald, a file, a pipe): access lines go out in
/// bursts, one write(2) for what gathered in up to 5 ms or 64 KiB, not one
/// per request; any other line goes out at once, after those before it.
/// An access line then costs its thread ~0.2 us instead of ~1.2 us
/// (tests/bench/log_line.cpp).
class burst_stderr_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  burst_stderr_sink() : flusher_(start_flusher()) {}
  ~burst_stderr_sink() override {
    {
      std::lock_guard lk(wake_mu_);
      stopping_ = true;
    }
    wake_.notify_one();
    flusher_.join();
    std::lock_guard lk(mutex_);
    write_out();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    bool first = buf_.size() == 0;
    formatter_->format(msg, buf_);  // formatters append
    if (!line_may_wait || msg.level >= spdlog::level::warn || buf_.size() >= max_bytes) {
      write_out();
    } else if (first) {
      {
        std::lock_guard lk(wake_mu_);
        pending_ = true;
      }
      wake_.notify_one();
    }
  }
  void flush_() override { write_out(); }

 private:
  static constexpr size_t max_bytes = 64 * 1024;
  static constexpr std::chrono::milliseconds linger{5};

  void write_out() {
    if (buf_.size() == 0) return;
    std::fwrite(buf_.data(), 1, buf_.size(), stderr);
    std::fflush(stderr);
    buf_.clear();
  }
  /// The flusher takes no signals: grok and grok-server wait for theirs on
  /// a thread of their own, and this one may start before they block them.
  std::thread start_flusher() {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    std::thread t([this] { run(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return t;
  }
  void run() {
    std::unique_lock lk(wake_mu_);
    for (;;) {
      wake_.wait(lk, [this] { return pending_ || stopping_; });
      if (stopping_) return;
      pending_ = false;
      lk.unlock();
      std::this_thread::sleep_for(linger);
      flush();
      lk.lock();
    }
  }

  spdlog::memory_buf_t buf_;  ///< under base_sink's mutex_
  std::mutex wake_mu_;
  std::condition_variable wake_;
  bool pending_ = false;   ///< under wake_mu_
  bool stopping_ = false;  ///< under wake_mu_
  std::thread flusher_;    ///< last: starts once the rest is set
};

}  // namespace

void setup_logging(const std::string& level, const std::string& format, const std::string& name) {
  // Validate everything before touching the current logger.
  auto lvl = parse_level(level);
  auto formatter = make_formatter(format, format == "text" && stderr_is_journal());

  // A terminal gets each line at once, in colour; a service's stderr gets bursts.
  bool tty = isatty(STDERR_FILENO) == 1;
  spdlog::sink_ptr sink;
  if (tty)
    sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  else
    sink = std::make_shared<burst_stderr_sink>();
  auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
  logger->set_formatter(std::move(formatter));
  logger->set_level(lvl);
  logger->flush_on(tty ? spdlog::level::info : spdlog::level::warn);

  // Replace, never throw "logger with name already exists".
  spdlog::drop(name);
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(lvl);
}

void log_fields(spdlog::level::level_enum level, std::string_view msg, std::initializer_list<log_field> fields) {
  if (!spdlog::should_log(level)) return;
  current_fields = &fields;
  line_may_wait = true;
  spdlog::log(level, "{}", msg);
  line_may_wait = false;
  current_fields = nullptr;
}

void set_log_level(const std::string& level) { spdlog::set_level(parse_level(level)); }

}  // namespace grok
