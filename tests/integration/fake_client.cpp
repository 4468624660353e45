#include "fake_client.hpp"

#include <grpcpp/grpcpp.h>

namespace grok::test {

fake_client::fake_client(uint16_t grpc_port) : fake_client(grpc_port, options{}) {}

fake_client::fake_client(uint16_t grpc_port, options o) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  args.SetMaxSendMessageSize(8 << 20);
  // Each fake client gets its own TCP connection: racing clients must really
  // race, and a stalled one must not stall another.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!o.bdp_probe) args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(grpc_port), grpc::InsecureChannelCredentials(),
                                       args);
  stub_ = pb::Tunnel::NewStub(channel_);
  stream_ = stub_->Connect(&ctx_);
  reader_ = std::thread([this] { reader(); });
}

fake_client::~fake_client() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    reading_ = true;
  }
  cv_.notify_all();
  ctx_.TryCancel();
  if (reader_.joinable()) reader_.join();
  stream_->Finish();
}

void fake_client::reader() {
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return reading_ || stopping_; });
      if (stopping_ && closed_) return;
    }
    pb::Batch b;
    bool ok = stream_->Read(&b);
    std::lock_guard lk(mu_);
    if (!ok) {
      closed_ = true;
      cv_.notify_all();
      return;
    }
    for (auto& f : *b.mutable_frames()) frames_.push_back(std::move(f));
    cv_.notify_all();
  }
}

bool fake_client::send(const std::vector<pb::Frame>& frames) {
  pb::Batch b;
  for (const auto& f : frames) *b.add_frames() = f;
  std::lock_guard lk(write_mu_);
  if (write_broken_) return false;
  if (!stream_->Write(b)) write_broken_ = true;
  return !write_broken_;
}

std::optional<pb::Frame> fake_client::hello(const std::string& token, const std::string& name, uint32_t initial_window,
                                            std::chrono::milliseconds timeout) {
  pb::Frame f;
  auto* h = f.mutable_hello();
  h->set_protocol_version(1);
  h->set_token(token);
  h->set_name(name);
  h->set_client_version("fake-client");
  h->set_initial_window(initial_window);
  if (!send(f)) return std::nullopt;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto r = next(std::max(left, std::chrono::milliseconds(0)));
    if (!r) return std::nullopt;
    if (r->has_accepted() || r->has_refused()) return r;
  }
}

std::optional<pb::Frame> fake_client::next(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !frames_.empty() || closed_; });
  if (frames_.empty()) return std::nullopt;
  auto f = std::move(frames_.front());
  frames_.pop_front();
  return f;
}

std::optional<pb::Frame> fake_client::next_of(pb::Frame::KindCase kind, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) return std::nullopt;
    auto f = next(left);
    if (!f) return std::nullopt;
    if (f->kind_case() == kind) return f;
  }
}

bool fake_client::wait_closed(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return closed_; });
}

void fake_client::stop_reading() {
  std::lock_guard lk(mu_);
  reading_ = false;
}

void fake_client::resume_reading() {
  {
    std::lock_guard lk(mu_);
    reading_ = true;
  }
  cv_.notify_all();
}

pb::Frame response_head(uint64_t id, uint32_t status, const std::vector<std::pair<std::string, std::string>>& headers,
                        int64_t content_length, bool end_stream, const std::string& reason) {
  pb::Frame f;
  f.set_exchange_id(id);
  auto* h = f.mutable_response_head();
  h->set_status(status);
  h->set_reason(reason);
  for (const auto& [n, v] : headers) {
    auto* hd = h->add_headers();
    hd->set_name(n);
    hd->set_value(v);
  }
  h->set_content_length(content_length);
  h->set_end_stream(end_stream);
  return f;
}

pb::Frame data_frame(uint64_t id, std::string payload, bool end_stream) {
  pb::Frame f;
  f.set_exchange_id(id);
  f.mutable_data()->set_payload(std::move(payload));
  f.mutable_data()->set_end_stream(end_stream);
  return f;
}

}  // namespace grok::test
