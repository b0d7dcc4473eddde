// Command-line flags of the client commands and `serve`: `--flag value`,
// `--flag=value`, boolean `--flag`, short aliases (`-f PATH`), `--` ending
// the flags; and the same flags read from a YAML file (`serve --config`).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace nftproxy {

struct FlagSpec {
  // Every spelling, e.g. {"-f", "--filename"}.
  std::vector<std::string> names;
  // Exactly one of these is set: a flag taking a value, a repeatable flag
  // taking a value, or a boolean flag (which also accepts --flag=true|false).
  std::string* value = nullptr;
  std::vector<std::string>* values = nullptr;
  bool* set = nullptr;
  // False for flags that a flag file may not set (--help, --config).
  bool in_file = true;
};

// The flag's key in a flag file: its first long name without the dashes
// ("--log-level", "--v" -> "log-level"); "" if it has no long name.
std::string FlagKey(const FlagSpec& spec);

// Parses `args` against `specs`. Arguments that are not flags ("-" is not a
// flag; everything after "--" is not) are appended to *positional, in order.
// An unknown flag or a missing value gives InvalidArgument naming the flag.
// `given` (optional) receives the FlagKey of every flag that was given.
absl::Status ParseFlags(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs,
                        std::vector<std::string>* positional, std::set<std::string>* given = nullptr);

// Where a flag file set a key: 1-based line and column.
struct FlagOrigin {
  int line = 0;
  int column = 0;
};

// Reads the YAML flag file `path`: a mapping whose keys are the FlagKeys of
// `specs` (those with in_file). A value flag takes a scalar; a repeatable flag
// a sequence of scalars, or one scalar, or [] / null for none (it replaces
// the flag's list); a boolean flag true or false. Keys in `skip` (given on
// the command line, which wins) are checked but not applied. Errors are
// InvalidArgument "PATH:LINE:COLUMN: KEY: what is wrong" (unknown key,
// a key given twice, wrong type), or "PATH: ..." for a file that cannot be
// read or is not YAML; on error the targets may be half set. `origins`
// (optional) receives where each applied key was written.
absl::Status LoadFlagFile(const std::string& path, const std::vector<FlagSpec>& specs,
                          const std::set<std::string>& skip, std::map<std::string, FlagOrigin>* origins = nullptr);
// The same for text in memory; `path` names it in messages.
absl::Status ParseFlagFile(const std::string& text, const std::string& path, const std::vector<FlagSpec>& specs,
                           const std::set<std::string>& skip, std::map<std::string, FlagOrigin>* origins = nullptr);

// Levenshtein distance, for "did you mean" suggestions; letters compared
// without case when `fold_case`.
size_t EditDistance(absl::string_view a, absl::string_view b, bool fold_case = false);

}  // namespace nftproxy
