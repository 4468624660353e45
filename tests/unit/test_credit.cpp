#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "grok/credit.hpp"

using grok::recv_window;
using grok::send_credit;

namespace {
constexpr uint64_t kMaxCredit = uint64_t{1} << 31;
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
}  // namespace

TEST_SUITE("credit") {

TEST_CASE("send_credit: initial state") {
  CHECK(send_credit{}.available() == 0);
  CHECK(send_credit{65536}.available() == 65536);
  CHECK(send_credit{std::numeric_limits<uint32_t>::max()}.available() == 0xffffffffull);
}

TEST_CASE("send_credit: allowance is min(want, available) and spends nothing") {
  send_credit c{1000};
  CHECK(c.allowance(0) == 0);
  CHECK(c.allowance(1) == 1);
  CHECK(c.allowance(999) == 999);
  CHECK(c.allowance(1000) == 1000);
  CHECK(c.allowance(1001) == 1000);
  CHECK(c.allowance(kU64Max) == 1000);
  CHECK(c.available() == 1000);

  send_credit empty;
  CHECK(empty.allowance(0) == 0);
  CHECK(empty.allowance(4096) == 0);
}

TEST_CASE("send_credit: spend") {
  send_credit c{100};
  CHECK(c.spend(0));
  CHECK(c.available() == 100);
  CHECK(c.spend(30));
  CHECK(c.available() == 70);
  // Over-spend fails and spends nothing.
  CHECK_FALSE(c.spend(71));
  CHECK(c.available() == 70);
  CHECK_FALSE(c.spend(kU64Max));
  CHECK(c.available() == 70);
  CHECK(c.spend(70));
  CHECK(c.available() == 0);
  CHECK_FALSE(c.spend(1));
  CHECK(c.available() == 0);
  CHECK(c.spend(0));
  CHECK(c.available() == 0);
}

TEST_CASE("send_credit: grant") {
  send_credit c{10};
  CHECK(c.grant(0));
  CHECK(c.available() == 10);
  CHECK(c.grant(90));
  CHECK(c.available() == 100);
  CHECK(c.spend(100));
  CHECK(c.grant(5));
  CHECK(c.available() == 5);
  CHECK(c.allowance(10) == 5);
}

TEST_CASE("send_credit: grant up to exactly 2^31, never beyond") {
  send_credit c;
  CHECK(c.grant(kMaxCredit));
  CHECK(c.available() == kMaxCredit);
  CHECK(c.grant(0));
  CHECK_FALSE(c.grant(1));
  CHECK(c.available() == kMaxCredit);

  send_credit d{std::numeric_limits<uint32_t>::max() >> 1};  // 2^31 - 1
  CHECK(d.grant(1));
  CHECK(d.available() == kMaxCredit);
  CHECK_FALSE(d.grant(1));
  CHECK(d.available() == kMaxCredit);

  send_credit e{1000};
  CHECK_FALSE(e.grant(kMaxCredit));
  CHECK(e.available() == 1000);
  CHECK(e.grant(kMaxCredit - 1000));
  CHECK(e.available() == kMaxCredit);

  // A window update's increment is a uint32; the largest one is refused.
  send_credit f{1};
  CHECK_FALSE(f.grant(std::numeric_limits<uint32_t>::max()));
  CHECK(f.available() == 1);
}

TEST_CASE("send_credit: grant does not wrap around on huge increments") {
  send_credit c{1};
  // 1 + (2^64 - 1) wraps to 0 in uint64 arithmetic; must still be refused.
  CHECK_FALSE(c.grant(kU64Max));
  CHECK(c.available() == 1);
  CHECK_FALSE(c.grant(kU64Max - 5));
  CHECK(c.available() == 1);
}

TEST_CASE("recv_window: on_data and overrun detection") {
  recv_window w{1000};
  CHECK(w.window() == 1000);
  CHECK(w.outstanding() == 0);
  CHECK(w.on_data(0));
  CHECK(w.outstanding() == 0);
  CHECK(w.on_data(400));
  CHECK(w.on_data(600));
  CHECK(w.outstanding() == 1000);
  // Exactly full; one more byte is an overrun and is not recorded.
  CHECK_FALSE(w.on_data(1));
  CHECK(w.outstanding() == 1000);
  CHECK(w.on_data(0));

  recv_window v{1000};
  CHECK_FALSE(v.on_data(1001));
  CHECK(v.outstanding() == 0);
  CHECK(v.on_data(1000));

  recv_window zero{0};
  CHECK(zero.on_data(0));
  CHECK_FALSE(zero.on_data(1));
  CHECK(zero.outstanding() == 0);
}

TEST_CASE("recv_window: overrun detection does not wrap around") {
  recv_window w{1000};
  REQUIRE(w.on_data(1));
  // 1 + (2^64 - 1) wraps to 0 in uint64 arithmetic; must still be an overrun.
  CHECK_FALSE(w.on_data(kU64Max));
  CHECK(w.outstanding() == 1);
}

TEST_CASE("recv_window: updates are batched per quarter window") {
  recv_window w{1000};  // quarter = 250
  REQUIRE(w.on_data(1000));

  CHECK(w.on_consumed(100) == 0);
  CHECK(w.outstanding() == 1000);  // nothing returned yet
  CHECK(w.on_consumed(100) == 0);
  CHECK(w.on_consumed(49) == 0);
  CHECK(w.outstanding() == 1000);
  CHECK(w.on_consumed(1) == 250);  // reaches exactly a quarter
  CHECK(w.outstanding() == 750);

  // One consumption larger than a quarter is returned at once, in full.
  CHECK(w.on_consumed(600) == 600);
  CHECK(w.outstanding() == 150);

  // Below the threshold nothing is sent; the remainder is remembered.
  CHECK(w.on_consumed(150) == 0);
  CHECK(w.outstanding() == 150);
  REQUIRE(w.on_data(850));
  CHECK(w.outstanding() == 1000);
  CHECK(w.on_consumed(99) == 0);
  CHECK(w.on_consumed(1) == 250);  // 150 + 99 + 1
  CHECK(w.outstanding() == 750);
  CHECK(w.on_consumed(0) == 0);
  CHECK(w.outstanding() == 750);
}

TEST_CASE("recv_window: quarter threshold rounds down, minimum 1") {
  recv_window w{1003};  // quarter = 250
  REQUIRE(w.on_data(1003));
  CHECK(w.on_consumed(249) == 0);
  CHECK(w.on_consumed(1) == 250);

  for (uint32_t size : {1u, 2u, 3u}) {
    CAPTURE(size);
    recv_window tiny{size};  // size / 4 == 0 -> every byte is returned
    REQUIRE(tiny.on_data(size));
    CHECK(tiny.on_consumed(0) == 0);
    CHECK(tiny.on_consumed(1) == 1);
    CHECK(tiny.outstanding() == size - 1);
  }

  recv_window four{4};
  REQUIRE(four.on_data(4));
  CHECK(four.on_consumed(1) == 1);
  CHECK(four.on_consumed(3) == 3);
  CHECK(four.outstanding() == 0);
}

TEST_CASE("recv_window: default-sized window (256 KiB)") {
  recv_window w{256 * 1024};
  REQUIRE(w.on_data(256 * 1024));
  uint32_t returned = 0;
  int updates = 0;
  for (int i = 0; i < 64; ++i) {  // 64 frames of 4 KiB
    if (auto inc = w.on_consumed(4096)) {
      CHECK(inc == 64 * 1024);
      returned += inc;
      ++updates;
    }
  }
  CHECK(updates == 4);
  CHECK(returned == 256 * 1024);
  CHECK(w.outstanding() == 0);
}

// A sender and a receiver exchanging `total` bytes through in-flight queues
// (Data frames one way, WindowUpdates the other), with every step chosen by
// a fixed-seed RNG. Checks after every step that
//   * the receiver never sees an overrun (the sender never exceeds the window),
//   * credit is conserved: sender credit + bytes in flight + receiver
//     outstanding + increments in flight == window,
//   * sent == returned + outstanding + data in flight,
// and that some step is always possible until everything arrived (no deadlock).
struct sim_result {
  uint64_t delivered = 0;
  uint64_t returned = 0;     // credit handed back in WindowUpdates
  uint64_t outstanding = 0;  // receiver's unreturned bytes at the end
  uint64_t updates = 0;
  uint64_t failures = 0;
  bool deadlock = false;
};

sim_result simulate(uint32_t window, uint64_t total, uint64_t max_frame, uint64_t seed) {
  std::mt19937_64 rng{seed};
  auto below = [&](uint64_t n) { return rng() % n; };  // deterministic on every platform

  send_credit sender{window};
  recv_window receiver{window};
  std::deque<uint64_t> data_in_flight;
  std::deque<uint32_t> updates_in_flight;
  uint64_t data_in_flight_bytes = 0;
  uint64_t updates_in_flight_sum = 0;

  uint64_t sent = 0;          // bytes the sender put on the wire
  uint64_t received = 0;      // bytes the receiver accepted
  uint64_t consumed = 0;      // bytes the receiver wrote on
  uint64_t returned = 0;      // credit the receiver gave back (sent as updates)
  uint64_t granted = 0;       // credit the sender got back
  sim_result r;

  auto fail = [&](const std::string& what) {
    if (r.failures++ < 5) FAIL_CHECK(what << " (seed " << seed << ", sent " << sent << ")");
  };

  const uint64_t step_limit = total * 8 + 100'000;
  for (uint64_t step = 0; step < step_limit; ++step) {
    if (consumed == total && data_in_flight.empty()) break;

    const bool can_send = sent < total && sender.available() > 0;
    const bool can_deliver = !data_in_flight.empty();
    const bool can_consume = consumed < received;
    const bool can_update = !updates_in_flight.empty();
    if (!can_send && !can_deliver && !can_consume && !can_update) {
      r.deadlock = true;
      break;
    }

    // Pick uniformly among the steps that are possible now.
    int enabled[4];
    int n_enabled = 0;
    if (can_send) enabled[n_enabled++] = 0;
    if (can_deliver) enabled[n_enabled++] = 1;
    if (can_consume) enabled[n_enabled++] = 2;
    if (can_update) enabled[n_enabled++] = 3;
    switch (enabled[below(static_cast<uint64_t>(n_enabled))]) {
      case 0:
        if (can_send) {
          const uint64_t want = std::min<uint64_t>(1 + below(max_frame), total - sent);
          const uint64_t n = sender.allowance(want);
          if (n == 0 || n > want) fail("allowance out of range");
          if (!sender.spend(n)) fail("spend of the allowance failed");
          data_in_flight.push_back(n);
          data_in_flight_bytes += n;
          sent += n;
        }
        break;
      case 1:
        if (can_deliver) {
          const uint64_t n = data_in_flight.front();
          data_in_flight.pop_front();
          data_in_flight_bytes -= n;
          if (!receiver.on_data(n)) fail("receiver saw a window overrun");
          received += n;
        }
        break;
      case 2:
        if (can_consume) {
          // Write on a random part of what is buffered.
          const uint64_t n = 1 + below(received - consumed);
          consumed += n;
          if (const uint32_t inc = receiver.on_consumed(n)) {
            if (inc < std::max<uint32_t>(window / 4, 1)) fail("update below a quarter window");
            updates_in_flight.push_back(inc);
            updates_in_flight_sum += inc;
            returned += inc;
            ++r.updates;
          }
        }
        break;
      case 3:
        if (can_update) {
          const uint32_t inc = updates_in_flight.front();
          updates_in_flight.pop_front();
          updates_in_flight_sum -= inc;
          if (!sender.grant(inc)) fail("grant refused");
          granted += inc;
        }
        break;
    }

    if (sender.available() + data_in_flight_bytes + receiver.outstanding() + updates_in_flight_sum !=
        window)
      fail("credit not conserved");
    if (returned + receiver.outstanding() + data_in_flight_bytes != sent)
      fail("returned + outstanding + in flight != sent");
    if (receiver.outstanding() > window) fail("outstanding exceeds the window");
    if (sent - granted > window) fail("sender has more than a window unacknowledged");
  }
  r.delivered = consumed;
  r.returned = returned;
  r.outstanding = receiver.outstanding();
  return r;
}

TEST_CASE("credit loop: 10 MiB in random frames never overruns and never deadlocks") {
  constexpr uint64_t kTotal = 10ull * 1024 * 1024;
  constexpr uint32_t kWindow = 256 * 1024;
  constexpr uint64_t kMaxFrame = 16 * 1024;
  const auto r = simulate(kWindow, kTotal, kMaxFrame, 0x6772'6f6b);
  CHECK(r.failures == 0);
  CHECK_FALSE(r.deadlock);
  CHECK(r.delivered == kTotal);
  CHECK(r.returned + r.outstanding == kTotal);
  // The sender needed all but one window back; less than a quarter stays unreturned.
  CHECK(r.returned >= kTotal - kWindow);
  CHECK(r.outstanding < kWindow / 4);
  // Batching: every update carries at least a quarter window.
  CHECK(r.updates >= 1);
  CHECK(r.updates <= kTotal / (kWindow / 4));
}

TEST_CASE("credit loop: frames larger than the window") {
  // The sender asks for up to 4x the window; allowance caps every frame.
  const auto r = simulate(4096, 1024 * 1024, 16 * 1024, 42);
  CHECK(r.failures == 0);
  CHECK_FALSE(r.deadlock);
  CHECK(r.delivered == 1024 * 1024);
}

TEST_CASE("credit loop: tiny and odd windows") {
  for (uint32_t window : {1u, 2u, 3u, 5u, 7u, 1000u, 65537u}) {
    for (uint64_t seed : {1ull, 2ull, 3ull}) {
      CAPTURE(window);
      CAPTURE(seed);
      const uint64_t total = 64 * 1024;
      const auto r = simulate(window, total, 3000, seed);
      CHECK(r.failures == 0);
      CHECK_FALSE(r.deadlock);
      CHECK(r.delivered == total);
    }
  }
}

}  // TEST_SUITE

namespace {
// A sender and a receiver exchanging one direction's bytes, `frame` at a
// time, on a simulated clock. Each step: `idle` passes, the sender sends
// whatever its credit allows (it arrives at once), then `busy` passes while
// the consumer takes `drain` bytes; updates reach the sender at once.
struct credit_loop {
  using clock = recv_window::clock;
  send_credit credit;
  recv_window window;
  clock::time_point t = clock::time_point{} + std::chrono::hours(1);
  uint64_t queued = 0;  // received, not yet consumed
  uint64_t peak_queued = 0;
  uint64_t sent = 0;
  credit_loop(uint32_t initial, uint32_t max,
              std::shared_ptr<grok::window_budget> budget = std::make_shared<grok::window_budget>(1ull << 40))
      : credit(initial), window(initial, max, std::move(budget)) {}
  void step(uint64_t frame, uint64_t drain, clock::duration idle, clock::duration busy) {
    t += idle;
    while (auto n = credit.allowance(frame)) {
      REQUIRE(credit.spend(n));
      REQUIRE(window.on_data(n, t));  // never an overrun, however the window grew
      queued += n;
      sent += n;
    }
    peak_queued = std::max(peak_queued, queued);
    t += busy;
    auto n = std::min(drain, queued);
    queued -= n;
    if (auto inc = window.on_consumed(n, t)) REQUIRE(credit.grant(inc));
  }
};
using namespace std::chrono_literals;
}  // namespace

TEST_CASE("recv_window: grows while the credit, not the consumer, holds the sender back") {
  credit_loop fast{512 * 1024, 4 << 20};
  // The consumer takes everything at once; then the receiver waits for the next bytes in flight.
  for (int i = 0; i < 64; ++i) fast.step(64 * 1024, UINT64_MAX, 1ms, 10us);
  CHECK(fast.window.window() == 4u << 20);  // doubled per update up to the bound, never past it
  CHECK(fast.window.max_window() == 4u << 20);
  // What the sender may still send plus what it sent unreturned is the window: no credit was lost or invented.
  CHECK(fast.credit.available() + fast.window.outstanding() == fast.window.window());

  credit_loop capped{768 * 1024, 1 << 20};  // a bound that is not a doubling away
  for (int i = 0; i < 64; ++i) capped.step(64 * 1024, UINT64_MAX, 1ms, 10us);
  CHECK(capped.window.window() == 1u << 20);
  CHECK(capped.credit.available() + capped.window.outstanding() == capped.window.window());
}

TEST_CASE("recv_window: a slow consumer keeps the window, and what is buffered, at its start") {
  SUBCASE("it takes a little at a time") {
    credit_loop slow{512 * 1024, 4 << 20};
    for (int i = 0; i < 2000; ++i) slow.step(64 * 1024, 16 * 1024, 0us, 1ms);
    CHECK(slow.window.window() == 512u * 1024);
    CHECK(slow.peak_queued <= 512u * 1024);
    CHECK(slow.sent > 16u << 20);  // it did stream meanwhile
  }
  SUBCASE("one long write takes everything queued, then the credit comes back at once") {
    // A public client reading slowly: the session's gathered write ends only when
    // the reader has taken the whole window, so each update returns all of it.
    credit_loop slow{512 * 1024, 4 << 20};
    for (int i = 0; i < 200; ++i) slow.step(64 * 1024, UINT64_MAX, 50us, 100ms);
    CHECK(slow.window.window() == 512u * 1024);
    CHECK(slow.peak_queued <= 512u * 1024);
  }
  SUBCASE("a write that takes long ends with bytes still waiting") {
    // Every other write takes all that is queued, the others a quarter window: the
    // busy time of a write that leaves bytes behind counts at the update it brings.
    credit_loop slow{512 * 1024, 4 << 20};
    for (int i = 0; i < 200; ++i) slow.step(64 * 1024, i % 2 ? 128 * 1024 : UINT64_MAX, 1ms, 100ms);
    CHECK(slow.window.window() == 512u * 1024);
    CHECK(slow.peak_queued <= 512u * 1024);
  }
}

TEST_CASE("recv_window: a tunnel's windows grow together out of one budget, given back when they go") {
  auto budget = std::make_shared<grok::window_budget>(4u << 20);
  {
    credit_loop a{512 * 1024, 4 << 20, budget};
    for (int i = 0; i < 64; ++i) a.step(64 * 1024, UINT64_MAX, 1ms, 10us);
    CHECK(a.window.window() == 4u << 20);  // took 3.5 MiB of the 4
    CHECK(budget->left() == 512u * 1024);
    credit_loop b{512 * 1024, 4 << 20, budget};
    for (int i = 0; i < 64; ++i) b.step(64 * 1024, UINT64_MAX, 1ms, 10us);
    CHECK(b.window.window() == 1u << 20);  // one doubling fitted in what was left
    CHECK(budget->left() == 0);
    CHECK(b.credit.available() + b.window.outstanding() == b.window.window());
    // A window moved into another place keeps what it took; the moved-from one gives nothing back.
    recv_window moved = std::move(b.window);
    CHECK(budget->left() == 0);
    CHECK(moved.window() == 1u << 20);
  }
  CHECK(budget->left() == 4u << 20);  // every window gone: all of it back

  credit_loop none{512 * 1024, 4 << 20, nullptr};  // no budget: the window never grows
  for (int i = 0; i < 64; ++i) none.step(64 * 1024, UINT64_MAX, 1ms, 10us);
  CHECK(none.window.window() == 512u * 1024);
}

TEST_CASE("recv_window: no growth when max_window is the window, or when the sender never waits") {
  credit_loop fixed{512 * 1024, 512 * 1024};
  for (int i = 0; i < 64; ++i) fixed.step(64 * 1024, UINT64_MAX, 1ms, 10us);
  CHECK(fixed.window.window() == 512u * 1024);

  recv_window w{1000, 8000, std::make_shared<grok::window_budget>(1 << 20)};
  CHECK(w.max_window() == 8000);
  auto t = recv_window::clock::now();
  for (int i = 0; i < 20; ++i) {  // 100 bytes at a time, each returned: never near the end of the credit
    t += 1ms;
    REQUIRE(w.on_data(100, t));
    w.on_consumed(100, t + 1us);
  }
  CHECK(w.window() == 1000);
  CHECK(recv_window{1000, 10}.max_window() == 1000);  // a bound below the window means no growth
}
