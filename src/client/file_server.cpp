// `grok serve DIR`: the in-process HTTP/1.1 file server the tunnel client
// forwards to. GET and HEAD only; files are streamed in 64 KiB pieces with
// pread (never read whole), with ETag/Last-Modified, conditional requests and
// single byte ranges. Every connection lives on its own strand.

#include "grok/file_server.hpp"
#include "io_errors.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace grok {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;
using error_code = beast::error_code;

constexpr size_t k_chunk = 64 * 1024;
constexpr uint32_t k_header_limit = 64 * 1024;
constexpr auto k_read_timeout = std::chrono::seconds(30);
// A write makes no progress only while the public reader (through the
// tunnel's flow control) is not reading; give it longer than a read.
constexpr auto k_write_timeout = std::chrono::seconds(60);
constexpr unsigned k_threads = 2;

struct settings {
  fs::path root;
  std::optional<std::pair<std::string, std::string>> auth;
};

// "/a//b" -> "/a/b": a Location must never start with "//" (that would be
// a protocol-relative URL pointing at another host).
std::string collapse_slashes(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out += c;
  }
  return out;
}

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, std::shared_ptr<const settings> cfg)
      : stream_(std::move(socket)), cfg_(std::move(cfg)) {}

  ~session() { close_file(); }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

 private:
  void do_read() {
    head_only_ = false;
    parser_.emplace();
    parser_->header_limit(k_header_limit);
    stream_.expires_after(k_read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(error_code ec) {
    if (ec) {
      if (ec == http::error::header_limit) return reply_error(431, "Request header fields too large\n", false);
      if (expected_disconnect(ec)) return close();
      spdlog::debug("serve: bad request: {}", ec.message());
      return reply_error(400, "Bad request\n", false);
    }
    handle();
  }

  void handle() {
    auto& req = parser_->get();
    head_only_ = req.method() == http::verb::head;
    // A body we do not read would be taken for the next request.
    keep_alive_ = req.keep_alive() && parser_->is_done();

    if (cfg_->auth && !basic_auth_ok(req[http::field::authorization], cfg_->auth->first, cfg_->auth->second)) {
      start_response(http::status::unauthorized);
      res_.set(http::field::www_authenticate, "Basic realm=\"grok\"");
      return send_text("Unauthorized\n");
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      start_response(http::status::method_not_allowed);
      res_.set(http::field::allow, "GET, HEAD");
      return send_text("Method not allowed\n");
    }
    std::string_view target = req.target();
    if (target.empty() || target.front() != '/') return reply_error(400, "Bad request target\n", keep_alive_);
    auto path_part = target.substr(0, target.find_first_of("?#"));
    auto resolved = resolve_request_path(cfg_->root, target);
    if (!resolved) return reply_error(404, "Not found\n", keep_alive_);

    struct stat st {};
    if (::stat(resolved->c_str(), &st) != 0) return reply_error(404, "Not found\n", keep_alive_);
    if (S_ISDIR(st.st_mode)) {
      if (path_part.back() != '/') {
        std::string location = collapse_slashes(path_part) + "/";
        auto q = target.find('?');
        if (q != std::string_view::npos) location += target.substr(q);
        start_response(http::status::moved_permanently);
        res_.set(http::field::location, location);
        return send_text("Moved permanently\n");
      }
      std::error_code fec;
      auto index = fs::weakly_canonical(*resolved / "index.html", fec);
      struct stat ist {};
      if (!fec && path_within(cfg_->root, index) && ::stat(index.c_str(), &ist) == 0 && S_ISREG(ist.st_mode))
        return serve_file(index);
      return serve_listing(*resolved, path_part);
    }
    if (!S_ISREG(st.st_mode) || path_part.back() == '/') return reply_error(404, "Not found\n", keep_alive_);
    serve_file(*resolved);
  }

  void serve_listing(const fs::path& dir, std::string_view path_part) {
    std::vector<std::pair<std::string, bool>> entries;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const auto& entry = *it;
      std::error_code e2;
      if (entry.is_symlink(e2)) {
        // Do not even name links that lead out of the served folder.
        auto target = fs::weakly_canonical(entry.path(), e2);
        if (e2 || !path_within(cfg_->root, target)) continue;
      }
      bool is_dir = entry.is_directory(e2);
      entries.emplace_back(entry.path().filename().string(), is_dir && !e2);
    }
    if (ec) return reply_error(403, "Forbidden\n", keep_alive_);
    auto decoded = percent_decode(path_part);
    start_response(http::status::ok);
    res_.set(http::field::content_type, "text/html; charset=utf-8");
    res_.set(http::field::cache_control, "no-cache");
    send_text(directory_listing_html(collapse_slashes(decoded ? *decoded : std::string(path_part)), std::move(entries)),
              false);
  }

  void serve_file(const fs::path& path) {
    // The path is canonical (no symlinks); O_NOFOLLOW refuses a last
    // component swapped for a link since. O_NONBLOCK: never hang on a FIFO.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
      if (errno == EACCES) return reply_error(403, "Forbidden\n", keep_alive_);
      return reply_error(404, "Not found\n", keep_alive_);
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return reply_error(404, "Not found\n", keep_alive_);
    }
    fd_ = fd;
    auto& req = parser_->get();
    uint64_t size = static_cast<uint64_t>(st.st_size);
    auto mtime = std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec);
    std::string etag = make_etag(size, mtime);
    std::string last_modified =
        http_date(std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(mtime)));

    auto validators = [&] {
      res_.set(http::field::etag, etag);
      res_.set(http::field::last_modified, last_modified);
    };
    auto inm = req[http::field::if_none_match];
    bool not_modified = !inm.empty() ? etag_matches_any(inm, etag)
                                     : req[http::field::if_modified_since] == last_modified;
    if (not_modified) {
      close_file();
      start_response(http::status::not_modified);
      validators();
      return send_head();
    }

    offset_ = 0;
    remaining_ = size;
    auto range = req[http::field::range];
    auto if_range = req[http::field::if_range];
    bool range_applies = !range.empty() && (if_range.empty() || if_range == etag || if_range == last_modified);
    if (range_applies) {
      if (auto r = parse_range(range, size)) {
        offset_ = r->first;
        remaining_ = r->second - r->first + 1;
        start_response(http::status::partial_content);
        res_.set(http::field::content_range, "bytes " + std::to_string(r->first) + "-" + std::to_string(r->second) +
                                                 "/" + std::to_string(size));
      } else if (range_unsatisfiable(range, size)) {
        close_file();
        start_response(http::status::range_not_satisfiable);
        res_.set(http::field::content_range, "bytes */" + std::to_string(size));
        validators();
        return send_text("Range not satisfiable\n");
      } else {
        start_response(http::status::ok);  // malformed or multi-range: ignored
      }
    } else {
      start_response(http::status::ok);
    }
    res_.set(http::field::content_type, content_type_for(path));
    res_.set(http::field::accept_ranges, "bytes");
    validators();
    res_.set(http::field::content_length, std::to_string(remaining_));
    if (head_only_) close_file();
    send_head();
  }

  // ---- writing -------------------------------------------------------------

  void start_response(http::status status) {
    res_ = {};
    res_.version(11);
    res_.result(status);
    res_.set("X-Content-Type-Options", "nosniff");
    body_.clear();
  }

  void reply_error(unsigned status, std::string_view text, bool keep_alive) {
    keep_alive_ = keep_alive;
    start_response(static_cast<http::status>(status));
    send_text(std::string(text));
  }

  // A small body held in memory (errors, redirects, listings).
  void send_text(std::string text, bool plain = true) {
    if (plain) res_.set(http::field::content_type, "text/plain; charset=utf-8");
    res_.set(http::field::content_length, std::to_string(text.size()));
    body_ = head_only_ ? std::string() : std::move(text);
    send_head();
  }

  void send_head() {
    res_.keep_alive(keep_alive_);
    serializer_.emplace(res_);
    stream_.expires_after(k_write_timeout);
    http::async_write(stream_, *serializer_, [self = shared_from_this()](error_code ec, size_t) {
      self->serializer_.reset();
      if (ec) return self->fail(ec, "write");
      self->after_head();
    });
  }

  void after_head() {
    if (!body_.empty()) {
      stream_.expires_after(k_write_timeout);
      return net::async_write(stream_, net::buffer(body_), [self = shared_from_this()](error_code ec, size_t) {
        if (ec) return self->fail(ec, "write");
        self->body_.clear();
        self->finish();
      });
    }
    if (fd_ >= 0) return pump();
    finish();
  }

  void pump() {
    if (remaining_ == 0) {
      close_file();
      return finish();
    }
    chunk_.resize(k_chunk);
    auto want = static_cast<size_t>(std::min<uint64_t>(remaining_, k_chunk));
    ssize_t n;
    do {
      n = ::pread(fd_, chunk_.data(), want, static_cast<off_t>(offset_));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      // The file shrank or failed under us: the Content-Length already sent
      // cannot be kept, so the connection must end.
      spdlog::warn("serve: reading a file failed after {} bytes: {}", offset_, n < 0 ? std::strerror(errno) : "end of file");
      return close();
    }
    stream_.expires_after(k_write_timeout);
    net::async_write(stream_, net::buffer(chunk_.data(), static_cast<size_t>(n)),
                     [self = shared_from_this()](error_code ec, size_t written) {
                       if (ec) return self->fail(ec, "write");
                       self->offset_ += written;
                       self->remaining_ -= written;
                       self->pump();
                     });
  }

  void finish() {
    close_file();
    if (!keep_alive_) return close();
    do_read();
  }

  void fail(error_code ec, const char* what) {
    if (!expected_disconnect(ec)) spdlog::debug("serve: {}: {}", what, ec.message());
    close();
  }

  void close() {
    close_file();
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  void close_file() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  beast::tcp_stream stream_;
  std::shared_ptr<const settings> cfg_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  http::response<http::empty_body> res_;
  std::optional<http::response_serializer<http::empty_body>> serializer_;
  std::string body_;
  std::vector<char> chunk_;
  int fd_ = -1;
  uint64_t offset_ = 0;
  uint64_t remaining_ = 0;
  bool keep_alive_ = true;
  bool head_only_ = false;
};

}  // namespace

struct file_server::impl {
  std::shared_ptr<settings> cfg = std::make_shared<settings>();
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  std::mutex mu;
  bool started = false;
  bool stopped = false;

  void do_accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        // Head and body go out as separate writes: without this, Nagle plus
        // the peer's delayed ACK adds ~40 ms to every small response.
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        std::make_shared<session>(std::move(socket), cfg)->start();
      } else {
        spdlog::debug("serve: accept: {}", ec.message());
      }
      do_accept();
    });
  }
};

file_server::file_server(std::filesystem::path root, std::optional<std::pair<std::string, std::string>> basic_auth)
    : impl_(std::make_unique<impl>()) {
  impl_->cfg->root = fs::canonical(root);
  impl_->cfg->auth = std::move(basic_auth);
}

file_server::~file_server() { stop(); }

uint16_t file_server::start() {
  std::lock_guard lk(impl_->mu);
  if (impl_->started) return impl_->acceptor.local_endpoint().port();
  tcp::endpoint ep(net::ip::make_address_v4("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(net::socket_base::max_listen_connections);
  auto port = impl_->acceptor.local_endpoint().port();
  impl_->do_accept();
  impl_->started = true;
  for (unsigned i = 0; i < k_threads; ++i) {
    impl_->threads.emplace_back([this] {
      for (;;) {
        try {
          impl_->ioc.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("serve: {}", e.what());
        }
      }
    });
  }
  return port;
}

void file_server::stop() {
  std::lock_guard lk(impl_->mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace grok
