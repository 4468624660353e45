#pragma once
// glibc malloc settings for a process that streams bodies in 64 KiB frames.

namespace grok {

/// With glibc's defaults every freed frame lets the heap top pass the
/// 128 KiB trim threshold, so free() returns the pages with madvise (a TLB
/// shootdown across CPUs) and the next frame faults them back in: on a
/// download that was a quarter of grok-server's CPU time. Raises the trim
/// threshold to 16 MiB per arena and fixes the mmap threshold at 4 MiB, so
/// frames (at most 1 MiB) stay on the heap. Idle memory is still given back
/// above that. Does nothing when GLIBC_TUNABLES sets malloc tunables: an
/// operator's (or a test's) explicit choice wins.
void tune_malloc();

}  // namespace grok
