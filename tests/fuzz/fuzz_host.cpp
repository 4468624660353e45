// Fuzz target: Host normalization and tunnel-name routing.
//
// Input: [domain choice][Host value bytes]

#include <cctype>
#include <string>

#include "fuzz_util.hpp"
#include "grok/host.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  grok::fuzz::input in(data, size);
  static const char* domains[] = {"localhost", "tunnel.example.com", "example.com.", "A.Example"};
  auto domain = grok::normalize_domain(domains[in.byte() % 4]);
  std::string host = in.rest();

  auto n = grok::normalize_host(host);
  if (!n) {
    // Case never decides validity.
    std::string upper = host;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    FUZZ_CHECK(!grok::normalize_host(upper));
    return 0;
  }
  // Idempotent, lower-case, a plain name or a bracketed IPv6 literal, no port.
  auto again = grok::normalize_host(*n);
  FUZZ_CHECK(again && *again == *n);
  FUZZ_CHECK(!n->empty() && n->size() <= host.size());
  if (n->front() == '[') {
    FUZZ_CHECK(n->back() == ']' && n->size() > 2);
    for (size_t i = 1; i + 1 < n->size(); ++i) {
      char c = (*n)[i];
      FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == ':' || c == '.');
    }
  } else {
    for (char c : *n) FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_');
    FUZZ_CHECK(n->front() != '.' && n->back() != '.');
    FUZZ_CHECK(n->find("..") == std::string::npos);
  }
  // Case-insensitive: the upper-cased Host routes the same.
  std::string upper = host;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto nu = grok::normalize_host(upper);
  FUZZ_CHECK(nu && *nu == *n);

  // Routing: NAME.DOMAIN with one valid label, and nothing else.
  auto name = grok::tunnel_name_for_host(*n, domain);
  if (name) {
    FUZZ_CHECK(grok::valid_tunnel_name(*name));
    FUZZ_CHECK(*name + "." + domain == *n);
    FUZZ_CHECK(name->find('.') == std::string::npos);
  } else if (n->size() > domain.size() + 1 && n->compare(n->size() - domain.size(), domain.size(), domain) == 0 &&
             (*n)[n->size() - domain.size() - 1] == '.') {
    FUZZ_CHECK(!grok::valid_tunnel_name(n->substr(0, n->size() - domain.size() - 1)));
  }
  return 0;
}
