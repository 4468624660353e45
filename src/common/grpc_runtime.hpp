#pragma once
// Settings of the libraries under gRPC, made once at start.
#include <absl/synchronization/mutex.h>

namespace grok {

/// Debian builds Abseil with its debug checks, so every absl::Mutex that
/// gRPC takes also updated a lock-order graph for deadlock detection: about
/// 1 % of either program's CPU under load (absl's GraphCycles in `perf
/// report`). Those checks are for Abseil's own developers; this turns them off.
inline void tune_grpc_runtime() { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); }

}  // namespace grok
