// The cost of one access line on grok-server's stderr when it is not a
// terminal (journald, a file): the burst sink setup_logging installs, against
// a write per line (spdlog's stderr sink flushed on every info line, how
// grok-server logged before). stderr goes to a file under /tmp.
//
//   build/tests/bench/grok_bench_log_line
#include <benchmark/benchmark.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>

#include "grok/log.hpp"

namespace {

void to_file() {
  static bool done = false;
  if (done) return;
  if (!std::freopen("/tmp/grok_bench_log_line.log", "w", stderr)) std::abort();
  done = true;
}

// The access line as grok-server logs it (log_fields, text format).
void log_lines(benchmark::State& state) {
  std::string line = "conn=123456 remote=203.0.113.7 \"GET /some/path?x=1\" 200 host=app.example.com ms=0.4";
  for (auto _ : state)
    grok::log_fields(spdlog::level::info, line,
                     {{"conn", int64_t{123456}}, {"remote", "203.0.113.7"}, {"status", int64_t{200}}});
  spdlog::default_logger()->flush();
}

void BM_access_line_burst(benchmark::State& state) {
  to_file();
  grok::setup_logging("info", "text", "grok-server");
  log_lines(state);
}
BENCHMARK(BM_access_line_burst);

void BM_access_line_write_each(benchmark::State& state) {
  to_file();
  auto logger = std::make_shared<spdlog::logger>("each", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  logger->set_formatter(grok::make_formatter("text", false));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  log_lines(state);
}
BENCHMARK(BM_access_line_write_each);

}  // namespace

BENCHMARK_MAIN();
