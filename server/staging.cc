#include "server/staging.h"

#include "absl/strings/str_cat.h"
#include "common/errors.h"
#include "common/parallel.h"
#include "server/validate.h"

namespace nftproxy::server {

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kCreated: return "created";
    case Outcome::kConfigured: return "configured";
    case Outcome::kUnchanged: return "unchanged";
    case Outcome::kDeleted: return "deleted";
  }
  return "?";
}

std::string SourceName(const std::string& source) {
  return source.empty() ? "\"\" (manual)" : absl::StrCat("\"", source, "\"");
}

namespace {

void SetTime(google::protobuf::Timestamp* ts, absl::Time t) {
  const int64_t ns = absl::ToUnixNanos(t);
  ts->set_seconds(ns / 1000000000);
  ts->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

absl::Status CheckVersion(const Key& key, uint64_t want, const v1::Resource* stored) {
  if (want == 0) return absl::OkStatus();
  const uint64_t have = stored ? MetaOf(*stored).resource_version() : 0;
  if (want != have) {
    return ResourceError(absl::StatusCode::kAborted, key, "metadata.resourceVersion",
                         absl::StrCat("conflict: expected ", want, ", stored ", have, " (it changed since it was read)"));
  }
  return absl::OkStatus();
}

// A resource is replaced or deleted only by the source that owns it.
absl::Status CheckOwner(const Key& key, const v1::Resource* stored, const std::string& writer) {
  if (stored == nullptr || MetaOf(*stored).source() == writer) return absl::OkStatus();
  return ResourceError(
      absl::StatusCode::kAlreadyExists, key, "",
      absl::StrCat("conflict: owned by source ", SourceName(MetaOf(*stored).source()),
                   ", and this request is from source ", SourceName(writer),
                   " (a source changes only its own resources; to act for the owner, send its name as the source)"));
}

absl::Status Twice(const Key& key) {
  return ResourceError(absl::StatusCode::kInvalidArgument, key, "", "appears twice in one request");
}

// Requests at least this large are examined on several threads.
constexpr size_t kParallelResources = 512;

}  // namespace

std::vector<Incoming> Examine(const std::vector<absl::string_view>& items, absl::string_view field,
                              const std::string& source, const Desired& d, absl::Time now,
                              const ResourceLimits& limits) {
  std::vector<Incoming> out(items.size());
  ParallelFor(out.size(), kParallelResources, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      Incoming& in = out[i];
      in.wire = items[i];
      if (std::optional<Desired::WireMatch> match = d.MatchWire(in.wire)) {
        in.key = *match->key;
        in.stored = match->resource;
        in.source = match->wire->source;
        in.version = match->wire->version;
        in.known = in.same = true;
      } else {
        in.resource = std::make_unique<v1::Resource>();
        if (!in.resource->ParseFromArray(in.wire.data(), static_cast<int>(in.wire.size()))) {
          in.parsed = absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: not a valid Resource message"));
          continue;
        }
        // Defaults spelled out or left out: the same resource.
        ClearExplicitDefaults(in.resource.get());
        const v1::ObjectMeta& m = MetaOf(*in.resource);
        in.key = KeyOf(*in.resource);
        in.source = m.source();
        in.version = m.resource_version();
        in.user_bytes = UserBytes(in.resource.get());
        const std::string* stored = d.UserBytesOf(in.key);
        in.same = stored != nullptr && *stored == in.user_bytes;
        if (!in.same) in.valid = ValidateResource(*in.resource, limits);
        in.stored = d.Find(in.key);
      }
      if (!in.source.empty() && !source.empty() && in.source != source) {
        in.checked = InvalidField(in.key, "metadata.source",
                                  absl::StrCat("\"", in.source, "\" differs from the request's source \"", source, "\""));
      } else if (auto s = CheckVersion(in.key, in.version, in.stored); !s.ok()) {
        in.checked = s;
      } else {
        // The owner check also makes an equal user part mean an equal
        // resource: the source is the one part UserBytes leaves out that is
        // not assigned.
        in.checked = CheckOwner(in.key, in.stored, in.source.empty() ? source : in.source);
      }
      if (!in.same && in.valid.ok() && in.checked.ok()) {
        v1::ObjectMeta* m = MutableMetaOf(in.resource.get());
        m->set_namespace_(in.key.ns);
        m->set_source(in.source.empty() ? source : in.source);
        m->set_resource_version(d.revision() + 1);
        if (in.stored) {
          *m->mutable_create_time() = MetaOf(*in.stored).create_time();
        } else {
          SetTime(m->mutable_create_time(), now);
        }
        SetTime(m->mutable_update_time(), now);
        in.wire_copy = std::string(in.wire);
      }
    }
  });
  return out;
}

absl::StatusOr<Outcome> StageUpsert(Incoming& in, const std::string& source, Write* w) {
  if (!in.parsed.ok()) return in.parsed;
  const Key& key = in.key;
  if (!w->txn.Claim(key)) return Twice(key);
  if (!in.checked.ok()) return in.checked;
  if (in.stored && in.same) {
    // Next time these bytes need no parsing.
    if (!in.known) w->txn.desired().SetWire(key, Wire{std::string(in.wire), in.source, in.version});
    return Outcome::kUnchanged;
  }
  if (!in.valid.ok()) return in.valid;
  // Examine prepared the resource as it is stored.
  w->any_change = true;
  const Outcome outcome = in.stored ? Outcome::kConfigured : Outcome::kCreated;
  w->txn.Put(key, std::move(*in.resource), std::move(in.user_bytes),
             Wire{std::move(in.wire_copy), in.source, in.version});
  return outcome;
}

absl::Status StageDelete(const Key& key, uint64_t resource_version, const std::string& source, Write* w) {
  if (key.kind == v1::KIND_UNSPECIFIED) return absl::InvalidArgumentError("deletes[].kind: required");
  if (!w->txn.Claim(key)) return Twice(key);
  const v1::Resource* stored = w->txn.desired().Find(key);
  if (stored == nullptr) return AboutResource(absl::NotFoundError(absl::StrCat(Describe(key), " not found")), key);
  if (auto s = CheckVersion(key, resource_version, stored); !s.ok()) return s;
  if (auto s = CheckOwner(key, stored, source); !s.ok()) return s;
  w->txn.Put(key, std::nullopt);
  w->any_change = true;
  return absl::OkStatus();
}

}  // namespace nftproxy::server
