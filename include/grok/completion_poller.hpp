#pragma once
// The one thread per process that polls a tunnel stream's gRPC completion
// queue, and the tag that tells it which object and operation completed.

#include <grpcpp/grpcpp.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <thread>

namespace grok {

/// A completion-queue tag: the object whose operation completed, and which.
template <class Owner, class Event>
struct cq_tag {
  Owner* owner;
  Event what;
};

/// With several poll threads on one queue, a tag made on one thread may
/// complete on another. gRPC orders the two, but out of ThreadSanitizer's
/// sight; so an owner calls publish_tags() once its tags are set and before
/// it hands them to gRPC, and the poll threads read tags after an acquire of
/// the same atomic (a plain load on x86).
inline std::atomic<uint64_t>& tag_epoch() {
  static std::atomic<uint64_t> epoch{0};
  return epoch;
}
inline void publish_tags() { tag_epoch().fetch_add(1, std::memory_order_release); }

/// Starts a thread named "grpc-poll" that hands every completion on `queue`
/// to its owner's on_event(what, ok) until the queue is shut down and
/// drained. Every tag on `queue` must be a cq_tag<Owner, Event>.
template <class Owner, class Event>
std::thread start_completion_poller(grpc::CompletionQueue& queue) {
  return std::thread([&queue] {
    pthread_setname_np(pthread_self(), "grpc-poll");
    void* tag = nullptr;
    bool ok = false;
    while (queue.Next(&tag, &ok)) {
      tag_epoch().load(std::memory_order_acquire);
      auto* t = static_cast<cq_tag<Owner, Event>*>(tag);
      t->owner->on_event(t->what, ok);
    }
  });
}

}  // namespace grok
