#include "grok/basic_auth.hpp"

#include "grok/http_rules.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <stdexcept>

namespace grok {


std::optional<std::string> base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    bool last_quad = i + 4 == in.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = in[i + k];
      if (c == '=') {
        // Padding only at the end of the last quad, at most two.
        if (!last_quad || k < 2) return std::nullopt;
        v[k] = 0;
        ++pad;
      } else {
        if (pad > 0) return std::nullopt;
        v[k] = value(c);
        if (v[k] < 0) return std::nullopt;
      }
    }
    uint32_t n = (static_cast<uint32_t>(v[0]) << 18) | (static_cast<uint32_t>(v[1]) << 12) |
                 (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    out += static_cast<char>((n >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

namespace {

std::array<unsigned char, 32> sha256_of(std::string_view s) {
  std::array<unsigned char, 32> d{};
  unsigned len = 0;
  if (EVP_Digest(s.data(), s.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 || len != d.size())
    throw std::runtime_error("EVP sha256 failed");
  return d;
}

}  // namespace

bool basic_auth_ok(std::string_view authorization_header, const std::string& user, const std::string& pass) {
  auto h = trim_ows(authorization_header);
  auto space = h.find_first_of(" \t");
  if (space == std::string_view::npos || !iequals(h.substr(0, space), "basic")) return false;
  auto decoded = base64_decode(trim_ows(h.substr(space + 1)));
  if (!decoded) return false;
  auto colon = decoded->find(':');
  if (colon == std::string::npos) return false;
  std::string_view presented(*decoded);
  // Digests have a fixed length, so neither the comparison time nor an early
  // exit tells how many leading bytes of the user or password were right.
  auto pu = sha256_of(presented.substr(0, colon)), eu = sha256_of(user);
  auto pp = sha256_of(presented.substr(colon + 1)), ep = sha256_of(pass);
  int diff = CRYPTO_memcmp(pu.data(), eu.data(), pu.size()) | CRYPTO_memcmp(pp.data(), ep.data(), pp.size());
  return diff == 0;
}

}  // namespace grok
