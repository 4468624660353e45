#include <doctest/doctest.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>

#include "grok/log.hpp"

using grok::make_formatter;

namespace {

// 2023-11-14T22:13:20.123Z
const auto fixed_time = spdlog::log_clock::time_point(std::chrono::milliseconds(1700000000123LL));

std::string render(const std::string& format, bool journald, spdlog::level::level_enum lvl, const std::string& text,
                   const std::string& logger = "grok-server") {
  auto f = make_formatter(format, journald);
  spdlog::details::log_msg msg(fixed_time, spdlog::source_loc{}, logger, lvl, text);
  spdlog::memory_buf_t buf;
  f->format(msg, buf);
  return std::string(buf.data(), buf.size());
}

// Sets an environment variable for one scope and restores the old value.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
    ::tzset();
  }
  ~scoped_env() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
    ::tzset();
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

google::protobuf::Struct parse_json(const std::string& line) {
  google::protobuf::Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(line, &s);
  INFO("line: " << line);
  REQUIRE(status.ok());
  return s;
}

}  // namespace

TEST_SUITE("log") {

TEST_CASE("journald: sd-daemon priority prefix, no timestamp") {
  CHECK(render("text", true, spdlog::level::trace, "t") == "<7>t\n");
  CHECK(render("text", true, spdlog::level::debug, "d") == "<7>d\n");
  CHECK(render("text", true, spdlog::level::info, "tunnel up") == "<6>tunnel up\n");
  CHECK(render("text", true, spdlog::level::warn, "w") == "<4>w\n");
  CHECK(render("text", true, spdlog::level::err, "e") == "<3>e\n");
  CHECK(render("text", true, spdlog::level::critical, "c") == "<2>c\n");
  CHECK(render("text", true, spdlog::level::info, R"("GET /x" 200)") == "<6>\"GET /x\" 200\n");
}

TEST_CASE("journald: every line of a multi-line message keeps the priority") {
  CHECK(render("text", true, spdlog::level::err, "first\nsecond") == "<3>first\n<3>second\n");
  CHECK(render("text", true, spdlog::level::err, "trailing\n") == "<3>trailing\n");
}

TEST_CASE("text: YYYY-mm-dd HH:MM:SS.mmm level message") {
  scoped_env tz("TZ", "UTC0");
  CHECK(render("text", false, spdlog::level::info, R"("GET /x" 200)") ==
        "2023-11-14 22:13:20.123 info \"GET /x\" 200\n");
  CHECK(render("text", false, spdlog::level::err, "boom") == "2023-11-14 22:13:20.123 error boom\n");
}

TEST_CASE("json: exact line with escaping") {
  scoped_env tz("TZ", "UTC0");
  CHECK(render("json", false, spdlog::level::info, "he said \"hi\"\n\\") ==
        R"({"ts":"2023-11-14T22:13:20.123+00:00","level":"info","logger":"grok-server","msg":"he said \"hi\"\u000a\\"})"
        "\n");
  CHECK(render("json", false, spdlog::level::warn, std::string("a\x01z\tb\x7f", 6)) ==
        R"({"ts":"2023-11-14T22:13:20.123+00:00","level":"warn","logger":"grok-server","msg":"a\u0001z\u0009b\u007f"})"
        "\n");
}

TEST_CASE("json: the journald flag does not change JSON output") {
  CHECK(render("json", true, spdlog::level::info, "x") == render("json", false, spdlog::level::info, "x"));
}

TEST_CASE("json: timestamp carries the local offset") {
  {
    scoped_env tz("TZ", "IST-5:30");
    auto line = render("json", false, spdlog::level::info, "x");
    CHECK(line.rfind(R"({"ts":"2023-11-15T03:43:20.123+05:30",)", 0) == 0);
  }
  {
    scoped_env tz("TZ", "EST5");
    auto line = render("json", false, spdlog::level::info, "x");
    CHECK(line.rfind(R"({"ts":"2023-11-14T17:13:20.123-05:00",)", 0) == 0);
  }
}

TEST_CASE("json: lines parse back to the original values") {
  const std::string message = std::string("he said \"hi\"\n\\ and \x1b[31m red, tab\there, ") + "caf\xc3\xa9 \xe2\x82\xac";
  auto line = render("json", false, spdlog::level::err, message, "grok \"quoted\" logger");
  REQUIRE(!line.empty());
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);  // exactly one line
  auto s = parse_json(line);
  CHECK(s.fields().size() == 4);
  CHECK(s.fields().at("msg").string_value() == message);
  CHECK(s.fields().at("level").string_value() == "error");
  CHECK(s.fields().at("logger").string_value() == "grok \"quoted\" logger");
  CHECK(std::regex_match(s.fields().at("ts").string_value(),
                         std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.123[+-]\d\d:\d\d)")));
}

TEST_CASE("json: invalid UTF-8 becomes U+FFFD, so the line stays valid JSON") {
  // lone continuation byte, truncated sequence, overlong '/', surrogate
  const std::string message = "a\x80" "b\xe2\x82" "c\xc0\xaf" "d\xed\xa0\x80" "e";
  auto line = render("json", false, spdlog::level::info, message);
  CHECK(line.find(R"("msg":"a\ufffdb\ufffd\ufffdc\ufffd\ufffdd\ufffd\ufffd\ufffde"})") != std::string::npos);
  auto s = parse_json(line);
  CHECK(s.fields().at("msg").string_value() ==
        "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd" "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
        "e");
}

TEST_CASE("json: level names match the configuration vocabulary") {
  auto level_of = [](spdlog::level::level_enum l) {
    return parse_json(render("json", false, l, "x")).fields().at("level").string_value();
  };
  CHECK(level_of(spdlog::level::trace) == "trace");
  CHECK(level_of(spdlog::level::debug) == "debug");
  CHECK(level_of(spdlog::level::info) == "info");
  CHECK(level_of(spdlog::level::warn) == "warn");
  CHECK(level_of(spdlog::level::err) == "error");
  CHECK(level_of(spdlog::level::critical) == "critical");
}

TEST_CASE("make_formatter: unknown format") {
  CHECK_THROWS_AS(make_formatter("xml", false), std::invalid_argument);
  CHECK_THROWS_AS(make_formatter("", true), std::invalid_argument);
}

TEST_CASE("stderr_is_journal: JOURNAL_STREAM must name stderr") {
  {
    scoped_env env("JOURNAL_STREAM", nullptr);
    CHECK_FALSE(grok::stderr_is_journal());
  }
  {
    scoped_env env("JOURNAL_STREAM", "garbage");
    CHECK_FALSE(grok::stderr_is_journal());
  }
  struct stat st {};
  REQUIRE(fstat(STDERR_FILENO, &st) == 0);
  {
    auto other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
    scoped_env env("JOURNAL_STREAM", other.c_str());
    CHECK_FALSE(grok::stderr_is_journal());
  }
  {
    auto mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    scoped_env env("JOURNAL_STREAM", mine.c_str());
    CHECK(grok::stderr_is_journal());
  }
}

TEST_CASE("setup_logging: may be called repeatedly; set_log_level changes the level live") {
  CHECK_NOTHROW(grok::setup_logging("info", "text", "grok-log-test"));
  CHECK_NOTHROW(grok::setup_logging("warn", "json", "grok-log-test"));
  CHECK_NOTHROW(grok::setup_logging("error", "text", "grok-log-test"));
  REQUIRE(spdlog::default_logger() != nullptr);
  CHECK(spdlog::default_logger()->name() == "grok-log-test");
  CHECK(spdlog::get("grok-log-test") == spdlog::default_logger());
  CHECK(spdlog::default_logger()->level() == spdlog::level::err);

  grok::set_log_level("debug");
  CHECK(spdlog::default_logger()->level() == spdlog::level::debug);
  grok::set_log_level("off");
  CHECK(spdlog::default_logger()->level() == spdlog::level::off);
  grok::set_log_level("critical");
  CHECK(spdlog::default_logger()->level() == spdlog::level::critical);

  // Unknown names are refused and leave the level alone.
  CHECK_THROWS_AS(grok::set_log_level("verbose"), std::invalid_argument);
  CHECK_THROWS_AS(grok::set_log_level("warning"), std::invalid_argument);  // config says "warn"
  CHECK_THROWS_AS(grok::set_log_level(""), std::invalid_argument);
  CHECK(spdlog::default_logger()->level() == spdlog::level::critical);

  // Bad arguments keep the current logger in place.
  CHECK_THROWS_AS(grok::setup_logging("loud", "text", "grok-log-test"), std::invalid_argument);
  CHECK_THROWS_AS(grok::setup_logging("info", "xml", "grok-log-test"), std::invalid_argument);
  CHECK(spdlog::default_logger()->name() == "grok-log-test");
  CHECK(spdlog::default_logger()->level() == spdlog::level::critical);

  // A different name replaces the default logger too.
  CHECK_NOTHROW(grok::setup_logging("warn", "text", "grok-log-test-2"));
  CHECK(spdlog::default_logger()->name() == "grok-log-test-2");
  CHECK(spdlog::default_logger()->level() == spdlog::level::warn);
}

}  // TEST_SUITE
