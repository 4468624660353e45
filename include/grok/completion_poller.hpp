#pragma once
// The one thread per process that polls a tunnel stream's gRPC completion
// queue, and the tag that tells it which object and operation completed.

#include <grpcpp/grpcpp.h>
#include <pthread.h>

#include <thread>

namespace grok {

/// A completion-queue tag: the object whose operation completed, and which.
template <class Owner, class Event>
struct cq_tag {
  Owner* owner;
  Event what;
};

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
      auto* t = static_cast<cq_tag<Owner, Event>*>(tag);
      t->owner->on_event(t->what, ok);
    }
  });
}

}  // namespace grok
