#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nftproxy::server {

// `nftproxy serve [flags]`. Returns the process exit code.
int RunServe(const std::vector<std::string>& args);

// The keys of `serve --config FILE`: every flag's name without the dashes
// (one table: a new flag is a new key), in the flag table's order.
std::vector<std::string> ServeConfigKeys();
// What `args` (command-line flags, --config FILE among them) set each key
// to, the command line over the file; for tests. Values are checked as far
// as parsing goes (the YAML types; the log level and format); the rest of
// the checks are RunServe's, before it touches anything.
absl::StatusOr<std::map<std::string, std::vector<std::string>>> ResolveServeSettings(
    const std::vector<std::string>& args);

}  // namespace nftproxy::server
