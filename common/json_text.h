// A string as a JSON string literal, for the few places that write JSON by
// hand (the log's JSON lines, the CLI's jsonpath output).
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace nftproxy {

// `s` quoted and escaped: '"' and '\' escaped, \n \r \t as such, other
// control characters as \u00XX; everything else (UTF-8 included) as is.
std::string JsonQuote(absl::string_view s);

}  // namespace nftproxy
