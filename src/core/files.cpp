#include "grok/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace grok {

namespace {

[[noreturn]] void fail(const std::string& path, const char* what, int err) {
  throw file_error(path + ": " + what + ": " + std::strerror(err), err);
}

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return path.substr(0, slash == 0 ? 1 : slash);
}

}  // namespace

std::optional<std::string> read_file_if_exists(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    if (errno == ENOENT) return std::nullopt;
    fail(path, "cannot read", errno);
  }
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  // fopen succeeds on a directory; the error only shows up on read.
  int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err) fail(path, "cannot read", err);
  return text;
}

std::string read_file(const std::string& path) {
  auto text = read_file_if_exists(path);
  if (!text) fail(path, "cannot read", ENOENT);
  return std::move(*text);
}

void replace_file_atomically(const std::string& path, std::string_view text, mode_t mode, gid_t group) {
  auto dir = directory_of(path);
  auto base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  std::string tmp = dir + "/." + base + ".tmp.XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) fail(dir, "cannot create a temporary file", errno);
  auto abandon = [&](const char* what) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    fail(path, what, err);
  };
  if (::fchmod(fd, mode) != 0) abandon("cannot set mode");
  if (group != static_cast<gid_t>(-1) && ::fchown(fd, static_cast<uid_t>(-1), group) != 0) {
    // Not fatal: an unprivileged user writing their own file keeps their group.
  }
  while (!text.empty()) {
    auto n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      abandon("cannot write");
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd) != 0) abandon("cannot write");
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) abandon("cannot write");
  if (::rename(tmp.c_str(), path.c_str()) != 0) abandon("cannot replace");
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // best effort: the rename itself has already happened
    ::close(dfd);
  }
}

}  // namespace grok
