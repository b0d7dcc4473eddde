#include "client/selector.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace nftproxy::client {
namespace {

// Kubernetes' label key: an optional DNS-subdomain prefix and '/', then a
// name of alphanumerics, '-', '_' and '.'. Checked loosely (characters, not
// lengths): the point is to catch a mistyped operator, not to re-validate.
bool ValidKey(absl::string_view k) {
  if (k.empty()) return false;
  for (char c : k) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.' && c != '/') return false;
  }
  return absl::ascii_isalnum(k.front()) && absl::ascii_isalnum(k.back());
}

bool ValidValue(absl::string_view v) {
  for (char c : v) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

absl::Status Bad(absl::string_view req, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("-l: \"", req, "\": ", why));
}

}  // namespace

bool LabelSelector::Matches(const google::protobuf::Map<std::string, std::string>& labels) const {
  for (const LabelRequirement& r : requirements) {
    const auto it = labels.find(r.key);
    switch (r.op) {
      case LabelRequirement::Op::kEquals:
        if (it == labels.end() || it->second != r.value) return false;
        break;
      case LabelRequirement::Op::kNotEquals:
        if (it != labels.end() && it->second == r.value) return false;
        break;
      case LabelRequirement::Op::kExists:
        if (it == labels.end()) return false;
        break;
      case LabelRequirement::Op::kNotExists:
        if (it != labels.end()) return false;
        break;
    }
  }
  return true;
}

absl::StatusOr<LabelSelector> ParseLabelSelector(absl::string_view text) {
  LabelSelector sel;
  if (absl::StripAsciiWhitespace(text).empty()) return sel;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    const absl::string_view req = absl::StripAsciiWhitespace(part);
    if (req.empty()) return Bad(text, "empty requirement (two commas, or a comma at an end)");
    if (absl::StrContains(req, " in ") || absl::StrContains(req, " notin ") || absl::StrContains(req, "(")) {
      return Bad(req, "set-based selectors (in, notin) are not supported; use key=value, key!=value, key or !key");
    }
    LabelRequirement r;
    absl::string_view key, value;
    if (size_t at = req.find("!="); at != absl::string_view::npos) {
      r.op = LabelRequirement::Op::kNotEquals;
      key = req.substr(0, at);
      value = req.substr(at + 2);
    } else if (size_t at = req.find("=="); at != absl::string_view::npos) {
      r.op = LabelRequirement::Op::kEquals;
      key = req.substr(0, at);
      value = req.substr(at + 2);
    } else if (size_t at = req.find('='); at != absl::string_view::npos) {
      r.op = LabelRequirement::Op::kEquals;
      key = req.substr(0, at);
      value = req.substr(at + 1);
    } else if (absl::StartsWith(req, "!")) {
      r.op = LabelRequirement::Op::kNotExists;
      key = absl::StripLeadingAsciiWhitespace(req.substr(1));
    } else {
      r.op = LabelRequirement::Op::kExists;
      key = req;
    }
    key = absl::StripAsciiWhitespace(key);
    value = absl::StripAsciiWhitespace(value);
    if (!ValidKey(key)) return Bad(req, absl::StrCat("\"", key, "\" is not a label key"));
    if (!ValidValue(value)) return Bad(req, absl::StrCat("\"", value, "\" is not a label value"));
    r.key = std::string(key);
    r.value = std::string(value);
    sel.requirements.push_back(std::move(r));
  }
  return sel;
}

}  // namespace nftproxy::client
