#include "grok/server.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <stdexcept>
#include <thread>

#include "public_http.hpp"
#include "tunnel.hpp"

namespace grok {

using namespace server_detail;

struct server::impl {
  impl(std::shared_ptr<const server_config> c, unsigned n)
      : cfg(std::move(c)), worker_count(n == 0 ? 1 : n), ioc(static_cast<int>(worker_count)), state(ioc, cfg),
        service(state) {}

  std::shared_ptr<const server_config> cfg;
  unsigned worker_count;
  asio::io_context ioc;
  server_state state;
  tunnel_service service;
  std::unique_ptr<grpc::Server> grpc_server;
  std::shared_ptr<public_listener> listener;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  uint16_t http_port = 0;
  int grpc_port = 0;
  bool stopped = false;
};

server::server(std::shared_ptr<const server_config> cfg, unsigned workers)
    : impl_(std::make_unique<impl>(std::move(cfg), workers)) {}

server::~server() { stop(); }

void server::start() {
  auto& c = *impl_->cfg;
  asio::ip::tcp::endpoint ep;
  try {
    ep = asio::ip::tcp::endpoint(asio::ip::make_address(c.bind_address), c.http_port);
    impl_->listener = std::make_shared<public_listener>(impl_->state, ep);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen for public HTTP on " + c.bind_address + ":" +
                             std::to_string(c.http_port) + ": " + e.what());
  }
  impl_->http_port = impl_->listener->local_endpoint().port();
  impl_->state.public_port = impl_->http_port;

  grpc::ServerBuilder builder;
  auto grpc_addr = c.grpc_address + ":" + std::to_string(c.grpc_port);
  builder.AddListeningPort(grpc_addr, grpc::InsecureServerCredentials(), &impl_->grpc_port);
  builder.RegisterService(&impl_->service);
  // A batch holds at most one write budget of data plus control frames.
  builder.SetMaxReceiveMessageSize(8 << 20);
  builder.SetMaxSendMessageSize(8 << 20);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(c.heartbeat_interval.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 5);
  impl_->grpc_server = builder.BuildAndStart();
  if (!impl_->grpc_server || impl_->grpc_port == 0)
    throw std::runtime_error("cannot listen for tunnel clients on " + grpc_addr);

  impl_->work.emplace(impl_->ioc.get_executor());
  impl_->listener->start();
  for (unsigned i = 0; i < impl_->worker_count; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  spdlog::info("grok-server ready: http={}:{} grpc={}:{} domain={} workers={}", c.bind_address, impl_->http_port,
               c.grpc_address, impl_->grpc_port, c.domain, impl_->worker_count);
}

void server::stop() {
  if (impl_->stopped || !impl_->grpc_server) return;
  impl_->stopped = true;
  spdlog::info("grok-server stopping");
  if (impl_->listener) impl_->listener->stop();
  for (auto& t : impl_->state.tunnels()) t->shutdown("server shutting down");
  // Shutdown waits for reactors to finish; they need the io_context running.
  impl_->grpc_server->Shutdown(std::chrono::system_clock::now() + impl_->cfg->drain_timeout);
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
}

uint16_t server::http_port() const { return impl_->http_port; }
uint16_t server::grpc_port() const { return static_cast<uint16_t>(impl_->grpc_port); }
unsigned server::workers() const { return impl_->worker_count; }

}  // namespace grok
