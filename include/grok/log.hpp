#pragma once
// Logging set-up shared by grok-server and grok.
//
// Output goes to stderr, one line per message, in one of three shapes:
//   text:              2024-05-01 12:34:56.789 info message
//   text, journald:    <6>message        (sd-daemon priority prefix; the journal stamps time)
//   json:              {"ts":"2024-05-01T12:34:56.789+02:00","level":"info","logger":"grok-server","msg":"message"}

#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

namespace grok {

/// Configures the default spdlog logger `name`: level (trace, debug, info,
/// warn, error, critical, off), format ("text" or "json"). Text output under
/// journald (JOURNAL_STREAM names stderr) carries an sd-daemon <N> priority
/// prefix instead of a timestamp. May be called again: the previous logger of
/// that name is replaced. Throws std::invalid_argument for an unknown level
/// or format.
void setup_logging(const std::string& level, const std::string& format, const std::string& name);

/// Changes the level of every logger live (e.g. on reload). Throws
/// std::invalid_argument for an unknown level; the level is then unchanged.
void set_log_level(const std::string& level);

/// The line formatter setup_logging installs, exposed for tests: "text" or
/// "json"; `journald` only affects "text". Throws std::invalid_argument for
/// an unknown format.
std::unique_ptr<spdlog::formatter> make_formatter(const std::string& format, bool journald);

/// One key of a structured line: a string or a number.
struct log_field {
  std::string_view key;
  std::variant<std::string_view, int64_t> value;
};

/// Logs `msg` at `level`; with logging.format json each field also becomes a
/// key of the line's object ({"ts":…,"msg":…,"tunnel":"app","status":200}),
/// so tools need not parse the message. Text formats show the message only.
/// The loggers are synchronous: the fields are read on the caller's thread.
/// These are access lines: when stderr is not a terminal they may reach it up
/// to 5 ms later, in one write with others; every other line is written at once.
void log_fields(spdlog::level::level_enum level, std::string_view msg, std::initializer_list<log_field> fields);

/// True when stderr is connected to the journal: JOURNAL_STREAM holds
/// "DEVICE:INODE" and it matches stderr (so a child whose stderr was
/// redirected elsewhere does not use the journald format).
bool stderr_is_journal();

}  // namespace grok
