#pragma once
// The wire vocabulary both ends share: the protocol namespace, the protocol
// version, the limits each end sets on the stream, and the constructors of
// the frames both ends send.

#include <cstdint>
#include <string>

#include "grok/tunnel/v1/tunnel.pb.h"

namespace grok {

namespace pb = ::grok::tunnel::v1;

/// Hello.protocol_version a client sends and Accepted.protocol_version a server answers.
inline constexpr uint32_t protocol_version = 1;

/// Payload bytes of Data frames one stream write carries (control frames always go).
inline constexpr uint64_t max_batch_data_bytes = 1 << 20;

/// gRPC's message cap, set explicitly at both ends: one batch is at most one
/// write's data budget plus its control frames, far below it.
inline constexpr int max_message_bytes = 8 << 20;

inline pb::Frame make_window_update(uint64_t id, uint32_t increment) {
  pb::Frame f;
  f.set_exchange_id(id);
  f.mutable_window_update()->set_increment(increment);
  return f;
}

inline pb::Frame make_reset(uint64_t id, pb::Reset::Code code, std::string message) {
  pb::Frame f;
  f.set_exchange_id(id);
  auto* r = f.mutable_reset();
  r->set_code(code);
  r->set_message(std::move(message));
  return f;
}

inline pb::Frame make_data(uint64_t id, std::string&& payload, bool end_stream) {
  pb::Frame f;
  f.set_exchange_id(id);
  auto* d = f.mutable_data();
  d->set_payload(std::move(payload));
  d->set_end_stream(end_stream);
  return f;
}

}  // namespace grok
