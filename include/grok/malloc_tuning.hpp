#pragma once
// glibc malloc settings for a process that streams bodies in 64 KiB frames.

namespace grok {

/// With glibc's defaults every freed frame lets the heap top pass the
/// 128 KiB trim threshold, so free() returns the pages with madvise (a TLB
/// shootdown across CPUs) and the next frame faults them back in: on a
/// download that was a quarter of grok-server's CPU time. Raises the trim
/// threshold to 4 MiB and fixes the mmap threshold at 1 MiB, so frames of
/// the default 64 KiB stay on the heap and free memory goes back to the
/// kernel in megabytes, not per frame. One arena: frames are allocated on
/// gRPC's threads and freed on the workers, and per-thread arenas each kept
/// up to a threshold of free memory (tens of MiB in all, which the soak
/// flagged as growth).
/// Does nothing when GLIBC_TUNABLES sets malloc tunables: an operator's
/// (or a test's) explicit choice wins.
void tune_malloc();

}  // namespace grok
