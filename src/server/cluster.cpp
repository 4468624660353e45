#include "cluster.hpp"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "etcd/etcd_v3.grpc.pb.h"
#include "grok/cluster/v1/cluster.pb.h"
#include "grok/files.hpp"

namespace grok::server_detail {

namespace {

namespace etcd = etcdserverpb;
using sclock = std::chrono::steady_clock;
using namespace std::chrono_literals;

/// How long one etcd call may take before the store counts as not answering.
constexpr auto call_timeout = 2s;
/// Claims waiting for the claim thread; past this a claim is refused at once.
constexpr size_t max_queued_jobs = 10000;

int64_t ns(sclock::time_point t) { return t.time_since_epoch().count(); }

/// The etcd members as one gRPC target ("ipv4:A:P,B:P"): gRPC connects to the
/// first that answers and moves on when it fails. Host names are resolved now.
std::string etcd_target(const std::vector<std::string>& endpoints, bool& tls) {
  std::vector<std::string> v4, v6;
  tls = false;
  for (const auto& raw : endpoints) {
    std::string s = raw;
    if (s.starts_with("https://")) {
      tls = true;
      s = s.substr(8);
    } else if (s.starts_with("http://")) {
      s = s.substr(7);
    }
    if (!s.empty() && s.back() == '/') s.pop_back();
    auto colon = s.rfind(':');
    std::string host = s.substr(0, colon), port = s.substr(colon + 1);
    if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
      throw std::runtime_error("cluster.etcd_endpoints: cannot resolve '" + raw + "': " + gai_strerror(rc));
    for (auto* a = res; a; a = a->ai_next) {
      char buf[INET6_ADDRSTRLEN] = {};
      if (a->ai_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, buf, sizeof buf);
        v4.push_back(std::string(buf) + ":" + port);
      } else if (a->ai_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, buf, sizeof buf);
        v6.push_back("[" + std::string(buf) + "]:" + port);
      }
    }
    freeaddrinfo(res);
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& a : v) out += (out.empty() ? "" : ",") + a;
    return out;
  };
  if (!v4.empty()) return "ipv4:" + join(v4);
  return "ipv6:" + join(v6);
}

std::shared_ptr<grpc::Channel> etcd_channel(const server_config& c) {
  bool tls = false;
  auto target = etcd_target(c.etcd_endpoints, tls);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (tls) {
    grpc::SslCredentialsOptions o;
    if (!c.cluster_ca_file.empty()) o.pem_root_certs = read_file(c.cluster_ca_file);
    if (!c.cluster_cert_file.empty()) {
      o.pem_cert_chain = read_file(c.cluster_cert_file);
      o.pem_private_key = read_file(c.cluster_key_file);
    }
    creds = grpc::SslCredentials(o);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  // A member that went away is replaced quickly: reconnect attempts start at
  // 100 ms and back off to 1 s, not gRPC's default of 2 minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // etcd answers pings more often than every 5 s with GOAWAY (--grpc-keepalive-min-time).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
  // Calls take turns among the members that are up, so a member that cannot
  // serve (cut off from the others) is not the only one asked.
  args.SetLoadBalancingPolicyName("round_robin");
  return grpc::CreateCustomChannel(target, creds, args);
}

void set_deadline(grpc::ClientContext& ctx, std::chrono::milliseconds d) { ctx.set_deadline(std::chrono::system_clock::now() + d); }

std::string describe(const grpc::Status& st) {
  if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) return "etcd did not answer in time";
  return st.error_message().empty() ? "gRPC status " + std::to_string(st.error_code()) : st.error_message();
}

}  // namespace

struct cluster_node::impl {
  impl(std::shared_ptr<const server_config> c, hooks hk)
      : cfg(std::move(c)), h(std::move(hk)), prefix(cfg->cluster_prefix), node(cfg->node_id) {}

  std::shared_ptr<const server_config> cfg;
  hooks h;
  const std::string prefix;
  const std::string node;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcd::KV::Stub> kv;
  std::unique_ptr<etcd::Lease::Stub> leases;
  std::unique_ptr<etcd::Watch::Stub> watches;

  std::atomic<int64_t> lease_id{0};
  std::atomic<int64_t> serve_until{0};  ///< steady-clock ns: local tunnels may serve until then
  std::atomic<bool> stopping{false};
  std::atomic<bool> able_to_claim{false};  ///< holds a lease, and etcd answered the last renewal

  mutable std::mutex mu;  // guards everything below
  std::condition_variable cv;
  std::string state_ = "starting";
  std::string detail_ = "joining the cluster";
  bool listed_ = false;
  std::unordered_map<std::string, std::map<std::string, name_record>> names_;  // name -> node -> record
  std::map<std::string, std::string> nodes_;  // node -> advertise
  std::multimap<sclock::time_point, std::function<void(bool stopping)>> jobs_;
  std::shared_ptr<grpc::ClientContext> watch_ctx_;

  std::thread lease_thread, watch_thread, job_thread;

  /// Claim-thread only: the record this node wrote for each name it holds,
  /// the lease it is under and which release it is in (a later release's
  /// grace is not cut short by an earlier one's timer).
  struct held {
    name_record rec;
    int64_t lease = 0;
    uint64_t release = 0;
  };
  std::unordered_map<std::string, held> mine_;
  uint64_t releases_ = 0;

  // ---- common ----
  void set_state(const std::string& s, const std::string& detail) {
    std::string was;
    {
      std::lock_guard lk(mu);
      if (state_ == s && detail_ == detail) return;
      was = std::exchange(state_, s);
      detail_ = detail;
    }
    able_to_claim = s == "ok";
    if (s == "ok")
      spdlog::info("cluster: node {} is {}", node, was == "starting" ? "in the cluster" : "back in touch with etcd");
    else if (s != was)
      spdlog::warn("cluster: {}: {}", s == "no-quorum" ? "etcd has no quorum; serving the tunnels this node holds, "
                                                         "refusing new names"
                                                       : "etcd unreachable",
                   detail);
  }

  /// Waits `d` or until stop(); false when stopping.
  bool pause(sclock::duration d) {
    std::unique_lock lk(mu);
    cv.wait_for(lk, d, [&] { return stopping.load(); });
    return !stopping;
  }

  void post(std::function<void(bool)> fn, sclock::time_point at = sclock::time_point::min()) {
    {
      std::lock_guard lk(mu);
      jobs_.emplace(at, std::move(fn));
    }
    cv.notify_all();
  }

  // ---- lease ----
  void lease_loop() {
    while (!stopping) {
      if (lease_id == 0 && !grant()) {
        if (!pause(500ms)) break;
        continue;
      }
      if (!pause(cfg->lease_ttl / 3)) break;
      renew();
    }
  }

  bool grant() {
    auto t0 = sclock::now();
    grpc::ClientContext ctx;
    set_deadline(ctx, call_timeout);
    etcd::LeaseGrantRequest rq;
    rq.set_ttl(cfg->lease_ttl.count() / 1000);
    etcd::LeaseGrantResponse rs;
    auto st = leases->LeaseGrant(&ctx, rq, &rs);
    if (!st.ok() || !rs.error().empty()) {
      failed(st.ok() ? rs.error() : describe(st));
      return false;
    }
    grok::cluster::v1::NodeRecord rec;
    rec.set_node_id(node);
    rec.set_advertise(cfg->advertise);
    rec.set_started_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count());
    grpc::ClientContext pctx;
    set_deadline(pctx, call_timeout);
    etcd::PutRequest put;
    put.set_key(node_key(prefix, node));
    put.set_value(rec.SerializeAsString());
    put.set_lease(rs.id());
    etcd::PutResponse prs;
    if (auto pst = kv->Put(&pctx, put, &prs); !pst.ok()) {
      failed(describe(pst));
      return false;
    }
    serve_until = ns(t0 + std::chrono::seconds(rs.ttl()));
    lease_id = rs.id();
    spdlog::info("cluster: node {} holds lease {:x} (ttl {}s), advertising {}", node, rs.id(), rs.ttl(), cfg->advertise);
    set_state("ok", "");
    return true;
  }

  /// Renews the lease; a member that cannot (it has no leader, or it is cut
  /// off from the others) is passed over for the next one.
  void renew() {
    std::string why;
    for (size_t i = 0; i < cfg->etcd_endpoints.size() && !stopping; ++i) {
      auto r = renew_once();
      if (r == renewal::done) return;
      if (r == renewal::lost) return lost("its cluster lease expired");
      why = last_error_;
    }
    failed(why);
  }

  enum class renewal { done, lost, failed };
  std::string last_error_;  // lease thread only

  renewal renew_once() {
    auto t0 = sclock::now();
    int64_t id = lease_id;
    grpc::ClientContext ctx;
    // A member without a leader answers at once instead of holding the call.
    ctx.AddMetadata("hasleader", "true");
    set_deadline(ctx, std::min<std::chrono::milliseconds>(cfg->lease_ttl / 3, call_timeout));
    auto stream = leases->LeaseKeepAlive(&ctx);
    etcd::LeaseKeepAliveRequest rq;
    rq.set_id(id);
    etcd::LeaseKeepAliveResponse rs;
    bool answered = stream->Write(rq) && stream->Read(&rs);
    ctx.TryCancel();
    auto st = stream->Finish();
    if (answered) {
      if (rs.ttl() <= 0) return renewal::lost;
      serve_until = ns(t0 + std::chrono::seconds(rs.ttl()));
      set_state("ok", "");
      return renewal::done;
    }
    last_error_ = describe(st);
    return renewal::failed;
  }

  /// A call failed: does any member answer at all?
  void failed(const std::string& why) {
    grpc::ClientContext ctx;
    set_deadline(ctx, 1s);
    etcd::RangeRequest rq;
    rq.set_key(node_key(prefix, node));
    rq.set_serializable(true);  // answered by the member itself, leader or not
    rq.set_count_only(true);
    etcd::RangeResponse rs;
    auto now = sclock::now();
    if (kv->Range(&ctx, rq, &rs).ok()) {
      // A member answers but cannot renew: no leader, so nobody can take a
      // name either. What this node holds stays served.
      if (lease_id != 0) serve_until = std::max<int64_t>(serve_until, ns(now + cfg->lease_ttl));
      set_state("no-quorum", why);
      return;
    }
    set_state("unreachable", why);
    if (lease_id != 0 && ns(now) >= serve_until) lost("no etcd member answered for cluster.lease_ttl");
  }

  void lost(const std::string& why) {
    lease_id = 0;
    serve_until = 0;
    able_to_claim = false;
    {
      std::lock_guard lk(mu);
      state_ = "unreachable";
      detail_ = "this node " + why + "; joining again";
    }
    spdlog::warn("cluster: this node {}: it no longer owns its names; closing its tunnels (they reconnect and claim "
                 "them again)", why);
    if (h.fence) h.fence("this server node " + why);
  }

  // ---- watch ----
  void watch_loop() {
    while (!stopping) {
      int64_t rev = list();
      if (rev < 0) {
        if (!pause(500ms)) break;
        continue;
      }
      auto ctx = std::make_shared<grpc::ClientContext>();
      ctx->AddMetadata("hasleader", "true");  // a member that loses its leader ends the watch; the map is listed again
      {
        std::lock_guard lk(mu);
        if (stopping) break;
        watch_ctx_ = ctx;
      }
      auto stream = watches->Watch(ctx.get());
      etcd::WatchRequest rq;
      auto* c = rq.mutable_create_request();
      c->set_key(prefix);
      c->set_range_end(prefix_range_end(prefix));
      c->set_start_revision(rev + 1);
      if (stream->Write(rq)) {
        etcd::WatchResponse rs;
        while (stream->Read(&rs)) {
          if (rs.compact_revision() > 0 || rs.canceled()) break;  // list again
          std::lock_guard lk(mu);
          for (const auto& ev : rs.events()) apply(ev.kv(), ev.type() == etcd::Event::DELETE);
        }
      }
      ctx->TryCancel();
      stream->Finish();
      {
        std::lock_guard lk(mu);
        watch_ctx_.reset();
      }
      if (!pause(200ms)) break;
    }
  }

  /// Reads every key under the prefix into the map; the revision read, or -1.
  int64_t list() {
    grpc::ClientContext ctx;
    set_deadline(ctx, call_timeout);
    etcd::RangeRequest rq;
    rq.set_key(prefix);
    rq.set_range_end(prefix_range_end(prefix));
    etcd::RangeResponse rs;
    if (!kv->Range(&ctx, rq, &rs).ok()) return -1;
    std::lock_guard lk(mu);
    names_.clear();
    nodes_.clear();
    for (const auto& k : rs.kvs()) apply(k, false);
    listed_ = true;
    return rs.header().revision();
  }

  /// mu held.
  void apply(const etcd::KeyValue& k, bool deleted) {
    if (auto parts = split_name_key(prefix, k.key())) {
      if (deleted) {
        auto it = names_.find(parts->name);
        if (it == names_.end()) return;
        it->second.erase(parts->node);
        if (it->second.empty()) names_.erase(it);
        return;
      }
      auto rec = decode_name_record(k.value());
      if (!rec) {
        spdlog::warn("cluster: {} holds no name record; ignored", k.key());
        return;
      }
      rec->node = parts->node;
      names_[parts->name][parts->node] = std::move(*rec);
      return;
    }
    auto nodes = prefix + "nodes/";
    if (!k.key().starts_with(nodes)) return;
    auto id = k.key().substr(nodes.size());
    if (deleted) {
      nodes_.erase(id);
      return;
    }
    grok::cluster::v1::NodeRecord rec;
    if (rec.ParseFromString(k.value())) nodes_[id] = rec.advertise();
  }

  // ---- claims (one at a time, on the job thread) ----
  void job_loop() {
    std::unique_lock lk(mu);
    for (;;) {
      if (stopping) break;
      if (jobs_.empty()) {
        cv.wait(lk);
        continue;
      }
      auto it = jobs_.begin();
      if (it->first > sclock::now()) {
        cv.wait_until(lk, it->first);
        continue;
      }
      auto fn = std::move(it->second);
      jobs_.erase(it);
      lk.unlock();
      fn(false);
      lk.lock();
    }
    auto left = std::move(jobs_);
    jobs_.clear();
    lk.unlock();
    for (auto& [at, fn] : left) fn(true);
  }

  refusal unavailable(const std::string& why) const {
    return refusal{pb::Refused::CLUSTER_UNAVAILABLE,
                   "the cluster cannot take new names now (" + why + "); retrying", false};
  }

  void do_claim(const std::string& name, const claimant& who, bool tcp, const std::string& label,
                const claim_done& done) {
    int64_t lease = lease_id;
    if (lease == 0 || !able_to_claim) {
      std::string why;
      {
        std::lock_guard lk(mu);
        why = state_ == "starting" ? "this node is still joining it" : "etcd: " + detail_;
      }
      return done(unavailable(why));
    }
    name_record mine{node, who.token, who.pool_key, who.pool, tcp, label, false};
    auto value = encode_name_record(mine);
    auto key = name_key(prefix, name, node);
    auto pfx = name_key_prefix(prefix, name);
    auto end = prefix_range_end(pfx);
    for (int attempt = 0; attempt < 8; ++attempt) {
      grpc::ClientContext rctx;
      set_deadline(rctx, call_timeout);
      etcd::RangeRequest rq;
      rq.set_key(pfx);
      rq.set_range_end(end);
      etcd::RangeResponse rs;
      if (auto st = kv->Range(&rctx, rq, &rs); !st.ok()) return done(unavailable(describe(st)));
      std::vector<name_record> others;
      for (const auto& k : rs.kvs()) {
        auto parts = split_name_key(prefix, k.key());
        if (!parts || parts->node == node) continue;
        if (auto rec = decode_name_record(k.value())) others.push_back(std::move(*rec));
      }
      if (auto verdict = judge_cluster_claim(others, who, tcp, cfg->auth_required()); verdict != claim_result::ok)
        return done(refuse_claim(verdict, name, *cfg));
      // Written only if no record of the name changed since it was read.
      grpc::ClientContext tctx;
      set_deadline(tctx, call_timeout);
      etcd::TxnRequest txn;
      auto* cmp = txn.add_compare();
      cmp->set_key(pfx);
      cmp->set_range_end(end);
      cmp->set_target(etcd::Compare::MOD);
      cmp->set_result(etcd::Compare::LESS);
      cmp->set_mod_revision(rs.header().revision() + 1);
      auto* put = txn.add_success()->mutable_request_put();
      put->set_key(key);
      put->set_value(value);
      put->set_lease(lease);
      etcd::TxnResponse trs;
      if (auto st = kv->Txn(&tctx, txn, &trs); !st.ok()) return done(unavailable(describe(st)));
      if (trs.succeeded()) {
        mine_[name] = held{mine, lease, 0};
        return done(std::nullopt);
      }
    }
    done(unavailable("the name's records kept changing"));
  }

  void do_release(const std::string& name, std::chrono::milliseconds grace) {
    auto it = mine_.find(name);
    if (it == mine_.end()) return;
    if (it->second.lease != lease_id) {  // the record went with that lease
      mine_.erase(it);
      return;
    }
    if (h.held_locally && h.held_locally(name)) return;  // a tunnel took it again since
    auto key = name_key(prefix, name, node);
    if (grace.count() <= 0) {
      mine_.erase(it);
      return erase(key, std::nullopt);
    }
    auto rec = it->second.rec;
    rec.grace = true;
    it->second.rec = rec;
    const uint64_t release = it->second.release = ++releases_;
    auto value = encode_name_record(rec);
    grpc::ClientContext ctx;
    set_deadline(ctx, call_timeout);
    etcd::PutRequest put;
    put.set_key(key);
    put.set_value(value);
    put.set_lease(it->second.lease);
    etcd::PutResponse rs;
    // Should this fail, the record stays live until the grace ends: the name is held a little longer, not lost.
    if (auto st = kv->Put(&ctx, put, &rs); !st.ok())
      spdlog::warn("cluster: could not mark '{}' offline in etcd: {}", name, describe(st));
    post(
        [this, name, release](bool stop) {
          if (stop) return;
          auto m = mine_.find(name);
          if (m == mine_.end() || m->second.release != release || !m->second.rec.grace) return;
          if (h.held_locally && h.held_locally(name)) return;
          mine_.erase(m);
          erase(name_key(prefix, name, node), std::nullopt);
        },
        sclock::now() + grace);
  }

  /// Deletes `key`, only while it still holds `value` when one is given.
  void erase(const std::string& key, const std::optional<std::string>& value) {
    grpc::ClientContext ctx;
    set_deadline(ctx, call_timeout);
    etcd::TxnRequest txn;
    if (value) {
      auto* cmp = txn.add_compare();
      cmp->set_key(key);
      cmp->set_target(etcd::Compare::VALUE);
      cmp->set_result(etcd::Compare::EQUAL);
      cmp->set_value(*value);
    }
    txn.add_success()->mutable_request_delete_range()->set_key(key);
    etcd::TxnResponse rs;
    if (auto st = kv->Txn(&ctx, txn, &rs); !st.ok())
      spdlog::warn("cluster: could not delete {}: {}", key, describe(st));
  }
};

cluster_node::cluster_node(std::shared_ptr<const server_config> cfg, hooks h)
    : impl_(std::make_unique<impl>(std::move(cfg), std::move(h))) {}

cluster_node::~cluster_node() { stop(); }

void cluster_node::start() {
  auto& m = *impl_;
  m.channel = etcd_channel(*m.cfg);
  m.kv = etcd::KV::NewStub(m.channel);
  m.leases = etcd::Lease::NewStub(m.channel);
  m.watches = etcd::Watch::NewStub(m.channel);
  m.lease_thread = std::thread([&m] { m.lease_loop(); });
  m.watch_thread = std::thread([&m] { m.watch_loop(); });
  m.job_thread = std::thread([&m] { m.job_loop(); });
  spdlog::info("cluster: node {} joining through etcd at {} (prefix {})", m.node,
               [&] {
                 std::string s;
                 for (const auto& e : m.cfg->etcd_endpoints) s += (s.empty() ? "" : ",") + e;
                 return s;
               }(),
               m.prefix);
}

void cluster_node::stop() {
  auto& m = *impl_;
  if (!m.lease_thread.joinable()) return;
  {
    std::lock_guard lk(m.mu);
    m.stopping = true;
    if (m.watch_ctx_) m.watch_ctx_->TryCancel();
  }
  m.cv.notify_all();
  m.lease_thread.join();
  m.watch_thread.join();
  m.job_thread.join();
  // The names go at once rather than when the lease runs out.
  if (int64_t id = m.lease_id.exchange(0); id != 0) {
    grpc::ClientContext ctx;
    set_deadline(ctx, 1s);
    etcd::LeaseRevokeRequest rq;
    rq.set_id(id);
    etcd::LeaseRevokeResponse rs;
    auto st = m.leases->LeaseRevoke(&ctx, rq, &rs);
    if (st.ok())
      spdlog::info("cluster: node {} left the cluster; its names are free", m.node);
    else
      spdlog::warn("cluster: could not revoke this node's lease ({}); its names are free in {}s", describe(st),
                   m.cfg->lease_ttl.count() / 1000);
  }
}

void cluster_node::claim(const std::string& name, const claimant& who, bool tcp, const std::string& token_label,
                         claim_done done) {
  auto& m = *impl_;
  {
    std::lock_guard lk(m.mu);
    if (m.jobs_.size() >= max_queued_jobs) {
      done(m.unavailable("too many claims waiting"));
      return;
    }
  }
  m.post([&m, name, who, tcp, token_label, done = std::move(done)](bool stop) {
    if (stop) return done(refusal{pb::Refused::DRAINING, "the server is shutting down; try again shortly", false});
    m.do_claim(name, who, tcp, token_label, done);
  });
}

void cluster_node::release(const std::string& name, std::chrono::milliseconds grace) {
  auto& m = *impl_;
  m.post([&m, name, grace](bool stop) {
    if (!stop) m.do_release(name, grace);
  });
}

bool cluster_node::serving() const {
  return ns(sclock::now()) < impl_->serve_until.load(std::memory_order_relaxed);
}

cluster_node::status cluster_node::state() const {
  auto& m = *impl_;
  std::lock_guard lk(m.mu);
  status s;
  s.state = m.state_;
  s.detail = m.detail_;
  s.ready = m.state_ == "ok" && m.listed_;
  s.names = m.names_.size();
  s.nodes = m.nodes_.size();
  return s;
}

const std::string& cluster_node::node_id() const { return impl_->node; }

std::vector<name_record> cluster_node::remote_holders(const std::string& name) const {
  auto& m = *impl_;
  std::lock_guard lk(m.mu);
  std::vector<name_record> out;
  auto it = m.names_.find(name);
  if (it == m.names_.end()) return out;
  for (const auto& [node, rec] : it->second)
    if (node != m.node && !rec.grace && m.nodes_.contains(node)) out.push_back(rec);
  return out;
}

std::vector<std::pair<std::string, name_record>> cluster_node::remote_records() const {
  auto& m = *impl_;
  std::lock_guard lk(m.mu);
  std::vector<std::pair<std::string, name_record>> out;
  for (const auto& [name, per_node] : m.names_)
    for (const auto& [node, rec] : per_node)
      if (node != m.node && !rec.grace && m.nodes_.contains(node)) out.emplace_back(name, rec);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second.node < b.second.node;
  });
  return out;
}

std::optional<std::string> cluster_node::advertise_of(const std::string& node) const {
  auto& m = *impl_;
  std::lock_guard lk(m.mu);
  auto it = m.nodes_.find(node);
  if (it == m.nodes_.end()) return std::nullopt;
  return it->second;
}

}  // namespace grok::server_detail
