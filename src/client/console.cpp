#include "console.hpp"

#include <cstdio>
#include <ctime>

namespace grok::client_detail {

void console_lines::write_locked() {
  if (pending_.empty()) return;
  std::fwrite(pending_.data(), 1, pending_.size(), stdout);
  std::fflush(stdout);
  pending_.clear();
}

console_lines& console() {
  static console_lines lines;
  return lines;
}

std::string human_bytes(uint64_t n) {
  char buf[32];
  if (n < 1024) std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(n));
  else if (n < (1u << 20)) std::snprintf(buf, sizeof buf, "%.1fKiB", n / 1024.0);
  else if (n < (1u << 30)) std::snprintf(buf, sizeof buf, "%.1fMiB", n / 1048576.0);
  else std::snprintf(buf, sizeof buf, "%.2fGiB", n / 1073741824.0);
  return buf;
}

std::string clock_time() {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm local{};
  localtime_r(&now, &local);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &local);
  return buf;
}

std::string exchange_line(const pb::RequestHead& head, const std::string& outcome, std::chrono::milliseconds took,
                          uint64_t bytes_in, uint64_t bytes_out) {
  auto ms = std::to_string(took.count()) + "ms";
  if (head.tcp())
    return clock_time() + "  TCP " + head.remote_addr() + ":" + std::to_string(head.remote_port()) + "  " + (outcome == "0" ? "closed" : outcome) + "  " + ms +
           "  in " + human_bytes(bytes_in) + "  out " + human_bytes(bytes_out);
  return clock_time() + "  " + (head.remote_addr().empty() ? "-" : head.remote_addr()) + "  " + head.method() + " " +
         head.target() + "  " + outcome + "  " + ms + "  " + human_bytes(bytes_out);
}

}  // namespace grok::client_detail
