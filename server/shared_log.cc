#include "server/shared_log.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace nftproxy::server {

std::string EncodeChange(const Change& change) {
  v1::ApplyRequest req;
  for (const auto& [key, r] : change) {
    if (r.has_value()) {
      v1::Resource* out = req.add_upserts();
      *out = *r;
      if (v1::ObjectMeta* m = MutableMetaOf(out)) m->clear_resource_version();
    } else {
      *req.add_deletes() = RefOf(key);
    }
  }
  return req.SerializeAsString();
}

absl::StatusOr<Change> DecodeChange(const std::string& bytes, int64_t revision) {
  v1::ApplyRequest req;
  if (!req.ParseFromString(bytes)) return absl::DataLossError("a log entry is not an encoded change");
  Change out;
  out.reserve(req.upserts_size() + req.deletes_size());
  absl::flat_hash_set<Key> seen;
  auto bad = [](const Key& key, const char* why) {
    return absl::DataLossError(absl::StrCat("a log entry's change ", why, ": ", Describe(key)));
  };
  for (const v1::ResourceRef& ref : req.deletes()) {
    const Key key = KeyOf(ref);
    if (!seen.insert(key).second) return bad(key, "names a key twice");
    out.emplace_back(key, std::nullopt);
  }
  for (v1::Resource& r : *req.mutable_upserts()) {
    v1::ObjectMeta* m = MutableMetaOf(&r);
    if (m == nullptr) return absl::DataLossError("a log entry's change holds a resource of no kind");
    const Key key = KeyOf(r);
    if (key.name.empty()) return bad(key, "holds a resource without a name");
    if (!seen.insert(key).second) return bad(key, "names a key twice");
    m->set_resource_version(static_cast<uint64_t>(revision));
    out.emplace_back(key, std::move(r));
  }
  return out;
}

std::string EncodeState(const std::map<Key, v1::Resource>& objects) {
  v1::ApplyRequest req;
  for (const auto& [key, r] : objects) *req.add_upserts() = r;
  return req.SerializeAsString();
}

absl::StatusOr<std::map<Key, v1::Resource>> DecodeState(const std::string& bytes) {
  v1::ApplyRequest req;
  if (!req.ParseFromString(bytes) || req.deletes_size() > 0) {
    return absl::DataLossError("the log's base is not an encoded state");
  }
  std::map<Key, v1::Resource> out;
  for (v1::Resource& r : *req.mutable_upserts()) {
    const v1::ObjectMeta* m = MutableMetaOf(&r);
    if (m == nullptr || m->name().empty() || m->resource_version() == 0) {
      return absl::DataLossError("the log's base holds a resource without a kind, name or version");
    }
    const Key key = KeyOf(r);
    if (!out.emplace(key, std::move(r)).second) {
      return absl::DataLossError(absl::StrCat("the log's base names a key twice: ", Describe(key)));
    }
  }
  return out;
}

void FoldChange(Change change, std::map<Key, v1::Resource>* objects) {
  for (auto& [key, r] : change) {
    if (r.has_value()) {
      (*objects)[key] = std::move(*r);
    } else {
      objects->erase(key);
    }
  }
}

}  // namespace nftproxy::server
