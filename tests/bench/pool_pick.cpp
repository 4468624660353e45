// What choosing a pool member costs per public request: grok's name
// registry (include/grok/tunnel_registry.hpp) picking among N members, each
// with its own count of exchanges in flight, as http_session does for every
// request. One thread, and (with ->Threads) several at once on one name, as
// the worker pool does.
//
//   build/tests/bench/grok_bench_pool_pick --benchmark_min_time=0.2

#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "grok/tunnel_registry.hpp"

namespace {

struct member {
  std::atomic<unsigned> in_flight{0};
  std::atomic<bool> healthy{true};
  bool accepting() const { return healthy.load(std::memory_order_relaxed); }
  unsigned load() const { return in_flight.load(std::memory_order_relaxed); }
};

struct pool_fixture {
  grok::tunnel_registry<member> reg;
  std::vector<std::shared_ptr<member>> members;
  explicit pool_fixture(int n) {
    reg.configure({}, std::chrono::seconds(60), 1024);
    auto key = grok::sha256_digest("bench");
    grok::claimant c(key, key, true);
    for (int i = 0; i < n; ++i) {
      members.push_back(std::make_shared<member>());
      // Uneven loads, as under traffic: the pick has to look at every member.
      members.back()->in_flight = static_cast<unsigned>((i * 7) % 5 + 1);
      reg.claim("api", members.back(), c);
    }
  }
};

void pick(benchmark::State& state) {
  static pool_fixture* f = nullptr;
  if (state.thread_index() == 0) f = new pool_fixture(static_cast<int>(state.range(0)));
  // The other threads wait for the fixture at the first iteration's barrier.
  for (auto _ : state) {
    auto found = f->reg.find("api");
    // The exchange starts and ends on the member it went to.
    found.t->in_flight.fetch_add(1, std::memory_order_relaxed);
    benchmark::DoNotOptimize(found.t.get());
    found.t->in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete f;
    f = nullptr;
  }
}

}  // namespace

// 1 = a tunnel that is not in a pool (today's lookup), then pools of 2, 10, 100.
BENCHMARK(pick)->Arg(1)->Arg(2)->Arg(10)->Arg(100);
BENCHMARK(pick)->Arg(1)->Arg(100)->Threads(2)->UseRealTime();

BENCHMARK_MAIN();
