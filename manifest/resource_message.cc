#include "manifest/resource_message.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nftproxy::manifest {

namespace {

const google::protobuf::FieldDescriptor* FieldOf(v1::Resource::KindCase c) {
  return v1::Resource::descriptor()->FindFieldByNumber(static_cast<int>(c));
}

}  // namespace

const google::protobuf::Message* BodyOf(const v1::Resource& r) {
  if (r.kind_case() == v1::Resource::KIND_NOT_SET) return nullptr;
  return &r.GetReflection()->GetMessage(r, FieldOf(r.kind_case()));
}

google::protobuf::Message* MutableBodyOf(const KindInfo& kind, v1::Resource* r) {
  return r->GetReflection()->MutableMessage(r, FieldOf(kind.oneof));
}

const KindInfo* KindByManifest(absl::string_view word) {
  for (const KindInfo& k : Kinds()) {
    if (word == k.manifest) return &k;
  }
  return nullptr;
}

std::string ManifestKinds(absl::string_view last) {
  std::vector<std::string> names;
  for (const KindInfo& k : Kinds()) names.push_back(k.manifest);
  if (names.size() < 2) return absl::StrJoin(names, "");
  const std::string tail = names.back();
  names.pop_back();
  return absl::StrCat(absl::StrJoin(names, ", "), last, tail);
}

}  // namespace nftproxy::manifest
