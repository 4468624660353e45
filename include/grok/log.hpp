#pragma once
// Logging set-up shared by grok-server and grok.

#include <string>

namespace grok {

/// Configures the default spdlog logger: level (trace..off), format
/// ("text" or "json"); under journald (JOURNAL_STREAM set) timestamps are
/// left to the journal. Throws std::invalid_argument for an unknown level.
void setup_logging(const std::string& level, const std::string& format, const std::string& name);

}  // namespace grok
