// The inspector page in a real browser: headless Chromium driven by
// inspector_browser.py (python3-selenium) against the real binaries.
// Registered as its own ctest (`browser`); screenshots go to
// BUILD/tests/integration/browser-output/.

#include <doctest/doctest.h>

#include <filesystem>
#include <regex>

#include "harness.hpp"

using namespace grok::test;

TEST_CASE("browser: the page shows a new request live, its headers, and a replay") {
  for (const char* tool : {"/usr/bin/chromium", "/usr/bin/chromedriver", "/usr/bin/python3"})
    REQUIRE_MESSAGE(std::filesystem::exists(tool), tool << " is missing: bash .ci/setup installs it");
  stack::options o;
  o.start_client = false;
  stack s(o);
  process grok({binary("grok"), "--insecure", "--config", "/dev/null", "http", std::to_string(s.upstream_port),
                "--subdomain", "app", "--server", "127.0.0.1:" + std::to_string(s.grpc_port), "--token", s.opts.token,
                "--inspect", "127.0.0.1:0"});
  auto m = grok.wait_for_line(std::regex(R"(Inspector   (http://127\.0\.0\.1:\d+)$)"), scaled(15s));
  REQUIRE(m);
  auto out = std::string(GROK_BIN_DIR) + "/tests/integration/browser-output";
  std::filesystem::remove_all(out);
  auto started = clock::now();
  process browser({"/usr/bin/python3", std::string(GROK_SOURCE_DIR) + "/tests/integration/inspector_browser.py",
                   "--inspector", (*m)[1], "--public-port", std::to_string(s.http_port), "--host", s.host(), "--out",
                   out, "--time-factor", std::to_string(time_factor())});
  auto status = browser.wait_exit(scaled(120s));
  for (const auto& line : browser.lines()) MESSAGE(line);
  MESSAGE("browser test took " << std::chrono::duration<double>(clock::now() - started).count() << " s");
  CHECK(status == 0);
  CHECK(std::filesystem::exists(out + "/inspector.png"));
}
