#pragma once
// The request inspector: a small HTTP server (by default on 127.0.0.1:4040)
// with one embedded page and an API in the shape of ngrok's agent API. It
// runs on its own thread and io_context, so serving the page or the API
// never delays the tunnel's exchanges; exchanges reach it only through the
// capture ring (grok/capture_ring.hpp).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "grok/capture_ring.hpp"

namespace grok::client_detail {
struct local_service;
}

namespace grok {

struct inspector_options {
  std::string host = "127.0.0.1";
  uint16_t port = 4040;
  /// Try the next ports when `port` is taken (the default address only).
  bool next_free = true;
  std::optional<std::pair<std::string, std::string>> basic_auth;  ///< USER, PASS
  capture_ring::limits limits;
  std::string tunnel_name;  ///< the name asked for, until the server gives one
  std::string proto = "http";
  std::string local_host;  ///< where Replay sends requests
  uint16_t local_port = 0;
};

class inspector {
 public:
  explicit inspector(inspector_options o);
  ~inspector();
  inspector(const inspector&) = delete;
  inspector& operator=(const inspector&) = delete;

  /// Binds and starts the server thread; throws std::runtime_error with the reason.
  void start();
  /// Stops the server thread; open connections are closed.
  void stop();
  /// "http://127.0.0.1:4040" once started.
  std::string url() const;

  /// Another tunnel of the process (`grok start`); the options' own is
  /// tunnel 0. Returns its index. Any thread.
  size_t add_tunnel(const std::string& name, const std::string& proto, const std::string& local_host,
                    uint16_t local_port);
  /// Any thread: tunnel `i`'s name and public URL (each time the server accepts it).
  void set_tunnel(size_t i, const std::string& name, const std::string& public_url);
  /// Any thread, once the client starts: how Replay reaches tunnel `i`'s
  /// local service (its address, TLS, the PROXY header).
  void set_local_service(size_t i, std::shared_ptr<const client_detail::local_service> local);
  /// The name tunnel `i`'s records are filed under.
  std::string tunnel_name(size_t i) const;

  capture_ring& ring() { return *ring_; }
  /// Any thread: a page follows the list live (exchanges are then shown from their start).
  bool watched() const;

  struct impl;

 private:
  std::shared_ptr<capture_ring> ring_;
  std::shared_ptr<impl> impl_;
};

/// Checks --inspect's ADDR ("HOST:PORT", "PORT", "[::1]:PORT"); throws
/// std::invalid_argument with the reason. Returns host and port.
std::pair<std::string, uint16_t> parse_inspect_address(const std::string& text);
/// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

}  // namespace grok
