#pragma once
// Configuration of grok-server and grok, parsed and validated once into
// immutable structs. Every error names FILE:LINE: key: reason.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "grok/credit.hpp"
#include "grok/ip_network.hpp"
#include "grok/tokens.hpp"

namespace grok {

/// Thrown for any invalid configuration; what() is "FILE:LINE: key: reason"
/// (or "FILE: reason" when no line applies).
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct server_config {
  std::string source = "<defaults>";  ///< file the values came from

  // server.*
  std::string domain = "localhost";
  std::string bind_address = "0.0.0.0";       ///< public HTTP listener address
  uint16_t http_port = 80;
  std::string grpc_address = "0.0.0.0";       ///< tunnel (gRPC) listener address
  uint16_t grpc_port = 4443;
  uint16_t https_port = 0;                    ///< 0 = no HTTPS listener (needs tls.*)
  std::string api_address = "127.0.0.1";
  std::string api_token;                      ///< set: /metrics and /api/* need "Authorization: Bearer TOKEN"
  uint16_t api_port = 0;                      ///< 0 = admin endpoint off
  std::chrono::milliseconds drain_timeout{30000};
  uint64_t max_body_size = 0;                 ///< 0 = unlimited (bodies stream)
  uint32_t max_header_bytes = 16 * 1024;
  std::chrono::milliseconds read_header_timeout{10000};
  std::chrono::milliseconds idle_timeout{75000};
  uint32_t max_header_count = 100;            ///< header fields per request; more -> 431
  std::vector<ip_network> trusted_proxies;    ///< peers whose X-Forwarded-* / Forwarded are kept
  bool proxy_protocol = false;                ///< trusted proxies send a PROXY header on each public connection
  uint32_t max_connections_per_ip = 256;      ///< open public connections per source IP; 0 = unlimited

  // tunnels.*
  unsigned worker_pool_size = 0;              ///< 0 = auto
  std::chrono::milliseconds response_timeout{30000};
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds heartbeat_timeout{5000};  ///< a ping unanswered this long drops the client
  unsigned max_per_token = 0;                 ///< 0 = unlimited
  uint32_t initial_window = 512 * 1024;       ///< credit per exchange and direction
  uint32_t max_window = default_max_window;   ///< what a window may grow to while it limits a stream
  uint32_t max_frame_size = 64 * 1024;
  uint32_t max_exchanges = 1000;              ///< in flight per tunnel
  uint64_t max_queued_bytes = 64ull << 20;    ///< bytes waiting on one tunnel's stream
  std::chrono::milliseconds name_grace{60000};///< offline names answer 502 this long
  unsigned max_pool_members = 64;             ///< tunnels in one pool (`grok --pool`)
  uint16_t tcp_port_start = 20000;            ///< public ports for `grok tcp` tunnels
  uint16_t tcp_port_end = 20099;              ///< inclusive; start 0 = TCP tunnels off
  unsigned max_streams_per_connection = 4;    ///< concurrent gRPC streams on one client connection
  uint32_t tunnel_max_connections_per_ip = 256;  ///< tunnel-port connections per source IP; 0 = unlimited
  uint32_t tunnel_max_connections = 10000;    ///< tunnel-port connections in all; 0 = unlimited
  std::chrono::milliseconds hello_timeout{10000};  ///< TLS + HTTP/2 handshake, and then a Hello, each within this
  uint64_t grpc_memory_quota = 1ull << 30;    ///< memory gRPC may use for all tunnel connections
  unsigned grpc_poll_threads = 2;             ///< threads polling the tunnel streams' completion queue

  // tls.*
  std::string tls_cert_file;                  ///< PEM chain (a wildcard cert for *.domain)
  std::string tls_key_file;
  bool tls_grpc = true;                       ///< with a cert: TLS on the tunnel listener too
  bool tls_redirect_http = false;             ///< answer plain HTTP with a redirect to HTTPS

  // auth.*
  std::vector<std::string> tokens;            ///< empty = no token required
  std::vector<std::string> tcp_tokens;        ///< may open TCP tunnels; empty = any accepted token
  std::string tokens_file;                    ///< YAML list of token digests (see tokens.hpp)
  unsigned max_auth_failures = 10;            ///< failed Hellos per source IP per window; 0 = no limit
  std::chrono::milliseconds auth_failure_window{60000};
  /// Every accepted token: auth.tokens (labelled "auth.tokens[i]") then the
  /// tokens file's entries. Filled by parse_server_config.
  std::vector<token_entry> token_table;
  /// Digests of auth.tcp_tokens (what limits TCP when any token is accepted).
  std::vector<token_entry> tcp_token_table;
  /// False when neither auth.tokens nor auth.tokens_file is set: any token is accepted.
  bool allow_anonymous = false;               ///< serve with no tokens at all (anyone may open tunnels)
  bool auth_required() const { return !tokens.empty() || !tokens_file.empty(); }

  // logging.*
  std::string log_level = "info";             ///< trace|debug|info|warn|error|off
  std::string log_format = "text";            ///< text|json

  // cluster.* (several nodes sharing names through etcd; off without the section)
  bool cluster = false;                       ///< a cluster: section with etcd_endpoints is present
  std::vector<std::string> etcd_endpoints;    ///< HOST:PORT, http://HOST:PORT or https://HOST:PORT
  std::string node_id;                        ///< unique per node; default: the host name
  std::string advertise;                      ///< HOST:PORT other nodes reach this node's tunnel port on
  std::chrono::milliseconds lease_ttl{5000};  ///< a dead node's names are free after this
  std::string cluster_prefix = "/grok/";      ///< every key grok writes in etcd starts with it
  std::string cluster_ca_file;                ///< PEM CA that signs the etcd members' certificates (https endpoints)
  std::string cluster_cert_file;              ///< this node's client certificate for etcd (mutual TLS)
  std::string cluster_key_file;
  std::string cluster_secret;                 ///< what nodes show each other when they relay requests
};

/// One entry of the client configuration's `tunnels:` section, started by
/// `grok start NAME` or `grok start --all`. Each key is the `grok http|tcp`
/// flag of the same name (with '_' for '-'); values are checked when the
/// file is read, as the flags are.
struct tunnel_definition {
  std::string name;            ///< its key under `tunnels:`
  std::string proto = "http";  ///< http | tcp
  std::string addr;            ///< the local service: [HOST:]PORT, or a URL for http
  std::string subdomain;       ///< empty: the server picks a name
  bool pool = false;
  std::string health_check;    ///< a path, empty for none
  std::chrono::milliseconds health_interval{0};  ///< 0: the default
  std::chrono::milliseconds health_timeout{0};
  std::vector<std::string> basic_auth;  ///< USER:PASS each
  std::vector<std::string> allow_cidr;
  std::vector<std::string> deny_cidr;
  std::string host_header;
  std::vector<std::string> request_header_add;
  std::vector<std::string> request_header_remove;
  std::vector<std::string> response_header_add;
  std::vector<std::string> response_header_remove;
  bool upstream_insecure = false;
  std::string proxy_protocol;  ///< "", "v1" or "v2"
};

struct client_config {
  std::string source = "<defaults>";
  std::string server;             ///< grok-server's tunnel address HOST:PORT; empty = not set
  std::string token;
  std::string log_level = "info";
  bool insecure = false;          ///< plaintext gRPC (a development server without a certificate)
  std::string ca;                 ///< PEM file of CAs to verify the server with; empty = the system CAs
  /// Pings to the server, and how long one may go unanswered before the stream is dropped.
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds heartbeat_timeout{5000};
  // The request inspector (a page and an API on 127.0.0.1:4040).
  bool inspect = true;                     ///< false: no inspector
  std::string inspect_addr;                ///< HOST:PORT; empty = 127.0.0.1:4040, or the next free port
  std::string inspect_auth;                ///< USER:PASS; required for a non-loopback inspect_addr
  uint64_t inspect_max_memory = 64ull << 20;  ///< every captured exchange together; the oldest go first
  uint64_t inspect_max_body = 1ull << 20;     ///< bytes kept of each body; the rest is counted only
  /// An HTTP proxy to reach grok-server through (http://[USER:PASS@]HOST:PORT);
  /// empty: the https_proxy / no_proxy environment variables decide.
  std::string proxy;
  std::vector<tunnel_definition> tunnels;  ///< the `tunnels:` section, in file order
};

/// Checks a --proxy / `proxy:` value (http://[USER:PASS@]HOST:PORT); throws
/// std::invalid_argument with the reason.
void check_proxy_url(const std::string& url);

/// The placeholder token of the example configuration (conf/grok-server.yaml).
inline constexpr const char* example_token = "change-me";

/// Settings grok-server refuses to serve with, each a sentence naming the
/// key and what to do: no tokens without auth.allow_anonymous, the example's
/// placeholder token, an admin endpoint reachable from other hosts without
/// server.api_token. Empty when there is none.
std::vector<std::string> unsafe_settings(const server_config& cfg);
/// Settings grok-server warns about at start: a plaintext tunnel port on a
/// non-loopback address, anonymous tunnels.
std::vector<std::string> risky_settings(const server_config& cfg);

/// Parses YAML text; `source` is the file name used in error messages.
server_config parse_server_config(const std::string& yaml_text, const std::string& source);
/// `path` as written in the configuration file `config_path`: a relative
/// path is relative to that file's directory.
std::string path_beside(const std::string& config_path, const std::string& path);

/// Reads and parses a file (error "FILE: cannot read: ..." if unreadable).
server_config load_server_config(const std::string& path);

client_config parse_client_config(const std::string& yaml_text, const std::string& source);
client_config load_client_config(const std::string& path);

/// Checks a client `server` value (HOST:PORT, port 1..65535, IPv6 hosts in
/// brackets); throws std::invalid_argument with the reason, the same one
/// parse_client_config gives for the `server` key.
void check_server_address(const std::string& address);
/// "a:4443,b:4443" -> {"a:4443", "b:4443"} (one element without a comma).
std::vector<std::string> split_server_list(const std::string& list);

/// YAML text for a client config file that parse_client_config reads back
/// to the same values (the `tunnels:` section included).
std::string render_client_config(const client_config& cfg);

/// "30s", "5m", "250ms", "1h", "2m30s"; a bare integer is seconds.
/// Throws std::invalid_argument with a readable reason.
std::chrono::milliseconds parse_duration(const std::string& text);
/// "64KiB", "16MiB", "1GiB", "512", "10MB" (SI) -> bytes. Throws std::invalid_argument.
uint64_t parse_size(const std::string& text);

/// The worker count actually used: GROK_WORKER_POOL_SIZE (if set and valid)
/// overrides the file; 0 means auto_worker_count().
/// Throws config_error naming the variable when the override is not a number in 0..1024.
unsigned effective_worker_count(const server_config& cfg, const char* env_value);

/// The auto worker count: half the hardware threads, at least 1. gRPC runs
/// the tunnel streams on threads of its own; the worker-pool sweep in the
/// README (tests/bench/e2e.sh) measured 1 worker best on 2 cores, with 2, 4
/// and 8 each slower.
unsigned auto_worker_count();

}  // namespace grok
