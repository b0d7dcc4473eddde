// `nftproxy completion bash|zsh|fish`: shell completion scripts generated
// from the CLI's own tables (commands, flags, kinds, output formats), so
// that they never fall behind them. Resource names are completed by asking
// the server (`nftproxy get KIND -o name`, with the --server and -n already
// on the line).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nftproxy::client {

struct CompletionSpec {
  struct Command {
    std::string name;
    std::string summary;
    std::vector<std::string> flags;    // every spelling, global flags included
    std::vector<std::string> formats;  // -o values
    // What the first positional word is: "kind" (get, watch), "service-kind"
    // (describe), "delete-kind", "shell" (completion) or "".
    std::string first;
  };
  std::vector<Command> commands;
  std::vector<std::string> global_flags;
  std::vector<std::string> value_flags;  // flags whose value is the next word
  std::vector<std::string> kinds;        // every word naming a kind
};

// InvalidArgument for a shell other than bash, zsh and fish.
absl::StatusOr<std::string> CompletionScript(absl::string_view shell, const CompletionSpec& spec);

}  // namespace nftproxy::client
