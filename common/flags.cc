#include "common/flags.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace nftproxy {

absl::Status ParseFlags(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs,
                        std::vector<std::string>* positional) {
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      positional->push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    auto spec = std::find_if(specs.begin(), specs.end(), [&](const FlagSpec& s) {
      return std::find(s.names.begin(), s.names.end(), name) != s.names.end();
    });
    if (spec == specs.end()) return absl::InvalidArgumentError(absl::StrCat("unknown flag ", name));
    if (spec->set != nullptr) {
      if (eq == std::string::npos) {
        *spec->set = true;
      } else if (const std::string v = arg.substr(eq + 1); v == "true" || v == "false") {
        *spec->set = v == "true";
      } else {
        return absl::InvalidArgumentError(absl::StrCat(name, ": expected true or false, got \"", v, "\""));
      }
      continue;
    }
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(name, ": needs a value"));
    }
    if (spec->values != nullptr) {
      spec->values->push_back(std::move(value));
    } else {
      *spec->value = std::move(value);
    }
  }
  return absl::OkStatus();
}

}  // namespace nftproxy
