// The harness fails a test whose child process printed a sanitizer report
// (sanitizer builds run every integration test this way: .ci/sanitize).
#include <doctest/doctest.h>

#include "harness.hpp"

using namespace grok::test;

// expected_failures(4): this test passes only if each of the four children below,
// when destroyed, failed it once, and every CHECK on the collected reports held.
TEST_CASE("harness: a child's sanitizer report is collected and fails the test" * doctest::expected_failures(4)) {
  for (const char* line : {"==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010",
                           "==4242==ERROR: LeakSanitizer: detected memory leaks",
                           "WARNING: ThreadSanitizer: data race (pid=4242)",
                           "src/server/tunnel.cpp:42:7: runtime error: signed integer overflow"}) {
    // What a sanitizer prints before the process exits non-zero.
    process p({"/bin/sh", "-c",
               std::string("echo starting; echo '") + line +
                   "' >&2; echo '    #0 0x4a1b2c in grok::tunnel::send src/server/tunnel.cpp:42' >&2;"
                   " echo 'SUMMARY: AddressSanitizer: heap-use-after-free src/server/tunnel.cpp:42' >&2; exit 23"});
    REQUIRE(p.wait_exit(10s) == 23);
    // The output is complete once the child's pipe is closed.
    REQUIRE(p.wait_for_text("SUMMARY: ", 10s));
    auto report = p.sanitizer_report();
    REQUIRE(report.size() == 3);
    CHECK(report[0] == line);
    CHECK(report[2].rfind("SUMMARY: ", 0) == 0);
  }
}

TEST_CASE("harness: ordinary output is no sanitizer report") {
  process p({"/bin/sh", "-c", "echo 'ERROR: bad config'; echo 'WARNING: slow'; echo 'runtime: 3 s'"});
  REQUIRE(p.wait_exit(10s) == 0);
  REQUIRE(p.wait_for_text("runtime: 3 s", 10s));
  CHECK(p.sanitizer_report().empty());
}
