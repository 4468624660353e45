#pragma once
// gRPC's own log lines go through the program's logger, so they take its
// format (text, JSON, journald) and level, and never print gRPC's source
// paths ("E1206 ... ssl_transport_security.cc:1234]") on a user's terminal.

#include <grpc/support/log.h>
#include <spdlog/spdlog.h>

namespace grok {

/// Before any other gRPC call. gRPC's errors are logged at `error_level`,
/// everything else at debug; the message alone, without gRPC's file and line.
template <spdlog::level::level_enum ErrorLevel>
void route_grpc_logs() {
  gpr_set_log_verbosity(spdlog::should_log(spdlog::level::debug) ? GPR_LOG_SEVERITY_DEBUG : GPR_LOG_SEVERITY_ERROR);
  gpr_set_log_function([](gpr_log_func_args* args) {
    auto level = args->severity == GPR_LOG_SEVERITY_ERROR ? ErrorLevel : spdlog::level::debug;
    spdlog::log(level, "grpc: {}", args->message);
  });
}

}  // namespace grok
