// Reading a serialized request without parsing all of it: the bytes of each
// element of one repeated message field, and the rest of the message.
//
// A large Sync or Apply is mostly resources that the server already holds.
// Comparing their bytes with the bytes they were stored from is much
// cheaper than parsing them, so the server takes requests as bytes and
// parses only the resources that are new or changed.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace nftproxy::server {

// Splits the serialized message `bytes` into the payloads of field number
// `field` (which must be length-delimited: a repeated message), in order,
// and `rest`: every other field, byte for byte, in order (parse it as the
// message type to read them). The views point into `bytes`.
// InvalidArgument naming `what` and the byte offset when `bytes` is not a
// well-formed protobuf message.
absl::Status SplitField(absl::string_view bytes, int field, absl::string_view what,
                        std::vector<absl::string_view>* items, std::string* rest);

}  // namespace nftproxy::server
