// Load generator of the scale benchmark (tests/bench/scale.sh).
//
//   grok_bench_scale tunnels --server HOST:PORT --token T --count N [--per-channel K]
//                    [--prefix NAME] [--window W] [--timeout S] [--hold S]
//     Opens N tunnels the way grok does (one Connect stream each, Hello with
//     token and name), then idles: it answers nothing the server sends. K
//     tunnels share one gRPC channel; each channel has its own channel args
//     and a local subchannel pool, so it really is a TCP connection of its
//     own. At most W tunnels wait for their Accepted at once.
//   grok_bench_scale idle --connect HOST:PORT --count N [--timeout S] [--hold S]
//     Opens N TCP connections and sends nothing.
//
// Both print `READY ...` once everything is up (or exit 1 naming what failed
// within the timeout), hold until standard input reaches EOF (or --hold
// seconds pass), then print `END ...` with how many were still open, close
// everything and exit. Every figure is one `key=value` on those lines.

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "grok/tunnel/v1/tunnel.grpc.pb.h"

namespace {

namespace pb = ::grok::tunnel::v1;
using steady = std::chrono::steady_clock;

struct args {
  std::string mode, server, token = "bench-token", prefix = "scale";
  int count = 1000, per_channel = 4, window = 256;
  double timeout_s = 120, hold_s = 600;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "grok_bench_scale: %s\n", why);
  std::fprintf(stderr,
               "usage: grok_bench_scale tunnels --server HOST:PORT --token T --count N [--per-channel K] [--prefix P]\n"
               "                        [--window W] [--timeout S] [--hold S]\n"
               "       grok_bench_scale idle --connect HOST:PORT --count N [--timeout S] [--hold S]\n");
  std::exit(2);
}

args parse(int argc, char** argv) {
  if (argc < 2) usage("no mode");
  args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + k).c_str());
    std::string v = argv[++i];
    if (k == "--server" || k == "--connect") a.server = v;
    else if (k == "--token") a.token = v;
    else if (k == "--count") a.count = std::stoi(v);
    else if (k == "--per-channel") a.per_channel = std::stoi(v);
    else if (k == "--prefix") a.prefix = v;
    else if (k == "--window") a.window = std::stoi(v);
    else if (k == "--timeout") a.timeout_s = std::stod(v);
    else if (k == "--hold") a.hold_s = std::stod(v);
    else usage(("unknown option " + k).c_str());
  }
  if (a.server.empty()) usage("no server address");
  if (a.count < 1 || a.per_channel < 1 || a.window < 1) usage("counts must be positive");
  return a;
}

void raise_fd_limit(int need) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  auto want = static_cast<rlim_t>(need);
  if (rl.rlim_cur >= want) return;
  if (rl.rlim_max < want) rl.rlim_max = want;  // needs root (CAP_SYS_RESOURCE)
  rl.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    std::fprintf(stderr, "grok_bench_scale: cannot raise RLIMIT_NOFILE to %d: %s\n", need, std::strerror(errno));
}

double seconds_since(steady::time_point t) { return std::chrono::duration<double>(steady::now() - t).count(); }

/// Returns once stdin reaches EOF or `hold_s` passed.
void hold(double hold_s) {
  auto until = steady::now() + std::chrono::duration<double>(hold_s);
  char buf[256];
  while (steady::now() < until) {
    pollfd p{0, POLLIN, 0};
    int r = poll(&p, 1, 200);
    if (r > 0) {
      auto n = read(0, buf, sizeof buf);
      if (n <= 0) return;
    }
  }
}

// ---- tunnels -----------------------------------------------------------------------------------

struct counters {
  std::mutex mu;
  std::condition_variable cv;
  int accepted = 0, refused = 0, failed = 0, done = 0, pending = 0;
  std::string first_problem;
};

class idle_tunnel final : public grpc::ClientBidiReactor<pb::Batch, pb::Batch> {
 public:
  idle_tunnel(counters& c, const args& a, int index) : c_(c) {
    auto* h = out_.add_frames()->mutable_hello();
    h->set_protocol_version(1);
    h->set_token(a.token);
    h->set_name(a.prefix + "-" + std::to_string(index));
    h->set_client_version("grok_bench_scale");
    h->set_protocol(pb::Hello::HTTP);
  }

  void start(pb::Tunnel::Stub& stub) {
    stub.async()->Connect(&ctx_, this);
    StartWrite(&out_);
    StartRead(&in_);
    StartCall();
  }
  void cancel() { ctx_.TryCancel(); }
  bool open() const { return accepted_ && !ended_.load(); }

  void OnWriteDone(bool) override {}
  void OnReadDone(bool ok) override {
    if (!ok) {
      ended_ = true;
      if (!accepted_) settle(false, "stream ended before Accepted");
      return;
    }
    for (const auto& f : in_.frames()) {
      if (f.has_accepted() && !accepted_) {
        accepted_ = true;
        settle(true, {});
      } else if (f.has_refused() && !accepted_) {
        settle(false, "refused: " + f.refused().message());
      }
    }
    // Idle: whatever else comes (requests, GoAway) goes unanswered.
    in_.Clear();
    StartRead(&in_);
  }
  void OnDone(const grpc::Status& s) override {
    ended_ = true;
    std::lock_guard lk(c_.mu);
    if (!settled_) {
      settled_ = true;
      --c_.pending;
      ++c_.failed;
      if (c_.first_problem.empty()) c_.first_problem = "stream closed: " + s.error_message();
    }
    ++c_.done;
    c_.cv.notify_all();
  }

 private:
  void settle(bool ok, const std::string& why) {
    std::lock_guard lk(c_.mu);
    if (settled_) return;
    settled_ = true;
    --c_.pending;
    if (ok) {
      ++c_.accepted;
    } else {
      ++c_.refused;
      if (c_.first_problem.empty()) c_.first_problem = why;
    }
    c_.cv.notify_all();
  }

  counters& c_;
  grpc::ClientContext ctx_;
  pb::Batch out_, in_;
  std::atomic<bool> accepted_{false};  // written by reactions, read by main at the end
  bool settled_ = false;   // under c_.mu
  std::atomic<bool> ended_{false};
};

int run_tunnels(const args& a) {
  raise_fd_limit(a.count / a.per_channel + 4096);
  int channels = (a.count + a.per_channel - 1) / a.per_channel;
  std::vector<std::unique_ptr<pb::Tunnel::Stub>> stubs;
  stubs.reserve(static_cast<size_t>(channels));
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments ch;
    // Distinct args and a private subchannel pool: channel i gets a TCP connection of its own.
    ch.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    ch.SetInt("grok.bench.channel", i);
    ch.SetMaxReceiveMessageSize(8 << 20);
    ch.SetMaxSendMessageSize(8 << 20);
    stubs.push_back(pb::Tunnel::NewStub(grpc::CreateCustomChannel(a.server, grpc::InsecureChannelCredentials(), ch)));
  }
  counters c;
  std::vector<std::unique_ptr<idle_tunnel>> tunnels;
  tunnels.reserve(static_cast<size_t>(a.count));
  auto t0 = steady::now();
  auto deadline = t0 + std::chrono::duration<double>(a.timeout_s);
  bool timed_out = false;
  for (int i = 0; i < a.count && !timed_out; ++i) {
    {
      std::unique_lock lk(c.mu);
      if (!c.cv.wait_until(lk, deadline, [&] { return c.pending < a.window; })) timed_out = true;
      if (c.refused + c.failed > 0) break;
      ++c.pending;
    }
    if (timed_out) break;
    tunnels.push_back(std::make_unique<idle_tunnel>(c, a, i));
    tunnels.back()->start(*stubs[static_cast<size_t>(i / a.per_channel)]);
    if ((i + 1) % 1000 == 0) std::fprintf(stderr, "started %d tunnels (%.1f s)\n", i + 1, seconds_since(t0));
  }
  int accepted = 0;
  std::string problem;
  {
    std::unique_lock lk(c.mu);
    c.cv.wait_until(lk, deadline, [&] { return c.accepted == a.count || c.refused + c.failed > 0; });
    accepted = c.accepted;
    problem = c.first_problem;
  }
  double wall = seconds_since(t0);
  if (accepted != a.count) {
    std::printf("FAILED accepted=%d of count=%d after wall_s=%.3f: %s\n", accepted, a.count, wall,
                problem.empty() ? "timed out" : problem.c_str());
    std::fflush(stdout);
    std::_Exit(1);
  }
  std::printf("READY tunnels=%d channels=%d per_channel=%d register_wall_s=%.3f tunnels_per_s=%.0f\n", a.count,
              channels, a.per_channel, wall, a.count / wall);
  std::fflush(stdout);
  hold(a.hold_s);
  int open = 0;
  for (auto& t : tunnels) open += t->open() ? 1 : 0;
  std::printf("END still_open=%d of %d\n", open, a.count);
  std::fflush(stdout);
  for (auto& t : tunnels) t->cancel();
  {
    std::unique_lock lk(c.mu);
    c.cv.wait_for(lk, std::chrono::seconds(10), [&] { return c.done == static_cast<int>(tunnels.size()); });
  }
  std::_Exit(open == a.count ? 0 : 1);  // skip tearing down thousands of channels one by one
}

// ---- idle public connections -----------------------------------------------------------------------

int run_idle(const args& a) {
  raise_fd_limit(a.count + 1024);
  auto colon = a.server.rfind(':');
  if (colon == std::string::npos) usage("--connect wants HOST:PORT");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(a.server.substr(colon + 1))));
  if (inet_pton(AF_INET, a.server.substr(0, colon).c_str(), &addr.sin_addr) != 1) usage("--connect wants an IPv4 address");
  std::vector<int> fds;
  fds.reserve(static_cast<size_t>(a.count));
  auto t0 = steady::now();
  for (int i = 0; i < a.count; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::printf("FAILED opened=%d of count=%d: %s\n", i, a.count, std::strerror(errno));
      std::fflush(stdout);
      std::_Exit(1);
    }
    fds.push_back(fd);
    if (seconds_since(t0) > a.timeout_s) {
      std::printf("FAILED opened=%d of count=%d: timed out\n", i + 1, a.count);
      std::fflush(stdout);
      std::_Exit(1);
    }
  }
  double wall = seconds_since(t0);
  std::printf("READY connections=%d open_wall_s=%.3f\n", a.count, wall);
  std::fflush(stdout);
  hold(a.hold_s);
  // A connection the server closed (or reset) is readable with EOF or has an error.
  int open = 0;
  std::vector<pollfd> p(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) p[i] = {fds[i], POLLIN, 0};
  poll(p.data(), p.size(), 0);
  for (auto& x : p) open += x.revents == 0 ? 1 : 0;
  std::printf("END still_open=%d of %d\n", open, a.count);
  std::fflush(stdout);
  // Reset rather than FIN: no TIME_WAIT left behind on the shared loopback port range.
  linger l{1, 0};
  for (int fd : fds) {
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
  }
  return open == a.count ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  auto a = parse(argc, argv);
  if (a.mode == "tunnels") return run_tunnels(a);
  if (a.mode == "idle") return run_idle(a);
  usage(("unknown mode " + a.mode).c_str());
}
