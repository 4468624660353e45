#include "inspector.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <deque>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "grok/client.hpp"
#include "grok/file_server.hpp"
#include "inspector_page.hpp"
#include "io_errors.hpp"
#include "local_stream.hpp"

namespace grok {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

/// Bytes of events one page may fall behind by before its stream is closed
/// (the page reconnects and reloads the list).
constexpr size_t max_sse_backlog = 4 << 20;
/// Changes waiting for the inspector thread; past this the pages are told to reload.
constexpr size_t max_pending_changes = 20000;
constexpr auto idle_timeout = std::chrono::seconds(60);
constexpr auto replay_timeout = std::chrono::seconds(30);

std::string host_only(std::string_view host_header) {
  if (host_header.starts_with('[')) {
    auto close = host_header.find(']');
    return std::string(host_header.substr(0, close == std::string_view::npos ? host_header.size() : close + 1));
  }
  return std::string(host_header.substr(0, host_header.find(':')));
}

/// The header names grok frames itself when it sends a request on.
bool framing_header(std::string_view name) {
  return beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding") ||
         beast::iequals(name, "connection") || beast::iequals(name, "keep-alive") || beast::iequals(name, "upgrade");
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  error_code ec;
  auto a = asio::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

std::pair<std::string, uint16_t> parse_inspect_address(const std::string& text) {
  auto [host, port, bracketed] = split_host_port(text);
  if (!bracketed && host.find(':') != std::string::npos)
    throw std::invalid_argument("'" + text + "': IPv6 addresses must be in brackets, e.g. [::1]:4040");
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value > 65535)
    throw std::invalid_argument("'" + text + "': port must be a number in 0..65535");
  if (host != "localhost") {
    error_code aec;
    asio::ip::make_address(host, aec);
    if (aec) throw std::invalid_argument("'" + text + "': host must be an IP address or localhost");
  }
  return {host, static_cast<uint16_t>(value)};
}

class inspector_conn;
class replay_call;

// Handlers hold the impl by plain pointer: it outlives the thread that runs
// them (stop() joins it), and the io_context it owns destroys what is left.
struct inspector::impl {
  inspector_options opts;
  std::shared_ptr<capture_ring> ring;
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  std::thread thread;
  std::string url;

  /// A tunnel, and where a replay of its requests goes.
  struct tunnel_entry {
    tunnel_info info;
    std::string local_host;
    uint16_t local_port = 0;
    std::shared_ptr<const client_detail::local_service> local;  ///< set once the client starts
  };
  mutable std::mutex tunnel_mu;
  std::vector<tunnel_entry> tunnels;  // guarded by tunnel_mu; only grows before start()

  // Live list: changes are gathered from any thread and sent by the inspector thread.
  std::atomic<int> subscribers{0};
  std::mutex pending_mu;
  std::vector<uint64_t> pending;                                  // guarded by pending_mu
  bool pending_reset = false;                                     // guarded by pending_mu
  std::set<std::shared_ptr<inspector_conn>> streams;              // inspector thread only

  void do_accept();
  void on_change(uint64_t seq);
  void flush_changes();
  void broadcast(const std::string& event);
  std::string replay(const replay_request& r, uint64_t& new_seq);
  std::vector<tunnel_info> tunnel_list() const {
    std::lock_guard lk(tunnel_mu);
    std::vector<tunnel_info> out;
    for (const auto& t : tunnels) out.push_back(t.info);
    return out;
  }
  /// The tunnel whose records carry `name` (the first one when none does).
  tunnel_entry tunnel_named(const std::string& name) const {
    std::lock_guard lk(tunnel_mu);
    for (const auto& t : tunnels)
      if (t.info.name == name) return t;
    return tunnels.front();
  }
};

/// One connection to the inspector: requests answered in turn, or, after
/// GET /api/requests/events, a stream of Server-Sent Events.
class inspector_conn : public std::enable_shared_from_this<inspector_conn> {
 public:
  inspector_conn(inspector::impl* owner, tcp::socket s)
      : owner_(std::move(owner)), stream_(std::move(s)), keepalive_(stream_.get_executor()) {}

  void start() { do_read(); }

  /// Inspector thread: one event for this page.
  void push(const std::shared_ptr<const std::string>& event) {
    if (closed_) return;
    backlog_ += event->size();
    if (backlog_ > max_sse_backlog) return close();  // the page reconnects and reloads
    queue_.push_back(event);
    do_write_events();
  }
  void close() {
    if (closed_) return;
    closed_ = true;
    keepalive_.cancel();
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
    if (streaming_) {
      owner_->streams.erase(shared_from_this());
      owner_->subscribers.fetch_sub(1);
    }
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(64 * 1024);
    // Edit-and-replay bodies are base64 in JSON: room for the per-body cap and then some.
    parser_->body_limit(owner_->ring->bounds().max_body * 2 + (1 << 20));
    stream_.expires_after(idle_timeout);
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
      self->on_read(ec);
    });
  }

  void on_read(error_code ec) {
    if (ec) {
      if (!expected_disconnect(ec) && ec != http::error::end_of_stream)
        spdlog::debug("inspector: reading a request: {}", ec.message());
      return close();
    }
    handle(parser_->release());
  }

  using request = http::request<http::string_body>;
  using response = http::response<http::string_body>;

  void reply(const request& req, http::status status, std::string body, std::string_view type = "application/json") {
    auto res = std::make_shared<response>(status, req.version());
    res->set(http::field::server, "grok inspector");
    if (!body.empty() || status != http::status::no_content) res->set(http::field::content_type, type);
    res->set(http::field::cache_control, "no-store");
    res->set("X-Content-Type-Options", "nosniff");
    res->body() = std::move(body);
    res->keep_alive(req.keep_alive());
    res->prepare_payload();
    send(res);
  }
  void send(std::shared_ptr<response> res) {
    stream_.expires_after(idle_timeout);
    http::async_write(stream_, *res, [self = shared_from_this(), res](error_code ec, size_t) {
      if (ec || !res->keep_alive()) return self->close();
      self->do_read();
    });
  }
  void error(const request& req, http::status status, const std::string& message) {
    reply(req, status, "{\"error\":\"" + json_escape(message) + "\"}");
  }
  static std::string json_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      if (static_cast<unsigned char>(c) < 0x20) {
        out += ' ';
        continue;
      }
      out += c;
    }
    return out;
  }

  bool host_allowed(const request& req) const {
    // A page on another site could otherwise read captures through a DNS
    // name rebound to 127.0.0.1; with a password set the browser's own
    // credential check stands in for it.
    if (owner_->opts.basic_auth) return true;
    auto host = host_only(req[http::field::host]);
    return host == "localhost" || is_loopback_host(host) || host == owner_->opts.host ||
           host == "[" + owner_->opts.host + "]";
  }

  void handle(request req) {
    const auto& o = owner_->opts;
    if (o.basic_auth && !basic_auth_ok(req[http::field::authorization], o.basic_auth->first, o.basic_auth->second)) {
      auto res = std::make_shared<response>(http::status::unauthorized, req.version());
      res->set(http::field::www_authenticate, "Basic realm=\"grok inspector\", charset=\"UTF-8\"");
      res->set(http::field::content_type, "text/plain");
      res->body() = "authentication required\n";
      res->keep_alive(req.keep_alive());
      res->prepare_payload();
      return send(res);
    }
    if (!host_allowed(req)) return error(req, http::status::forbidden, "the Host header names no local address");
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));
    std::string_view query = target.size() > path.size() ? target.substr(path.size() + 1) : std::string_view();
    auto method = req.method();

    if (path == "/api/requests/events") {
      if (method != http::verb::get) return error(req, http::status::method_not_allowed, "use GET");
      return start_events();
    }
    if (path == "/api/tunnels" || path == "/api/tunnels/") {
      if (method != http::verb::get) return error(req, http::status::method_not_allowed, "use GET");
      return reply(req, http::status::ok, tunnels_json(owner_->tunnel_list(), true));
    }
    if (path == "/api/requests/http" || path == "/api/requests/http/") {
      if (method == http::verb::get) {
        size_t limit = 0;
        bool summaries = false;
        std::string tunnel;
        while (!query.empty()) {
          auto amp = query.find('&');
          auto part = query.substr(0, amp);
          query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
          auto eq = part.find('=');
          auto key = part.substr(0, eq);
          auto value = percent_decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
          if (!value) return error(req, http::status::bad_request, "malformed query");
          if (key == "limit") {
            auto [p, ec] = std::from_chars(value->data(), value->data() + value->size(), limit);
            if (ec != std::errc() || p != value->data() + value->size())
              return error(req, http::status::bad_request, "limit must be a number");
          } else if (key == "tunnel_name") {
            tunnel = *value;
          } else if (key == "summary") {
            summaries = *value == "1" || *value == "true";
          }
        }
        return reply(req, http::status::ok, capture_list_json(*owner_->ring, limit, tunnel, summaries));
      }
      if (method == http::verb::delete_) {
        owner_->ring->clear();
        return reply(req, http::status::no_content, {});
      }
      if (method == http::verb::post) {
        // A form post from another site cannot send JSON without asking first (CORS).
        if (req[http::field::content_type].find("application/json") == std::string_view::npos)
          return error(req, http::status::unsupported_media_type, "send the body as application/json");
        uint64_t seq = 0;
        if (auto e = parse_replay_id(req.body(), seq); !e.empty()) return error(req, http::status::bad_request, e);
        auto original = owner_->ring->find(seq);
        if (!original) return error(req, http::status::not_found, "no such request (cleared, or dropped to stay under the memory cap)");
        if (original->what == captured_exchange::kind::tcp)
          return error(req, http::status::bad_request, "a TCP connection cannot be replayed");
        replay_request r;
        if (auto e = parse_replay(req.body(), *original, r); !e.empty()) return error(req, http::status::bad_request, e);
        uint64_t new_seq = 0;
        if (auto e = owner_->replay(r, new_seq); !e.empty()) return error(req, http::status::bad_gateway, e);
        auto res = std::make_shared<response>(http::status::no_content, req.version());
        res->set(http::field::location, "/api/requests/http/" + capture_id(new_seq));
        res->set("Grok-Replay-Id", capture_id(new_seq));
        res->keep_alive(req.keep_alive());
        res->prepare_payload();
        return send(res);
      }
      return error(req, http::status::method_not_allowed, "use GET, POST or DELETE");
    }
    if (path.starts_with("/api/requests/http/")) {
      if (method != http::verb::get) return error(req, http::status::method_not_allowed, "use GET");
      auto seq = capture_seq(std::string(path.substr(std::string_view("/api/requests/http/").size())));
      auto rec = seq ? owner_->ring->find(seq) : nullptr;
      if (!rec) return error(req, http::status::not_found, "no such request");
      return reply(req, http::status::ok, capture_json(*rec));
    }
    if (path.starts_with("/api/")) return error(req, http::status::not_found, "no such resource");
    if (method != http::verb::get) return error(req, http::status::method_not_allowed, "use GET");
    std::string_view file = path == "/" || path.starts_with("/inspect") ? "/index.html" : path;
    for (const auto& a : inspector_page::assets()) {
      if (a.path == file) return reply(req, http::status::ok, std::string(a.body), a.type);
    }
    reply(req, http::status::not_found, "not found\n", "text/plain");
  }

  // ---- Server-Sent Events ---------------------------------------------------

  void start_events() {
    streaming_ = true;
    owner_->streams.insert(shared_from_this());
    owner_->subscribers.fetch_add(1);
    stream_.expires_never();
    auto head = std::make_shared<const std::string>(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 1000\n: grok inspector\n\n");
    queue_.push_back(head);
    backlog_ += head->size();
    do_write_events();
    do_keepalive();
    // A read that ends when the page goes away.
    auto buf = std::make_shared<std::array<char, 256>>();
    stream_.socket().async_read_some(asio::buffer(*buf), [self = shared_from_this(), buf](error_code ec, size_t) {
      if (ec) self->close();
    });
  }

  void do_keepalive() {
    keepalive_.expires_after(std::chrono::seconds(15));
    keepalive_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->closed_) return;
      self->push(std::make_shared<const std::string>(": keep-alive\n\n"));
      self->do_keepalive();
    });
  }

  void do_write_events() {
    if (writing_ || queue_.empty() || closed_) return;
    writing_ = true;
    auto ev = queue_.front();
    asio::async_write(stream_.socket(), asio::buffer(*ev), [self = shared_from_this(), ev](error_code ec, size_t) {
      self->writing_ = false;
      self->backlog_ -= ev->size();
      self->queue_.pop_front();
      if (ec) return self->close();
      self->do_write_events();
    });
  }

  inspector::impl* owner_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  asio::steady_timer keepalive_;
  std::deque<std::shared_ptr<const std::string>> queue_;  // events not yet written; front is being written
  size_t backlog_ = 0;
  bool writing_ = false;
  bool streaming_ = false;
  bool closed_ = false;
};

/// One replay: the request sent to the local service on a new connection
/// (TLS and a PROXY header as for the tunnel's own; the header names no
/// visitor), the answer recorded as a new row that names its original.
class replay_call : public std::enable_shared_from_this<replay_call> {
 public:
  replay_call(inspector::impl* owner, std::shared_ptr<const client_detail::local_service> local,
              captured_exchange rec, uint64_t seq)
      : owner_(owner), local_(std::move(local)), stream_(asio::make_strand(owner_->ioc), local_->tls.get()),
        rec_(std::move(rec)), seq_(seq), started_(std::chrono::steady_clock::now()) {}

  void start(std::string wire) {
    wire_ = std::move(wire);
    stream_.expires_after(replay_timeout);
    stream_.async_open(local_, client_detail::proxy_header_for(*local_, nullptr),
                       [self = shared_from_this()](error_code ec, std::string why) {
                         if (ec) return self->end("cannot connect to the local service: " + why);
                         self->do_write();
                       });
  }

 private:
  void do_write() {
    asio::async_write(stream_, asio::buffer(wire_), [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return self->end("writing the request: " + ec.message());
      self->parser_.header_limit(64 * 1024);
      self->parser_.body_limit(boost::none);
      if (self->rec_.method == "HEAD") self->parser_.skip(true);
      self->do_read();
    });
  }
  void do_read() {
    if (!parser_.is_header_done()) {
      parser_.get().body().data = nullptr;
      parser_.get().body().size = 0;
    } else {
      parser_.get().body().data = chunk_.data();
      parser_.get().body().size = chunk_.size();
    }
    auto on = [self = shared_from_this()](error_code ec, size_t) { self->on_read(ec); };
    if (!parser_.is_header_done())
      http::async_read_header(stream_, buffer_, parser_, on);
    else
      http::async_read(stream_, buffer_, parser_, on);
  }
  void on_read(error_code ec) {
    if (ec == http::error::need_buffer) ec = {};
    if (parser_.is_header_done() && !head_taken_) {
      head_taken_ = true;
      const auto& h = parser_.get();
      rec_.status = h.result_int();
      rec_.reason = std::string(h.reason());
      for (const auto& f : h) rec_.response_headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    } else if (parser_.is_header_done()) {
      auto n = chunk_.size() - parser_.get().body().size;
      rec_.response_body.append(chunk_.data(), n, owner_->ring->bounds().max_body);
    }
    if (ec) return end(rec_.status ? "reading the response: " + ec.message() : "the local service sent no response: " + ec.message());
    if (parser_.is_done()) return end({});
    do_read();
  }
  void end(const std::string& error) {
    error_code ignored;
    stream_.socket().close(ignored);
    rec_.error = error;
    rec_.where = error.empty() ? captured_exchange::state::done : captured_exchange::state::failed;
    if (!error.empty() && !rec_.status) rec_.status = 502;
    rec_.duration = std::chrono::steady_clock::now() - started_;
    owner_->ring->update(seq_, std::move(rec_));
  }

  inspector::impl* owner_;
  std::shared_ptr<const client_detail::local_service> local_;  ///< the original's tunnel's local service
  client_detail::local_stream stream_;
  beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
  std::array<char, 64 * 1024> chunk_{};
  captured_exchange rec_;
  uint64_t seq_;
  std::chrono::steady_clock::time_point started_;
  std::string wire_;
  bool head_taken_ = false;
};

void inspector::impl::do_accept() {
  acceptor.async_accept([self = this](error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
    if (!ec) std::make_shared<inspector_conn>(self, std::move(s))->start();
    self->do_accept();
  });
}

void inspector::impl::on_change(uint64_t seq) {
  if (subscribers.load(std::memory_order_relaxed) == 0) return;  // nobody watches: nothing to do
  bool first = false;
  {
    std::lock_guard lk(pending_mu);
    first = pending.empty() && !pending_reset;
    if (seq == 0 || pending.size() >= max_pending_changes) {
      pending.clear();
      pending_reset = true;
    } else {
      pending.push_back(seq);
    }
  }
  if (first) asio::post(ioc, [self = this] { self->flush_changes(); });
}

void inspector::impl::flush_changes() {
  std::vector<uint64_t> batch;
  bool reset = false;
  {
    std::lock_guard lk(pending_mu);
    batch.swap(pending);
    reset = pending_reset;
    pending_reset = false;
  }
  if (streams.empty()) return;
  std::string events;
  if (reset) events += "event: reset\ndata: {}\n\n";
  // A record changed several times in one burst is sent once, as it is now.
  std::sort(batch.begin(), batch.end());
  batch.erase(std::unique(batch.begin(), batch.end()), batch.end());
  for (auto seq : batch) {
    auto r = ring->find(seq);
    if (!r) continue;  // dropped or cleared meanwhile
    events += "event: request\ndata: ";
    events += capture_summary_json(*r);
    events += "\n\n";
  }
  if (!events.empty()) broadcast(events);
}

void inspector::impl::broadcast(const std::string& event) {
  auto shared = std::make_shared<const std::string>(event);
  // push() may close a page that fell behind, which erases it from `streams`.
  auto copy = streams;
  for (const auto& s : copy) s->push(shared);
}

std::string inspector::impl::replay(const replay_request& r, uint64_t& new_seq) {
  auto target = tunnel_named(r.tunnel);
  if (target.local_port == 0 || !target.local) return "there is no local service to send requests to";
  captured_exchange rec;
  rec.tunnel = target.info.name;
  rec.start = std::chrono::system_clock::now();
  rec.remote_addr = "replay";
  rec.method = r.method;
  rec.target = r.target;
  rec.replay_of = r.seq;
  std::string wire = r.method + " " + r.target + " HTTP/1.1\r\n";
  for (const auto& [k, v] : r.headers) {
    if (framing_header(k)) continue;
    rec.request_headers.emplace_back(k, v);
    wire += k + ": " + v + "\r\n";
  }
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH")
    wire += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  wire += "\r\n";  // HTTP/1.1 keeps the connection; it is closed after the one answer
  wire += r.body;
  rec.request_body.append(r.body.data(), r.body.size(), ring->bounds().max_body);
  new_seq = ring->add(rec);
  auto call = std::make_shared<replay_call>(this, std::move(target.local), std::move(rec), new_seq);
  call->start(std::move(wire));
  return {};
}

inspector::inspector(inspector_options o)
    : ring_(std::make_shared<capture_ring>(o.limits)), impl_(std::make_shared<impl>()) {
  impl_->opts = std::move(o);
  impl_->ring = ring_;
  add_tunnel(impl_->opts.tunnel_name, impl_->opts.proto, impl_->opts.local_host, impl_->opts.local_port);
  std::weak_ptr<impl> weak = impl_;
  ring_->on_change([weak](uint64_t seq) {
    if (auto i = weak.lock()) i->on_change(seq);
  });
}

inspector::~inspector() { stop(); }

void inspector::start() {
  auto& o = impl_->opts;
  error_code ec;
  auto address = asio::ip::make_address(o.host == "localhost" ? "127.0.0.1" : o.host, ec);
  if (ec) throw std::runtime_error("'" + o.host + "' is not an IP address");
  // The default port moves on when taken (another grok, an ngrok), and past
  // 20 taken ports to one the system picks; a port given with --inspect does not.
  const unsigned tries = o.next_free && o.port != 0 ? 21 : 1;
  for (unsigned i = 0; i < tries; ++i) {
    uint16_t port = tries > 1 && i + 1 == tries ? 0 : static_cast<uint16_t>(o.port + i);
    tcp::endpoint ep(address, port);
    impl_->acceptor.close(ec);
    impl_->acceptor.open(ep.protocol(), ec);
    if (ec) throw std::runtime_error("cannot open a socket: " + ec.message());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    // With SO_REUSEADDR two sockets may bind one port until one listens:
    // a port is ours only once listen() succeeds (twenty groks starting at once).
    impl_->acceptor.bind(ep, ec);
    if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) break;
    if (ec != asio::error::address_in_use || i + 1 == tries)
      throw std::runtime_error("cannot listen on " + o.host + ":" + std::to_string(port) + ": " + ec.message());
  }
  auto bound = impl_->acceptor.local_endpoint();
  std::string host = bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();
  if (o.host == "localhost") host = "localhost";
  impl_->url = "http://" + host + ":" + std::to_string(bound.port());
  impl_->do_accept();
  impl_->thread = std::thread([i = impl_.get()] { i->ioc.run(); });
}

void inspector::stop() {
  if (!impl_->thread.joinable()) return;
  asio::post(impl_->ioc, [i = impl_.get()] {
    error_code ignored;
    i->acceptor.close(ignored);
    auto streams = i->streams;
    for (const auto& s : streams) s->close();
    i->ioc.stop();
  });
  impl_->thread.join();
}

std::string inspector::url() const { return impl_->url; }

bool inspector::watched() const { return impl_->subscribers.load(std::memory_order_relaxed) > 0; }

size_t inspector::add_tunnel(const std::string& name, const std::string& proto, const std::string& local_host,
                             uint16_t local_port) {
  impl::tunnel_entry t;
  t.info.name = name;
  t.info.proto = proto;
  t.info.addr = (proto == "tcp" ? "tcp://" : "http://") + local_host + ":" + std::to_string(local_port);
  t.local_host = local_host;
  t.local_port = local_port;
  std::lock_guard lk(impl_->tunnel_mu);
  impl_->tunnels.push_back(std::move(t));
  return impl_->tunnels.size() - 1;
}

void inspector::set_tunnel(size_t i, const std::string& name, const std::string& public_url) {
  std::lock_guard lk(impl_->tunnel_mu);
  impl_->tunnels.at(i).info.name = name;
  impl_->tunnels.at(i).info.public_url = public_url;
}

void inspector::set_local_service(size_t i, std::shared_ptr<const client_detail::local_service> local) {
  std::lock_guard lk(impl_->tunnel_mu);
  auto& t = impl_->tunnels.at(i);
  if (t.info.proto != "tcp") t.info.addr = local->url;
  t.local = std::move(local);
}

std::string inspector::tunnel_name(size_t i) const {
  std::lock_guard lk(impl_->tunnel_mu);
  return impl_->tunnels.at(i).info.name;
}

}  // namespace grok
