// Write-path micro-benchmark: N worker threads send frames to one gRPC-like
// stream, three ways side by side.
//
//   mutex          the design note's proposal: the worker that built the frame
//                  locks a mutex around each send and blocks until the write
//                  completes (a synchronous stream Write under a lock);
//   strand_1frame  an asio strand owns the stream, one frame per StartWrite;
//   grok_batched   grok's own frame_writer (include/grok/frame_writer.hpp) on
//                  a strand: each StartWrite carries everything queued.
//
// Shared by all three: a pool of N threads running one io_context (grok's
// worker pool); a closed loop of `in_flight` requests, each of which burns
// T_proc of CPU (a calibrated loop, so a preempted thread does not finish its
// work early), builds one Data frame of `frame` bytes and hands it to the
// send path; and the sink: one write in flight at a time (a second StartWrite
// before OnWriteDone aborts the run), the write serializes the Batch (real
// per-byte cost) and then occupies the stream for T_send of busy time on the
// sink's own thread, and OnWriteDone arrives on that thread, as gRPC's does.
// The loop runs in steady state for the whole cell: a finished request starts
// the next one at once, and a timed round is the time the next m frames take
// to complete, so no round pays for filling or draining the pipeline.
//
// Reported per cell: frames/s (items_per_second), payload bytes/s, p50/p99 of
// enqueue -> write complete, frames per write, the mean time one write took,
// and the CPU cores the process used meanwhile (the machine is shared).

#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "grok/frame_writer.hpp"

namespace {

namespace asio = boost::asio;
namespace pb = grok::pb;
using steady = std::chrono::steady_clock;

int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch()).count(); }

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// ---- T_proc: CPU work of a fixed size ----------------------------------------------------------

uint64_t burn(uint64_t iterations) {
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (uint64_t i = 0; i < iterations; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  benchmark::DoNotOptimize(x);
  return x;
}

/// Loop iterations per microsecond of this thread's CPU time (best of several
/// runs, so time the thread spent preempted does not count).
double calibrate() {
  constexpr uint64_t n = 4'000'000;
  double best = 1e30;
  for (int i = 0; i < 7; ++i) {
    double t0 = thread_cpu_ns();
    burn(n);
    best = std::min(best, thread_cpu_ns() - t0);
  }
  return n / (best / 1000.0);
}

double iterations_per_us = 0;

// ---- the sink: a gRPC-like stream ----------------------------------------------------------------

/// Mirrors grpc::ClientBidiReactor's write half: StartWrite hands a message
/// to the transport; OnWriteDone is called on the transport's thread.
class fake_stream {
 public:
  explicit fake_stream(std::chrono::nanoseconds t_send) : t_send_(t_send), thread_([this] { run(); }) {}
  virtual ~fake_stream() { stop(); }
  fake_stream(const fake_stream&) = delete;
  fake_stream& operator=(const fake_stream&) = delete;

  void StartWrite(const pb::Batch* b) {
    std::lock_guard lk(mu_);
    if (pending_ != nullptr) {
      std::fprintf(stderr, "write_path: StartWrite while a write is in flight\n");
      std::abort();
    }
    pending_ = b;
    started_ns_ = now_ns();
    cv_.notify_one();
  }
  virtual void OnWriteDone(bool ok) = 0;

  void stop() {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      stopping_ = true;
      cv_.notify_one();
    }
    thread_.join();
  }
  uint64_t writes() const { return writes_.load(std::memory_order_relaxed); }
  uint64_t frames() const { return frames_.load(std::memory_order_relaxed); }
  uint64_t write_ns() const { return write_ns_.load(std::memory_order_relaxed); }

 private:
  void run() {
    std::string wire;
    for (;;) {
      const pb::Batch* b = nullptr;
      int64_t started = 0;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return pending_ != nullptr || stopping_; });
        if (pending_ == nullptr) return;
        b = pending_;
        started = started_ns_;
      }
      // What gRPC does with a message: serialize it, then the transport is
      // busy with it (framing, syscalls) for T_send.
      b->SerializeToString(&wire);
      benchmark::DoNotOptimize(wire.data());
      auto n = static_cast<uint64_t>(b->frames_size());
      auto until = steady::now() + t_send_;
      while (steady::now() < until) {
      }
      write_ns_.fetch_add(static_cast<uint64_t>(now_ns() - started), std::memory_order_relaxed);
      writes_.fetch_add(1, std::memory_order_relaxed);
      frames_.fetch_add(n, std::memory_order_relaxed);
      {
        std::lock_guard lk(mu_);
        pending_ = nullptr;
      }
      OnWriteDone(true);
    }
  }

  std::chrono::nanoseconds t_send_;
  std::mutex mu_;
  std::condition_variable cv_;
  const pb::Batch* pending_ = nullptr;
  int64_t started_ns_ = 0;
  bool stopping_ = false;
  std::atomic<uint64_t> writes_{0}, frames_{0}, write_ns_{0};
  std::thread thread_;  // last: starts after the members it uses
};

// ---- measurements --------------------------------------------------------------------------------

/// Enqueue -> write-complete latencies (ns), a ring of the latest samples.
class latencies {
 public:
  latencies() : ring_(1u << 21) {}
  void add(int64_t ns) {
    auto i = next_.fetch_add(1, std::memory_order_relaxed);
    ring_[i & (ring_.size() - 1)] = static_cast<uint32_t>(std::clamp<int64_t>(ns, 0, UINT32_MAX));
  }
  void reset() { next_ = 0; }
  /// Median and 99th percentile, microseconds.
  std::pair<double, double> p50_p99() {
    size_t n = std::min<size_t>(next_.load(), ring_.size());
    if (n == 0) return {0, 0};
    std::vector<uint32_t> v(ring_.begin(), ring_.begin() + static_cast<std::ptrdiff_t>(n));
    auto at = [&](double p) {
      auto k = static_cast<size_t>(p * static_cast<double>(n - 1));
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
      return v[k] / 1000.0;
    };
    double p50 = at(0.50);
    double p99 = at(0.99);
    return {p50, p99};
  }

 private:
  std::vector<uint32_t> ring_;
  std::atomic<uint64_t> next_{0};
};

enum class design { mutex, strand_1frame, grok_batched };

struct cell {
  design d;
  int workers;
  size_t frame;
  int t_proc_us;
  int t_send_us;
  int in_flight;
};

/// One design wired to a worker pool; `round(m)` runs m requests through it.
class rig {
 public:
  explicit rig(const cell& c) : c_(c), strand_(asio::make_strand(ioc_)) {
    work_.emplace(ioc_.get_executor());
    proc_iterations_ = static_cast<uint64_t>(c.t_proc_us * iterations_per_us);
    if (c.d == design::mutex) {
      sync_ = std::make_unique<sync_stream>(std::chrono::microseconds(c.t_send_us));
    } else if (c.d == design::strand_1frame) {
      single_ = std::make_unique<single_stream>(*this, std::chrono::microseconds(c.t_send_us));
    } else {
      batched_ = std::make_unique<batched_stream>(*this, std::chrono::microseconds(c.t_send_us));
      auto* s = batched_.get();
      asio::post(strand_, [s] { s->writer.attach(s); });
    }
    for (int i = 0; i < c.workers; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }
  ~rig() {
    // Stop issuing, let the requests in flight finish, then stop the pool.
    stopping_ = true;
    {
      std::unique_lock lk(done_mu_);
      done_cv_.wait(lk, [&] { return completed_.load() == issued_.load(); });
    }
    work_.reset();
    for (auto& t : threads_) t.join();
    sync_.reset();
    single_.reset();
    batched_.reset();
  }

  /// Returns once `m` more frames have been written. The first call starts
  /// the closed loop (c.in_flight requests outstanding), which then keeps
  /// running until the rig is destroyed.
  void round(uint64_t m) {
    std::unique_lock lk(done_mu_);
    goal_ = completed_.load() + m;
    if (!started_) {
      started_ = true;
      issued_ = static_cast<uint64_t>(c_.in_flight);
      for (int i = 0; i < c_.in_flight; ++i) asio::post(ioc_, [this] { handle_request(); });
    }
    done_cv_.wait(lk, [&] { return completed_.load() >= goal_; });
  }

  fake_stream& stream() {
    if (sync_) return *sync_;
    if (single_) return *single_;
    return *batched_;
  }
  latencies lat;

 private:
  // (a) a synchronous write under the tunnel's mutex.
  struct sync_stream final : fake_stream {
    using fake_stream::fake_stream;
    void OnWriteDone(bool) override {
      std::lock_guard lk(mu);
      done = true;
      cv.notify_one();
    }
    std::mutex stream_mu;  // the note's StreamMu
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };

  // (b) strand-owned queue, one frame per write.
  struct single_stream final : fake_stream {
    single_stream(rig& r, std::chrono::nanoseconds t) : fake_stream(t), owner(r) {}
    void OnWriteDone(bool) override {
      asio::post(owner.strand_, [this] {
        owner.completed_frames(batch);
        writing = false;
        pump();
      });
    }
    void pump() {  // strand
      if (writing || queue.empty()) return;
      batch.Clear();
      *batch.add_frames() = std::move(queue.front());
      queue.pop_front();
      writing = true;
      StartWrite(&batch);
    }
    rig& owner;
    std::deque<pb::Frame> queue;  // strand only
    pb::Batch batch;
    bool writing = false;
  };

  // (c) grok's frame_writer, driven exactly as the server's tunnel drives it.
  struct batched_stream final : fake_stream {
    batched_stream(rig& r, std::chrono::nanoseconds t) : fake_stream(t), owner(r) {}
    void StartWrite(const pb::Batch* b) {
      last = b;
      fake_stream::StartWrite(b);
    }
    void OnWriteDone(bool ok) override {
      // The batch stays as it is until write_finished; the strand may reuse it right after.
      owner.record_latencies(*last);
      auto n = static_cast<uint64_t>(last->frames_size());
      if (writer.write_finished(ok)) asio::post(owner.strand_, [this, ok] { writer.on_write_done(ok); });
      owner.post_request_done(n);
    }
    rig& owner;
    const pb::Batch* last = nullptr;  // set on the strand before each write
    grok::frame_writer<batched_stream> writer;
  };

  void handle_request() {  // any worker
    burn(proc_iterations_);
    std::string payload(c_.frame, 'g');
    auto f = grok::make_data(static_cast<uint64_t>(now_ns()), std::move(payload), false);
    switch (c_.d) {
      case design::mutex: {
        auto& s = *sync_;
        int64_t enq = static_cast<int64_t>(f.exchange_id());
        pb::Batch b;
        *b.add_frames() = std::move(f);
        {
          std::lock_guard stream_lock(s.stream_mu);
          {
            std::lock_guard lk(s.mu);
            s.done = false;
          }
          s.StartWrite(&b);
          std::unique_lock lk(s.mu);
          s.cv.wait(lk, [&] { return s.done; });
        }
        lat.add(now_ns() - enq);
        request_done(1);
        break;
      }
      case design::strand_1frame:
        asio::post(strand_, [this, f = std::move(f)]() mutable {
          single_->queue.push_back(std::move(f));
          single_->pump();
        });
        break;
      case design::grok_batched:
        asio::post(strand_, [this, f = std::move(f)]() mutable { batched_->writer.push(std::move(f)); });
        break;
    }
  }

  void completed_frames(const pb::Batch& b) {  // strand
    record_latencies(b);
    request_done(static_cast<uint64_t>(b.frames_size()));
  }

  void record_latencies(const pb::Batch& b) {  // the strand, or the sink thread for grok's writer
    auto t = now_ns();
    for (const auto& f : b.frames()) lat.add(t - static_cast<int64_t>(f.exchange_id()));
  }

  /// From the sink thread: the closed loop's refill runs on the pool, as
  /// new requests would, so the sink only pays one post per write.
  void post_request_done(uint64_t n) {
    asio::post(ioc_, [this, n] { request_done(n); });
  }

  /// Closed loop: each finished request starts the next one.
  void request_done(uint64_t n) {
    if (!stopping_.load(std::memory_order_relaxed)) {
      issued_.fetch_add(n, std::memory_order_relaxed);
      for (uint64_t i = 0; i < n; ++i) asio::post(ioc_, [this] { handle_request(); });
    }
    auto now = completed_.fetch_add(n, std::memory_order_acq_rel) + n;
    if (now >= goal_.load(std::memory_order_acquire) || stopping_.load(std::memory_order_relaxed)) {
      std::lock_guard lk(done_mu_);
      done_cv_.notify_one();
    }
  }

  cell c_;
  uint64_t proc_iterations_ = 0;
  asio::io_context ioc_;
  asio::strand<asio::io_context::executor_type> strand_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::unique_ptr<sync_stream> sync_;
  std::unique_ptr<single_stream> single_;
  std::unique_ptr<batched_stream> batched_;
  std::atomic<uint64_t> goal_{UINT64_MAX}, issued_{0}, completed_{0};
  std::atomic<bool> stopping_{false};
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  bool started_ = false;  // done_mu_
};

uint64_t frames_per_round = 4096;

void run_cell(benchmark::State& state, cell c, uint64_t frames_per_round) {
  rig r(c);
  r.round(std::min<uint64_t>(frames_per_round, 256));  // warm-up: threads, allocator, strand
  auto& s = r.stream();
  auto w0 = s.writes(), f0 = s.frames(), ns0 = s.write_ns();
  r.lat.reset();
  double cpu0 = process_cpu_s();
  auto t0 = steady::now();
  uint64_t total = 0;
  for (auto _ : state) {
    r.round(frames_per_round);
    total += frames_per_round;
  }
  double wall = std::chrono::duration<double>(steady::now() - t0).count();
  double cpu = process_cpu_s() - cpu0;
  state.SetItemsProcessed(static_cast<int64_t>(total));
  state.SetBytesProcessed(static_cast<int64_t>(total * c.frame));
  auto [p50, p99] = r.lat.p50_p99();
  state.counters["p50_us"] = p50;
  state.counters["p99_us"] = p99;
  auto writes = s.writes() - w0;
  state.counters["frames_per_write"] = writes ? static_cast<double>(s.frames() - f0) / static_cast<double>(writes) : 0;
  state.counters["write_us"] = writes ? static_cast<double>(s.write_ns() - ns0) / static_cast<double>(writes) / 1000.0 : 0;
  state.counters["cores"] = wall > 0 ? cpu / wall : 0;
}

struct scenario {
  const char* name;
  int t_proc_us;
  int t_send_us;
};

}  // namespace

// Extra flags (before Google Benchmark's own): --frames_per_round=N, --in_flight=N,
// --scenarios=send,mixed,cpu.
int main(int argc, char** argv) {
  int in_flight = 64;
  std::string only;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--frames_per_round=", 0) == 0) {
      frames_per_round = std::stoull(a.substr(19));
    } else if (a.rfind("--in_flight=", 0) == 0) {
      in_flight = std::stoi(a.substr(12));
    } else if (a.rfind("--scenarios=", 0) == 0) {
      only = "," + a.substr(12) + ",";
    } else {
      rest.push_back(argv[i]);
    }
  }
  iterations_per_us = calibrate();
  std::printf("calibration: %.1f loop iterations per CPU microsecond; %llu frames per round, %d requests in flight\n",
              iterations_per_us, static_cast<unsigned long long>(frames_per_round), in_flight);

  // T_send 20 us: the order of one gRPC write's framing and syscall on loopback.
  const scenario scenarios[] = {
      {"send", 2, 20},    // T_send dominant: the stream is the bottleneck
      {"mixed", 20, 20},  // equal parts
      {"cpu", 1000, 20},  // T_proc dominant: workers have CPU work to share
  };
  const std::pair<design, const char*> designs[] = {
      {design::mutex, "mutex"}, {design::strand_1frame, "strand_1frame"}, {design::grok_batched, "grok_batched"}};
  for (const auto& sc : scenarios) {
    if (!only.empty() && only.find("," + std::string(sc.name) + ",") == std::string::npos) continue;
    for (size_t frame : {size_t{1024}, size_t{64 * 1024}}) {
      for (const auto& [d, dname] : designs) {
        for (int workers : {1, 2, 4, 8, 16}) {
          cell c{d, workers, frame, sc.t_proc_us, sc.t_send_us, in_flight};
          auto name = std::string("write_path/") + sc.name + "/" + (frame == 1024 ? "1KiB" : "64KiB") + "/" + dname +
                      "/workers:" + std::to_string(workers);
          // Rounds of about 0.5 s of T_proc on one core, at most frames_per_round.
          auto round = std::clamp<uint64_t>(500'000 / static_cast<uint64_t>(sc.t_proc_us), 256, frames_per_round);
          benchmark::RegisterBenchmark(name.c_str(), run_cell, c, round)->UseRealTime()->Unit(benchmark::kMillisecond);
        }
      }
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
