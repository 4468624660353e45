#include "tunnel_service.hpp"

#include <arpa/inet.h>
#include <grpc/support/sync_generic.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/version_info.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <stdexcept>
#include <thread>

#include "grok/completion_poller.hpp"
#include "grok/files.hpp"
#include "grok/tunnel/v1/tunnel.grpc.pb.h"
#include "relay.hpp"
#include "server_state.hpp"
#include "stream_call.hpp"
#include "tunnel.hpp"

// gRPC's socket mutator (src/core/lib/iomgr/socket_mutator.h, not an
// installed header): the one hook that sees a tunnel-port socket right
// after accept, before TLS or HTTP/2 read a byte from it. Declared here as
// gRPC 1.51 defines it; grpc_socket_mutator_init is exported by libgrpc.
static_assert(GRPC_CPP_VERSION_MAJOR == 1 && GRPC_CPP_VERSION_MINOR == 51,
              "grpc_socket_mutator below mirrors gRPC 1.51; check src/core/lib/iomgr/socket_mutator.h of this version");
typedef enum {
  GRPC_FD_CLIENT_CONNECTION_USAGE,
  GRPC_FD_SERVER_LISTENER_USAGE,
  GRPC_FD_SERVER_CONNECTION_USAGE,
} grpc_fd_usage;
struct grpc_mutate_socket_info {
  int fd;
  grpc_fd_usage usage;
};
struct grpc_socket_mutator_vtable {
  bool (*mutate_fd)(int fd, grpc_socket_mutator* mutator);
  int (*compare)(grpc_socket_mutator* a, grpc_socket_mutator* b);
  void (*destroy)(grpc_socket_mutator* mutator);
  bool (*mutate_fd_2)(const grpc_mutate_socket_info* info, grpc_socket_mutator* mutator);
};
struct grpc_socket_mutator {
  const grpc_socket_mutator_vtable* vtable;
  gpr_refcount refcount;
};
void grpc_socket_mutator_init(grpc_socket_mutator* mutator, const grpc_socket_mutator_vtable* vtable);

namespace grok::server_detail {

namespace {

/// Counts each accepted tunnel-port socket against the guard's limits and
/// shuts down the ones over them (gRPC then reads EOF and drops them).
/// Always "succeeds": a failed mutation would stop gRPC's accept loop.
struct guard_mutator {
  grpc_socket_mutator base;  // first: gRPC passes &base
  tunnel_port_guard* guard;

  static bool mutate_fd(int, grpc_socket_mutator*) { return true; }
  static int compare(grpc_socket_mutator* a, grpc_socket_mutator* b) { return a < b ? -1 : a > b ? 1 : 0; }
  static void destroy(grpc_socket_mutator*) {}  // owned by tunnel_service::impl
  static bool mutate_fd_2(const grpc_mutate_socket_info* info, grpc_socket_mutator* m) {
    if (info->usage != GRPC_FD_SERVER_CONNECTION_USAGE) return true;
    auto* self = reinterpret_cast<guard_mutator*>(m);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    char text[INET6_ADDRSTRLEN] = "unknown";
    uint16_t port = 0;
    if (::getpeername(info->fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      if (ss.ss_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, text, sizeof text);
        port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
      } else if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss); ss.ss_family == AF_INET6) {
        port = ntohs(v6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr))  // an IPv4 peer on a dual-stack socket
          ::inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], text, sizeof text);
        else
          ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
      }
    }
    if (self->guard->admit(info->fd, text, port) != tunnel_port_guard::verdict::admitted)
      ::shutdown(info->fd, SHUT_RDWR);
    return true;
  }
  static constexpr grpc_socket_mutator_vtable vtable{mutate_fd, compare, destroy, mutate_fd_2};

  explicit guard_mutator(tunnel_port_guard& g) : guard(&g) { grpc_socket_mutator_init(&base, &vtable); }
};

/// Hands the mutator to the server's channel arguments.
class guard_option final : public grpc::ServerBuilderOption {
 public:
  explicit guard_option(guard_mutator& m) : m_(m) {}
  void UpdateArguments(grpc::ChannelArguments* args) override { args->SetSocketMutator(&m_.base); }
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*) override {}

 private:
  guard_mutator& m_;
};

grpc::StatusCode status_code(stream_end how) {
  switch (how) {
    case stream_end::ok: return grpc::StatusCode::OK;
    case stream_end::cancelled: return grpc::StatusCode::CANCELLED;
    case stream_end::unavailable: return grpc::StatusCode::UNAVAILABLE;
    case stream_end::deadline_exceeded: return grpc::StatusCode::DEADLINE_EXCEEDED;
    case stream_end::resource_exhausted: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case stream_end::permission_denied: return grpc::StatusCode::PERMISSION_DENIED;
    case stream_end::invalid_argument: return grpc::StatusCode::INVALID_ARGUMENT;
  }
  return grpc::StatusCode::UNKNOWN;
}

}  // namespace

/// Accepts tunnel streams on gRPC's async API. tunnels.grpc_poll_threads
/// (2) threads poll the completion queue: they read every tunnel's batches
/// and post each to its tunnel's strand. Writes start on the strand itself
/// (gRPC sends them inline); only their completions come back through these
/// threads. gRPC also accepts and hands-shakes tunnel-port connections on
/// them: with one, a burst of connections refused at accept held every
/// tunnel's reads up for a second (tests/attack/h2_attacks.py, idle flood).
/// Completions of one call may arrive on two threads at once; each kind
/// touches its own state (see tunnel_call::on_event).
struct tunnel_service::impl {
  explicit impl(server_state& s) : state(s), mutator(s.tunnel_connections) {}
  server_state& state;
  guard_mutator mutator;  // outlives the server
  pb::Tunnel::AsyncService async;
  std::unique_ptr<grpc::ServerCompletionQueue> cq;
  std::unique_ptr<grpc::Server> server;
  std::vector<std::thread> pollers;
  std::atomic<uint64_t> next_conn{1};
  std::atomic<int64_t> calls{0};  ///< tunnel_call objects alive, the one awaiting a stream included
};

/// One tunnel stream. Its completions arrive on the service's poll thread
/// (on_event); StartWrite and Finish come from the tunnel's strand, at most
/// one write at a time and Finish once, after the last write came back.
/// The object deletes itself when the call is over, every operation has
/// come back and the tunnel has called Finish.
class tunnel_call final : public tunnel_stream, public stream_call_base {
 public:
  explicit tunnel_call(tunnel_service::impl& svc) : svc_(svc), counted_(svc.calls), stream_(&ctx_) {
    publish_tags();
    ctx_.AsyncNotifyWhenDone(&ops_[done]);
    svc_.async.RequestConnect(&ctx_, &stream_, svc_.cq.get(), svc_.cq.get(), &ops_[accepted]);
  }

  enum event { accepted, read, write, finish, done, events };

  // Strand only.
  void StartWrite(const pb::Batch* b) override { start_write(stream_, *b, &ops_[write]); }
  void Finish(stream_end how, const std::string& message) override {
    add_hold();
    stream_.Finish(grpc::Status(status_code(how), message), &ops_[finish]);
    release();  // the tunnel's hold: it calls nothing more
  }

  /// Poll thread: one of this call's operations completed.
  void on_event(event e, bool ok) {
    switch (e) {
      case accepted:
        if (!ok) {  // the server is shutting down; no call was started
          delete this;
          return;
        }
        new tunnel_call(svc_);  // waits for the next stream
        t_ = std::make_shared<tunnel>(svc_.state, ctx_.peer(), svc_.next_conn.fetch_add(1));
        set_holds(3);  // the tunnel's hold, done, the read below
        t_->attach(this);
        set_up_.store(true, std::memory_order_release);
        arm_read(stream_, &ops_[read]);
        return;
      case read:
        set_up_.load(std::memory_order_acquire);  // t_, set on the thread that accepted the call
        if (!ok) {
          t_->post_read_closed();
          break;
        }
        on_read(stream_, &ops_[read], [this](std::shared_ptr<pb::Batch> b) { t_->post_batch(std::move(b)); });
        return;
      case write:
        set_up_.load(std::memory_order_acquire);
        t_->write_finished(ok);
        break;
      case finish:
        set_up_.load(std::memory_order_acquire);
        break;
      case done:
        // A stream cancelled at once (a reset right after its HEADERS) may
        // report done on the other poll thread while this call is still
        // being set up there; that takes microseconds.
        while (!set_up_.load(std::memory_order_acquire)) std::this_thread::yield();
        if (ctx_.IsCancelled()) t_->post_cancelled();
        break;
      case events:
        return;
    }
    release();
  }

 private:
  void release() {
    if (!drop_hold()) return;
    t_->post_done();
    delete this;
  }

  /// Counts the call while it lives; declared first, so the count drops
  /// only after the call's gRPC state (ctx_, stream_) is gone.
  struct counted {
    explicit counted(std::atomic<int64_t>& n) : n_(n) { n_.fetch_add(1, std::memory_order_relaxed); }
    ~counted() { n_.fetch_sub(1, std::memory_order_release); }
    std::atomic<int64_t>& n_;
  };

  tunnel_service::impl& svc_;
  counted counted_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<pb::Batch, pb::Batch> stream_;
  std::array<cq_tag<tunnel_call, event>, events> ops_{
      {{this, accepted}, {this, read}, {this, write}, {this, finish}, {this, done}}};
  std::shared_ptr<tunnel> t_;
  std::atomic<bool> set_up_{false};  ///< t_ and the holds are set (the accepted event is handled)
};

tunnel_service::tunnel_service(server_state& state) : impl_(std::make_unique<impl>(state)) {}

uint16_t tunnel_service::start(const server_config& c) {
  grpc::ServerBuilder builder;
  auto address = c.grpc_address + ":" + std::to_string(c.grpc_port);
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!c.tls_cert_file.empty() && c.tls_grpc) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({read_file(c.tls_key_file), read_file(c.tls_cert_file)});
    creds = grpc::SslServerCredentials(ssl);
  }
  int port = 0;
  builder.AddListeningPort(address, creds, &port);
  // gRPC sets SO_REUSEPORT by default: a second grok-server on the same port
  // would then start and take half of the new clients. One owner per port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&impl_->async);
  impl_->cq = builder.AddCompletionQueue();
  // Other nodes of a cluster relay public requests on this port too.
  if (impl_->state.relays) impl_->state.relays->add_to(builder);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.SetMaxSendMessageSize(max_message_bytes);
  // A client that stops answering pings is dropped within interval + timeout.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(c.heartbeat_interval.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(c.heartbeat_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // an idle tunnel is pinged too
  // grok clients ping every 5 s by default, at most every 1 s (their heartbeat_interval);
  // faster pings without data earn strikes.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 900);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 5);
  // A grok client opens one stream per connection; more from one peer are held back by HTTP/2.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, static_cast<int>(c.max_streams_per_connection));
  // What an unauthenticated peer may hold: connections per address and in
  // total (counted at accept), the TLS and HTTP/2 handshake and a connection
  // without a stream each for at most hello_timeout, gRPC's memory in all.
  builder.SetOption(std::make_unique<guard_option>(impl_->mutator));
  // A grok client's request metadata is a few hundred bytes; a header block
  // past this is refused rather than collected (CONTINUATION floods).
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, 16 * 1024);
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, static_cast<int>(c.hello_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, static_cast<int>(c.hello_timeout.count()));
  grpc::ResourceQuota quota("grok-tunnel-port");
  quota.Resize(static_cast<size_t>(c.grpc_memory_quota));
  builder.SetResourceQuota(quota);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || port == 0)
    throw std::runtime_error("cannot listen for tunnel clients on " + address +
                             ": the address is in use or not available on this host");
  new tunnel_call(*impl_);
  if (impl_->state.relays) impl_->state.relays->start();
  for (unsigned i = 0; i < std::max(1u, c.grpc_poll_threads); ++i)
    impl_->pollers.push_back(start_completion_poller<tunnel_call, tunnel_call::event>(*impl_->cq));
  return static_cast<uint16_t>(port);
}

bool tunnel_service::started() const { return impl_->server != nullptr; }

void tunnel_service::stop(std::chrono::milliseconds grace, std::chrono::milliseconds report_after) {
  if (impl_->pollers.empty()) return;
  impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
  // Shutdown has cancelled every stream by now; each ends as soon as its
  // tunnel's strand calls Finish. A stream still open would use the queue
  // after its shutdown, so this waits for all of them, saying so when it
  // takes longer than it should (a stuck worker).
  auto next_report = clock::now() + report_after;
  while (impl_->calls.load(std::memory_order_acquire) > 0) {
    if (clock::now() >= next_report) {
      spdlog::error("{} tunnel stream(s) have not ended; still waiting for their tunnels to finish",
                    impl_->calls.load(std::memory_order_acquire));
      next_report = clock::now() + report_after;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  impl_->cq->Shutdown();
  for (auto& p : impl_->pollers) p.join();
  impl_->pollers.clear();
}

tunnel_service::~tunnel_service() {
  if (!impl_->pollers.empty()) {
    stop(std::chrono::seconds(5), std::chrono::seconds(5));
  } else if (impl_->cq) {  // never started: drain what the shutdown queues
    impl_->cq->Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (impl_->cq->Next(&tag, &ok)) {
    }
  }
}

}  // namespace grok::server_detail
