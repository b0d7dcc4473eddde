#include "common/flags.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nftproxy {

std::string FlagKey(const FlagSpec& spec) {
  for (const std::string& n : spec.names) {
    if (absl::StartsWith(n, "--") && n.size() > 2) return n.substr(2);
  }
  return "";
}

absl::Status ParseFlags(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs,
                        std::vector<std::string>* positional, std::set<std::string>* given) {
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
    if (given != nullptr) given->insert(FlagKey(*spec));
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

namespace {

// Scalars a boolean key accepts (YAML 1.2's core schema).
bool BoolScalar(const std::string& v, bool* out) {
  if (v == "true" || v == "True" || v == "TRUE") {
    *out = true;
    return true;
  }
  if (v == "false" || v == "False" || v == "FALSE") {
    *out = false;
    return true;
  }
  return false;
}

const char* TypeName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Null: return "null";
    default: return "nothing";
  }
}


}  // namespace

absl::Status ParseFlagFile(const std::string& text, const std::string& path, const std::vector<FlagSpec>& specs,
                           const std::set<std::string>& skip, std::map<std::string, FlagOrigin>* origins) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": not YAML: ", e.msg));
  }
  if (root.IsNull() || !root.IsDefined()) return absl::OkStatus();  // empty, or only comments
  auto at = [&](const YAML::Node& n) {
    return absl::StrCat(path, ":", n.Mark().line + 1, ":", n.Mark().column + 1, ": ");
  };
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        at(root), "want a mapping of settings (e.g. \"listen: unix:///run/nftproxy/nftproxy.sock\"), got ",
        TypeName(root)));
  }
  try {
    std::set<std::string> seen;
    for (const auto& entry : root) {
      const YAML::Node& k = entry.first;
      const YAML::Node& v = entry.second;
      if (!k.IsScalar()) return absl::InvalidArgumentError(absl::StrCat(at(k), "a key must be a flag name"));
      const std::string key = k.Scalar();
      const FlagSpec* spec = nullptr;
      for (const FlagSpec& s : specs) {
        if (s.in_file && FlagKey(s) == key) spec = &s;
      }
      if (spec == nullptr) {
        std::string best;
        size_t best_d = 3;  // suggest only close names
        for (const FlagSpec& s : specs) {
          if (!s.in_file) continue;
          const std::string name = FlagKey(s);
          if (const size_t d = EditDistance(key, name); d < best_d) {
            best_d = d;
            best = name;
          }
        }
        return absl::InvalidArgumentError(absl::StrCat(
            at(k), key, ": unknown key", best.empty() ? "" : absl::StrCat(" (did you mean \"", best, "\"?)"),
            "; the keys are the flags of `nftproxy serve --help` without the dashes"));
      }
      if (!seen.insert(key).second) {
        return absl::InvalidArgumentError(absl::StrCat(at(k), key, ": given twice"));
      }
      const std::string where = at(v.IsDefined() && !v.IsNull() ? v : k);
      if (spec->set != nullptr) {
        bool b = false;
        if (!v.IsScalar() || !BoolScalar(v.Scalar(), &b)) {
          return absl::InvalidArgumentError(absl::StrCat(where, key, ": want true or false, got ",
                                                         v.IsScalar() ? absl::StrCat("\"", v.Scalar(), "\"")
                                                                      : std::string(TypeName(v))));
        }
        if (!skip.count(key)) *spec->set = b;
      } else if (spec->values != nullptr) {
        std::vector<std::string> list;
        if (v.IsScalar()) {
          list.push_back(v.Scalar());
        } else if (v.IsSequence()) {
          for (const YAML::Node& item : v) {
            if (!item.IsScalar()) {
              return absl::InvalidArgumentError(
                  absl::StrCat(at(item), key, ": want a list of values, got ", TypeName(item), " in it"));
            }
            list.push_back(item.Scalar());
          }
        } else if (!v.IsNull()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, key, ": want a value or a list of values, got ", TypeName(v)));
        }
        if (!skip.count(key)) *spec->values = std::move(list);
      } else {
        if (!v.IsScalar()) {
          return absl::InvalidArgumentError(absl::StrCat(where, key, ": want a single value, got ", TypeName(v)));
        }
        if (!skip.count(key)) *spec->value = v.Scalar();
      }
      if (origins != nullptr && !skip.count(key)) {
        (*origins)[key] = FlagOrigin{v.Mark().line + 1, v.Mark().column + 1};
        if (v.IsNull() || !v.IsDefined()) (*origins)[key] = FlagOrigin{k.Mark().line + 1, k.Mark().column + 1};
      }
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status LoadFlagFile(const std::string& path, const std::vector<FlagSpec>& specs,
                          const std::set<std::string>& skip, std::map<std::string, FlagOrigin>* origins) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read: ", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read"));
  return ParseFlagFile(text.str(), path, specs, skip, origins);
}

size_t EditDistance(absl::string_view a, absl::string_view b, bool fold_case) {
  auto same = [fold_case](char x, char y) {
    return fold_case ? std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y))
                     : x == y;
  };
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same(a[i - 1], b[j - 1]) ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace nftproxy
