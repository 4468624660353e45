#pragma once
// grok (the client): holds one gRPC stream to grok-server and replays each
// public request against the local service.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "grok/access_rules.hpp"
#include "grok/header_shaping.hpp"

namespace grok {

class inspector;

struct client_options {
  std::string server = "127.0.0.1:4443";  ///< grok-server's tunnel address, HOST:PORT (a comma-separated
                                          ///< list: one stream to each node of a cluster)
  std::string via;                        ///< set for each stream of such a list: the node it goes to
  /// One of the addresses `server`'s name resolved to ("127.0.0.2:4443",
  /// "[::1]:4443"): this stream connects there, with `server` as the TLS name
  /// and authority. Empty: gRPC resolves `server` itself.
  std::string address;
  /// Set by the client for every stream: the process's random id and the
  /// stream's index among the tunnel's streams (Hello.client_id, Hello.stream).
  std::string client_id;
  uint32_t stream = 0;
  std::string token;
  std::string subdomain;                  ///< empty: the server picks a name
  std::string local_host = "127.0.0.1";
  uint16_t local_port = 0;
  /// Asio threads. One: on 2 cores a second thread cost 10-30 % more CPU per
  /// request and gave no throughput (tests/bench/e2e.sh, README "Worker pool").
  unsigned threads = 1;
  uint32_t initial_window = 512 * 1024;   ///< request bytes the server may send ahead per exchange
  bool tcp = false;                       ///< a raw TCP tunnel (`grok tcp`) instead of HTTP
  bool insecure = false;                  ///< plaintext gRPC (development only)
  std::string ca_pem;                     ///< CAs to verify the server with; empty = the system CAs
  /// Pings to the server; one unanswered for `heartbeat_timeout` drops the
  /// stream and reconnects (a server gone silent is noticed within their sum).
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds heartbeat_timeout{5000};
  /// Share the name with the other tunnels that ask for it with `pool`
  /// (same token or tokens-file pool): the server spreads requests over them.
  bool pool = false;
  /// When set, GET this path on the local service every `health_interval`;
  /// while it fails (not 2xx/3xx within `health_timeout`) the server sends
  /// this tunnel no new request.
  std::string health_path;
  std::chrono::milliseconds health_interval{10000};
  std::chrono::milliseconds health_timeout{2000};
  /// Who may reach the tunnel, checked by grok-server (--basic-auth, --allow-cidr, --deny-cidr).
  access_rules rules;
  /// Changes to each exchange's heads (--host-header, --request-header-add, ...).
  header_shaping shaping;
  /// Speak TLS to the local service (an https:// local address), with SNI
  /// and certificate verification against the system CAs.
  bool local_tls = false;
  /// With local_tls: accept any certificate (a self-signed development one).
  bool upstream_insecure = false;
  /// Send the visitor's address to the local service in a PROXY protocol
  /// header at the start of each connection: 0 none, 1 (text) or 2 (binary).
  int proxy_protocol = 0;
  /// An HTTP proxy to reach grok-server through (http://[USER:PASS@]HOST:PORT);
  /// empty: gRPC follows the grpc_proxy / https_proxy / http_proxy and
  /// no_grpc_proxy / no_proxy environment variables.
  std::string proxy;
  /// Records every exchange for the request inspector; null when it is off.
  std::shared_ptr<inspector> inspect;
  /// This tunnel's index in the inspector (several with `grok start`).
  size_t inspect_index = 0;
  /// Its name in the client configuration's `tunnels:` (`grok start`), for messages.
  std::string label;
};

class client {
 public:
  explicit client(client_options opts);
  /// Several tunnels in one process (`grok start`): one connection to the
  /// server carries up to `tunnels_per_connection` of them, each on its own
  /// stream; the connection settings (server, token, TLS, proxy, heartbeats)
  /// are the first tunnel's.
  explicit client(std::vector<client_options> tunnels);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Connects, serves, reconnects with backoff (1 s doubling to 30 s, with
  /// jitter) until stop(). Returns 0 after stop(), 1 when the server refuses
  /// a tunnel for good (bad token, name taken, bad name): with several
  /// tunnels, that stops them all.
  int run();
  /// Any thread (signal handlers excluded): closes the stream; the server
  /// answers in-flight requests at once.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Streams `grok start` puts on one connection: grok-server's default
/// tunnels.max_streams_per_connection.
inline constexpr size_t tunnels_per_connection = 4;

/// Splits "[HOST:]PORT" into host and port; throws std::invalid_argument
/// with a readable reason.
std::pair<std::string, uint16_t> parse_local_address(const std::string& text);

/// Where the local service is, as the user gave it.
struct local_url {
  std::string host;   ///< as written (an IPv6 literal without brackets): the TLS server name too
  uint16_t port = 0;
  bool tls = false;   ///< https://
};
/// "[HOST:]PORT" (plain HTTP), "http://HOST[:PORT]" (port 80 when absent) or
/// "https://HOST[:PORT]" (443). Throws std::invalid_argument with a readable
/// reason: another scheme (named), a path, query or user name in the URL, a
/// bad port, or any URL when `url_allowed` is false (`grok tcp`).
local_url parse_local_url(const std::string& text, bool url_allowed = true);

/// "[HOST:]PORT" cut at its last ':': the host (127.0.0.1 when absent, an
/// IPv6 literal's brackets removed) and the port as written. Throws
/// std::invalid_argument when a ':' has no host before it.
struct host_port_text {
  std::string host;
  std::string port;
  bool bracketed = false;  ///< the host was written [LIKE:THIS]
};
host_port_text split_host_port(const std::string& text);

}  // namespace grok
