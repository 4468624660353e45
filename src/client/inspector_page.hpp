#pragma once
// The inspector's page (src/client/inspector_page/), embedded at build time
// by cmake/embed_files.cmake.

#include <span>
#include <string_view>

namespace grok::inspector_page {

struct asset {
  std::string_view path;  ///< "/index.html"
  std::string_view type;  ///< Content-Type
  std::string_view body;
};

/// Every file of the page.
std::span<const asset> assets();

}  // namespace grok::inspector_page
