#include "grok/client.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "console.hpp"
#include "grok/completion_poller.hpp"
#include "grok/config.hpp"
#include "grok/files.hpp"
#include "inspector.hpp"
#include "local_pool.hpp"
#include "tls_probe.hpp"
#include "tunnel_session.hpp"

namespace grok {

namespace {

/// What the client does about a refusal.
enum class on_refusal {
  exit,      ///< it can never succeed as asked
  new_name,  ///< the name it had is someone else's now: ask for a fresh one
  retry,     ///< it may succeed later: back off and try again
  standby,   ///< another stream of this tunnel serves it on that server: try now and then
};

on_refusal classify(pb::Refused::Reason reason, bool name_chosen) {
  switch (reason) {
    case pb::Refused::BAD_TOKEN:
    case pb::Refused::BAD_NAME:
    case pb::Refused::UNSUPPORTED_VERSION:
    case pb::Refused::TAKEN_OVER:
    case pb::Refused::UNAVAILABLE:
    case pb::Refused::TOO_MANY_TUNNELS:
    case pb::Refused::POOL_MISMATCH:
    case pb::Refused::BAD_RULES:
      return on_refusal::exit;
    case pb::Refused::SAME_CLIENT:
      return on_refusal::standby;
    case pb::Refused::NAME_TAKEN:
    case pb::Refused::NAME_RESERVED:
    case pb::Refused::NAME_HELD:
      // A name the server picked is not worth waiting for; one the user chose is.
      if (!name_chosen) return on_refusal::new_name;
      return reason == pb::Refused::NAME_HELD ? on_refusal::retry : on_refusal::exit;
    default:
      return on_refusal::retry;
  }
}

/// What a user can do about a refusal that ends the client.
std::string hint(pb::Refused::Reason reason, const std::string& server) {
  switch (reason) {
    case pb::Refused::BAD_TOKEN:
      return " (server " + server + "; set your token with `grok config set-token TOKEN` or GROK_TOKEN)";
    case pb::Refused::NAME_TAKEN:
    case pb::Refused::NAME_RESERVED:
      return " (choose another with --subdomain, or leave it out for a random name)";
    case pb::Refused::TAKEN_OVER:
      return " (another grok now serves it; this one exits)";
    case pb::Refused::UNSUPPORTED_VERSION:
      return " (update grok or grok-server so both speak the same protocol)";
    case pb::Refused::TOO_MANY_TUNNELS:
      return " (stop one of this token's other tunnels first)";
    case pb::Refused::POOL_MISMATCH:
      return " (pool members share a token, or tokens whose entries name the same pool; choose another --subdomain)";
    default:
      return {};
  }
}

/// Why a stream that never got an answer can never work as set up, or
/// nullopt: TLS on one end only, or a certificate this host does not trust.
std::optional<std::string> setup_mismatch(const client_options& o, const std::string& failure) {
  auto has = [&](const char* text) { return failure.find(text) != std::string::npos; };
  if (!o.insecure && (has("wrong version number") || has("WRONG_VERSION_NUMBER") || has("packet length too long")))
    return "the server at " + o.server + " does not speak TLS on its tunnel port; for a development server "
           "without a certificate, add --insecure (or `insecure: true` in the client config)";
  if (!o.insecure && (has("CERTIFICATE_VERIFY_FAILED") || has("certificate verify failed")))
    return "the server at " + o.server + " presented a certificate this host does not trust; pass --ca FILE "
           "with the CA that signed it (or `ca: FILE` in the client config)";
  if (o.insecure && !has("Connection refused") && client_detail::speaks_tls(o.server, std::chrono::seconds(3)))
    return "the server at " + o.server + " speaks TLS on its tunnel port; drop --insecure (and pass --ca FILE if "
           "a private CA signed its certificate)";
  return std::nullopt;
}

}  // namespace

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using namespace client_detail;

/// The streams of one tunnel held on several nodes (`--server a,b`, or a
/// name with several addresses) serve one name. When the server picks it,
/// one stream at a time asks, and the others take the name it was given.
/// Guarded by client::impl::mu.
struct tunnel_slot;
struct name_group {
  std::string agreed;            // the name a node gave, once one has
  tunnel_slot* asker = nullptr;  // the stream asking for a name now
};

/// One stream of a tunnel of the process: its settings, its kept-alive
/// local connections and its current session.
struct tunnel_slot {
  explicit tunnel_slot(client_options o) : opts(std::move(o)) {}
  client_options opts;
  std::shared_ptr<name_group> group;  // null: the tunnel has one stream
  std::shared_ptr<const local_target> local;
  local_pool pool;
  std::shared_ptr<tunnel_session> current;  // guarded by impl::mu
};

struct client::impl {
  explicit impl(std::vector<client_options> o) {
    // One id for the process: its streams to one server are told apart from another grok's.
    std::string client_id(16, '\0');
    std::random_device rd;
    for (auto& c : client_id) c = static_cast<char>(rd());
    for (auto& x : o) {
      std::vector<client_options> streams;
      for (const auto& server : split_server_list(x.server)) {
        auto addresses = x.proxy.empty() ? addresses_of(server) : std::vector<std::string>{};
        if (addresses.size() > 1) {
          std::string list;
          for (const auto& a : addresses) list += (list.empty() ? "" : ", ") + a;
          spdlog::info("{} has {} addresses; holding a stream to each: {}", server, addresses.size(), list);
        }
        if (addresses.size() < 2) addresses = {std::string()};
        for (const auto& address : addresses) {
          auto& one = streams.emplace_back(x);
          one.server = server;
          one.address = address;
          one.client_id = client_id;
          one.stream = static_cast<uint32_t>(streams.size() - 1);
        }
      }
      auto group = streams.size() > 1 ? std::make_shared<name_group>() : nullptr;
      for (auto& one : streams) {
        if (group) one.via = one.address.empty() ? one.server : one.server + " at " + one.address;
        tunnels.emplace_back(std::make_unique<tunnel_slot>(std::move(one)))->group = group;
      }
    }
  }
  /// The addresses a server's host name resolves to, each as HOST:PORT; none
  /// for an address given as such, or a name that does not resolve now (gRPC
  /// keeps trying it). Only the first answer's family counts: a host with one
  /// IPv4 and one IPv6 address is one server, which two streams of one tunnel
  /// would take from each other; several addresses of one family are nodes.
  std::vector<std::string> addresses_of(const std::string& server) {
    auto colon = server.rfind(':');
    auto host = server.substr(0, colon);
    error_code ec;
    if (host.starts_with('[')) return {};  // an IPv6 address
    asio::ip::make_address(host, ec);
    if (!ec) return {};  // an IPv4 address
    tcp::resolver resolver(ioc);
    auto results = resolver.resolve(host, server.substr(colon + 1), tcp::resolver::address_configured, ec);
    std::vector<std::string> out;
    if (ec) return out;
    for (const auto& r : results) {
      auto ep = r.endpoint();
      if (ep.address().is_v6() != results.begin()->endpoint().address().is_v6()) continue;
      auto text = ep.address().is_v6() ? "[" + ep.address().to_string() + "]:" + std::to_string(ep.port())
                                       : ep.address().to_string() + ":" + std::to_string(ep.port());
      if (std::find(out.begin(), out.end(), text) == out.end()) out.push_back(std::move(text));
    }
    return out;
  }
  std::vector<std::unique_ptr<tunnel_slot>> tunnels;
  asio::io_context ioc;
  grpc::CompletionQueue cq;  // every tunnel stream's completions; one thread polls it
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;

  int run_tunnel(tunnel_slot& t, pb::Tunnel::Stub& stub);
  void stop_all();
};

client::client(client_options opts) {
  std::vector<client_options> one;
  one.push_back(std::move(opts));
  impl_ = std::make_unique<impl>(std::move(one));
}
client::client(std::vector<client_options> tunnels) : impl_(std::make_unique<impl>(std::move(tunnels))) {}
client::~client() = default;

namespace {

std::shared_ptr<grpc::Channel> make_channel(const client_options& o) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(o.heartbeat_interval.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(o.heartbeat_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // an idle tunnel keeps pinging
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  // Each connection of `grok start` is its own, not one gRPC would share between channels.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!o.proxy.empty()) args.SetString(GRPC_ARG_HTTP_PROXY, o.proxy);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (o.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = o.ca_pem;
    if (ssl.pem_root_certs.empty()) {
      // Debian's CA bundle: the same roots curl and browsers on this host trust.
      ssl.pem_root_certs = read_file_if_exists("/etc/ssl/certs/ca-certificates.crt").value_or("");
    }
    creds = grpc::SslCredentials(ssl);
  }
  if (o.address.empty()) return grpc::CreateCustomChannel(o.server, creds, args);
  // One address of the server's name: the certificate and the authority are still the name's.
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, o.server);
  if (!o.insecure) args.SetSslTargetNameOverride(o.server.substr(0, o.server.rfind(':')));
  return grpc::CreateCustomChannel((o.address.starts_with('[') ? "ipv6:" : "ipv4:") + o.address, creds, args);
}

/// "http://user:***@proxy:3128" for the log: the password stays out.
std::string masked_proxy(const std::string& url) {
  auto at = url.rfind('@');
  auto colon = url.find(':', 7);
  if (at == std::string::npos || colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace

int client::run() {
  auto& first = impl_->tunnels.front()->opts;
  for (auto& t : impl_->tunnels) {
    const auto& o = t->opts;
    auto local = std::make_shared<local_target>();
    tcp::resolver resolver(impl_->ioc);
    error_code ec;
    auto results = resolver.resolve(o.local_host, std::to_string(o.local_port), ec);
    if (ec || results.empty()) {
      spdlog::error("cannot resolve local service {}: {}", o.local_host, ec.message());
      return 1;
    }
    local->endpoint = *results.begin();
    bool v6 = o.local_host.find(':') != std::string::npos;
    local->authority = (v6 ? "[" + o.local_host + "]" : o.local_host) + ":" + std::to_string(o.local_port);
    local->shaping = o.shaping;
    local->inspect_index = o.inspect_index;
    local->host = o.local_host;
    local->url = (o.local_tls ? "https://" : "http://") + local->authority;
    local->proxy_protocol = o.proxy_protocol;
    if (o.local_tls) {
      try {
        local->tls = make_local_tls_context(o.upstream_insecure);
      } catch (const std::exception& e) {
        spdlog::error("local service {}: {}", local->url, e.what());
        return 1;
      }
      if (o.upstream_insecure) spdlog::warn("--upstream-insecure: the certificate of {} is not checked", local->url);
    }
    if (o.inspect) o.inspect->set_local_service(o.inspect_index, local);
    t->local = std::move(local);
  }
  if (first.insecure)
    spdlog::warn("--insecure: connecting to {} WITHOUT TLS; the token and all tunnel traffic travel in clear text",
                 first.server);
  if (!first.proxy.empty()) spdlog::info("reaching {} through the proxy {}", first.server, masked_proxy(first.proxy));
  // Up to tunnels_per_connection tunnels share a connection to their server.
  std::vector<pb::Tunnel::Stub*> stub_of;
  std::vector<std::unique_ptr<pb::Tunnel::Stub>> stubs;
  {
    std::map<std::string, std::pair<size_t, pb::Tunnel::Stub*>> per_server;  // server -> (tunnels, current stub)
    for (auto& t : impl_->tunnels) {
      auto& [count, stub] = per_server[t->opts.server + " " + t->opts.address];
      if (count++ % tunnels_per_connection == 0) {
        stubs.push_back(pb::Tunnel::NewStub(make_channel(t->opts)));
        stub = stubs.back().get();
      }
      stub_of.push_back(stub);
    }
  }

  auto work = asio::make_work_guard(impl_->ioc);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < std::max(1u, first.threads); ++i) threads.emplace_back([this] { impl_->ioc.run(); });
  auto poller = start_completion_poller<tunnel_session, tunnel_session::event>(impl_->cq);

  int exit_code = 0;
  if (impl_->tunnels.size() == 1) {
    exit_code = impl_->run_tunnel(*impl_->tunnels.front(), *stub_of.front());
  } else {
    std::mutex codes_mu;
    std::vector<std::thread> loops;
    for (size_t i = 0; i < impl_->tunnels.size(); ++i) {
      loops.emplace_back([&, i] {
        int rc = impl_->run_tunnel(*impl_->tunnels[i], *stub_of[i]);
        if (rc == 0) return;
        std::lock_guard lk(codes_mu);
        exit_code = rc;
        impl_->stop_all();  // one tunnel that cannot be served ends them all, as it would alone
      });
    }
    for (auto& l : loops) l.join();
  }
  // Every session has ended (its outcome came back), so no operation is left on the queue.
  impl_->cq.Shutdown();
  poller.join();
  work.reset();
  for (auto& t : impl_->tunnels) t->pool.clear();
  impl_->ioc.stop();
  for (auto& t : threads) t.join();
  console().flush();  // lines whose flush the stopped loop did not run
  return exit_code;
}

int client::impl::run_tunnel(tunnel_slot& t, pb::Tunnel::Stub& stub) {
  const auto& o = t.opts;
  std::mt19937 rng(std::random_device{}());
  auto backoff = std::chrono::milliseconds(1000);
  // The name each Hello asks for: the user's, or the one the server gave the
  // first time, so the URL survives reconnects and server restarts.
  std::string name = o.subdomain;
  const bool name_chosen = !o.subdomain.empty();
  bool ever_accepted = false;
  bool standing_by = false;  // refused as SAME_CLIENT before: say so once
  int exit_code = 0;
  for (;;) {
    std::optional<session_outcome> outcome;
    {
      std::unique_lock lk(mu);
      if (t.group && name.empty()) {
        // The same name on every node: wait for the stream that is asking, then take its name.
        cv.wait(lk, [&] { return stopping || !t.group->agreed.empty() || !t.group->asker; });
        if (stopping) break;
        name = t.group->agreed;
        if (name.empty()) t.group->asker = &t;
      }
      if (stopping) break;
      t.current = std::make_shared<tunnel_session>(ioc, cq, o, name, t.pool, t.local, [this, &outcome](session_outcome r) {
        std::lock_guard lk2(mu);
        outcome = std::move(r);
        cv.notify_all();
      });
    }
    if (t.group) {
      t.current->on_accepted = [this, &t](const std::string& given) {
        std::lock_guard lk(mu);
        if (t.group->agreed.empty()) t.group->agreed = given;
        if (t.group->asker == &t) t.group->asker = nullptr;
        cv.notify_all();
      };
    }
    t.current->start(stub);
    {
      std::unique_lock lk(mu);
      cv.wait(lk, [&] { return outcome.has_value(); });
      t.current.reset();
      if (t.group && t.group->asker == &t) t.group->asker = nullptr;  // given no name: another stream may ask
      cv.notify_all();
      if (stopping) break;
    }
    t.pool.clear();
    if (outcome->accepted) {
      ever_accepted = true;
      name = outcome->name;
      standing_by = false;
      backoff = std::chrono::milliseconds(1000);
    }
    // Jitter spreads reconnects of many clients after a server restart.
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    auto wait = std::min(std::chrono::milliseconds(static_cast<int64_t>(backoff.count() * jitter(rng))),
                         std::chrono::milliseconds(30000));
    if (outcome->refused) {
      switch (classify(outcome->reason, name_chosen)) {
        case on_refusal::exit:
          spdlog::error("the server refused the tunnel{}: {}{}", o.label.empty() ? "" : " '" + o.label + "'",
                        outcome->message, hint(outcome->reason, o.server));
          exit_code = 1;
          break;
        case on_refusal::new_name:
          spdlog::warn("the server refused the tunnel: {}; asking for a new name", outcome->message);
          if (t.group) {
            std::lock_guard lk(mu);
            if (t.group->agreed == name) t.group->agreed.clear();  // the next stream to ask gets a new one
          }
          name.clear();
          wait = std::chrono::milliseconds(0);
          break;
        case on_refusal::retry:
          spdlog::warn("the server refused the tunnel for now: {}; trying again in {:.1f}s", outcome->message,
                       wait.count() / 1000.0);
          break;
        case on_refusal::standby:
          // Not an error: one server answers at several of the addresses. The
          // stream tries again now and then, in case another node answers there.
          wait = std::chrono::milliseconds(static_cast<int64_t>(30000 * jitter(rng)));
          spdlog::log(standing_by ? spdlog::level::debug : spdlog::level::info,
                      "the stream via {} reaches a server another stream of this tunnel uses; trying it again in {:.0f}s",
                      o.via.empty() ? o.server : o.via, wait.count() / 1000.0);
          standing_by = true;
          break;
      }
      if (exit_code != 0) break;
    } else {
      if (!ever_accepted && !outcome->accepted) {
        if (auto why = setup_mismatch(o, outcome->message)) {
          spdlog::error("{}", *why);
          exit_code = 1;
          break;
        }
      }
      spdlog::warn("tunnel lost{} ({}); reconnecting in {:.1f}s", o.via.empty() ? "" : " via " + o.via,
                   outcome->message, wait.count() / 1000.0);
    }
    {
      std::unique_lock lk(mu);
      if (cv.wait_for(lk, wait, [&] { return stopping; })) break;
    }
    if (wait.count() > 0) backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
  }
  return exit_code;
}

void client::impl::stop_all() {
  std::lock_guard lk(mu);
  stopping = true;
  for (auto& t : tunnels)
    if (t->current) t->current->stop();
  cv.notify_all();
}

void client::stop() { impl_->stop_all(); }

}  // namespace grok
