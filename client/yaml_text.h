// How the manifest readers spell a problem in a YAML document: every error
// and warning line names a place and quotes what the user wrote, the same
// way whichever reader (nftproxy's schema, Kubernetes', the document splitter)
// found it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "absl/strings/string_view.h"

namespace nftproxy::client {

// "line L, column C: ", or "" when the parser gave no position.
std::string Position(const YAML::Mark& mark);
// A user-supplied string, quoted and escaped, so that odd bytes stay visible.
std::string Quote(absl::string_view s);
// `s` with line breaks turned into spaces: a message is one line per problem.
std::string OneLine(std::string s);
// "a mapping", "a sequence", "a scalar", "null".
const char* NodeTypeName(const YAML::Node& n);

}  // namespace nftproxy::client
