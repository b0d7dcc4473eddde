#include "server/proxy_service.h"

#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_cat.h"
#include "server/convert.h"
#include "server/validate.h"

namespace nftproxy::server {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

namespace {

void SetTime(google::protobuf::Timestamp* ts, absl::Time t) {
  const int64_t ns = absl::ToUnixNanos(t);
  ts->set_seconds(ns / 1000000000);
  ts->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

// The resource without server-assigned fields, to tell "unchanged" writes.
v1::Resource UserPart(const v1::Resource& r) {
  v1::Resource c = r;
  v1::ObjectMeta* m = MutableMetaOf(&c);
  m->clear_resource_version();
  m->clear_create_time();
  m->clear_update_time();
  if (m->namespace_().empty()) m->set_namespace_(kDefaultNamespace);
  return c;
}

absl::Status CheckVersion(const Key& key, uint64_t want, const v1::Resource* stored) {
  if (want == 0) return absl::OkStatus();
  const uint64_t have = stored ? MetaOf(*stored).resource_version() : 0;
  if (want != have) {
    return absl::AbortedError(absl::StrCat(Describe(key), ": metadata.resourceVersion: conflict: expected ", want,
                                           ", stored ", have, " (it changed since it was read)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ProxyService::Restore(State state) {
  absl::MutexLock lock(&mu_);
  std::vector<Key> all;
  for (const auto& [k, r] : state.objects) {
    if (auto s = ValidateResource(r); !s.ok()) return s;
    all.push_back(k);
  }
  return CommitLocked(std::move(state), all, false);
}

absl::Status ProxyService::CommitLocked(State next, const std::vector<Key>& changed, bool dry_run) {
  if (auto s = ValidateState(next, changed); !s.ok()) return s;
  dp::Model model = BuildModel(next);
  if (dry_run) return absl::OkStatus();
  const absl::Time start = absl::Now();
  dp::ApplyResult result;
  absl::Status s = dp_->Apply(model, &result);
  last_sync_ = absl::Now();
  last_sync_duration_ = last_sync_ - start;
  if (!s.ok()) {
    last_error_ = std::string(s.message());
    return s;
  }
  last_error_.clear();
  if (!options_.state_file.empty()) {
    // The kernel already holds the change; a failed save only affects the
    // next restart, so it is reported in Status rather than failing the call.
    if (auto saved = SaveState(next, options_.state_file); !saved.ok()) last_error_ = std::string(saved.message());
  }
  state_ = std::move(next);
  return absl::OkStatus();
}

absl::Status ProxyService::DoApply(const v1::ApplyRequest& req, v1::ApplyResponse* resp) {
  absl::MutexLock lock(&mu_);
  State next = state_;
  std::vector<Key> changed;
  std::vector<std::string> outcomes;
  const absl::Time now = absl::Now();
  for (const v1::ResourceRef& ref : req.deletes()) {
    const Key key = KeyOf(ref);
    if (key.kind == v1::KIND_UNSPECIFIED) return absl::InvalidArgumentError("deletes[].kind: required");
    auto it = next.objects.find(key);
    if (it == next.objects.end()) return absl::NotFoundError(absl::StrCat(Describe(key), " not found"));
    if (auto s = CheckVersion(key, ref.resource_version(), &it->second); !s.ok()) return s;
    next.objects.erase(it);
    changed.push_back(key);
    v1::ResourceRef* d = resp->add_deleted();
    *d = ref;
    d->set_namespace_(key.ns);
  }
  bool any_change = !changed.empty();
  for (int i = 0; i < req.upserts_size(); ++i) {
    v1::Resource r = req.upserts(i);
    if (auto s = ValidateResource(r); !s.ok()) return s;
    const Key key = KeyOf(r);
    for (const Key& k : changed) {
      if (k == key) return absl::InvalidArgumentError(absl::StrCat(Describe(key), ": appears twice in one request"));
    }
    v1::ObjectMeta* m = MutableMetaOf(&r);
    m->set_namespace_(key.ns);
    if (m->source().empty()) m->set_source(req.source());
    auto it = next.objects.find(key);
    const v1::Resource* stored = it == next.objects.end() ? nullptr : &it->second;
    if (auto s = CheckVersion(key, m->resource_version(), stored); !s.ok()) return s;
    changed.push_back(key);
    if (stored && google::protobuf::util::MessageDifferencer::Equals(UserPart(*stored), UserPart(r))) {
      outcomes.push_back("unchanged");
      *resp->add_applied() = *stored;
      continue;
    }
    any_change = true;
    m->set_resource_version(next.revision + 1);
    if (stored) {
      *m->mutable_create_time() = MetaOf(*stored).create_time();
    } else {
      SetTime(m->mutable_create_time(), now);
    }
    SetTime(m->mutable_update_time(), now);
    outcomes.push_back(stored ? "configured" : "created");
    next.objects[key] = r;
    *resp->add_applied() = r;
  }
  for (int i = 0; i < req.deletes_size(); ++i) resp->add_outcomes("deleted");
  for (const std::string& o : outcomes) resp->add_outcomes(o);
  if (!any_change) {
    resp->set_revision(state_.revision);
    return absl::OkStatus();
  }
  next.revision += 1;
  resp->set_revision(req.dry_run() ? state_.revision : next.revision);
  return CommitLocked(std::move(next), changed, req.dry_run());
}

grpc::Status ProxyService::Apply(grpc::ServerContext*, const v1::ApplyRequest* req, v1::ApplyResponse* resp) {
  v1::ApplyResponse out;
  absl::Status s = DoApply(*req, &out);
  if (s.ok()) *resp = std::move(out);
  return ToGrpc(s);
}

grpc::Status ProxyService::Get(grpc::ServerContext*, const v1::GetRequest* req, v1::Resource* resp) {
  const Key key = KeyOf(req->ref());
  absl::MutexLock lock(&mu_);
  auto it = state_.objects.find(key);
  if (it == state_.objects.end()) return ToGrpc(absl::NotFoundError(absl::StrCat(Describe(key), " not found")));
  *resp = it->second;
  return grpc::Status::OK;
}

grpc::Status ProxyService::List(grpc::ServerContext*, const v1::ListRequest* req, v1::ListResponse* resp) {
  absl::MutexLock lock(&mu_);
  for (const auto& [key, r] : state_.objects) {
    if (req->kind() != v1::KIND_UNSPECIFIED && key.kind != req->kind()) continue;
    if (!req->namespace_().empty() && key.ns != req->namespace_()) continue;
    *resp->add_resources() = r;
  }
  resp->set_revision(state_.revision);
  return grpc::Status::OK;
}

grpc::Status ProxyService::Delete(grpc::ServerContext*, const v1::DeleteRequest* req, v1::DeleteResponse* resp) {
  v1::ApplyRequest apply;
  *apply.mutable_deletes() = req->refs();
  v1::ApplyResponse out;
  absl::Status s = DoApply(apply, &out);
  if (!s.ok()) return ToGrpc(s);
  *resp->mutable_deleted() = out.deleted();
  resp->set_revision(out.revision());
  return grpc::Status::OK;
}

grpc::Status ProxyService::GetRuleset(grpc::ServerContext*, const v1::GetRulesetRequest*, v1::GetRulesetResponse* resp) {
  absl::MutexLock lock(&mu_);
  resp->set_text(dp_->Installed());
  resp->set_table(dp_->Table());
  return grpc::Status::OK;
}

grpc::Status ProxyService::Sync(grpc::ServerContext*, const v1::SyncRequest*, v1::SyncResponse*) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Sync is not implemented yet; use Apply");
}

grpc::Status ProxyService::Watch(grpc::ServerContext*, const v1::WatchRequest*, grpc::ServerWriter<v1::WatchEvent>*) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Watch is not implemented yet");
}

grpc::Status ProxyService::Status(grpc::ServerContext*, const v1::StatusRequest*, v1::StatusResponse* resp) {
  absl::MutexLock lock(&mu_);
  resp->set_version(NFTPROXY_VERSION);
  resp->set_revision(state_.revision);
  resp->set_node_name(options_.node_name);
  for (const auto& [key, r] : state_.objects) {
    if (key.kind == v1::SERVICE) resp->set_services(resp->services() + 1);
    if (key.kind == v1::ENDPOINT_SLICE) resp->set_endpoint_slices(resp->endpoint_slices() + 1);
    if (key.kind == v1::WORKLOAD) resp->set_workloads(resp->workloads() + 1);
  }
  if (last_sync_ != absl::InfinitePast()) {
    SetTime(resp->mutable_last_sync_time(), last_sync_);
    const int64_t ns = absl::ToInt64Nanoseconds(last_sync_duration_);
    resp->mutable_last_sync_duration()->set_seconds(ns / 1000000000);
    resp->mutable_last_sync_duration()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  }
  resp->set_last_error(last_error_);
  return grpc::Status::OK;
}

}  // namespace nftproxy::server
