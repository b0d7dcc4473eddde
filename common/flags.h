// Command-line flags of the client commands: `--flag value`, `--flag=value`,
// boolean `--flag`, short aliases (`-f PATH`), `--` ending the flags.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace nftproxy {

struct FlagSpec {
  // Every spelling, e.g. {"-f", "--filename"}.
  std::vector<std::string> names;
  // Exactly one of these is set: a flag taking a value, a repeatable flag
  // taking a value, or a boolean flag (which also accepts --flag=true|false).
  std::string* value = nullptr;
  std::vector<std::string>* values = nullptr;
  bool* set = nullptr;
};

// Parses `args` against `specs`. Arguments that are not flags ("-" is not a
// flag; everything after "--" is not) are appended to *positional, in order.
// An unknown flag or a missing value gives InvalidArgument naming the flag.
absl::Status ParseFlags(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs,
                        std::vector<std::string>* positional);

}  // namespace nftproxy
