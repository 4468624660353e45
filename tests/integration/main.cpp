#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "harness.hpp"

int main(int argc, char** argv) {
  if (!grok::test::check_test_overrides()) return 2;
  doctest::Context context(argc, argv);
  return context.run();
}
