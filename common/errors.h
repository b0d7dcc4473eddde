// Errors that say which resource and field are at fault, as a structured
// payload beside the message, and their way across gRPC (status details),
// so that a client finds the resource without reading the message.
#pragma once

#include <optional>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "common/resource.h"

namespace nftproxy {

// `code` with the message "service default/web: FIELD: MESSAGE" (no FIELD
// part when `field` is empty), carrying an ErrorDetail naming both.
absl::Status ResourceError(absl::StatusCode code, const Key& key, absl::string_view field, absl::string_view message);
inline absl::Status InvalidField(const Key& key, absl::string_view field, absl::string_view message) {
  return ResourceError(absl::StatusCode::kInvalidArgument, key, field, message);
}

// `s` (not OK) with an ErrorDetail naming `key` and `field`; the message is
// left as it is.
absl::Status AboutResource(absl::Status s, const Key& key, absl::string_view field = "");

// The ErrorDetail a status carries; nullopt when it has none.
std::optional<v1::ErrorDetail> ErrorDetailOf(const absl::Status& s);
// Attaches `detail` to `s` (replacing any other); `s` must not be OK.
void SetErrorDetail(absl::Status* s, const v1::ErrorDetail& detail);

}  // namespace nftproxy
