// `-l, --selector`: kubectl's equality-based label selectors, matched on the
// client against metadata.labels (List has no selector of its own).
//
//   app=web      app==web    the label is there with that value
//   tier!=db                 the label is absent or has another value
//   tier                     the label is there, any value
//   !tier                    the label is absent
//
// Requirements are separated by commas and must all hold. Set-based forms
// (`in`, `notin`) are refused with a message saying so.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::client {

struct LabelRequirement {
  enum class Op { kEquals, kNotEquals, kExists, kNotExists } op = Op::kExists;
  std::string key;
  std::string value;  // kEquals, kNotEquals
};

struct LabelSelector {
  std::vector<LabelRequirement> requirements;  // empty: everything matches

  bool Matches(const google::protobuf::Map<std::string, std::string>& labels) const;
};

// InvalidArgument naming the requirement that is wrong.
absl::StatusOr<LabelSelector> ParseLabelSelector(absl::string_view text);

}  // namespace nftproxy::client
