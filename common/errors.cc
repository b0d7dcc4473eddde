#include "common/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace nftproxy {

namespace {
constexpr char kDetailUrl[] = "type.googleapis.com/nftproxy.v1.ErrorDetail";
}  // namespace

absl::Status ResourceError(absl::StatusCode code, const Key& key, absl::string_view field, absl::string_view message) {
  return AboutResource(absl::Status(code, field.empty() ? absl::StrCat(Describe(key), ": ", message)
                                                        : absl::StrCat(Describe(key), ": ", field, ": ", message)),
                       key, field);
}

absl::Status AboutResource(absl::Status s, const Key& key, absl::string_view field) {
  v1::ErrorDetail detail;
  *detail.mutable_resource() = RefOf(key);
  detail.set_field(std::string(field));
  SetErrorDetail(&s, detail);
  return s;
}

std::optional<v1::ErrorDetail> ErrorDetailOf(const absl::Status& s) {
  absl::optional<absl::Cord> payload = s.GetPayload(kDetailUrl);
  if (!payload) return std::nullopt;
  v1::ErrorDetail detail;
  if (!detail.ParseFromString(std::string(*payload))) return std::nullopt;
  return detail;
}

void SetErrorDetail(absl::Status* s, const v1::ErrorDetail& detail) {
  s->SetPayload(kDetailUrl, absl::Cord(detail.SerializeAsString()));
}

}  // namespace nftproxy
