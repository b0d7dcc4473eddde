// How a scalar of nftproxy's own manifest schema is read for a field of the
// API: numbers as YAML 1.2 spells them, enums in the API's or Kubernetes'
// spelling, durations as 600, 600s or 10m; and the field a key names. Shared
// by the two ways a document becomes a message (manifest_json.cc): filled
// directly, or written as JSON for protobuf's parser; both must read every
// value alike, so they read it here.
#pragma once

#include <google/protobuf/descriptor.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace nftproxy::manifest::manifest_values {

// [-+]?[0-9]+ -> JSON integer text (no '+', no leading zeros).
std::optional<std::string> DecimalInt(absl::string_view s);
// 0x[0-9a-fA-F]+ or 0o[0-7]+ -> decimal text, if it fits in 64 bits.
std::optional<std::string> HexOrOctalInt(absl::string_view s);
// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? -> JSON number text.
std::optional<std::string> Float(absl::string_view s);
// For a plain (unquoted) scalar: the bare JSON token it stands for (a number,
// true/false or null), or a quoted JSON string for .inf/.nan (which is how
// protobuf's JSON mapping spells them); nullopt if it is just a string.
std::optional<std::string> PlainScalarToken(const std::string& s);
bool LooksNumeric(const std::string& s);
void AppendJsonString(absl::string_view s, std::string* out);

// " (did you mean \"clusterIps\"?)" or "".
std::string Suggestion(const google::protobuf::Descriptor* desc, absl::string_view key);
// A field by its JSON name (lowerCamelCase) or its proto name.
const google::protobuf::FieldDescriptor* FieldByJsonName(const google::protobuf::Descriptor* desc,
                                                         absl::string_view name);
// For a field holding a message, the message type whose field names are
// checked; nullptr for scalars and well-known types (Duration, ...).
const google::protobuf::Descriptor* CheckedType(const google::protobuf::FieldDescriptor* f);

// The value `text` names in `e` (by name, any unambiguous spelling of one,
// or number); nullptr if none: then EnumError says why.
const google::protobuf::EnumValueDescriptor* EnumValue(const google::protobuf::EnumDescriptor* e,
                                                       const std::string& text);
std::string EnumError(const google::protobuf::EnumDescriptor* e, const std::string& text);

// google.protobuf.Duration from a plain number of seconds or Go-style
// "10m", "1h30m", "500ms"; false with the error's text in `*error`.
bool DurationValue(const std::string& text, int64_t* nanos, std::string* error);
// The JSON mapping's spelling of a duration: "600s", "1.500000000s".
std::string DurationJson(int64_t nanos);

// A whole number for integer field `f`, from a plain or quoted scalar.
struct Integer {
  std::string decimal;  // as JSON writes it
  int64_t signed_value = 0;
  uint64_t unsigned_value = 0;
};
bool IntegerValue(const google::protobuf::FieldDescriptor* f, const std::string& text, Integer* out,
                  std::string* error);

}  // namespace nftproxy::manifest::manifest_values
