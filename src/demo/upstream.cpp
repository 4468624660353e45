// grok-demo-upstream: the "local app" of the README demo and the integration
// tests. Every body is streamed through one 64 KiB buffer per connection so
// that gigabyte uploads and downloads keep the process footprint flat. With
// --tls-cert/--tls-key it speaks HTTPS; with --proxy-protocol every
// connection starts with a PROXY header (v1 or v2), which it logs.

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = beast::error_code;
using tls_stream = beast::ssl_stream<beast::tcp_stream>;

constexpr std::size_t k_io_chunk = 64 * 1024;
constexpr std::uint64_t k_mib = 1024 * 1024;
constexpr std::uint32_t k_header_limit = 64 * 1024;
// Keeps /download-sha from monopolising one of the two I/O threads.
constexpr std::size_t k_hash_blocks_per_turn = 64;
constexpr std::string_view k_hello = "Hello from grok-demo-upstream\n";
// /inspect keeps at most this much of a request body.
constexpr std::size_t k_inspect_limit = 1024 * 1024;

// --log-requests: one "request METHOD TARGET names=..." line per request head
// read, so tests can tell exactly which requests reached the local service.
bool g_log_requests = false;

// --keep-alive-timeout MS: a connection that sends no request head for MS
// milliseconds is closed, as Node's http server does after its
// keepAliveTimeout (5 s by default); 0 keeps connections open.
std::chrono::milliseconds g_keep_alive_timeout{0};
// --idle-408: send "408 Request Timeout" before such a close, as some servers do.
bool g_idle_408 = false;

// Requests between their head and the end of their response, and the most at
// once since the last GET /in-flight: tests use it to show requests overlapped.
std::atomic<int> g_in_flight{0};
std::atomic<int> g_in_flight_peak{0};
// GET /health answers 200 until POST /health/fail, 503 until POST /health/pass.
std::atomic<bool> g_healthy{true};
// --name NAME: "/" says "Hello from NAME" (which of several copies answered).
std::string g_hello;
// --tls-cert FILE --tls-key FILE: HTTPS only.
std::unique_ptr<net::ssl::context> g_tls;
// --proxy-protocol: each connection must start with a PROXY header.
bool g_proxy_protocol = false;

// The one stream type the sessions below are compiled for: a plain TCP
// connection or a TLS one, chosen per connection. Reads and writes take
// type-erased handlers, so every Beast and Asio operation is compiled once,
// not once per stream type.
class any_stream
{
public:
    using executor_type = beast::tcp_stream::executor_type;

    // A read or write's completion handler, type-erased (move-only, one
    // allocation), keeping the executor it is associated with.
    class io_handler
    {
    public:
        using executor_type = net::any_io_executor;

        template <class Handler>
        io_handler(Handler&& h, const executor_type& fallback)
            : ex_(net::get_associated_executor(h, fallback)),
              fn_(std::make_unique<model<std::decay_t<Handler>>>(std::forward<Handler>(h)))
        {
        }
        executor_type get_executor() const noexcept { return ex_; }
        void operator()(error_code ec, std::size_t n)
        {
            auto fn = std::move(fn_);
            fn->call(ec, n);
        }

    private:
        struct base {
            virtual ~base() = default;
            virtual void call(error_code ec, std::size_t n) = 0;
        };
        template <class Handler>
        struct model final : base {
            explicit model(Handler&& h) : handler(std::move(h)) {}
            void call(error_code ec, std::size_t n) override { std::move(handler)(ec, n); }
            Handler handler;
        };
        executor_type ex_;
        std::unique_ptr<base> fn_;
    };

    explicit any_stream(beast::tcp_stream&& s) : tcp_(std::move(s)) {}
    explicit any_stream(tls_stream&& s) : tls_(std::move(s)) {}

    executor_type get_executor() { return lowest().get_executor(); }
    beast::tcp_stream& lowest() { return tls_ ? tls_->next_layer() : *tcp_; }

    template <class Buffers, class Token>
    auto async_read_some(const Buffers& buffers, Token&& token)
    {
        return net::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, const Buffers& b) {
                read_some(pieces<net::mutable_buffer>(b), io_handler(std::move(handler), get_executor()));
            },
            token, buffers);
    }

    template <class Buffers, class Token>
    auto async_write_some(const Buffers& buffers, Token&& token)
    {
        return net::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, const Buffers& b) {
                write_some(pieces<net::const_buffer>(b), io_handler(std::move(handler), get_executor()));
            },
            token, buffers);
    }

    // websocket::stream closes its next layer through these.
    friend void beast_close_socket(any_stream& s) { s.lowest().close(); }

    friend void teardown(beast::role_type role, any_stream& s, error_code& ec)
    {
        using beast::websocket::teardown;
        if (s.tls_)
            teardown(role, *s.tls_, ec);
        else
            teardown(role, *s.tcp_, ec);
    }

    template <class Handler>
    friend void async_teardown(beast::role_type role, any_stream& s, Handler&& handler)
    {
        using beast::websocket::async_teardown;
        if (s.tls_)
            async_teardown(role, *s.tls_, std::forward<Handler>(handler));
        else
            async_teardown(role, *s.tcp_, std::forward<Handler>(handler));
    }

private:
    // A buffer sequence's first pieces (at most 16, empty ones left out): a
    // read or write may always move fewer bytes than offered.
    template <class Buffer>
    struct pieces {
        template <class Sequence>
        explicit pieces(const Sequence& seq)
        {
            for (auto it = net::buffer_sequence_begin(seq); it != net::buffer_sequence_end(seq) && n < a.size(); ++it) {
                Buffer b(*it);
                if (b.size() > 0)
                    a[n++] = b;
            }
        }
        const Buffer* begin() const { return a.data(); }
        const Buffer* end() const { return a.data() + n; }
        std::array<Buffer, 16> a{};
        std::size_t n = 0;
    };

    void read_some(pieces<net::mutable_buffer> b, io_handler h)
    {
        if (tls_)
            tls_->async_read_some(b, std::move(h));
        else
            tcp_->async_read_some(b, std::move(h));
    }

    void write_some(pieces<net::const_buffer> b, io_handler h)
    {
        if (tls_)
            tls_->async_write_some(b, std::move(h));
        else
            tcp_->async_write_some(b, std::move(h));
    }

    std::optional<beast::tcp_stream> tcp_;
    std::optional<tls_stream> tls_;
};

struct in_flight_mark
{
    in_flight_mark()
    {
        int now = ++g_in_flight;
        int peak = g_in_flight_peak.load();
        while (now > peak && !g_in_flight_peak.compare_exchange_weak(peak, now)) {
        }
    }
    ~in_flight_mark() { --g_in_flight; }
    in_flight_mark(in_flight_mark const&) = delete;
    in_flight_mark& operator=(in_flight_mark const&) = delete;
};

template <class Fields>
void log_request(http::request_header<Fields> const& head)
{
    std::string line = "grok-demo-upstream: request ";
    line.append(head.method_string()).append(" ").append(head.target()).append(" names=");
    bool first = true;
    for (auto const& field : head) {
        if (!first)
            line += ',';
        first = false;
        for (char c : field.name_string())
            line += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    line += "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
}

void log_error(std::string_view what, std::string_view detail)
{
    // One write per line so lines from the two I/O threads do not interleave.
    std::string line = "grok-demo-upstream: ";
    line.append(what).append(": ").append(detail).append("\n");
    std::fwrite(line.data(), 1, line.size(), stderr);
}

// Disconnects are the normal end of a test connection, not worth a log line.
bool is_routine(error_code ec)
{
    return ec == net::error::eof || ec == http::error::end_of_stream ||
           ec == http::error::partial_message || ec == net::error::connection_reset ||
           ec == net::error::broken_pipe || ec == net::error::operation_aborted ||
           ec == net::error::not_connected || ec == websocket::error::closed;
}

// Byte i of the download pattern is (i * 31 + 7) & 0xff, which only depends on
// i mod 256. Since k_io_chunk is a multiple of 256 and every write starts at a
// multiple of k_io_chunk, each block of the stream is a prefix of this one.
std::array<char, k_io_chunk>& pattern_block()
{
    static std::array<char, k_io_chunk> block = [] {
        std::array<char, k_io_chunk> b{};
        for (std::size_t i = 0; i < b.size(); ++i)
            b[i] = static_cast<char>((i * 31 + 7) & 0xff);
        return b;
    }();
    return block;
}

class sha256
{
public:
    sha256() : ctx_(EVP_MD_CTX_new())
    {
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
            throw std::runtime_error("EVP sha256 init failed");
    }

    void update(const void* data, std::size_t size)
    {
        if (size != 0 && EVP_DigestUpdate(ctx_.get(), data, size) != 1)
            throw std::runtime_error("EVP sha256 update failed");
    }

    std::string hex_final()
    {
        std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
        unsigned int len = 0;
        if (EVP_DigestFinal_ex(ctx_.get(), md.data(), &len) != 1)
            throw std::runtime_error("EVP sha256 final failed");
        static constexpr char digits[] = "0123456789abcdef";
        std::string hex;
        hex.reserve(len * 2);
        for (unsigned int i = 0; i < len; ++i) {
            hex.push_back(digits[md[i] >> 4]);
            hex.push_back(digits[md[i] & 0xf]);
        }
        return hex;
    }

private:
    struct ctx_deleter
    {
        void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
    };
    std::unique_ptr<EVP_MD_CTX, ctx_deleter> ctx_;
};

struct parsed_target
{
    std::string path;
    std::vector<std::pair<std::string, std::string>> query;

    std::optional<std::string_view> param(std::string_view name) const
    {
        for (auto const& [key, value] : query)
            if (key == name)
                return std::string_view{value};
        return std::nullopt;
    }

    // nullopt when absent; throws when present but not a number, so that a
    // typo in a test shows up as a 400 instead of a silent default.
    std::optional<std::uint64_t> number(std::string_view name) const
    {
        auto value = param(name);
        if (!value)
            return std::nullopt;
        std::uint64_t n = 0;
        auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
        if (ec != std::errc{} || end != value->data() + value->size() || value->empty())
            throw std::invalid_argument("bad number for query parameter " + std::string(name));
        return n;
    }
};

parsed_target parse_target(std::string_view target)
{
    parsed_target out;
    auto q = target.find('?');
    out.path = std::string(target.substr(0, q));
    if (q == std::string_view::npos)
        return out;
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        auto amp = rest.find('&');
        std::string_view item = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
        if (item.empty())
            continue;
        auto eq = item.find('=');
        if (eq == std::string_view::npos)
            out.query.emplace_back(std::string(item), std::string());
        else
            out.query.emplace_back(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
    }
    return out;
}

std::string to_lower(std::string_view s)
{
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

template <class Stream>
class ws_session : public std::enable_shared_from_this<ws_session<Stream>>
{
public:
    ws_session(Stream&& stream, http::request<http::empty_body> req)
        : ws_(std::move(stream)), req_(std::move(req)), buf_(k_io_chunk)
    {
    }

    // Bytes the client pipelined behind the upgrade request are lost here:
    // websocket::stream cannot be seeded with them. RFC 6455 clients wait for
    // the 101 before sending frames, so this does not happen in practice.
    void run()
    {
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
        ws_.async_accept(req_, [self = this->shared_from_this()](error_code ec) { self->on_accept(ec); });
    }

private:
    void on_accept(error_code ec)
    {
        if (ec)
            return fail(ec, "websocket accept");
        do_read();
    }

    // Echo frame by frame instead of whole messages, so memory stays bounded
    // no matter how large a message is; message boundaries and the text/binary
    // type are preserved.
    void do_read()
    {
        ws_.async_read_some(net::buffer(buf_), [self = this->shared_from_this()](error_code ec, std::size_t n) {
            self->on_read(ec, n);
        });
    }

    void on_read(error_code ec, std::size_t n)
    {
        if (ec)
            return fail(ec, "websocket read");
        bool fin = ws_.is_message_done();
        if (n == 0 && !fin)
            return do_read();
        if (!in_message_) {
            ws_.text(ws_.got_text());
            in_message_ = true;
        }
        if (fin)
            in_message_ = false;
        ws_.async_write_some(fin, net::buffer(buf_.data(), n),
                             [self = this->shared_from_this()](error_code write_ec, std::size_t) {
                                 self->on_write(write_ec);
                             });
    }

    void on_write(error_code ec)
    {
        if (ec)
            return fail(ec, "websocket write");
        do_read();
    }

    static void fail(error_code ec, std::string_view what)
    {
        if (!is_routine(ec))
            log_error(what, ec.message());
    }

    websocket::stream<Stream> ws_;
    http::request<http::empty_body> req_;
    std::vector<char> buf_;
    bool in_message_ = false;
};

// Stream: any_stream (TCP, or TLS with --tls-cert).
template <class Stream>
class http_session : public std::enable_shared_from_this<http_session<Stream>>
{
    // Continuations are type-erased: each Beast operation is then compiled once
    // per stream type, not once per route.
    using next_fn = std::function<void()>;
    using data_fn = std::function<void(std::size_t n, bool done)>;

public:
    // `proxy`: the PROXY header the connection began with (v2 in hex), or empty;
    // `sni`: the server name a TLS client asked for. /echo reports both.
    http_session(Stream&& stream, std::string proxy, std::optional<std::string> sni)
        : stream_(std::move(stream)), timer_(stream_.get_executor()), body_buf_(k_io_chunk),
          proxy_(std::move(proxy)), sni_(std::move(sni))
    {
        // Beast reads at most the buffer's free capacity: unreserved, that is 512 bytes.
        buffer_.reserve(k_io_chunk);
    }

    void start()
    {
        // The socket was accepted onto its own strand; start there too.
        net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] { self->do_read_header(); });
    }

private:
    // The header is read with an empty_body parser so a WebSocket upgrade can
    // be handed off before any body handling is chosen.
    void do_read_header()
    {
        in_flight_.reset();  // the previous response is complete
        header_parser_.emplace();
        header_parser_->header_limit(k_header_limit);
        // The limit is checked against Content-Length when the header
        // completes, so it must be lifted here, not on the body parser.
        header_parser_->body_limit(boost::none);
        if (g_keep_alive_timeout.count() > 0 && buffer_.size() == 0) {
            timer_.expires_after(g_keep_alive_timeout);
            timer_.async_wait([self = this->shared_from_this()](error_code ec) {
                if (ec || self->buffer_.size() > 0 || self->header_parser_->got_some())
                    return;  // a request came in time
                // Written on the raw socket, it would corrupt a TLS session: TLS closes plainly.
                if (g_idle_408 && !self->sni_) {
                    static constexpr std::string_view k_408 =
                        "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
                    error_code ignored;
                    net::write(self->lowest().socket(), net::buffer(k_408), ignored);
                }
                self->do_close();
                // Logged once the FIN is on its way, so a reader of the log
                // that sends next does not race the close.
                std::fputs("grok-demo-upstream: closed an idle connection\n", stderr);
            });
        }
        http::async_read_header(stream_, buffer_, *header_parser_,
                                [self = this->shared_from_this()](error_code ec, std::size_t) { self->on_read_header(ec); });
    }

    void on_read_header(error_code ec)
    {
        if (g_keep_alive_timeout.count() > 0)
            timer_.cancel();
        if (ec)
            return fail(ec, "read header");

        auto const& head = header_parser_->get();
        if (g_log_requests)
            log_request(head);
        target_ = parse_target(head.target());
        if (target_.path != "/in-flight")
            in_flight_.emplace();
        if (target_.path == "/ws" && websocket::is_upgrade(head)) {
            auto req = header_parser_->release();
            header_parser_.reset();
            std::make_shared<ws_session<Stream>>(std::move(stream_), std::move(req))->run();
            return;
        }

        parser_.emplace(std::move(*header_parser_));
        header_parser_.reset();
        auto const& req = parser_->get();
        is_head_ = req.method() == http::verb::head;
        expects_continue_ = req.version() >= 11 && beast::iequals(req[http::field::expect], "100-continue");
        continue_sent_ = false;

        try {
            route();
        } catch (std::invalid_argument const& e) {
            do_drain_body([self = this->shared_from_this(), msg = std::string(e.what())] {
                self->do_write_text(http::status::bad_request, msg + "\n");
            });
        }
    }

    void route()
    {
        auto const& path = target_.path;
        if (path == "/")
            return do_drain_body([self = this->shared_from_this()] {
                self->do_write_text(http::status::ok, g_hello.empty() ? std::string(k_hello) : g_hello);
            });
        if (path == "/health")
            return do_drain_body([self = this->shared_from_this()] {
                bool ok = g_healthy.load();
                self->do_write_text(ok ? http::status::ok : http::status::service_unavailable,
                                    ok ? "ok\n" : "failing\n");
            });
        if (path == "/health/fail" || path == "/health/pass")
            return do_drain_body([self = this->shared_from_this(), pass = path == "/health/pass"] {
                g_healthy.store(pass);
                self->do_write_text(http::status::ok, pass ? "health: passing\n" : "health: failing\n");
            });
        if (path == "/echo")
            return start_echo(false);
        if (path == "/in-flight")
            return do_drain_body([self = this->shared_from_this()] {
                // The peak restarts from what is in flight now, for the next caller.
                int now = g_in_flight.load();
                int peak = g_in_flight_peak.exchange(now);
                self->do_write_text(http::status::ok, "in_flight=" + std::to_string(now) +
                                                          " peak=" + std::to_string(std::max(peak, now)) + "\n");
            });
        if (path == "/chunked-echo")
            return start_echo(true);
        if (path == "/headers")
            return start_headers();
        if (path == "/inspect")
            return start_inspect();
        if (path == "/download")
            return start_download();
        if (path == "/download-sha")
            return start_download_sha();
        if (path == "/upload" || path == "/expect")
            return start_upload();
        if (path == "/sse")
            return start_sse();
        if (path == "/stall")
            return do_drain_body([self = this->shared_from_this()] { self->do_stall(); });
        if (path == "/slow-head")
            return start_slow_head();
        if (path == "/status")
            return start_status();
        if (path == "/close")
            return do_drain_body([self = this->shared_from_this()] { self->do_close(); });
        if (path == "/reset-mid-body")
            return do_drain_body([self = this->shared_from_this()] { self->do_reset_mid_body(); });
        if (path == "/slow-upload")
            return start_slow_upload();
        if (path == "/until-close")
            return do_drain_body([self = this->shared_from_this()] { self->do_until_close(); });
        if (path == "/reset-mid-chunked")
            return do_drain_body([self = this->shared_from_this()] { self->do_reset_mid_chunked(); });
        if (path == "/ws")
            return do_drain_body([self = this->shared_from_this()] {
                self->do_write_text(http::status::upgrade_required, "websocket upgrade required\n");
            });
        do_drain_body([self = this->shared_from_this()] { self->do_write_text(http::status::not_found, "not found\n"); });
    }

    // Beast never sends "100 Continue" by itself; a client that asked for it
    // would otherwise stall (curl waits a second, others forever).
    void do_begin_body(next_fn next)
    {
        if (!expects_continue_ || continue_sent_ || parser_->is_done())
            return next();
        continue_sent_ = true;
        static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
        net::async_write(stream_, net::buffer(continue_line.data(), continue_line.size()),
                         [self = this->shared_from_this(), next = std::move(next)](error_code ec, std::size_t) mutable {
                             if (ec)
                                 return self->fail(ec, "write 100 continue");
                             next();
                         });
    }

    // Reads at most one buffer of body into body_buf_ and hands the byte count
    // and completion flag to on_data.
    void do_read_body_some(data_fn on_data)
    {
        if (parser_->is_done())
            return on_data(0, true);
        auto& body = parser_->get().body();
        body.data = body_buf_.data();
        body.size = body_buf_.size();
        http::async_read_some(
            stream_, buffer_, *parser_,
            [self = this->shared_from_this(), on_data = std::move(on_data)](error_code ec, std::size_t) mutable {
                // need_buffer only means body_buf_ is full.
                if (ec == http::error::need_buffer)
                    ec = {};
                if (ec)
                    return self->fail(ec, "read body");
                std::size_t n = self->body_buf_.size() - self->parser_->get().body().size;
                on_data(n, self->parser_->is_done());
            });
    }

    // Consumes and discards the request body so the next pipelined request
    // starts at the right byte.
    void do_drain_body(next_fn next)
    {
        if (parser_->is_done())
            return next();
        do_begin_body([self = this->shared_from_this(), next = std::move(next)]() mutable {
            self->do_drain_some(std::move(next));
        });
    }

    void do_drain_some(next_fn next)
    {
        do_read_body_some([self = this->shared_from_this(), next = std::move(next)](std::size_t, bool done) mutable {
            if (done)
                return next();
            self->do_drain_some(std::move(next));
        });
    }

    void do_write_text(http::status status, std::string body, std::string_view content_type = "text/plain")
    {
        auto const& req = parser_->get();
        text_res_.emplace(status, req.version());
        text_res_->keep_alive(req.keep_alive());
        auto code = static_cast<unsigned>(status);
        if (code == 204 || code == 304) {
            // These statuses carry no body and no Content-Length.
            text_res_->body().clear();
        } else {
            text_res_->set(http::field::content_type, content_type);
            text_res_->body() = std::move(body);
            text_res_->prepare_payload();
            // HEAD keeps the Content-Length the GET would have had.
            if (is_head_)
                text_res_->body().clear();
        }
        http::async_write(stream_, *text_res_, [self = this->shared_from_this()](error_code ec, std::size_t) {
            if (ec)
                return self->fail(ec, "write response");
            self->on_response_done(self->text_res_->need_eof());
        });
    }

    // Sets up res_/sr_ for a body produced piece by piece. Without a known
    // length HTTP/1.1 gets chunked encoding and HTTP/1.0 gets a body that ends
    // when the connection closes.
    void prepare_stream_response(std::string_view content_type, std::optional<std::uint64_t> length)
    {
        auto const& req = parser_->get();
        res_.emplace(http::status::ok, req.version());
        res_->set(http::field::content_type, content_type);
        res_->keep_alive(req.keep_alive());
        if (length)
            res_->content_length(*length);
        else if (req.version() >= 11)
            res_->chunked(true);
        else
            res_->keep_alive(false);
        res_->body().data = nullptr;
        res_->body().more = true;
    }

    void do_write_stream_header(next_fn next)
    {
        sr_.emplace(*res_);
        http::async_write_header(
            stream_, *sr_, [self = this->shared_from_this(), next = std::move(next)](error_code ec, std::size_t) mutable {
                if (ec)
                    return self->fail(ec, "write header");
                next();
            });
    }

    // Header-only answer for HEAD on streaming endpoints.
    void do_write_head_only()
    {
        do_write_stream_header([self = this->shared_from_this()] { self->on_response_done(self->res_->need_eof()); });
    }

    void do_write_stream_data(void* data, std::size_t size, next_fn next)
    {
        res_->body().data = data;
        res_->body().size = size;
        res_->body().more = true;
        http::async_write(stream_, *sr_,
                          [self = this->shared_from_this(), next = std::move(next)](error_code ec, std::size_t) mutable {
                              // need_buffer means this piece is out and the
                              // serializer wants the next one.
                              if (ec == http::error::need_buffer)
                                  ec = {};
                              if (ec)
                                  return self->fail(ec, "write body");
                              next();
                          });
    }

    void do_finish_stream()
    {
        res_->body().data = nullptr;
        res_->body().size = 0;
        res_->body().more = false;
        http::async_write(stream_, *sr_, [self = this->shared_from_this()](error_code ec, std::size_t) {
            if (ec == http::error::need_buffer)
                ec = {};
            if (ec)
                return self->fail(ec, "finish body");
            self->on_response_done(self->res_->need_eof());
        });
    }

    void on_response_done(bool close)
    {
        sr_.reset();
        res_.reset();
        text_res_.reset();
        if (close || !parser_->is_done())
            return do_shutdown();
        parser_.reset();
        do_read_header();
    }

    void start_echo(bool force_chunked)
    {
        auto const& req = parser_->get();
        std::optional<std::uint64_t> length;
        if (!force_chunked) {
            if (parser_->is_done())
                length = 0;
            else if (auto cl = parser_->content_length())
                length = *cl;
        }
        prepare_stream_response("application/octet-stream", length);
        res_->set("X-Echo-Method", req.method_string());
        res_->set("X-Echo-Target", req.target());
        std::string names;
        for (auto const& field : req) {
            std::string lower = to_lower(field.name_string());
            if (!names.empty())
                names += ',';
            names += lower;
            if (lower.starts_with("x-"))
                res_->insert("X-Echo-H-" + std::string(field.name_string()), field.value());
        }
        res_->set("X-Echo-Headers", names);
        if (sni_)
            res_->set("X-Echo-TLS-SNI", sni_->empty() ? "none" : *sni_);
        if (!proxy_.empty())
            res_->set("X-Echo-Proxy", proxy_);

        if (is_head_)
            return do_drain_body([self = this->shared_from_this()] { self->do_write_head_only(); });
        auto begin = [self = this->shared_from_this()] {
            self->do_begin_body([self] { self->do_write_stream_header([self] { self->do_read_echo(); }); });
        };
        // ?hold_ms=N: answer only after N ms, so concurrent requests overlap here.
        if (auto hold = target_.number("hold_ms"); hold && *hold > 0) {
            timer_.expires_after(std::chrono::milliseconds(*hold));
            return timer_.async_wait([begin](error_code ec) {
                if (!ec)
                    begin();
            });
        }
        begin();
    }

    void do_read_echo()
    {
        do_read_body_some([self = this->shared_from_this()](std::size_t n, bool done) { self->on_read_echo(n, done); });
    }

    void on_read_echo(std::size_t n, bool done)
    {
        if (n == 0)
            return done ? do_finish_stream() : do_read_echo();
        do_write_stream_data(body_buf_.data(), n, [self = this->shared_from_this(), done] {
            if (done)
                return self->do_finish_stream();
            self->do_read_echo();
        });
    }

    void start_headers()
    {
        std::string listing;
        for (auto const& field : parser_->get()) {
            listing.append(field.name_string()).append(": ").append(field.value()).append("\n");
        }
        do_drain_body([self = this->shared_from_this(), listing = std::move(listing)]() mutable {
            self->do_write_text(http::status::ok, std::move(listing));
        });
    }

    // Answers with what this service parsed: the request line, every field
    // (chunked trailers included, as Beast merges them) and the body.
    void start_inspect()
    {
        inspect_body_.clear();
        do_begin_body([self = this->shared_from_this()] { self->do_read_inspect(); });
    }

    void do_read_inspect()
    {
        do_read_body_some([self = this->shared_from_this()](std::size_t n, bool done) {
            auto keep = std::min(n, k_inspect_limit - std::min(k_inspect_limit, self->inspect_body_.size()));
            self->inspect_body_.append(self->body_buf_.data(), keep);
            if (!done)
                return self->do_read_inspect();
            auto const& req = self->parser_->get();
            std::string out;
            out.append(req.method_string()).append(" ").append(req.target());
            out.append(" HTTP/").append(std::to_string(req.version() / 10)).append(".");
            out.append(std::to_string(req.version() % 10)).append("\n");
            for (auto const& field : req)
                out.append(field.name_string()).append(": ").append(field.value()).append("\n");
            out.append("\n").append(self->inspect_body_);
            self->inspect_body_.clear();
            self->do_write_text(http::status::ok, std::move(out));
        });
    }

    void start_download()
    {
        remaining_ = target_.number("size").value_or(0);
        bool chunked = target_.param("chunked") == std::optional<std::string_view>("1");
        prepare_stream_response("application/octet-stream",
                                chunked ? std::nullopt : std::optional<std::uint64_t>(remaining_));
        do_drain_body([self = this->shared_from_this()] {
            if (self->is_head_)
                return self->do_write_head_only();
            self->do_write_stream_header([self] { self->do_send_download(); });
        });
    }

    void do_send_download()
    {
        if (remaining_ == 0)
            return do_finish_stream();
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, k_io_chunk));
        remaining_ -= n;
        do_write_stream_data(pattern_block().data(), n, [self = this->shared_from_this()] { self->do_send_download(); });
    }

    void start_download_sha()
    {
        remaining_ = target_.number("size").value_or(0);
        hash_.emplace();
        do_drain_body([self = this->shared_from_this()] { self->do_hash_pattern(); });
    }

    void do_hash_pattern()
    {
        for (std::size_t i = 0; i < k_hash_blocks_per_turn && remaining_ > 0; ++i) {
            auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, k_io_chunk));
            hash_->update(pattern_block().data(), n);
            remaining_ -= n;
        }
        if (remaining_ == 0) {
            auto hex = hash_->hex_final();
            hash_.reset();
            return do_write_text(http::status::ok, std::move(hex));
        }
        net::post(stream_.get_executor(), [self = this->shared_from_this()] { self->do_hash_pattern(); });
    }

    void start_upload()
    {
        delay_ms_per_mib_ = target_.number("delay_ms_per_mib").value_or(0);
        received_ = 0;
        mib_delayed_ = 0;
        hash_.emplace();
        do_begin_body([self = this->shared_from_this()] { self->do_read_upload(); });
    }

    void do_read_upload()
    {
        do_read_body_some([self = this->shared_from_this()](std::size_t n, bool done) { self->on_read_upload(n, done); });
    }

    void on_read_upload(std::size_t n, bool done)
    {
        hash_->update(body_buf_.data(), n);
        received_ += n;
        if (delay_ms_per_mib_ > 0 && received_ / k_mib > mib_delayed_) {
            mib_delayed_ = received_ / k_mib;
            timer_.expires_after(std::chrono::milliseconds(delay_ms_per_mib_));
            timer_.async_wait([self = this->shared_from_this(), done](error_code ec) {
                if (ec)
                    return self->fail(ec, "upload delay");
                self->after_upload_chunk(done);
            });
            return;
        }
        after_upload_chunk(done);
    }

    void after_upload_chunk(bool done)
    {
        if (!done)
            return do_read_upload();
        auto text = std::to_string(received_) + " " + hash_->hex_final();
        hash_.reset();
        do_write_text(http::status::ok, std::move(text));
    }

    void start_sse()
    {
        sse_count_ = target_.number("n").value_or(0);
        sse_interval_ = std::chrono::milliseconds(target_.number("interval_ms").value_or(0));
        prepare_stream_response("text/event-stream", std::nullopt);
        res_->set(http::field::cache_control, "no-cache");
        do_drain_body([self = this->shared_from_this()] {
            if (self->is_head_)
                return self->do_write_head_only();
            self->do_write_stream_header([self] { self->do_send_sse(0); });
        });
    }

    void do_send_sse(std::uint64_t i)
    {
        if (i >= sse_count_)
            return do_finish_stream();
        sse_event_ = "data: event " + std::to_string(i) + "\n\n";
        do_write_stream_data(sse_event_.data(), sse_event_.size(),
                             [self = this->shared_from_this(), i] { self->on_sse_sent(i); });
    }

    void on_sse_sent(std::uint64_t i)
    {
        if (i + 1 >= sse_count_)
            return do_finish_stream();
        timer_.expires_after(sse_interval_);
        timer_.async_wait([self = this->shared_from_this(), i](error_code ec) {
            if (ec)
                return self->fail(ec, "sse timer");
            self->do_send_sse(i + 1);
        });
    }

    // Keeps reading only to notice when the client goes away; anything it
    // sends (pipelined requests) is never answered.
    void do_stall()
    {
        stream_.async_read_some(net::buffer(body_buf_), [self = this->shared_from_this()](error_code ec, std::size_t) {
            if (ec)
                return self->do_close();
            self->do_stall();
        });
    }

    void start_slow_head()
    {
        auto ms = target_.number("ms").value_or(0);
        do_drain_body([self = this->shared_from_this(), ms] {
            self->timer_.expires_after(std::chrono::milliseconds(ms));
            self->timer_.async_wait([self](error_code ec) {
                if (ec)
                    return self->fail(ec, "slow-head timer");
                self->do_write_text(http::status::ok, "late\n");
            });
        });
    }

    void start_status()
    {
        auto code = target_.number("code").value_or(200);
        if (code < 200 || code > 599)
            throw std::invalid_argument("status code must be 200..599");
        do_drain_body([self = this->shared_from_this(), code] {
            self->do_write_text(static_cast<http::status>(code), "status " + std::to_string(code) + "\n");
        });
    }

    void do_reset_mid_body()
    {
        raw_ = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n";
        raw_.append(pattern_block().data(), 1000);
        net::async_write(stream_, net::buffer(raw_), [self = this->shared_from_this()](error_code, std::size_t) {
            self->do_close();
        });
    }

    // /slow-upload?id=ID&delay_ms=N reads the body at 64 KiB every N
    // ms (default 20) and says on stderr when it starts and when the body ends
    // early, so a test sees the local service's connection cut when the public
    // client goes away mid-upload.
    void start_slow_upload()
    {
        slow_id_ = std::string(target_.param("id").value_or("-"));
        slow_delay_ = std::chrono::milliseconds(target_.number("delay_ms").value_or(20));
        received_ = 0;
        slow_next_pause_ = k_io_chunk;
        log_error("slow-upload", "id=" + slow_id_ + " reading");
        do_begin_body([self = this->shared_from_this()] { self->do_read_slow_upload(); });
    }

    void do_read_slow_upload()
    {
        if (parser_->is_done())
            return on_slow_upload_done();
        auto& body = parser_->get().body();
        body.data = body_buf_.data();
        body.size = body_buf_.size();
        http::async_read_some(stream_, buffer_, *parser_, [self = this->shared_from_this()](error_code ec, std::size_t) {
            if (ec == http::error::need_buffer)
                ec = {};
            self->received_ += self->body_buf_.size() - self->parser_->get().body().size;
            if (ec) {
                log_error("slow-upload", "id=" + self->slow_id_ + " cut short after " +
                                             std::to_string(self->received_) + " bytes: " + ec.message());
                return self->do_close();
            }
            if (self->parser_->is_done())
                return self->on_slow_upload_done();
            // Reads are often smaller than a buffer; pause once per 64 KiB.
            if (self->received_ < self->slow_next_pause_)
                return self->do_read_slow_upload();
            self->slow_next_pause_ = (self->received_ / k_io_chunk + 1) * k_io_chunk;
            self->timer_.expires_after(self->slow_delay_);
            self->timer_.async_wait([self](error_code timer_ec) {
                if (timer_ec)
                    return self->fail(timer_ec, "slow-upload delay");
                self->do_read_slow_upload();
            });
        });
    }

    void on_slow_upload_done()
    {
        log_error("slow-upload", "id=" + slow_id_ + " complete after " + std::to_string(received_) + " bytes");
        do_write_text(http::status::ok, std::to_string(received_) + "\n");
    }

    // /until-close?size=N (at most 64 KiB): N pattern bytes with neither a
    // length nor chunks, ended by closing (over TLS, without close_notify).
    void do_until_close()
    {
        auto size = static_cast<std::size_t>(std::min<std::uint64_t>(target_.number("size").value_or(1000), k_io_chunk));
        raw_ = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
        raw_.append(pattern_block().data(), size);
        net::async_write(stream_, net::buffer(raw_), [self = this->shared_from_this()](error_code, std::size_t) {
            self->do_shutdown();
        });
    }

    // /reset-mid-chunked[?rst=1]: a chunked response cut after three chunks,
    // by a FIN or (rst=1) a TCP reset, with no terminating chunk.
    void do_reset_mid_chunked()
    {
        bool rst = target_.param("rst") == std::optional<std::string_view>("1");
        raw_ = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (int i = 0; i < 3; ++i)
            raw_.append("3e8\r\n").append(pattern_block().data(), 1000).append("\r\n");
        net::async_write(stream_, net::buffer(raw_), [self = this->shared_from_this(), rst](error_code, std::size_t) {
            error_code ignored;
            if (rst)
                self->lowest().socket().set_option(net::socket_base::linger(true, 0), ignored);
            self->do_close();
        });
    }

    void fail(error_code ec, std::string_view what)
    {
        if (!is_routine(ec))
            log_error(what, ec.message());
        do_close();
    }

    // A TLS session ends without close_notify, as many servers do.
    void do_shutdown()
    {
        error_code ec;
        lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
        lowest().close();
    }

    void do_close()
    {
        timer_.cancel();
        lowest().close();
    }

    beast::tcp_stream& lowest() { return stream_.lowest(); }

    Stream stream_;
    net::steady_timer timer_;
    beast::flat_buffer buffer_;
    std::vector<char> body_buf_;
    std::optional<http::request_parser<http::empty_body>> header_parser_;
    std::optional<http::request_parser<http::buffer_body>> parser_;
    std::optional<http::response<http::buffer_body>> res_;
    std::optional<http::response_serializer<http::buffer_body>> sr_;
    std::optional<http::response<http::string_body>> text_res_;
    parsed_target target_;
    bool is_head_ = false;
    bool expects_continue_ = false;
    bool continue_sent_ = false;
    std::optional<sha256> hash_;
    std::uint64_t remaining_ = 0;
    std::uint64_t received_ = 0;
    std::uint64_t mib_delayed_ = 0;
    std::uint64_t delay_ms_per_mib_ = 0;
    std::uint64_t sse_count_ = 0;
    std::chrono::milliseconds sse_interval_{0};
    std::string sse_event_;
    std::string raw_;
    std::string slow_id_;
    std::chrono::milliseconds slow_delay_{0};
    std::uint64_t slow_next_pause_ = 0;
    std::string inspect_body_;
    std::optional<in_flight_mark> in_flight_;
    std::string proxy_;
    std::optional<std::string> sni_;
};

// What comes before HTTP on a connection: the PROXY header (--proxy-protocol),
// then the TLS handshake (--tls-cert). The header is read byte-exactly, so not
// a byte of the handshake or the request after it is lost.
class connection_setup : public std::enable_shared_from_this<connection_setup>
{
public:
    explicit connection_setup(tcp::socket&& socket) : stream_(std::move(socket)) {}

    void start()
    {
        stream_.expires_after(std::chrono::seconds(10));
        if (!g_proxy_protocol)
            return do_tls();
        // The v2 signature is 12 bytes; the shortest v1 header ("PROXY UNKNOWN\r\n") is 15.
        head_.resize(12);
        net::async_read(stream_, net::buffer(head_), [self = shared_from_this()](error_code ec, std::size_t) {
            if (ec)
                return self->fail(ec, "proxy header");
            self->on_proxy_start();
        });
    }

private:
    void on_proxy_start()
    {
        static constexpr std::string_view v2_signature{"\r\n\r\n\0\r\nQUIT\n", 12};
        if (head_.starts_with("PROXY "))
            return do_read_v1();
        if (head_ != v2_signature)
            return reject("the connection did not start with a PROXY header");
        head_.resize(16);
        net::async_read(stream_, net::buffer(head_.data() + 12, 4), [self = shared_from_this()](error_code ec, std::size_t) {
            if (ec)
                return self->fail(ec, "proxy header");
            auto len = static_cast<std::size_t>(static_cast<unsigned char>(self->head_[14]) << 8 |
                                                static_cast<unsigned char>(self->head_[15]));
            self->head_.resize(16 + len);
            net::async_read(self->stream_, net::buffer(self->head_.data() + 16, len), [self](error_code ec, std::size_t) {
                if (ec)
                    return self->fail(ec, "proxy header");
                static constexpr char digits[] = "0123456789abcdef";
                self->proxy_ = "v2 ";
                for (unsigned char c : self->head_)
                    self->proxy_.append({digits[c >> 4], digits[c & 0xf]});
                self->on_proxy_done();
            });
        });
    }

    void do_read_v1()
    {
        if (head_.ends_with("\r\n")) {
            proxy_ = head_.substr(0, head_.size() - 2);
            return on_proxy_done();
        }
        if (head_.size() >= 107)
            return reject("a PROXY v1 header longer than 107 bytes");
        head_.push_back('\0');
        net::async_read(stream_, net::buffer(&head_.back(), 1), [self = shared_from_this()](error_code ec, std::size_t) {
            if (ec)
                return self->fail(ec, "proxy header");
            self->do_read_v1();
        });
    }

    void on_proxy_done()
    {
        log_error("proxy", proxy_);
        do_tls();
    }

    void do_tls()
    {
        if (!g_tls) {
            stream_.expires_never();
            std::make_shared<http_session<any_stream>>(any_stream(std::move(stream_)), std::move(proxy_), std::nullopt)
                ->start();
            return;
        }
        tls_.emplace(std::move(stream_), *g_tls);
        tls_->async_handshake(net::ssl::stream_base::server, [self = shared_from_this()](error_code ec) {
            if (ec)
                return self->fail(ec, "tls handshake");
            const char* name = SSL_get_servername(self->tls_->native_handle(), TLSEXT_NAMETYPE_host_name);
            beast::get_lowest_layer(*self->tls_).expires_never();
            std::make_shared<http_session<any_stream>>(any_stream(std::move(*self->tls_)), std::move(self->proxy_),
                                                       std::string(name ? name : ""))
                ->start();
        });
    }

    void reject(std::string_view why)
    {
        log_error("proxy header", why);
        beast::get_lowest_layer(tls_ ? tls_->next_layer() : stream_).close();
    }

    void fail(error_code ec, std::string_view what)
    {
        if (!is_routine(ec))
            log_error(what, ec.message());
        beast::get_lowest_layer(tls_ ? tls_->next_layer() : stream_).close();
    }

    beast::tcp_stream stream_;
    std::optional<tls_stream> tls_;
    std::string head_;
    std::string proxy_;
};

class listener : public std::enable_shared_from_this<listener>
{
public:
    listener(net::io_context& ioc, tcp::acceptor&& acceptor) : ioc_(ioc), acceptor_(std::move(acceptor)) {}

    void do_accept()
    {
        acceptor_.async_accept(net::make_strand(ioc_), [self = shared_from_this()](error_code ec, tcp::socket socket) {
            self->on_accept(ec, std::move(socket));
        });
    }

private:
    void on_accept(error_code ec, tcp::socket socket)
    {
        if (ec == net::error::operation_aborted)
            return;
        if (ec) {
            log_error("accept", ec.message());
        } else {
            error_code ignored;
            // SSE events are small writes that must not wait for Nagle.
            socket.set_option(tcp::no_delay(true), ignored);
            std::make_shared<connection_setup>(std::move(socket))->start();
        }
        do_accept();
    }

    net::io_context& ioc_;
    tcp::acceptor acceptor_;
};

struct options
{
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::string tls_cert;
    std::string tls_key;
};

[[noreturn]] void usage(int code)
{
    (code == 0 ? std::cout : std::cerr)
        << "usage: grok-demo-upstream [--port N] [--host ADDR] [--name NAME] [--log-requests] [--keep-alive-timeout MS "
           "[--idle-408]] [--tls-cert FILE --tls-key FILE] [--proxy-protocol]\n";
    std::exit(code);
}

options parse_args(int argc, char** argv)
{
    options opts;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        std::string_view value;
        std::string_view name = arg;
        if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
            name = arg.substr(0, eq);
            value = arg.substr(eq + 1);
        } else if (arg == "--log-requests") {
            g_log_requests = true;
            continue;
        } else if (arg == "--idle-408") {
            g_idle_408 = true;
            continue;
        } else if (arg == "--proxy-protocol") {
            g_proxy_protocol = true;
            continue;
        } else if (arg == "--port" || arg == "--host" || arg == "--keep-alive-timeout" || arg == "--name" ||
                   arg == "--tls-cert" || arg == "--tls-key") {
            if (i + 1 >= argc) {
                std::cerr << "grok-demo-upstream: " << arg << " needs a value\n";
                usage(2);
            }
            value = argv[++i];
        }
        if (name == "--help" || name == "-h") {
            usage(0);
        } else if (name == "--port") {
            unsigned port = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), port);
            if (value.empty() || ec != std::errc{} || end != value.data() + value.size() || port > 65535) {
                std::cerr << "grok-demo-upstream: invalid port '" << value << "'\n";
                usage(2);
            }
            opts.port = static_cast<std::uint16_t>(port);
        } else if (name == "--host") {
            opts.host = std::string(value);
        } else if (name == "--name") {
            g_hello = "Hello from " + std::string(value) + "\n";
        } else if (name == "--tls-cert") {
            opts.tls_cert = std::string(value);
        } else if (name == "--tls-key") {
            opts.tls_key = std::string(value);
        } else if (name == "--keep-alive-timeout") {
            unsigned ms = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
            if (value.empty() || ec != std::errc{} || end != value.data() + value.size()) {
                std::cerr << "grok-demo-upstream: invalid --keep-alive-timeout '" << value << "' (milliseconds)\n";
                usage(2);
            }
            g_keep_alive_timeout = std::chrono::milliseconds(ms);
        } else {
            std::cerr << "grok-demo-upstream: unknown argument '" << arg << "'\n";
            usage(2);
        }
    }
    if (opts.tls_cert.empty() != opts.tls_key.empty()) {
        std::cerr << "grok-demo-upstream: --tls-cert and --tls-key go together\n";
        usage(2);
    }
    return opts;
}

void run_io(net::io_context& ioc)
{
    // A throwing handler should cost one connection, not the whole service.
    for (;;) {
        try {
            ioc.run();
            return;
        } catch (std::exception const& e) {
            log_error("handler exception", e.what());
        }
    }
}

} // namespace

int main(int argc, char** argv)
{
    options opts = parse_args(argc, argv);

    net::io_context ioc{2};
    tcp::endpoint bound;
    if (!opts.tls_cert.empty()) {
        try {
            g_tls = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
            g_tls->use_certificate_chain_file(opts.tls_cert);
            g_tls->use_private_key_file(opts.tls_key, net::ssl::context::pem);
        } catch (std::exception const& e) {
            std::cerr << "grok-demo-upstream: --tls-cert/--tls-key: " << e.what() << "\n";
            return 1;
        }
    }
    try {
        tcp::endpoint endpoint{net::ip::make_address(opts.host), opts.port};
        tcp::acceptor acceptor{ioc};
        acceptor.open(endpoint.protocol());
        acceptor.set_option(net::socket_base::reuse_address(true));
        acceptor.bind(endpoint);
        acceptor.listen(net::socket_base::max_listen_connections);
        bound = acceptor.local_endpoint();
        std::make_shared<listener>(ioc, std::move(acceptor))->do_accept();
    } catch (std::exception const& e) {
        std::cerr << "grok-demo-upstream: cannot listen on " << opts.host << ":" << opts.port << ": " << e.what()
                  << "\n";
        return 1;
    }

    net::signal_set signals{ioc, SIGINT, SIGTERM};
    signals.async_wait([&ioc](error_code, int) { ioc.stop(); });

    auto address = bound.address();
    std::cout << "listening " << (address.is_v6() ? "[" + address.to_string() + "]" : address.to_string()) << ":"
              << bound.port() << std::endl;

    std::thread worker{[&ioc] { run_io(ioc); }};
    run_io(ioc);
    worker.join();
    return 0;
}
