#pragma once
// Shared by the fuzz targets: a checked assertion that aborts (so libFuzzer
// and the ctest replay both report it), and a reader that turns the
// fuzzer's bytes into choices. Works with and without libFuzzer.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

namespace grok::fuzz {

/// Consumes the fuzzer's input front to back; past the end every read is 0/empty.
class input {
 public:
  input(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  size_t remaining() const { return n_; }
  bool empty() const { return n_ == 0; }
  uint8_t byte() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  bool flag() { return byte() & 1; }
  uint16_t u16() { return static_cast<uint16_t>(byte() | (byte() << 8)); }
  uint32_t u32() { return static_cast<uint32_t>(u16()) | (static_cast<uint32_t>(u16()) << 16); }
  /// A value in [lo, hi].
  uint32_t range(uint32_t lo, uint32_t hi) {
    if (hi <= lo) return lo;
    uint64_t span = uint64_t{hi} - lo + 1;
    return lo + static_cast<uint32_t>((span > 0xffff ? u32() : u16()) % span);
  }
  /// Up to `max` bytes, length chosen by one byte.
  std::string str(size_t max) {
    size_t len = std::min<size_t>({byte(), max, n_});
    std::string s(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    n_ -= len;
    return s;
  }
  /// Everything that is left.
  std::string rest() {
    std::string s(reinterpret_cast<const char*>(p_), n_);
    p_ += n_;
    n_ = 0;
    return s;
  }

 private:
  const uint8_t* p_;
  size_t n_;
};

inline bool has_crlf_nul(std::string_view s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos; }

}  // namespace grok::fuzz
