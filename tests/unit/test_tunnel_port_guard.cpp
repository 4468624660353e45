// The tunnel port's connection limits with sockets the test opens and
// closes by hand: what each socket's cookie is decides whether it is still
// counted.

#include <doctest/doctest.h>

#include <map>

#include "tunnel_port_guard.hpp"

using grok::server_detail::tunnel_port_guard;
using namespace std::chrono_literals;

namespace {

struct sockets {
  std::map<int, uint64_t> open;  ///< fd -> cookie of the socket it names now
  std::vector<int> shut;         ///< fds the guard shut down
  uint64_t next_cookie = 1;
  tunnel_port_guard::clock::time_point now{};
  tunnel_port_guard guard{[this](int fd) {
                            auto it = open.find(fd);
                            return it == open.end() ? uint64_t{0} : it->second;
                          },
                          [this] { return now; }, [this](int fd) { shut.push_back(fd); }};
  int accept(int fd) {
    open[fd] = next_cookie++;
    return fd;
  }
};

}  // namespace

TEST_CASE("tunnel port: an address gets its limit of connections; one that closes frees a place") {
  sockets s;
  s.guard.configure(3, 0);
  for (int fd = 10; fd < 13; ++fd) CHECK(s.guard.admit(s.accept(fd), "192.0.2.1") == tunnel_port_guard::verdict::admitted);
  CHECK(s.guard.admit(s.accept(13), "192.0.2.1") == tunnel_port_guard::verdict::per_ip);
  s.open.erase(13);  // the refused one is shut down and closed
  CHECK(s.guard.admit(s.accept(20), "198.51.100.7") == tunnel_port_guard::verdict::admitted);  // another address
  CHECK(s.guard.refused_per_ip() == 1);
  s.open.erase(11);
  CHECK(s.guard.admit(s.accept(14), "192.0.2.1") == tunnel_port_guard::verdict::admitted);
  CHECK(s.guard.active() == 4);
}

TEST_CASE("tunnel port: an fd reused for another socket is not counted twice") {
  sockets s;
  s.guard.configure(2, 0);
  REQUIRE(s.guard.admit(s.accept(10), "192.0.2.1") == tunnel_port_guard::verdict::admitted);
  REQUIRE(s.guard.admit(s.accept(11), "192.0.2.1") == tunnel_port_guard::verdict::admitted);
  // fd 10 closed and was given to a new connection from elsewhere: a new cookie.
  s.accept(10);
  CHECK(s.guard.admit(10, "198.51.100.7") == tunnel_port_guard::verdict::admitted);
  CHECK(s.guard.admit(s.accept(12), "192.0.2.1") == tunnel_port_guard::verdict::admitted);
  CHECK(s.guard.active() == 3);
}

TEST_CASE("tunnel port: the total limit holds across addresses and frees up as connections close") {
  sockets s;
  s.guard.configure(0, 4);
  for (int fd = 10; fd < 14; ++fd)
    CHECK(s.guard.admit(s.accept(fd), "10.0.0." + std::to_string(fd)) == tunnel_port_guard::verdict::admitted);
  CHECK(s.guard.admit(s.accept(14), "10.0.1.1") == tunnel_port_guard::verdict::total);
  s.open.erase(14);
  s.open.erase(10);
  // Re-counting every address is rate-limited: within 100 ms the refusal stands.
  s.now += 50ms;
  CHECK(s.guard.admit(s.accept(15), "10.0.1.1") == tunnel_port_guard::verdict::total);
  s.open.erase(15);
  s.now += 100ms;
  CHECK(s.guard.admit(s.accept(16), "10.0.1.1") == tunnel_port_guard::verdict::admitted);
  CHECK(s.guard.refused_total() == 2);
  CHECK(s.guard.active() == 4);
}

TEST_CASE("tunnel port: 0 means no limit, and a reload changes the limits in force") {
  sockets s;
  s.guard.configure(0, 0);
  for (int fd = 10; fd < 1010; ++fd) REQUIRE(s.guard.admit(s.accept(fd), "192.0.2.1") == tunnel_port_guard::verdict::admitted);
  s.guard.configure(10, 0);
  CHECK(s.guard.admit(s.accept(2000), "192.0.2.1") == tunnel_port_guard::verdict::per_ip);
  CHECK(s.guard.active() == 1000);
}

TEST_CASE("tunnel port: an address whose streams keep ending before a Hello is banned; its tunnels are kept") {
  sockets s;
  s.guard.configure(0, 0);
  REQUIRE(s.guard.admit(s.accept(10), "192.0.2.1", 1000) == tunnel_port_guard::verdict::admitted);
  REQUIRE(s.guard.admit(s.accept(11), "192.0.2.1", 1001) == tunnel_port_guard::verdict::admitted);
  REQUIRE(s.guard.admit(s.accept(12), "192.0.2.1", 1002) == tunnel_port_guard::verdict::admitted);
  s.guard.said_hello("192.0.2.1", 1001);  // a real tunnel behind the same address
  for (unsigned i = 1; i < tunnel_port_guard::abandoned_limit; ++i) CHECK_FALSE(s.guard.abandoned("192.0.2.1"));
  CHECK(s.guard.abandoned("192.0.2.1"));
  CHECK(s.shut == std::vector<int>{10, 12});
  CHECK(s.guard.bans() == 1);
  CHECK(s.guard.admit(s.accept(13), "192.0.2.1", 1003) == tunnel_port_guard::verdict::banned);
  CHECK(s.guard.admit(s.accept(14), "198.51.100.7", 1000) == tunnel_port_guard::verdict::admitted);
  s.now += tunnel_port_guard::ban_time;
  CHECK(s.guard.admit(s.accept(15), "192.0.2.1", 1004) == tunnel_port_guard::verdict::admitted);
  CHECK(s.guard.refused_banned() == 1);
}

TEST_CASE("tunnel port: strikes are counted per window") {
  sockets s;
  s.guard.configure(0, 0);
  for (int round = 0; round < 3; ++round) {
    for (unsigned i = 1; i < tunnel_port_guard::abandoned_limit; ++i) CHECK_FALSE(s.guard.abandoned("192.0.2.1"));
    s.now += tunnel_port_guard::abandoned_window;  // the next window starts from nothing
  }
  CHECK(s.guard.bans() == 0);
}

TEST_CASE("tunnel port: connections that close without carrying a tunnel count against their address") {
  sockets s;
  s.guard.configure(0, 0);
  // Connections that were refused a tunnel or never asked for one (a PING flood reconnecting).
  for (int fd = 10; fd < 10 + static_cast<int>(tunnel_port_guard::abandoned_limit); ++fd) {
    REQUIRE(s.guard.admit(s.accept(fd), "192.0.2.1", static_cast<uint16_t>(fd)) == tunnel_port_guard::verdict::admitted);
    s.open.erase(fd);
  }
  CHECK(s.guard.admit(s.accept(100), "192.0.2.1", 100) == tunnel_port_guard::verdict::banned);
  // A connection that carried a Hello closing is no strike.
  REQUIRE(s.guard.admit(s.accept(200), "198.51.100.7", 200) == tunnel_port_guard::verdict::admitted);
  s.guard.said_hello("198.51.100.7", 200);
  for (int i = 0; i < 100; ++i) {
    s.open.erase(200);
    REQUIRE(s.guard.admit(s.accept(200), "198.51.100.7", 200) == tunnel_port_guard::verdict::admitted);
    s.guard.said_hello("198.51.100.7", 200);
  }
  CHECK(s.guard.bans() == 1);
}
