// Linked into every executable of a sanitizer build (GROK_SANITIZE): the options each
// sanitizer runtime starts with, so grok-server, grok, grok-demo-upstream and the test
// binaries behave the same however they are started (ctest, the integration harness,
// a shell script, by hand). ASAN_OPTIONS / UBSAN_OPTIONS / TSAN_OPTIONS still override.
//
// Every report ends in a non-zero exit (23 for ASan, LSan and UBSan, 66 for TSan) and
// goes to stderr, where the integration harness looks for it in each child's output.

#ifndef GROK_TSAN_SUPPRESSIONS
#error "GROK_TSAN_SUPPRESSIONS must name the TSan suppression file"
#endif

extern "C" {

__attribute__((visibility("default"), used)) const char* __asan_default_options() {
  // halt_on_error: the first memory error ends the process. detect_leaks: LSan at exit.
  return "halt_on_error=1:detect_leaks=1:exitcode=23:abort_on_error=0:"
         "check_initialization_order=1:detect_stack_use_after_return=0";
}

__attribute__((visibility("default"), used)) const char* __lsan_default_options() { return "exitcode=23"; }

__attribute__((visibility("default"), used)) const char* __ubsan_default_options() {
  // Built with -fno-sanitize-recover=undefined: any UB report ends the process.
  return "halt_on_error=1:print_stacktrace=1:exitcode=23";
}

__attribute__((visibility("default"), used)) const char* __tsan_default_options() {
  // halt_on_error=0: one run lists every race; the process still exits 66 at the end.
  // ignore_noninstrumented_modules: memcpy, epoll and fd calls made from inside Debian's
  // uninstrumented gRPC, Abseil and protobuf are not checked (see .ci/tsan.supp).
  return "halt_on_error=0:exitcode=66:second_deadlock_stack=1:ignore_noninstrumented_modules=1:"
         "suppressions=" GROK_TSAN_SUPPRESSIONS;
}

}  // extern "C"
