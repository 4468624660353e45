#include "grok/malloc_tuning.hpp"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace grok {

void tune_malloc() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return;
  mallopt(M_TRIM_THRESHOLD, 4 << 20);
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // One arena: frames are allocated on gRPC's threads and freed on the
  // workers, so per-thread arenas each kept their own free top.
  mallopt(M_ARENA_MAX, 1);
}

}  // namespace grok
